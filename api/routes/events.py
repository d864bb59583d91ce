"""Appending events, and reading one back with its signature."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import HistoryReader, LedgerDep, Writer
from api.problems import WRITES, ProblemError
from api.signatures import HEADER, check_request_signature

router = APIRouter(prefix="/v1/events", tags=["events"], responses=WRITES)

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_SEQ = 2**63 - 1
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
        "returns the sequence numbers only. A batch holds at most 1,000 events (413 above)."
    ),
    responses={
        201: {"description": "Recorded; a receipt per event, returned only after commit"},
        200: {"description": "Every event was recorded before with the same content"},
        409: {"description": "An event id was recorded before with different content"},
        413: {"description": "Too many events, or too large a body"},
        422: {"description": "An event breaks a rule; the errors name index, field and rule"},
    },
)
async def append(request: Request, ledger: LedgerDep, client: Writer) -> JSONResponse:
    raw = await request.body()
    emitter = check_request_signature(client, request.headers.get(HEADER), raw)
    facts, batch = parse_body(raw)
    receipts = await run_in_threadpool(ledger.append, facts, emitter)
    repeated = sum(r.duplicate for r in receipts)
    request.app.state.metrics.appended(len(receipts) - repeated, repeated)
    status = 200 if all(r.duplicate for r in receipts) else 201
    if "return=minimal" in request.headers.get("prefer", ""):
        # For high-volume emitters: the sequence numbers only, in order.
        minimal: Any = [r.seq for r in receipts] if batch else receipts[0].seq
        return JSONResponse(
            {"seqs": minimal} if batch else {"seq": minimal},
            status_code=status,
            headers={"Preference-Applied": "return=minimal"},
        )
    payload: Any = [r.as_dict() for r in receipts] if batch else receipts[0].as_dict()
    return JSONResponse({"receipts": payload} if batch else payload, status_code=status)


@router.get("/{seq}", summary="One stored event: its entry, signature and decoded content")
def get_event(
    seq: Annotated[int, Path(ge=1, le=MAX_SEQ, description="The event's sequence number")],
    ledger: LedgerDep,
    _: HistoryReader,
) -> dict[str, Any]:
    return ledger.get_event(seq).as_dict()
