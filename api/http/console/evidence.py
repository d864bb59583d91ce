"""The console's evidence pages: the latest signed checkpoint and the keys to check it, a check
that a checkpoint someone holds is consistent with the log now (the log was not rewritten since
they got it), one entry with its signature and inclusion proof, and the disclosure history
filtered, each row with what decided its verdict. Everything here is checked with the
verifier's own code (``ledger.verifier``), the code a regulator runs offline.

None of it opens personal data (entries are shown by their hashes, signatures and type;
disclosure rows name subjects by pseudonym only, as ``GET /v1/disclosures`` does), so none of
it is a recorded read. The scope is ``history:read``, as for the API's proofs and disclosures.
"""

from __future__ import annotations

import base64
from datetime import datetime
from itertools import islice
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.http.console.access import PREFIX, PageError, posted, render, visitor
from api.token_store import Scope
from ledger.events import check_query_time
from ledger.verifier.checkpoint import (
    Checkpoint,
    CheckpointError,
    open_checkpoint,
    parse_checkpoint,
)
from ledger.verifier.entry import parse_body
from ledger.verifier.merkle import MerkleError, leaf_hash, verify_consistency, verify_inclusion
from ledger.verifier.note import NoteError, Verifier, open_note, parse_verifier_key
from projections.queries import Queries

router = APIRouter(prefix=PREFIX, include_in_schema=False)

MAX_NOTE = 8192
"""Characters of a pasted checkpoint (a real one is a few hundred)."""
MAX_ROWS = 500
"""Disclosure rows a page shows."""


def _queries(request: Request) -> Queries:
    found: Queries = request.app.state.queries
    return found


def _verifiers(request: Request) -> list[Verifier]:
    return [parse_verifier_key(key) for key in request.app.state.verifier_keys]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _latest(queries: Queries, verifiers: list[Verifier]) -> tuple[str, Checkpoint] | None:
    """The latest signed checkpoint's note and its content, checked with the ledger's keys."""
    latest = queries.latest_checkpoint()
    if latest is None:
        return None
    return latest.note, parse_checkpoint(open_note(latest.note, verifiers).text)


@router.get("/evidence")
async def evidence(request: Request) -> Response:
    who = await visitor(request, Scope.READ_HISTORY)
    context = await run_in_threadpool(_evidence_context, request)
    context.update(pasted="", result=None)
    return render("evidence.html", context, visitor=who)


def _evidence_context(request: Request) -> dict[str, Any]:
    queries = _queries(request)
    latest = _latest(queries, _verifiers(request))
    stored = queries.latest_checkpoint()
    return {
        "note": None if latest is None else latest[0],
        "checkpoint": None if latest is None else latest[1],
        "root": None if latest is None else _b64(latest[1].root_hash),
        "signed_at": None if stored is None else stored.signed_at,
        "head": queries.head(),
        "keys": list(request.app.state.verifier_keys),
    }


@router.post("/evidence/consistency")
async def consistency(request: Request) -> Response:
    who, form = await posted(request, Scope.READ_HISTORY)
    pasted = form.get("checkpoint", "").replace("\r\n", "\n")
    if pasted and not pasted.endswith("\n"):
        pasted += "\n"  # a text box drops the note's last newline

    def check() -> dict[str, Any]:
        context = _evidence_context(request)
        context["pasted"] = pasted
        context["result"] = _check(request, pasted)
        return context

    context = await run_in_threadpool(check)
    status = 200 if context["result"]["ok"] else 422
    return render("evidence.html", context, status=status, visitor=who)


def _check(request: Request, pasted: str) -> dict[str, Any]:
    """Is the pasted checkpoint one this ledger signed, and is the log now its extension?"""
    if not pasted.strip() or len(pasted) > MAX_NOTE:
        return {"ok": False, "text": "Paste a signed checkpoint (a few lines of text)."}
    verifiers = _verifiers(request)
    queries = _queries(request)
    latest = _latest(queries, verifiers)
    if latest is None:
        return {"ok": False, "text": "This ledger has signed no checkpoint yet."}
    now = latest[1]
    try:
        held = open_checkpoint(pasted, now.origin, verifiers)
    except (NoteError, CheckpointError) as exc:
        return {
            "ok": False,
            "text": f"This is not a checkpoint of this log signed by its keys: {exc}.",
        }
    if held.size > now.size:
        return {
            "ok": False,
            "text": f"The pasted checkpoint has {held.size} entries, more than the latest this "
            f"ledger signed ({now.size}): a signed checkpoint the log does not reach.",
        }
    proof = queries.consistency_proof(held.size, now.size) if held.size else []
    if held.size:
        try:
            verify_consistency(held.size, now.size, proof, held.root_hash, now.root_hash)
        except MerkleError as exc:
            return {
                "ok": False,
                "text": f"NOT consistent: the log of {now.size} entries does not extend the "
                f"pasted tree of {held.size} ({exc}). Keep both checkpoints: they are evidence.",
            }
    return {
        "ok": True,
        "text": f"Consistent: the log's tree of {now.size} entries extends the pasted tree of "
        f"{held.size} (RFC 9162 consistency proof verified); nothing in it was changed or "
        "removed since.",
        "proof": [_b64(h) for h in proof],
        "sizes": (held.size, now.size),
    }


@router.get("/evidence/entry")
async def entry_form(request: Request, seq: str = "") -> Response:
    """The entry form's answer: on to the entry's own page."""
    await visitor(request, Scope.READ_HISTORY)
    if not seq.isdigit() or len(seq) > 18:
        raise PageError(400, "Bad event number", "Give an event number: 1, 2, 3 ...")
    return RedirectResponse(f"{PREFIX}/evidence/entries/{int(seq)}", status_code=303)


@router.get("/evidence/entries/{number}")
async def entry(request: Request, number: str) -> Response:
    who = await visitor(request, Scope.READ_HISTORY)
    if not number.isdigit() or len(number) > 18:
        raise PageError(404, "No such entry", "Entries are numbered 1, 2, 3 ...")
    seq = int(number)

    def answer() -> dict[str, Any]:
        queries = _queries(request)
        if seq < 1 or seq > queries.head():
            raise PageError(404, "No such entry", f"The log holds no event {seq}.")
        verifiers = _verifiers(request)
        latest = _latest(queries, verifiers)
        [record] = queries.records(seq, 1)
        body = parse_body(record.body)
        found: dict[str, Any] = {
            "seq": seq,
            "type": body.get("type"),
            "occurred_at": body.get("occurred_at"),
            "recorded_at": body.get("recorded_at"),
            "leaf_hash": _b64(leaf_hash(record.entry)),
            "signature": _b64(record.signature),
            "key_id": record.key_id,
            "proof": None,
        }
        if latest is not None and seq <= latest[1].size:
            checkpoint = latest[1]
            path = queries.inclusion_proof(seq - 1, checkpoint.size).proof
            verify_inclusion(
                seq - 1, checkpoint.size, leaf_hash(record.entry), path, checkpoint.root_hash
            )  # raises if the log disagrees with its own checkpoint (then a 500 is right)
            found["proof"] = [_b64(h) for h in path]
            found["size"] = checkpoint.size
            found["note"] = latest[0]
        return found

    context = await run_in_threadpool(answer)
    return render("entry.html", {"entry": context}, visitor=who)


@router.get("/disclosures")
async def disclosures(
    request: Request,
    recipient: str = "",
    purpose: str = "",
    verdict: str = "",
    since: str = "",
    until: str = "",
) -> Response:
    who = await visitor(request, Scope.READ_HISTORY)
    filters = {
        "recipient": recipient.strip()[:128],
        "purpose": purpose.strip()[:128],
        "verdict": verdict if verdict in ("", "violations", "allowed") else "",
        "since": since.strip()[:32],
        "until": until.strip()[:32],
    }
    errors: dict[str, str] = {
        name: "letters, digits and punctuation only"
        for name, value in filters.items()
        if not value.isprintable()
    }
    start = _day(filters["since"], "since", errors)
    end = _day(filters["until"], "until", errors)

    def answer() -> list[Any]:
        if errors:
            return []
        rows = _queries(request).all_disclosures(
            recipient_id=filters["recipient"] or None,
            start=start,
            end=end,
            violations_only=filters["verdict"] == "violations",
        )
        wanted = (
            row
            for row in rows
            if (not filters["purpose"] or row.purpose == filters["purpose"])
            and (filters["verdict"] != "allowed" or not row.violation)
        )
        return list(islice(wanted, MAX_ROWS + 1))

    rows = await run_in_threadpool(answer)
    context = {
        "filters": filters,
        "errors": errors,
        "rows": rows[:MAX_ROWS],
        "more": len(rows) > MAX_ROWS,
        "max_rows": MAX_ROWS,
    }
    return render("disclosures.html", context, status=422 if errors else 200, visitor=who)


def _day(text: str, name: str, errors: dict[str, str]) -> datetime | None:
    """A filter's day or time (UTC when it names no offset); None when blank."""
    if not text:
        return None
    try:
        return check_query_time(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:  # PydanticCustomError is one too: out of the ledger's range
        errors[name] = (
            "a date such as 2026-06-01, or a time such as 2026-06-01T10:00 (UTC), from 1970 to 2200"
        )
        return None
