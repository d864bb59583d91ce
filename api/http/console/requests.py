"""The console's request pages: the data-subject request register, and one request's page with
its steps and forms for the next (identity verified, extended, fulfilled, refused with a
ground), appended as ``POST /v1/events`` would append them.

Reading needs ``history:read`` (``GET /v1/requests``); a step needs ``events:write``, the scope
that appends request facts over the API. A step names the requester's reference, which the
register keeps only as a pseudonym: the responder types it, and the ledger refuses a reference
that is not the one the request was received for (``subject_mismatch``), so no page here shows
anyone's reference.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.http.console.access import PREFIX, PageError, Visitor, posted, render, visitor
from api.http.console.forms import (
    append_fact,
    event_id_of,
    moment,
    new_event_id,
    number,
    redirect,
    refuse_signing_client,
)
from api.token_store import Scope
from ledger.vocabulary import RefusalGround
from projections.queries import Queries

router = APIRouter(prefix=PREFIX, include_in_schema=False)

STEPS = ("identity_verified", "extended", "fulfilled", "refused")
"""The request facts the request page appends."""


def _queries(request: Request) -> Queries:
    found: Queries = request.app.state.queries
    return found


@router.get("/requests")
async def register(request: Request) -> Response:
    who = await visitor(request, Scope.READ_HISTORY)
    rows = await run_in_threadpool(_queries(request).requests)
    return render("requests.html", {"rows": rows}, visitor=who)


def _context(request: Request, request_id: str, who: Visitor) -> dict[str, Any]:
    if not request_id or len(request_id) > 128 or not request_id.isprintable():
        raise PageError(404, "No such request", "No request has that id.")
    found = [r for r in _queries(request).requests() if r.request_id == request_id]
    if not found:
        raise PageError(404, "No such request", f"No request {request_id} was received.")
    record = found[0]
    timeline = [
        (step, at, seq)
        for step, at, seq in (
            ("received", record.received_at, record.received_seq),
            ("identity verified", record.identity_verified_at, record.identity_verified_seq),
            (record.status, record.closed_at, record.closed_seq),
        )
        if at is not None
    ]
    return {
        "record": record,
        "timeline": timeline,
        "steps": STEPS,
        "grounds": [g.value for g in RefusalGround],
        "may_write": who.allows(Scope.WRITE_EVENTS),
        "now": datetime.now(UTC),
        "step": None,
        "values": {},
        "errors": {},
        "general": [],
        "event_id": new_event_id(),
    }


@router.get("/requests/{request_id}")
async def one(request: Request, request_id: str) -> Response:
    who = await visitor(request, Scope.READ_HISTORY)
    context = await run_in_threadpool(_context, request, request_id, who)
    return render("request.html", context, visitor=who)


@router.post("/requests/{request_id}/steps")
async def step(request: Request, request_id: str) -> Response:
    who, form = await posted(request, Scope.WRITE_EVENTS)
    refuse_signing_client(who)
    context = await run_in_threadpool(_context, request, request_id, who)
    kind = form.get("step", "")
    if kind not in STEPS:
        raise PageError(400, "Bad form", f"No request step {kind[:40]!r}.")
    fact: dict[str, Any] = {
        "type": f"request.{kind}",
        "event_id": event_id_of(form),
        "occurred_at": moment(form.get("occurred_at", "")),
        "request_id": request_id,
        "subject": form.get("subject", "").strip(),
    }
    if kind == "identity_verified":
        fact["method"] = form.get("method", "").strip()
    elif kind == "extended":
        fact["extension_days"] = number(form.get("extension_days", ""))
        fact["reason"] = form.get("reason", "").strip()
    elif kind == "fulfilled":
        if form.get("note", "").strip():
            fact["note"] = form["note"].strip()
    else:
        fact["ground"] = form.get("ground", "")
        fact["explanation"] = form.get("explanation", "").strip()
    errors = await append_fact(request, fact, "requests")
    if errors:
        context.update(step=kind, values=form, errors=errors, general=errors.get("", []))
        return render("request.html", context, status=422, visitor=who)
    return redirect(f"{PREFIX}/requests/{request_id}")
