"""Histories and registers: disclosures (JSON or CSV, cursor pages), incidents, requests."""

from __future__ import annotations

import base64
import csv
import io
import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.http.deps import (
    MINIMAL,
    HistoryReader,
    IncidentManager,
    LedgerDep,
    QueriesDep,
    QueryText,
    QueryTime,
    SingleValues,
    next_link,
    prefers_minimal,
)
from api.http.examples import DISCLOSURES, INCIDENT, INCIDENT_FACTS, REQUESTS
from api.http.problems import ProblemError, bad_parameter
from api.http.responses import (
    CSV,
    LINK,
    TEXT_SCHEMA,
    DataSubjectRequest,
    DisclosurePage,
    Incident,
    MinimalReceipt,
    MinimalReceipts,
    Receipt,
    Receipts,
    ok,
    problems,
)
from api.http.routes.events import RECEIPT_EXAMPLE, parse_body
from api.http.signatures import HEADER, check_request_signature
from ledger.application import Limits
from ledger.events import FACT_TYPES
from ledger.verifier.spreadsheet import csv_row
from projections.queries import DISCLOSURE_COLUMNS, DisclosureRow

router = APIRouter(tags=["histories and registers"], dependencies=[SingleValues])

READS = {
    "s400": "A bad or repeated query or path parameter (`errors` names it and its rule)",
    "s503": "Storage unavailable, or the server at its connection cap (`Retry-After`)",
}


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
        raise bad_parameter(
            "cursor", "cursor_invalid", "the cursor is not one this API gave", title="Bad cursor"
        )
    return occurred_at, seq, subject


@router.get(
    "/v1/disclosures",
    summary="Disclosures by subject, recipient and period, with verdicts",
    description=(
        "JSON: a page of at most `limit` rows, with `next_cursor` and, when there is a next "
        'page, a `Link: <...>; rel="next"` header that keeps the whole query (every filter) '
        "with the next cursor. CSV (`format=csv`, or `Accept: text/csv`): every row that "
        "matches, from `cursor` on when given, streamed (read `limit` rows at a time), one "
        "header line, booleans `true`/`false`, lists joined with `;`, "
        "formulas neutralised, as the export bundles write their CSV files."
    ),
    responses=ok(
        DisclosurePage,
        "A page of rows (JSON), or every row as CSV (format=csv), streamed",
        DISCLOSURES,
        headers=LINK,
        also={CSV: {"schema": TEXT_SCHEMA}},
    )
    | problems(
        400,
        401,
        403,
        503,
        s400="A bad or repeated query parameter, or a cursor this API did not give "
        "(`cursor_invalid`)",
        s403="The token lacks `history:read`",
        s503=READS["s503"],
    ),
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
        QueryTime | None,
        Query(alias="from", description="Occurred at or after (RFC 3339, with its offset)"),
    ] = None,
    end: Annotated[
        QueryTime | None,
        Query(alias="to", description="Occurred before (RFC 3339, with its offset)"),
    ] = None,
    violations: bool = False,
    limit: Annotated[
        int, Query(ge=1, le=1000, description="Rows a page holds (CSV: rows read at a time)")
    ] = 100,
    cursor: Annotated[
        str | None, Query(max_length=MAX_CURSOR, description="next_cursor of the page before")
    ] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Response:
    page = partial(
        queries.disclosures,
        subject_ref=subject,
        recipient_id=recipient,
        start=start,
        end=end,
        violations_only=violations,
    )
    after = _cursor(cursor)
    as_csv = format == "csv" or "text/csv" in request.headers.get("accept", "")
    # The first page is read before answering: a storage error is still a problem (503).
    rows = await run_in_threadpool(partial(page, after=after, limit=limit))
    if as_csv:
        return StreamingResponse(_csv_pages(page, rows, limit), media_type="text/csv")
    following = _cursor_of(rows[-1]) if len(rows) == limit else None
    headers = {"Link": next_link(request, cursor=following)} if following else None
    return JSONResponse(
        {"items": [row.as_dict() for row in rows], "next_cursor": following}, headers=headers
    )


def _cursor_of(row: DisclosureRow) -> str:
    """The ``next_cursor`` after ``row``: its position, (occurred_at, seq, subject)."""
    return base64.urlsafe_b64encode(orjson.dumps([row.occurred_at, row.seq, row.subject])).decode()


def _csv_pages(
    page: Callable[..., list[DisclosureRow]], first: list[DisclosureRow], size: int
) -> Iterator[str]:
    """Every matching row as CSV, the header first: ``first``, then page after page until a
    short one (Starlette runs this generator in its threadpool, a page a step)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(DISCLOSURE_COLUMNS)
    rows = first
    while True:
        for row in rows:
            writer.writerow(csv_row(getattr(row, c) for c in DISCLOSURE_COLUMNS))
        yield out.getvalue()
        out.seek(0)
        out.truncate()
        if len(rows) < size:
            return
        last = rows[-1]
        rows = page(after=(last.occurred_at, last.seq, last.subject), limit=size)


@router.get(
    "/v1/incidents",
    summary="The incident register, with deadlines computed now",
    responses=ok(list[Incident], "Every incident, in the order they were opened", [INCIDENT])
    | problems(400, 401, 403, 503, s403="The token lacks `incidents:manage`", **READS),
)
async def incidents(queries: QueriesDep, _: IncidentManager) -> list[dict[str, Any]]:
    def answer() -> list[dict[str, Any]]:
        return [queries.incident_answer(record) for record in queries.incidents()]

    return await run_in_threadpool(answer)


@router.get(
    "/v1/incidents/{incident_id}",
    summary="One incident, its deadlines and subjects",
    responses=ok(Incident, "The incident", INCIDENT)
    | problems(
        400,
        401,
        403,
        404,
        503,
        s403="The token lacks `incidents:manage`",
        s404="No incident of this id was opened",
        **READS,
    ),
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


def _fact(name: str) -> dict[str, str]:
    """A reference to the catalogue's schema of a fact type (api/http/openapi_document.py)."""
    return {"$ref": f"#/components/schemas/{FACT_TYPES[name].__name__}"}


INCIDENT_TYPES = sorted(name for name in FACT_TYPES if name.startswith("incident."))
MAX_BATCH = Limits().max_batch
ONE_INCIDENT_FACT = {
    "oneOf": [_fact(name) for name in INCIDENT_TYPES],
    "discriminator": {
        "propertyName": "type",
        "mapping": {name: _fact(name)["$ref"] for name in INCIDENT_TYPES},
    },
}
INCIDENT_BODY = {
    "required": True,
    "description": "One `incident.*` fact (an object) or a batch of them (an array), recorded "
    "all or nothing; the fields of each type are in docs/events.md.",
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    ONE_INCIDENT_FACT,
                    {
                        "type": "array",
                        "items": ONE_INCIDENT_FACT,
                        "minItems": 1,
                        "maxItems": MAX_BATCH,
                        "description": f"A batch of at most {MAX_BATCH:,} facts (413 above)",
                    },
                ]
            },
            "examples": {
                "opened": {"summary": "incident.opened", "value": INCIDENT_FACTS[0]},
                "batch": {"summary": "a batch", "value": INCIDENT_FACTS},
            },
        }
    },
}


@router.post(
    "/v1/incidents",
    status_code=201,
    summary="Record incident facts (incident.* only)",
    description=(
        "As `POST /v1/events`, for `incident.*` facts: a receipt per fact, after the commit. "
        "`Prefer: return=minimal` (RFC 7240) returns the sequence numbers only, with "
        "`Preference-Applied: return=minimal`."
    ),
    responses=ok(
        Receipt | Receipts | MinimalReceipt | MinimalReceipts,
        "Recorded (or recorded before with the same content: `duplicate`): a receipt for one "
        'fact, `{"receipts": [...]}` for a batch; with `Prefer: return=minimal`, `{"seq": n}` '
        'or `{"seqs": [...]}`',
        RECEIPT_EXAMPLE,
        status=201,
        headers={
            "Preference-Applied": {
                "description": "`return=minimal` when that preference was applied",
                "schema": {"type": "string"},
            }
        },
    )
    | problems(
        400,
        401,
        403,
        408,
        409,
        413,
        421,
        422,
        503,
        s421="A reads process (serve --role reads) answers every write so: send it to the writer",
        s408="The body did not arrive in time (the connection is closed)",
        s400="The body is not JSON, or neither an object nor an array, or nested too deep; "
        "a repeated query parameter",
        s401="No token, one not valid, or (a client with a signing key) a missing or wrong "
        "`Content-Signature`",
        s403="The token lacks `incidents:manage`",
        s409="An event id recorded before with other content",
        s413="A body over 16 MiB, or a batch of more than 1,000 facts",
        s422="A fact that is not an `incident.*` fact or breaks a rule (`errors`: index, field, "
        "rule); nothing of the batch is stored",
        s503="The ledger is overloaded or the streams contended (`Retry-After`), too many "
        "appends in flight, storage unavailable, or the server at its connection cap",
    ),
    openapi_extra={"requestBody": INCIDENT_BODY},
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
    if prefers_minimal(request):  # as POST /v1/events: the sequence numbers only
        minimal = {"seqs": [r.seq for r in receipts]} if batch else {"seq": receipts[0].seq}
        return JSONResponse(minimal, status_code=201, headers={"Preference-Applied": MINIMAL})
    payload: Any = [r.as_dict() for r in receipts]
    return JSONResponse({"receipts": payload} if batch else payload[0], status_code=201)


@router.get(
    "/v1/requests",
    summary="The data-subject request register, with due dates",
    responses=ok(list[DataSubjectRequest], "The register (not paged)", REQUESTS)
    | problems(400, 401, 403, 503, s403="The token lacks `history:read`", **READS),
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
