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
from api.http.examples import EVENT
from api.http.fact_examples import CONTEXT, EXAMPLES
from api.http.openapi_document import facts_body
from api.http.problems import ProblemError, bad_parameter
from api.http.responses import (
    MinimalReceipt,
    MinimalReceipts,
    Receipt,
    Receipts,
    StoredEvent,
    ok,
    problems,
)
from api.http.signatures import HEADER, check_request_signature
from api.token_store import Scope
from ledger.application import AccessAction, AccessRecord, LedgerApplication
from ledger.events import MAX_DEPTH, MAX_EVENT_BYTES

router = APIRouter(prefix="/v1/events", tags=["events"], dependencies=[SingleValues])

JSON = "application/json"
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_SEQ = 2**63 - 1
MAX_BATCH = 1000
"""The ledger's default ``max_batch`` (ledger/application.py), as the document states it."""
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
AppendAnswer = Receipt | Receipts | MinimalReceipt | MinimalReceipts
"""What an append answers: a receipt, or a batch's; with ``Prefer: return=minimal`` the
sequence numbers only."""


def _appended(description: str, *, duplicate: bool) -> dict[str, Any]:
    receipt = dict(RECEIPT_EXAMPLE, duplicate=duplicate)
    second = dict(receipt, seq=11, leaf_index=10, event_id="evt-0011")
    return {
        "model": AppendAnswer,
        "description": description,
        "headers": {
            "Preference-Applied": {
                "description": "`return=minimal` when the request asked for it",
                "schema": {"type": "string", "enum": [MINIMAL]},
            }
        },
        "content": {
            JSON: {
                "examples": {
                    "receipt": {"summary": "One fact", "value": receipt},
                    "receipts": {"summary": "A batch", "value": {"receipts": [receipt, second]}},
                    "minimal": {"summary": "One fact, return=minimal", "value": {"seq": 10}},
                    "minimal batch": {
                        "summary": "A batch, return=minimal",
                        "value": {"seqs": [10, 11]},
                    },
                }
            }
        },
    }


REQUEST_EXAMPLES = {
    **{
        fact["type"]: {"summary": f"{fact['type']} ({fact['event_id']})", "value": fact}
        for fact in EXAMPLES
    },
    "context": {
        "summary": "A batch: what the examples above name (record it first)",
        "value": list(CONTEXT),
    },
}
"""One fact of every type, each recorded on a ledger that holds the context, in any order
(api/http/fact_examples.py); and the context, a batch."""
SIGNATURE_PARAMETER = {
    "name": "Content-Signature",
    "in": "header",
    "required": False,
    "description": "`ed25519=<base64 of the Ed25519 signature of the exact body bytes>`, by "
    "the key the client registered (`consent-ledger clients set-key`). Required from a client "
    "with a key: without it, or when it does not verify, the answer is 401 and nothing is "
    "stored; a client without a key sends none (one sent is not read). The scheme name is "
    "read in any case (docs/api.md, Signed requests).",
    "schema": {"type": "string", "pattern": "^[Ee][Dd]25519=[A-Za-z0-9+/]{86}==$"},
}
PREFER_PARAMETER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": "`return=minimal` (RFC 7240): answer the sequence numbers only "
    '(`{"seq": n}`, or `{"seqs": [...]}` for a batch). Other preferences are ignored.',
    "schema": {"type": "string"},
}


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
        "for a batch), with `Preference-Applied: return=minimal`. A batch holds at most "
        f"{MAX_BATCH:,} events (413 above). Sending the same events again is safe: an event id "
        "recorded before with the same content answers its first receipt (`duplicate: true`)."
    ),
    status_code=201,
    responses={
        201: _appended("Recorded: a receipt per event, given after the commit", duplicate=False),
        200: _appended(
            "Every event was recorded before with the same content: nothing new was stored, "
            "and these are the first receipts",
            duplicate=True,
        ),
        **problems(
            400,
            401,
            403,
            404,
            408,
            409,
            413,
            421,
            422,
            503,
            s400="A repeated query parameter; a body that is not JSON, not an object or an "
            "array, or nests deeper than the server's limit (32 by default)",
            s401="No valid bearer token; or this client signs its appends and the "
            "Content-Signature is missing or does not verify",
            s403="The token lacks the scope `events:write`",
            s404="A recorded event id whose event the log does not hold (a damaged log: "
            "`consent-ledger verify`)",
            s409="An event id recorded before with other content (`event_id`, `index`)",
            s413="A body over the server's limit (16 MiB by default), or a batch of more "
            "events than the ledger's `max_batch`",
            s422="An event that breaks a rule of the catalogue or does not fit the log: "
            f"`errors` name each (index, field, rule); an event over {MAX_EVENT_BYTES} bytes "
            f"or nested over {MAX_DEPTH} deep; an empty batch",
            s503="Storage unavailable, the ledger overloaded (`pending_events`), its streams "
            "contended, or every append slot taken: nothing was stored; send it again after "
            "`Retry-After` seconds",
        ),
    },
    openapi_extra={
        "parameters": [SIGNATURE_PARAMETER, PREFER_PARAMETER],
        "requestBody": {
            "required": True,
            "description": "One fact (an object) or a batch (an array of facts); the catalogue "
            "of types and fields is docs/events.md, and each type's schema here.",
            "content": {JSON: {"schema": facts_body(MAX_BATCH), "examples": REQUEST_EXAMPLES}},
        },
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


LEAN_ROUTES = [Route("/v1/events", append, methods=["POST"], include_in_schema=False)]
"""The routes served without FastAPI's per-request machinery, to be placed ahead of
:data:`router`'s (which still describes them in the OpenAPI document)."""


@router.get(
    "/{seq}",
    summary="One stored event: its entry, signature and decoded content",
    description="Showing personal data opened is recorded first, as a "
    "`personal_data.accessed` event (with `purpose`, when given).",
    response_model=None,
    responses={
        **ok(StoredEvent, "The event", EVENT),
        **problems(
            400,
            401,
            403,
            404,
            503,
            s400="`seq` not a whole number from 1 to 2^63-1; `purpose` blank, too long or "
            "holding a control character; a repeated query parameter",
            s403="The token lacks the scope `history:read`",
            s404="No event has this sequence number",
            s503="Storage unavailable, or the ledger overloaded: the read is not recorded, so "
            "nothing is shown (Retry-After)",
        ),
    },
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
    if purpose is not None and not purpose.strip():
        raise bad_parameter(
            "purpose", "required", "purpose, when given, states why: it must not be blank"
        )
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
