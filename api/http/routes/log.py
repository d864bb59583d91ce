"""The log's public face: checkpoints, verifier keys, entries and Merkle proofs; health.

The checkpoint and the keys are public. Entries and proofs need ``history:read``: an entry
carries no personal data, but its tags say which scopes (subjects, recipients ...) it concerns,
and a body holds the event's (sealed) data.

Leaf indexes are 0-based (leaf ``i`` is the event ``seq = i + 1``), tree sizes count leaves, and
ranges are half-open, as in RFC 9162. A proof may be asked for any tree size up to the log's
current size; a client checks it against a root it trusts, that of a signed checkpoint.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.http.deps import Admin, HistoryReader, QueriesDep, SingleValues, next_link
from api.http.examples import (
    CHECKPOINT,
    CONSISTENCY_PROOF,
    ENTRIES,
    INCLUSION_PROOF,
    KEYS,
    READINESS,
)
from api.http.problems import ProblemError
from api.http.responses import (
    LINK,
    BeyondLog,
    ConsistencyProof,
    Entries,
    Health,
    InclusionProof,
    NotReady,
    Readiness,
    ok,
    problems,
    text,
    with_members,
)
from ledger.verifier.merkle import leaf_hash
from projections.queries import LogQueries, ProjectionStatus, SignedCheckpoint

router = APIRouter(tags=["log"], dependencies=[SingleValues])

REPEATED = "A query parameter given twice (`repeated`)"
CAP = "The server at its connection cap (`Retry-After`)"
STORAGE = "Storage unavailable, or the server at its connection cap (`Retry-After`)"
PROOF_WHY = {
    "s401": "No token, or one not valid",
    "s403": "The token lacks `history:read`",
    "s503": STORAGE,
}

READY_LAG_EVENTS = 10_000
MAX_ENTRIES = 1000
"""The most entries one ``GET /v1/entries`` answers; ``next`` says where to go on."""
MAX_SIZE = 2**63 - 1
"""Sequence numbers, and so tree sizes, are 64-bit in storage."""
_DIGITS = re.compile(r"[-+]?[0-9]+")


@router.get(
    "/v1/checkpoint",
    response_class=PlainTextResponse,
    summary="The latest signed checkpoint",
    responses=text("The latest checkpoint: a C2SP signed note", CHECKPOINT)
    | problems(400, 404, 503, s400=REPEATED, s404="No checkpoint signed yet", s503=STORAGE),
)
def checkpoint(queries: QueriesDep) -> str:
    latest = queries.latest_checkpoint()
    if latest is None:
        raise ProblemError(404, "No checkpoint yet", "no checkpoint has been signed yet")
    return latest.note


@router.get(
    "/v1/keys",
    response_class=PlainTextResponse,
    summary="Verifier keys, one a line",
    responses=text("The checkpoints' verifier keys (C2SP vkey), one a line", KEYS)
    | problems(400, 503, s400=REPEATED, s503=CAP),
)
def keys(request: Request) -> str:
    verifier_keys: list[str] = request.app.state.verifier_keys
    return "".join(key + "\n" for key in verifier_keys)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics (admin)",
    responses=text("Prometheus text exposition format", "ledger_head 44.0\n")
    | problems(400, 401, 403, 503, s400=REPEATED, s403="The token lacks `admin`", s503=STORAGE),
)
def metrics(request: Request, _: Admin) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/healthz",
    summary="The process answers",
    responses=ok(Health, "The process answers", {"status": "ok"})
    | problems(400, 503, s400=REPEATED, s503=CAP),
)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Storage answers and the read models keep up",
    description=(
        "200 `ready`: storage answers and every read model is within "
        f"{READY_LAG_EVENTS:,} events of the head. 200 `degraded`: the same, but a read model "
        "is stopped at an event it cannot process; `failed` names each (`read_model`, the "
        "event's `seq` and `event_type`, the `error` class and its `message`). This process "
        "still takes appends and answers from the other read models, and another process "
        "would fail the same way, so it stays in the load balancer; questions that need the "
        "stopped read model answer 503 naming it (alert on `ledger_projection_failed`). "
        "503: storage does not answer, or a read model that is not stopped is more than "
        f"{READY_LAG_EVENTS:,} events behind (`lagging`)."
    ),
    responses=ok(Readiness, "Ready, or degraded (a read model stopped: `failed`)", READINESS)
    | with_members(
        problems(
            400,
            503,
            s400=REPEATED,
            s503="Storage does not answer, or a read model is more than "
            f"{READY_LAG_EVENTS:,} events behind (`lagging`), or the server at its "
            "connection cap",
        ),
        503,
        NotReady,
    ),
)
def readyz(queries: QueriesDep) -> dict[str, Any]:
    try:
        head = queries.head()
        statuses = queries.status()
    except Exception:
        raise ProblemError(503, "Not ready", "storage does not answer") from None
    failed = [_failed(s) for s in statuses if s.error]
    lagging = [s.name for s in statuses if not s.error and s.lag_events > READY_LAG_EVENTS]
    if lagging:
        raise ProblemError(
            503,
            "Not ready",
            f"read models are more than {READY_LAG_EVENTS:,} events behind: {', '.join(lagging)}",
            failed=failed,
            lagging=lagging,
        )
    if failed:
        return {"status": "degraded", "head": head, "failed": failed}
    return {"status": "ready", "head": head}


def _failed(status: ProjectionStatus) -> dict[str, Any]:
    """A stopped read model as ``/readyz`` names it."""
    if status.failure is None:  # recorded before failures had their own table
        return {"read_model": status.name, "message": status.error, "position": status.position}
    return {**status.failure.as_dict(), "position": status.position}


# -- entries and proofs -------------------------------------------------------------------------


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _bad(name: str, rule: str, detail: str, status: int = 400, **extra: Any) -> ProblemError:
    """A problem naming the query parameter ``name`` (as request validation errors do)."""
    title = "Invalid parameter" if status == 400 else "Not in the log"
    errors = [{"field": f"query.{name}", "rule": rule, "detail": detail}]
    return ProblemError(status, title, detail, errors=errors, **extra)


def _integer(request: Request, name: str, *, minimum: int = 0) -> int | None:
    """The query parameter ``name`` as an integer in [minimum, 2**63-1], or None if absent.

    Parsed here rather than by FastAPI so that the digits are checked before any conversion,
    but refused with the same status and rules as every other route's parameters (400,
    ``not_an_integer``, ``out_of_range``, ``required``, ``repeated``: docs/api.md,
    "Conventions")."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise _bad(name, "repeated", f"{name} is given {len(values)} times; give it once")
    text = values[0].strip()
    if not _DIGITS.fullmatch(text):
        raise _bad(
            name, "not_an_integer", f"{name} must be a whole number from {minimum} to {MAX_SIZE}"
        )
    digits = text.lstrip("+-").lstrip("0") or "0"
    negative = text.startswith("-") and digits != "0"
    # Compared as digits first: a number of thousands of digits is never converted.
    if negative or len(digits) > len(str(MAX_SIZE)) or int(digits) > MAX_SIZE:
        raise _bad(
            name, "out_of_range", f"{name} must be from {minimum} to {MAX_SIZE}, not {text[:40]}"
        )
    value = int(digits)
    if value < minimum:
        raise _bad(name, "out_of_range", f"{name} must be at least {minimum}, not {value}")
    return value


def _required(request: Request, name: str, *, minimum: int = 0) -> int:
    value = _integer(request, name, minimum=minimum)
    if value is None:
        raise _bad(name, "required", f"the query parameter {name} is required")
    return value


def _latest(queries: LogQueries, name: str) -> SignedCheckpoint:
    """The latest signed checkpoint, for a size the caller left out."""
    latest = queries.latest_checkpoint()
    if latest is None:
        raise ProblemError(
            404,
            "No checkpoint yet",
            f"no checkpoint has been signed yet: give {name} explicitly",
            errors=[{"field": f"query.{name}", "rule": "no_checkpoint", "detail": "none yet"}],
        )
    return latest


def _within_log(queries: LogQueries, name: str, size: int) -> None:
    """A tree of ``size`` leaves exists: the log holds at least ``size`` entries."""
    head = queries.head()
    if size > head:
        raise _bad(
            name,
            "beyond_log",
            f"{name} {size} is larger than the log, which holds {head} entries",
            status=404,
            log_size=head,
        )


def _query(name: str, description: str, *, required: bool, minimum: int = 0) -> dict[str, Any]:
    """An integer query parameter as OpenAPI describes it (the route parses it itself)."""
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "integer", "minimum": minimum, "maximum": MAX_SIZE},
    }


@router.get(
    "/v1/proofs/inclusion",
    summary="An RFC 9162 inclusion proof: leaf index in the tree of size",
    description=(
        "The audit path (RFC 9162 §2.1.3) of leaf `index` in the tree of the first `size` "
        "leaves, base64 hashes bottom-up, with the leaf's hash. Without `size`, the tree of the "
        "latest signed checkpoint, whose note is then returned as `checkpoint` so one answer is "
        "enough to verify. 400: a parameter is missing, not a whole number, negative, `size` is "
        "0 or `index` is not below `size`; 404: `size` is larger than the log (or, without "
        "`size`, no checkpoint yet)."
    ),
    responses=ok(InclusionProof, "The audit path", INCLUSION_PROOF)
    | with_members(
        problems(
            400,
            401,
            403,
            404,
            503,
            s400="`index` or `size` missing, repeated, not a whole number or out of range; `index` "
            "not below `size` (`outside_tree`)",
            s404="`size` larger than the log (`beyond_log`), or, without `size`, no checkpoint yet "
            "(`no_checkpoint`)",
            **PROOF_WHY,
        ),
        404,
        BeyondLog,
    ),
    openapi_extra={
        "parameters": [
            _query("index", "The leaf's index, from 0 (the event seq - 1)", required=True),
            _query(
                "size",
                "The tree size, from 1 [default: the latest checkpoint's]",
                required=False,
                minimum=1,
            ),
        ]
    },
)
def inclusion(request: Request, queries: QueriesDep, _: HistoryReader) -> dict[str, Any]:
    index = _required(request, "index")
    size = _integer(request, "size", minimum=1)
    answer: dict[str, Any] = {}
    if size is None:
        latest = _latest(queries, "size")
        size = latest.size
        answer["checkpoint"] = latest.note
    if index >= size:
        raise _bad(
            "index",
            "outside_tree",
            f"leaf index {index} is outside a tree of size {size} (indexes run 0 to size - 1)",
        )
    _within_log(queries, "size", size)
    found = queries.inclusion_proof(index, size)
    return {
        "index": index,
        "size": size,
        "leaf_hash": _b64(leaf_hash(found.record.entry)),
        "proof": [_b64(h) for h in found.proof],
        **answer,
    }


@router.get(
    "/v1/proofs/consistency",
    summary="An RFC 9162 consistency proof between two tree sizes",
    description=(
        "The proof (RFC 9162 §2.1.4) that the tree of the first `from` leaves is a prefix of the "
        "tree of the first `to`, base64 hashes. Without `to`, the latest signed checkpoint's "
        "size, whose note is then returned as `checkpoint`. The proof is empty when `from` is 0 "
        "(every tree extends the empty one: there is nothing to prove) or equals `to` (the "
        "roots must then be equal). 400: a parameter is missing, not a whole number, negative, "
        "or `from` is greater than `to`; 404: `to` is larger than the log (or, without `to`, "
        "no checkpoint yet)."
    ),
    responses=ok(ConsistencyProof, "The consistency proof", CONSISTENCY_PROOF)
    | with_members(
        problems(
            400,
            401,
            403,
            404,
            503,
            s400="`from` or `to` missing, repeated, not a whole number or out of range; `from` "
            "above `to` (`sizes_reversed`)",
            s404="`to` larger than the log (`beyond_log`), or, without `to`, no checkpoint yet "
            "(`no_checkpoint`)",
            **PROOF_WHY,
        ),
        404,
        BeyondLog,
    ),
    openapi_extra={
        "parameters": [
            _query("from", "The older tree's size, from 0", required=True),
            _query(
                "to", "The newer tree's size [default: the latest checkpoint's]", required=False
            ),
        ]
    },
)
def consistency(request: Request, queries: QueriesDep, _: HistoryReader) -> dict[str, Any]:
    first = _required(request, "from")
    second = _integer(request, "to")
    answer: dict[str, Any] = {}
    if second is None:
        latest = _latest(queries, "to")
        second = latest.size
        answer["checkpoint"] = latest.note
    if first > second:
        raise _bad(
            "from", "sizes_reversed", f"from {first} is greater than to {second}: a log only grows"
        )
    _within_log(queries, "to", second)
    # Empty when from is 0 or equals to (RFC 9162 §2.1.4: nothing to prove).
    proof = queries.consistency_proof(first, second)
    return {"from": first, "to": second, "proof": [_b64(h) for h in proof], **answer}


@router.get(
    "/v1/entries",
    summary="Log entries by leaf index: the signed leaf, its body and signature",
    description=(
        "Entries with `start <= index < end` (`end` exclusive), at most "
        f"{MAX_ENTRIES:,} in one answer: `entry` is the leaf input (the signed binary entry, "
        "base64), `body` the event body it commits to, `signature` the ledger's Ed25519 "
        "signature of the entry. An answer cut short by that limit, or by the end of the log, "
        "has `next`: the index to ask for next (null once `end` is reached). Without `end`, up "
        f"to {MAX_ENTRIES:,} entries. 400: a parameter is missing, not a whole number, negative, "
        "or `end` is not above `start`; 404: `start` is at or past the end of the log (the "
        "problem's `log_size` says how many entries there are)."
    ),
    responses=ok(Entries, "The entries, and where to go on", ENTRIES, headers=LINK)
    | with_members(
        problems(
            400,
            401,
            403,
            404,
            503,
            s400="`start` or `end` missing, repeated, not a whole number or out of range; `end` "
            "not above `start` (`empty_range`)",
            s404="`start` at or past the end of the log (`beyond_log`, with `log_size`)",
            **PROOF_WHY,
        ),
        404,
        BeyondLog,
    ),
    openapi_extra={
        "parameters": [
            _query("start", "The first leaf index, from 0", required=True),
            _query(
                "end",
                f"One past the last leaf index [default: start + {MAX_ENTRIES}]",
                required=False,
                minimum=1,
            ),
        ]
    },
)
def entries(
    request: Request, response: Response, queries: QueriesDep, _: HistoryReader
) -> dict[str, Any]:
    start = _required(request, "start")
    end = _integer(request, "end", minimum=1)
    if end is not None and end <= start:
        raise _bad("end", "empty_range", f"end {end} must be greater than start {start}")
    head = queries.head()
    if start >= head:
        raise _bad(
            "start",
            "beyond_log",
            f"start {start} is at or past the end of the log, which holds {head} entries",
            status=404,
            log_size=head,
        )
    wanted = min(end if end is not None else MAX_SIZE, start + MAX_ENTRIES, head) - start
    records = queries.records(start + 1, wanted)
    stop = start + len(records)
    # Cut short by the page limit or the log's end: say where to go on, unless end was reached.
    following = None if end is not None and stop >= end else stop
    if following is not None and following < head:  # a Link only to entries there are now
        response.headers["Link"] = next_link(request, start=str(following))
    return {
        "entries": [
            {
                "index": record.seq - 1,
                "entry": _b64(record.entry),
                "body": _b64(record.body),
                "signature": _b64(record.signature),
                "key_id": record.key_id,
            }
            for record in records
        ],
        "next": following,
    }
