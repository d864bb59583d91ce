"""The request register's one fold: a data-subject request after each of its facts.

:func:`fold` takes a request's state (``None`` before its receipt) and one fact of it, and
returns the state after; :func:`correct` applies a ``correction.recorded`` to a state already
folded. The request register stores :class:`Request`'s fields as its row; the report folds the
bundle's facts (corrections already applied) and renders the state. The deadline is computed
from the state when asked (:mod:`ledger.verifier.request_rules`), never folded.

The rules: the first identity verification is the one shown (with its ``seq``), and it moves a
``received`` request to ``identity_verified``; every extension adds its days; the fulfilment or
the refusal closes the request.

Standard library only: the offline verifier's report uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from ledger.verifier.fold import Fact, FoldError
from ledger.verifier.request_rules import (
    CLOSING,
    EXTENDED,
    IDENTITY_VERIFIED,
    OPEN_STATUSES,
    RECEIVED,
    contribution,
)


@dataclass(frozen=True, slots=True)
class Request:
    """One request as its facts leave it; times in the stored form."""

    request_id: str
    subject: str
    """The subject's pseudonym (or, in another subject's bundle, a withheld placeholder)."""
    kind: str
    channel: str
    jurisdiction: str | None
    received_at: str
    received_seq: int
    identity_verified_at: str | None = None
    identity_verified_seq: int | None = None
    extension_days: int = 0
    """The days of every extension, together."""
    extensions: int = 0
    status: str = "received"
    closed_at: str | None = None
    closed_seq: int | None = None
    refusal_ground: str | None = None
    last_seq: int = 0

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def fields(self) -> dict[str, Any]:
        """The fields by name, in :data:`FIELDS` order (the register's columns)."""
        return {name: getattr(self, name) for name in FIELDS}

    @classmethod
    def from_fields(cls, values: Mapping[str, Any]) -> Request:
        """The state a register row holds (its columns by name)."""
        state = {name: values[name] for name in FIELDS}
        for name in ("extension_days", "extensions"):
            state[name] = int(state[name])
        return cls(**state)


FIELDS = tuple(f.name for f in fields(Request))


def fold(state: Request | None, fact: Fact) -> Request:
    """The request after ``fact``; ``state`` is ``None`` before its ``request.received``.

    Raises :class:`FoldError` for a second receipt, a step of a request never received, or a
    fact of another register."""
    data = fact.data
    if fact.type == RECEIVED:
        if state is not None:
            raise FoldError(f"request {state.request_id!r} was received twice")
        return Request(
            request_id=data["request_id"],
            subject=data["subject"],
            **_contribution(fact),
            received_seq=fact.seq,
            last_seq=fact.seq,
        )
    if state is None:
        raise FoldError(f"request {data.get('request_id')!r} was never received")
    changes: dict[str, Any] = {}
    if fact.type == IDENTITY_VERIFIED:
        if state.identity_verified_seq is None:
            changes.update(_contribution(fact))
            if state.status == "received":
                changes["status"] = "identity_verified"
    elif fact.type == EXTENDED:
        changes["extension_days"] = state.extension_days + int(data["extension_days"])
        changes["extensions"] = state.extensions + 1
    elif fact.type in CLOSING:
        changes.update(_contribution(fact), status=CLOSING[fact.type])
    else:
        raise FoldError(f"{fact.type} is not a request fact")
    return replace(state, **changes, last_seq=fact.seq)


def correct(state: Request, original: Fact, corrected: Fact) -> Request:
    """The request once ``corrected`` (the same fact, its corrected fields applied) replaces
    what ``original`` contributed.

    ``received_at`` follows the ``occurred_at`` of ``request.received``, ``closed_at`` that of
    the closing fact; a corrected ``extension_days`` moves the total by the difference. A field
    that fills none of the state (``request_id`` and ``subject`` included) is ignored; so is a
    correction of a verification after the first. The status and the seqs never change."""
    if original.type == EXTENDED:
        difference = int(corrected.data["extension_days"]) - int(original.data["extension_days"])
        if not difference:
            return state
        return replace(state, extension_days=state.extension_days + difference)
    if original.type == IDENTITY_VERIFIED and state.identity_verified_seq != original.seq:
        return state
    before = _contribution(original)
    changed = {
        name: value for name, value in _contribution(corrected).items() if before.get(name) != value
    }
    return replace(state, **changed) if changed else state


def _contribution(fact: Fact) -> dict[str, Any]:
    try:
        return contribution(fact.type, fact.seq, fact.occurred_at, fact.data)
    except ValueError as exc:
        raise FoldError(str(exc)) from exc
