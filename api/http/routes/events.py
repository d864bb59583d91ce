"""Appending events, and reading one back with its signature.

``POST /v1/events`` is the hot path of the ledger (issue 16), so it is a lean route: FastAPI
describes it (the OpenAPI document is built from the decorated :func:`append`), but a plain
Starlette route placed ahead of FastAPI's (:data:`LEAN_ROUTES`, installed by
:func:`api.http.app.create_app`) serves it. It does inline what the dependencies did for it
(the single query values, the bearer token and its scope), so no dependency is solved per
request; it hands the append to a thread pool of its own (``app.state.append_executor``,
``CONSENT_LEDGER_APPEND_THREADS`` threads) instead of anyio's; and it encodes its receipts once,
with orjson, into the response's bytes. Its errors are the same exceptions as before, answered
by the same handlers (api/http/problems.py); the request's log line and the limits are the
middlewares' as for every route.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response
from starlette.routing import Route

from api.http.deps import (
    MINIMAL,
    HistoryReader,
    LedgerDep,
    QueriesDep,
    QueryText,
    SingleValues,
    authorise,
    check_single_values,
    prefers_minimal,
)
from api.http.examples import EVENT, example
from api.http.problems import WRITES, ProblemError
from api.http.signatures import HEADER, check_request_signature
from api.token_store import Scope
from ledger.application import AccessAction, AccessRecord, LedgerApplication

router = APIRouter(
    prefix="/v1/events", tags=["events"], responses=WRITES, dependencies=[SingleValues]
)

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_SEQ = 2**63 - 1
CONSENT_EXAMPLE = {
    "type": "consent.given",
    "event_id": "evt-0010",
    "occurred_at": "2026-03-05T21:14:03+09:00",
    "subject": "user-10482",
    "purposes": ["marketing_email"],
    "policy_version": "2026-03",
    "collection_method": "web_form",
    "contact": "hana.kim@example.com",
}
RECEIPT_EXAMPLE = {
    "seq": 10,
    "leaf_index": 9,
    "event_id": "evt-0010",
    "event_hash": "d89040974ba3322e99db0529bb1d3bff6071ed94c80e33283132cfaec7a44fc9",
    "signature": "68LBRHVYKa5fl/yDfKqM0/ajiK6gqe9wXI6eZggc/1nLzCdErfvHh/0SZFx/kQc2X/UK01xy70"
    "35RLz4zvaSDw==",
    "key_id": "6775c32dd645dad0",
    "recorded_at": "2026-11-29T05:34:36.386137Z",
    "duplicate": False,
}
"""Sequence numbers are 64-bit in storage."""


def parse_body(raw: bytes) -> tuple[list[dict[str, Any]], bool]:
    """The events of a request body, and whether it was a batch (a JSON array)."""
    if len(raw) > MAX_BODY_BYTES:
        raise ProblemError(
            413, "Body too large", f"a request body is at most {MAX_BODY_BYTES} bytes"
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProblemError(400, "Malformed JSON", f"the body is not JSON: {exc}") from None
    if isinstance(body, dict):
        return [body], False
    if isinstance(body, list):
        return body, True
    raise ProblemError(400, "Malformed body", "send one event (an object) or a batch (an array)")


@router.post(
    "",
    summary="Append one event (an object) or a batch (an array), all or nothing",
    description=(
        "Each event gets a receipt (sequence number, leaf index, event hash, Ed25519 signature, "
        "key id, recorded time), returned only after the commit. `Prefer: return=minimal` "
        '(RFC 7240) returns the sequence numbers only (`{"seq": n}`, or `{"seqs": [...]}` '
        "for a batch), with `Preference-Applied: return=minimal`. A batch holds at most 1,000 "
        "events (413 above)."
    ),
    responses={
        201: {
            "description": "Recorded; a receipt per event, returned only after commit",
            "content": {"application/json": {"example": RECEIPT_EXAMPLE}},
        },
        200: {
            "description": "Every event was recorded before with the same content",
            "content": {"application/json": {"example": dict(RECEIPT_EXAMPLE, duplicate=True)}},
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "One fact (an object) or a batch (an array of facts); the catalogue "
            "of types and fields is docs/events.md.",
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"type": "object"},
                            {"type": "array", "items": {"type": "object"}, "maxItems": 1000},
                        ]
                    },
                    "examples": {
                        "consent": {"summary": "consent.given", "value": CONSENT_EXAMPLE},
                        "batch": {"summary": "a batch", "value": [CONSENT_EXAMPLE]},
                    },
                }
            },
        }
    },
)
async def append(request: Request) -> Response:
    """Authorise, check the client's signature, parse, append off the loop, answer.

    The checks run in the order FastAPI ran them as dependencies: the query's single values,
    then the token and its scope, then the body's signature and JSON.
    """
    check_single_values(request)
    state = request.app.state
    executor: Executor = state.append_executor
    client = await authorise(request, Scope.WRITE_EVENTS, executor)
    ledger: LedgerApplication = state.ledger
    ledger.refuse_when_full()  # past saturation: 503 before the body is read or parsed
    raw = await request.body()
    emitter = check_request_signature(client, request.headers.get(HEADER), raw)
    facts, batch = parse_body(raw)
    loop = asyncio.get_running_loop()
    receipts = await loop.run_in_executor(executor, ledger.append, facts, emitter)
    repeated = sum(r.duplicate for r in receipts)
    state.metrics.appended(len(receipts) - repeated, repeated)
    status = 200 if repeated == len(receipts) else 201
    if prefers_minimal(request):
        # For high-volume emitters: the sequence numbers only, in order.
        minimal: Any = {"seqs": [r.seq for r in receipts]} if batch else {"seq": receipts[0].seq}
        return Response(
            orjson.dumps(minimal),
            status_code=status,
            headers={"Preference-Applied": MINIMAL},
            media_type=JSON,
        )
    payload: Any = {"receipts": [r.as_dict() for r in receipts]} if batch else receipts[0].as_dict()
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON)


JSON = "application/json"
LEAN_ROUTES = [Route("/v1/events", append, methods=["POST"], include_in_schema=False)]
"""The routes served without FastAPI's per-request machinery, to be placed ahead of
:data:`router`'s (which still describes them in the OpenAPI document)."""


@router.get(
    "/{seq}",
    summary="One stored event: its entry, signature and decoded content",
    responses=example(EVENT),
)
def get_event(
    seq: Annotated[int, Path(ge=1, le=MAX_SEQ, description="The event's sequence number")],
    queries: QueriesDep,
    ledger: LedgerDep,
    client: HistoryReader,
    purpose: Annotated[
        QueryText | None,
        Query(min_length=1, max_length=500, description="Why (recorded with the read)"),
    ] = None,
) -> dict[str, Any]:
    event = queries.event(seq)
    # Showing someone's personal data is on the record before it is shown (invariant 11).
    record = AccessRecord.of_events(
        [event],
        client=client.name,
        action=AccessAction.EVENT,
        scope=Scope.READ_HISTORY.value,
        purpose=purpose,
        details={"seq": seq},
    )
    if record is not None:
        ledger.record_access(record)
    return event.as_dict()
