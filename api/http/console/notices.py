"""The console's notices to recipients (GDPR 19, docs/notices.md): the register, filtered by
recipient or to the overdue ones, with each recipient's counts, and one notice's trail: owed,
attempts, delivered (how), acknowledged (how), overdue.

Reading needs ``history:read``, as ``GET /v1/notices``. Nothing here names a person: the
register holds no pseudonym and no reference (a notice's subject is a sealed mention in the
log, which only the subject's own bundle opens).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.http.console.access import PREFIX, PageError, render, visitor
from api.token_store import Scope
from projections.queries import Queries

router = APIRouter(prefix=PREFIX, include_in_schema=False)

NOTICE_ID = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")
MAX_RECIPIENT = 128


def _queries(request: Request) -> Queries:
    found: Queries = request.app.state.queries
    return found


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def state_of(row: Any) -> tuple[str, str]:
    """A notice's state for people, and its badge class: acknowledged, overdue, awaiting
    acknowledgement (delivered), or not delivered yet."""
    if row.acknowledged_seq is not None:
        return "acknowledged", "ok"
    if row.overdue:
        return "overdue", "bad"
    if row.delivered_at is not None:
        return "awaiting acknowledgement", "warn"
    return "not delivered yet", "warn"


def _filters(request: Request) -> tuple[str, bool]:
    recipient = request.query_params.get("recipient", "").strip()
    if len(recipient) > MAX_RECIPIENT or not recipient.isprintable():
        raise PageError(400, "Bad filter", "A recipient id is at most 128 printable characters.")
    overdue = request.query_params.get("overdue", "")
    if overdue not in ("", "1", "on", "true"):
        raise PageError(400, "Bad filter", "overdue is 1 or nothing.")
    return recipient, bool(overdue)


@router.get("/notices")
async def register(request: Request) -> Response:
    who = await visitor(request, Scope.READ_HISTORY)
    recipient, overdue = _filters(request)
    queries = _queries(request)

    def answer() -> dict[str, Any]:
        rows = queries.notices(overdue=True if overdue else None, recipient_id=recipient or None)
        return {
            "rows": [(row, *state_of(row)) for row in rows],
            "counts": queries.notice_counts(),
            "hours": queries.notice_overdue_after().total_seconds() / 3600,
            "filters": {"recipient": recipient, "overdue": overdue},
        }

    context = await run_in_threadpool(answer)
    return render("notices.html", context, visitor=who)


@router.get("/notices/{notice_id}")
async def one(request: Request, notice_id: str) -> Response:
    who = await visitor(request, Scope.READ_HISTORY)
    if not NOTICE_ID.fullmatch(notice_id):
        raise PageError(404, "No such notice", "A notice id is a UUID.")
    queries = _queries(request)

    def answer() -> dict[str, Any]:
        row = queries.notice(notice_id)
        if row is None:
            raise PageError(404, "No such notice", "No notice of this id is owed.")
        after = queries.notice_overdue_after()
        due = _moment(row.due_at)
        return {
            "row": row,
            "state": state_of(row),
            "overdue_at": None if due is None else due + after,
            "hours": after / timedelta(hours=1),
        }

    context = await run_in_threadpool(answer)
    return render("notice.html", context, visitor=who)
