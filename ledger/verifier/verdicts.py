"""The verdict on one subject's row of a disclosure, and the recipients it depends on.

A disclosure names a recipient, a purpose and a legal basis; each subject it lists gets one of:

- ``recipient_unregistered``: the recipient was not registered when the disclosure occurred;
- ``recipient_terminated``: the recipient had been terminated when it occurred;
- ``lawful_exception``: a legal basis other than consent (legal obligation, vital interests ...);
- ``consent_valid`` / ``consent_missing``: consent for the purpose was, or was not, valid for
  that subject when it occurred (see :mod:`ledger.verifier.consent_rules`).

The first three are checked in that order; the last two only for the legal basis ``consent``.
Standard library only: the disclosure read model and the offline verifier's report decide with
this one function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ledger.verifier.consent_rules import Verdict

VERDICTS = (
    "consent_valid",
    "consent_missing",
    "lawful_exception",
    "recipient_unregistered",
    "recipient_terminated",
)
VIOLATIONS = frozenset({"recipient_unregistered", "recipient_terminated", "consent_missing"})

REGISTERED = "recipient.registered"
UPDATED = "recipient.updated"
TERMINATED = "recipient.terminated"
RECIPIENT_TYPES = frozenset({REGISTERED, UPDATED, TERMINATED})
UPDATABLE = ("name", "country", "agreement_ref")
"""The fields of a registration that ``recipient.updated`` may change (the others stay)."""


@dataclass(frozen=True)
class Recipient:
    """A recipient as its registration, updates and termination leave it."""

    recipient_id: str
    name: str
    role: str
    country: str
    agreement_ref: str | None
    registered_at: str
    terminated_at: str | None
    seq: int
    """The registration's sequence number."""


def recipient_after(
    current: Recipient | None, type_name: str, seq: int, occurred_at: str, data: Mapping[str, Any]
) -> Recipient | None:
    """The recipient once one of its facts (in log order) applies.

    An update or termination of a recipient never registered changes nothing (the ledger refuses
    them; a reader holding only part of the log may still meet one).
    """
    if type_name == REGISTERED:
        return Recipient(
            recipient_id=data["recipient_id"],
            name=data["name"],
            role=data["role"],
            country=data["country"],
            agreement_ref=data.get("agreement_ref"),
            registered_at=occurred_at,
            terminated_at=None,
            seq=seq,
        )
    if current is None:
        return None
    if type_name == UPDATED:
        return replace(current, **{name: data[name] for name in UPDATABLE if name in data})
    if type_name == TERMINATED:
        return replace(current, terminated_at=occurred_at)
    raise ValueError(f"{type_name} is not a recipient fact")


def disclosure_verdict(
    occurred_at: str,
    legal_basis: str,
    recipient: Recipient | None,
    consent: Callable[[], Verdict],
) -> tuple[str, int | None]:
    """The verdict on one subject's row, and the event that decided consent (if it was asked).

    ``consent`` answers "was consent for the purpose valid for this subject at ``occurred_at``?";
    it is called only when the legal basis is consent and the recipient could receive data.
    """
    if recipient is None or recipient.registered_at > occurred_at:
        return "recipient_unregistered", None
    if recipient.terminated_at is not None and recipient.terminated_at <= occurred_at:
        return "recipient_terminated", None
    if legal_basis != "consent":
        return "lawful_exception", None
    verdict = consent()
    return ("consent_valid" if verdict.valid else "consent_missing"), verdict.seq
