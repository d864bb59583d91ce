"""Histories and registers: disclosures (JSON or CSV, cursor pages), incidents, requests."""

from __future__ import annotations

import base64
import csv
import io
import re
from functools import partial
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from api.http.deps import (
    HistoryReader,
    IncidentManager,
    LedgerDep,
    QueriesDep,
    QueryText,
    QueryTime,
    SingleValues,
)
from api.http.examples import DISCLOSURES, INCIDENT, REQUESTS, example
from api.http.problems import WRITES, ProblemError
from api.http.routes.events import RECEIPT_EXAMPLE, parse_body
from api.http.signatures import HEADER, check_request_signature
from ledger.verifier.spreadsheet import csv_row

router = APIRouter(tags=["histories and registers"], responses=WRITES, dependencies=[SingleValues])


MAX_CURSOR = 512
"""A cursor this API gives is about 150 characters."""
_CURSOR_PART = re.compile(r"[0-9A-Za-z:.+-]{1,64}")
_MAX_SEQ = 2**63 - 1


def _cursor(value: str | None) -> tuple[str, int, str] | None:
    """The position a ``next_cursor`` names: (occurred_at, seq, subject), checked, so that
    whatever a client sends reaches the database only as values it could have been given."""
    if value is None:
        return None
    try:
        occurred_at, seq, subject = orjson.loads(base64.urlsafe_b64decode(value.encode()))
    except (ValueError, TypeError, orjson.JSONDecodeError):
        occurred_at = seq = subject = None
    if (
        not isinstance(occurred_at, str)
        or not isinstance(subject, str)
        or not isinstance(seq, int)
        or isinstance(seq, bool)
        or not 0 <= seq <= _MAX_SEQ
        or not _CURSOR_PART.fullmatch(occurred_at)
        or not _CURSOR_PART.fullmatch(subject)
    ):
        detail = "the cursor is not one this API gave"
        raise ProblemError(
            400,
            "Bad cursor",
            detail,
            errors=[{"field": "query.cursor", "rule": "cursor_invalid", "detail": detail}],
        )
    return occurred_at, seq, subject


@router.get(
    "/v1/disclosures",
    summary="Disclosures by subject, recipient and period, with verdicts",
    responses={
        200: {
            "description": "A page of rows (JSON), or the rows as CSV (format=csv)",
            "content": {
                "application/json": {"example": DISCLOSURES},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
async def disclosures(
    request: Request,
    queries: QueriesDep,
    _: HistoryReader,
    subject: Annotated[
        QueryText | None, Query(max_length=256, description="The emitter's reference")
    ] = None,
    recipient: Annotated[QueryText | None, Query(max_length=128)] = None,
    start: Annotated[
        QueryTime | None, Query(alias="from", description="Occurred at or after (RFC 3339)")
    ] = None,
    end: Annotated[
        QueryTime | None, Query(alias="to", description="Occurred before (RFC 3339)")
    ] = None,
    violations: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(max_length=MAX_CURSOR, description="next_cursor of the page before")
    ] = None,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> Response:
    rows = await run_in_threadpool(
        partial(
            queries.disclosures,
            subject_ref=subject,
            recipient_id=recipient,
            start=start,
            end=end,
            violations_only=violations,
            after=_cursor(cursor),
            limit=limit,
        )
    )
    items = [row.as_dict() for row in rows]
    following = None
    if len(rows) == limit:
        last = rows[-1]
        following = base64.urlsafe_b64encode(
            orjson.dumps([last.occurred_at, last.seq, last.subject])
        ).decode()
    if format == "csv" or "text/csv" in request.headers.get("accept", ""):
        out = io.StringIO()
        writer = csv.writer(out)
        if items:
            writer.writerow(items[0].keys())
        for item in items:
            writer.writerow(csv_row(item.values()))
        headers = {"Link": f'<?cursor={following}>; rel="next"'} if following else None
        return Response(out.getvalue(), media_type="text/csv", headers=headers)
    return JSONResponse({"items": items, "next_cursor": following})


@router.get(
    "/v1/incidents",
    summary="The incident register, with deadlines computed now",
    responses=example([INCIDENT]),
)
async def incidents(queries: QueriesDep, _: IncidentManager) -> list[dict[str, Any]]:
    def answer() -> list[dict[str, Any]]:
        return [queries.incident_answer(record) for record in queries.incidents()]

    return await run_in_threadpool(answer)


@router.get(
    "/v1/incidents/{incident_id}",
    summary="One incident, its deadlines and subjects",
    responses=example(INCIDENT),
)
async def incident(
    incident_id: Annotated[QueryText, Path(min_length=1, max_length=128)],
    queries: QueriesDep,
    _: IncidentManager,
) -> dict[str, Any]:
    def answer() -> dict[str, Any] | None:
        record = queries.incident(incident_id)
        # The rule's subjects come from the log: disclosed to that recipient in that window
        # (incident_rules.rule_selects, the test a subject's bundle and history use).
        return None if record is None else queries.incident_answer(record)

    body = await run_in_threadpool(answer)
    if body is None:
        raise ProblemError(404, "No such incident", f"no incident {incident_id} was opened")
    return body


@router.post(
    "/v1/incidents",
    status_code=201,
    summary="Record incident facts (incident.* only)",
    responses={
        201: {
            "description": "Recorded; a receipt per fact",
            "content": {"application/json": {"example": RECEIPT_EXAMPLE}},
        }
    },
)
async def record_incident(
    request: Request, ledger: LedgerDep, client: IncidentManager
) -> JSONResponse:
    raw = await request.body()
    emitter = check_request_signature(client, request.headers.get(HEADER), raw)
    facts, batch = parse_body(raw)
    for index, fact in enumerate(facts):
        if not isinstance(fact, dict):
            detail = f"item {index}: an event must be a JSON object"
            raise ProblemError(
                422,
                "Invalid event",
                detail,
                errors=[{"index": index, "field": "", "rule": "object_required", "detail": detail}],
            )
        if not str(fact.get("type", "")).startswith("incident."):
            raise ProblemError(
                422, "Not an incident fact", f"item {index}: this route takes incident.* facts"
            )
    receipts = await run_in_threadpool(ledger.append, facts, emitter)
    payload: Any = [r.as_dict() for r in receipts]
    return JSONResponse({"receipts": payload} if batch else payload[0], status_code=201)


@router.get(
    "/v1/requests",
    summary="The data-subject request register, with due dates",
    responses=example(REQUESTS),
)
async def requests(
    queries: QueriesDep,
    _: HistoryReader,
    overdue: bool = False,
    subject: Annotated[QueryText | None, Query(max_length=256)] = None,
) -> list[dict[str, Any]]:
    records = await run_in_threadpool(
        partial(queries.requests, overdue_only=overdue, subject_ref=subject)
    )
    return [record.as_dict() for record in records]
