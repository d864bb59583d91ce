"""When consent is valid: pure functions over recorded decisions (no storage, no clock).

Decisions for one subject and purpose are ordered by when they occurred (then by sequence
number, so a back-dated fact takes its place in time without reordering the log). Each
``given`` opens a validity interval, closed by the next decision or by its own expiry.
Whether an interval makes consent valid at a moment also depends on facts that can arrive
later: a material policy change (renewal required) and the subject's attested age (a minor's
consent is invalid without a guardian, and with one too when the policy version it was given
under does not accept a guardian's consent). Statuses use W3C DPV terms.

The consent facts themselves are folded here too: :func:`decision_of` and :func:`note_of` say
what one fact records on each of its purposes (a :class:`Decision`, or a :class:`Note`: a fact
that decides nothing, such as a request to renew), :func:`timeline` what the consent timeline
shows, and :func:`pending_renewal` which renewal request awaits an answer. So a new kind of
consent fact is one case here, and the read models and the report follow.

Standard library only: the consent-state and disclosure read models and the offline verifier's
report (:mod:`ledger.verifier.report`) decide with this one implementation.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ledger.verifier.times import parse_utc, utc

CONSENT = "consent"
"""The legal basis under which a purpose needs the subject's consent."""
YES, NO, NOT_REQUIRED = "yes", "no", "not_required"
"""A decision's answers."""

DPV_STATUS = {
    "given": "dpv:ConsentGiven",
    "refused": "dpv:ConsentRefused",
    "withdrawn": "dpv:ConsentWithdrawn",
    "expired": "dpv:ConsentExpired",
    "renewal_required": "dpv:ConsentInvalidated",
    "invalid_minor": "dpv:ConsentInvalidated",
    "guardian_not_allowed": "dpv:ConsentInvalidated",
    "erased": "dpv:ConsentInvalidated",
}


@dataclass(frozen=True, slots=True)
class Decision:
    seq: int
    occurred_at: str
    decision: str
    """given, refused or withdrawn"""
    policy_version: str
    expires_at: str | None
    guardian: bool


@dataclass(frozen=True)
class Interval:
    valid_from: str
    valid_until: str | None
    end_reason: str | None
    """withdrawn, refused, expired, renewed (given again), or None while open"""
    given_seq: int
    ended_seq: int | None
    policy_version: str
    guardian: bool


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    effective_at: str
    material: bool
    minimum_age: int | None
    seq: int
    guardian_consent_allowed: bool = False
    """A guardian's consent stands for a minor's (otherwise a minor's consent is never valid)."""
    bases: Mapping[str, str] = field(default_factory=dict)
    """Purpose id -> the legal basis the version declares for it."""


def policy_of(data: Mapping[str, Any], seq: int) -> Policy:
    """The policy version a ``policy.version_published`` fact (its data) publishes."""
    return Policy(
        data["version"],
        utc(data["effective_at"]),
        bool(data["material"]),
        data.get("minimum_age"),
        seq,
        bool(data.get("guardian_consent_allowed", False)),
        {p["id"]: p["legal_basis"] for p in data["purposes"]},
    )


def declared_basis(policies: Mapping[str, Policy], version: str, purpose: str) -> str | None:
    """The legal basis ``version`` declares for ``purpose`` (None: not known to this reader)."""
    policy = policies.get(version)
    return None if policy is None else policy.bases.get(purpose)


@dataclass(frozen=True, slots=True)
class Age:
    age: int
    attested_at: str
    seq: int


@dataclass(frozen=True)
class Verdict:
    """The answer to "may this purpose be used for this subject at that moment?"."""

    valid: bool
    status: str | None
    """Why: a DPV-backed status, or None when no decision was ever recorded."""
    seq: int | None
    """The event that decides it (the consent, the withdrawal, the policy, the age)."""
    policy_version: str | None
    since: str | None
    basis: str = CONSENT
    """The legal basis the purpose rests on; another than consent makes consent not required."""

    @property
    def dpv(self) -> str | None:
        return None if self.status is None else DPV_STATUS[self.status]

    @property
    def outcome(self) -> str:
        """``yes`` (valid consent), ``no``, or ``not_required`` (another legal basis)."""
        if not self.valid:
            return NO
        return YES if self.basis == CONSENT else NOT_REQUIRED

    def answer(self, subject: str, purpose: str) -> dict[str, object]:
        """The answer to "may I?", as the API and the CLI give it: ``answer`` tells the three
        apart, ``legal_basis`` says what the purpose rests on (docs/api.md, "Conventions")."""
        return {
            "subject": subject,
            "purpose": purpose,
            "allowed": self.valid,
            "answer": self.outcome,
            "legal_basis": self.basis,
            "status": self.status,
            "dpv_status": self.dpv,
            "decided_by_seq": self.seq,
            "policy_version": self.policy_version,
            "since": self.since,
        }


def declared_at(policies: Mapping[str, Policy], purpose: str, moment: str) -> Policy | None:
    """The policy version whose word on ``purpose`` holds at ``moment``: of the versions that
    declare it, the latest in effect then; before any is, the first that declares it. None
    when no version declares it: the purpose is unknown."""
    declaring = sorted(
        (p for p in policies.values() if purpose in p.bases), key=lambda p: (p.effective_at, p.seq)
    )
    if not declaring:
        return None
    in_effect = [p for p in declaring if p.effective_at <= moment]
    return in_effect[-1] if in_effect else declaring[0]


def on_basis(verdict: Verdict, declared: Policy | None, purpose: str) -> Verdict:
    """``verdict`` with the legal basis ``declared`` gives ``purpose``: a purpose that rests on
    another basis than consent is allowed without it (``not_required``), the version that says
    so deciding, unless the subject is erased (nothing is processed for them, whatever the
    basis)."""
    basis = CONSENT if declared is None else declared.bases[purpose]
    if basis == CONSENT:
        return verdict
    if verdict.status == "erased":
        return replace(verdict, basis=basis)
    assert declared is not None
    return Verdict(True, None, declared.seq, declared.version, declared.effective_at, basis)


def in_time_order(decisions: Sequence[Decision]) -> list[Decision]:
    return sorted(decisions, key=lambda d: (d.occurred_at, d.seq))


def intervals(decisions: Sequence[Decision]) -> list[Interval]:
    """Validity intervals of one subject and purpose, from all its decisions."""
    result: list[Interval] = []
    open_given: Decision | None = None

    def close(at: str | None, reason: str | None, seq: int | None) -> None:
        assert open_given is not None
        until, why, by = at, reason, seq
        expiry = open_given.expires_at
        if expiry is not None and (until is None or expiry < until):
            until, why, by = expiry, "expired", None
        result.append(
            Interval(
                valid_from=open_given.occurred_at,
                valid_until=until,
                end_reason=why,
                given_seq=open_given.seq,
                ended_seq=by,
                policy_version=open_given.policy_version,
                guardian=open_given.guardian,
            )
        )

    for decision in in_time_order(decisions):
        if open_given is not None:
            reason = "renewed" if decision.decision == "given" else decision.decision
            close(decision.occurred_at, reason, decision.seq)
            open_given = None
        if decision.decision == "given":
            open_given = decision
    if open_given is not None:
        close(None, None, None)
    return result


def superseded_at(version: str, policies: Mapping[str, Policy]) -> Policy | None:
    """The first material version that takes effect after ``version``: consent must be renewed."""
    own = policies.get(version)
    if own is None:
        return None
    later = [p for p in policies.values() if p.material and p.effective_at > own.effective_at]
    return min(later, key=lambda p: (p.effective_at, p.version), default=None)


def age_on(age: Age, moment: str) -> int:
    """The attested age carried to ``moment`` (whole years before or after the attestation)."""
    then, now = parse_utc(age.attested_at), parse_utc(moment)
    years = now.year - then.year - ((now.month, now.day) < (then.month, then.day))
    return age.age + years


def verdict_at(
    moment: str,
    decisions: Sequence[Decision],
    policies: Mapping[str, Policy],
    age: Age | None,
    default_minimum_age: int,
) -> Verdict:
    """Was consent valid at ``moment``? Decided from the facts, not from stored statuses."""
    spans = intervals(decisions)
    if not any(d.occurred_at <= moment for d in decisions):
        return Verdict(False, None, None, None, None)
    for span in spans:
        if span.valid_from <= moment and (span.valid_until is None or moment < span.valid_until):
            return _qualify(span, moment, policies, age, default_minimum_age)
    # No interval covers the moment: the last decision before it says why.
    before = [d for d in in_time_order(decisions) if d.occurred_at <= moment]
    last = before[-1]
    if last.decision == "given":  # its interval ended by expiry before the moment
        return Verdict(False, "expired", last.seq, last.policy_version, last.expires_at)
    return Verdict(False, last.decision, last.seq, last.policy_version, last.occurred_at)


def _qualify(
    span: Interval,
    moment: str,
    policies: Mapping[str, Policy],
    age: Age | None,
    default_minimum_age: int,
) -> Verdict:
    superseding = superseded_at(span.policy_version, policies)
    if superseding is not None and superseding.effective_at <= moment:
        return Verdict(
            False,
            "renewal_required",
            superseding.seq,
            span.policy_version,
            superseding.effective_at,
        )
    policy = policies.get(span.policy_version)
    minimum = (
        policy.minimum_age
        if policy is not None and policy.minimum_age is not None
        else default_minimum_age
    )
    if age is not None and age_on(age, span.valid_from) < minimum:
        # "If you are a minor under the age of 18, we will not provide you with the Services":
        # a minor's consent is not valid, unless a guardian gave it under a version that
        # accepts a guardian's consent.
        if not span.guardian:
            return Verdict(False, "invalid_minor", age.seq, span.policy_version, span.valid_from)
        if policy is None or not policy.guardian_consent_allowed:
            return Verdict(
                False, "guardian_not_allowed", age.seq, span.policy_version, span.valid_from
            )
    return Verdict(True, "given", span.given_seq, span.policy_version, span.valid_from)


def moment_text(moment: datetime) -> str:
    """A datetime in the stored form, to compare with stored times."""
    return utc(moment.isoformat())


# -- the consent facts, folded ------------------------------------------------------------------

DECISION_TYPES: Mapping[str, str] = {
    "consent.given": "given",
    "consent.refused": "refused",
    "consent.withdrawn": "withdrawn",
}
"""Fact type -> the decision it records on each of its purposes (what validity depends on)."""

RENEWAL_REQUESTED = "renewal_requested"
"""The kind of note a request to renew consent records: pending until the next decision."""

Details = tuple[tuple[str, str | None], ...]
"""A note's own fields, as ``(name, value)`` in the order they are shown (None: not given)."""


@dataclass(frozen=True, slots=True)
class Note:
    """A consent fact on one purpose that decides nothing: no verdict changes with it. The
    timeline shows it; a renewal request also shows as pending until the purpose's next
    decision (:func:`pending_renewal`)."""

    seq: int
    occurred_at: str
    kind: str
    """What the timeline calls the change (``renewal_requested``)."""
    policy_version: str
    details: Details = ()

    def as_dict(self) -> dict[str, object]:
        """As the consent state shows it: its event, moment and version, then its fields."""
        return {
            "seq": self.seq,
            "since": self.occurred_at,
            "policy_version": self.policy_version,
            **dict(self.details),
        }


NoteFold = Callable[[int, str, Mapping[str, Any]], Note]
"""(seq, occurred_at, data as stored) -> the note the fact records on each of its purposes."""


def _renewal_requested(seq: int, occurred_at: str, data: Mapping[str, Any]) -> Note:
    """``consent.renewal_requested``: the terms asked for, why, how, and by when."""
    respond_by = data.get("respond_by")
    return Note(
        seq,
        occurred_at,
        RENEWAL_REQUESTED,
        _shared(data["policy_version"]),
        (
            ("reason", data["reason"]),
            ("channel", data["channel"]),
            ("respond_by", None if respond_by is None else utc(respond_by)),
        ),
    )


NOTE_TYPES: Mapping[str, NoteFold] = {"consent.renewal_requested": _renewal_requested}
"""Fact type -> how its facts fold into notes: the consent facts that decide nothing."""

CONSENT_TYPES = frozenset(DECISION_TYPES) | frozenset(NOTE_TYPES)
"""Every consent fact type: each names one subject (``subject``) and its ``purposes``."""


def consent_purposes(data: Mapping[str, Any]) -> list[str]:
    """The purposes a consent fact names, each once, in its order."""
    return [_shared(purpose) for purpose in dict.fromkeys(data["purposes"])]


def decision_of(type_name: str, seq: int, occurred_at: str, data: Mapping[str, Any]) -> Decision:
    """The decision a fact of :data:`DECISION_TYPES` records on each of its purposes, from its
    data as stored (corrections applied) and its ``occurred_at`` in the stored form."""
    expires = data.get("expires_at")
    return Decision(
        seq,
        occurred_at,
        DECISION_TYPES[type_name],
        _shared(data["policy_version"]),
        None if expires is None else utc(expires),
        "guardian" in data,
    )


def note_of(type_name: str, seq: int, occurred_at: str, data: Mapping[str, Any]) -> Note:
    """The note a fact of :data:`NOTE_TYPES` records on each of its purposes (as
    :func:`decision_of` takes its arguments)."""
    return NOTE_TYPES[type_name](seq, occurred_at, data)


def _shared(value: Any) -> Any:
    """One copy of a text that many facts repeat (a purpose, a policy version): the report's
    context and the read models' books hold one per fact and purpose."""
    return sys.intern(value) if type(value) is str else value


def pending_renewal(
    decisions: Sequence[Decision], notes: Sequence[Note], moment: str
) -> Note | None:
    """The renewal request of one subject and purpose that awaits an answer at ``moment``.

    The latest request at or before ``moment`` (in time order, then log order, as decisions
    are ordered) replaces every earlier one, and is answered by the first decision after it
    (given, refused or withdrawn) at or before ``moment``. A request never changes a verdict:
    consent stays valid until it expires or is withdrawn.
    """
    asked = [n for n in notes if n.kind == RENEWAL_REQUESTED and n.occurred_at <= moment]
    if not asked:
        return None
    latest = max(asked, key=lambda n: (n.occurred_at, n.seq))
    after = (latest.occurred_at, latest.seq)
    if any(after < (d.occurred_at, d.seq) and d.occurred_at <= moment for d in decisions):
        return None
    return latest


@dataclass(frozen=True, slots=True)
class TimelineItem:
    """One change on the consent timeline of a subject and purpose."""

    at: str
    seq: int
    """The event that makes the change (an expiry's: the consent that expires)."""
    change: str
    """``given``, ``refused``, ``withdrawn``, ``expired``, ``renewal_required``, or the kind of
    a note."""
    policy_version: str
    expires_at: str | None = None
    guardian: bool | None = None
    details: Details = ()
    rank: int = 0
    """Orders the changes of one moment and event: the fact's own, an expiry, a policy's."""


def timeline(
    decisions: Sequence[Decision], notes: Sequence[Note], policies: Mapping[str, Policy]
) -> list[TimelineItem]:
    """The consent timeline of one subject and purpose: each decision and note, each expiry,
    and each material policy version that took effect while consent was valid (renewal
    required), by time, then event. The status from each change on is :func:`verdict_at` at
    its moment."""
    items = [
        TimelineItem(d.occurred_at, d.seq, d.decision, d.policy_version, d.expires_at, d.guardian)
        for d in in_time_order(decisions)
    ]
    items += [
        TimelineItem(n.occurred_at, n.seq, n.kind, n.policy_version, details=n.details)
        for n in notes
    ]
    for span in intervals(decisions):
        if span.end_reason == "expired" and span.valid_until is not None:
            items.append(
                TimelineItem(
                    span.valid_until, span.given_seq, "expired", span.policy_version, rank=1
                )
            )
        superseding = superseded_at(span.policy_version, policies)
        if (
            superseding is not None
            and span.valid_from < superseding.effective_at
            and (span.valid_until is None or superseding.effective_at < span.valid_until)
        ):
            items.append(
                TimelineItem(
                    superseding.effective_at,
                    superseding.seq,
                    "renewal_required",
                    superseding.version,
                    rank=2,
                )
            )
    return sorted(items, key=lambda item: (item.at, item.seq, item.rank))
