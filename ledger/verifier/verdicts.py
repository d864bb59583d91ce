"""The verdict on one subject's row of a disclosure, and the recipients it depends on.

A disclosure names a recipient, a purpose (of a policy version), a legal basis, a kind and
whether the data was de-identified; each subject it lists gets the first of these that applies:

- ``recipient_unregistered``: the recipient was not registered when the disclosure occurred;
- ``recipient_terminated``: the recipient had been terminated when it occurred;
- ``legal_basis_not_permitted``: the legal basis is neither consent, nor the basis the policy
  version declares for the purpose, nor one of the policy's exceptions to consent
  (:data:`CONSENT_EXCEPTIONS`): the seed policy shares "unless we obtain your authorized consent
  or such information falls under an exception";
- ``disclosed_after_notice``: the basis is consent, consent for the purpose was not valid, and
  the recipient had been told so before it occurred: a ``recipient.notified`` for a
  ``recipient.notice_due`` of that subject's withdrawal of that purpose (docs/notices.md);
- ``consent_missing``: the basis is consent, and consent for the purpose was not valid for that
  subject when it occurred (see :mod:`ledger.verifier.consent_rules`);
- ``not_de_identified``: delegated processing of data that was not de-identified ("We will
  employ the technical means to de-sensitize personal information subject to delegate
  processing");
- ``consent_valid`` / ``lawful_exception``: none of the above, under consent or under another
  permitted basis.

Standard library only: the disclosure read model and the offline verifier's report decide with
this one function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ledger.verifier.consent_rules import Verdict
from ledger.verifier.mentions import is_pseudonym

VERDICTS = (
    "consent_valid",
    "consent_missing",
    "disclosed_after_notice",
    "lawful_exception",
    "legal_basis_not_permitted",
    "not_de_identified",
    "recipient_unregistered",
    "recipient_terminated",
)
VIOLATIONS = frozenset(
    {
        "recipient_unregistered",
        "recipient_terminated",
        "legal_basis_not_permitted",
        "consent_missing",
        "disclosed_after_notice",
        "not_de_identified",
    }
)
CONSENT_EXCEPTIONS = frozenset(
    {
        "legal_obligation",
        "national_security",
        "public_health",
        "criminal_investigation",
        "vital_interest",
        "made_public_by_subject",
        "contract",
        "publicly_disclosed_information",
        "service_safety",
    }
)
"""The seed policy's exceptions to consent: legal obligation, national security, public health,
criminal investigation, vital interests, data made public by the user, contract necessity,
publicly disclosed information, service safety (values of ``ledger.vocabulary.LegalBasis``).
``legitimate_interest`` and ``public_interest`` are not among them: a disclosure may rest on
them only for a purpose the policy version declares with that basis."""
DELEGATED = "delegated_processing"

REGISTERED = "recipient.registered"
UPDATED = "recipient.updated"
TERMINATED = "recipient.terminated"
RECIPIENT_TYPES = frozenset({REGISTERED, UPDATED, TERMINATED})
UPDATABLE = ("name", "country", "agreement_ref")
"""The fields of a registration that ``recipient.updated`` may change (the others stay)."""
NOTICE_DUE = "recipient.notice_due"
NOTIFIED = "recipient.notified"
NOTICE_FACTS = frozenset({NOTICE_DUE, NOTIFIED})
"""The ledger's events that tell a recipient to stop (docs/notices.md)."""


@dataclass(frozen=True)
class StopNotice:
    """A notice that tells a recipient a subject withdrew consent to some purposes."""

    subject: str
    recipient_id: str
    purposes: tuple[str, ...]


def stop_notice_of(data: Mapping[str, Any]) -> tuple[str, StopNotice] | None:
    """The notice id and what a ``recipient.notice_due`` tells, when it tells a withdrawal of
    a subject this reader may see (its ``told_subjects`` mention opened to a pseudonym)."""
    told = data.get("told_subjects")
    if data.get("reason") != "consent_withdrawn" or not isinstance(told, list) or len(told) != 1:
        return None
    if not is_pseudonym(told[0]):
        return None
    purposes = tuple(str(p) for p in data.get("purposes", []))
    return str(data["notice_id"]), StopNotice(told[0], str(data["recipient_id"]), purposes)


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


def basis_permitted(legal_basis: str, declared: str | None) -> bool:
    """May a disclosure rest on ``legal_basis``, for a purpose declared with ``declared``?

    Consent always may (whether it was valid is asked next); another basis only when it is the
    purpose's declared basis or one of :data:`CONSENT_EXCEPTIONS`.
    """
    return legal_basis == "consent" or legal_basis == declared or legal_basis in CONSENT_EXCEPTIONS


def disclosure_verdict(
    occurred_at: str,
    legal_basis: str,
    recipient: Recipient | None,
    consent: Callable[[], Verdict],
    *,
    declared_basis: str | None,
    kind: str,
    de_identified: bool,
    told_at: str | None = None,
) -> tuple[str, int | None]:
    """The verdict on one subject's row, and the event that decided consent (if it was asked).

    ``consent`` answers "was consent for the purpose valid for this subject at ``occurred_at``?";
    it is called only when the legal basis is consent and the recipient could receive data.
    ``declared_basis``: the basis the cited policy version declares for the purpose (see
    :func:`ledger.verifier.consent_rules.declared_basis`). ``told_at``: when the recipient was
    first told that this subject withdrew consent to this purpose (the ``recipient.notified``
    of a :class:`StopNotice`), if it was.
    """
    if recipient is None or recipient.registered_at > occurred_at:
        return "recipient_unregistered", None
    if recipient.terminated_at is not None and recipient.terminated_at <= occurred_at:
        return "recipient_terminated", None
    if not basis_permitted(legal_basis, declared_basis):
        return "legal_basis_not_permitted", None
    consent_seq: int | None = None
    if legal_basis == "consent":
        verdict = consent()
        if not verdict.valid:
            if told_at is not None and told_at <= occurred_at:
                return "disclosed_after_notice", verdict.seq
            return "consent_missing", verdict.seq
        consent_seq = verdict.seq
    if kind == DELEGATED and not de_identified:
        return "not_de_identified", consent_seq
    return ("consent_valid" if legal_basis == "consent" else "lawful_exception"), consent_seq
