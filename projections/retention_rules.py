"""Retention's rules: when a subject is due for erasure, and what holds it. Pure functions.

Each purpose a policy version declares has a retention period (``retention_days``). A subject
is *due* for erasure at a moment ``T`` (:func:`retention_of`) when it is not erased and

- for every purpose it decided on, consent is not valid at ``T`` (the shared rules of
  :mod:`ledger.verifier.consent_rules`), and ``T`` is at least the moment the current answer
  rests on (the withdrawal or refusal, the expiry, the material policy version, the minor's
  consent: the verdict's ``since``) plus the purpose's period in the policy version that
  decision cites (the version in force when consent ended, so a version that shortened or
  lengthened the period governs from then on);
- ``T`` is at least the subject's last event (a consent decision, an age attestation, a
  disclosure naming it, a step of one of its requests, a new lifecycle) plus the longest period
  among the purposes it decided on or had data disclosed for. A subject that decided on no
  purpose (known from disclosures or requests only) also waits the longest period of the
  latest policy version.

A due subject is *held*, and never erased, while (:func:`holds_of`) a request of the subject is
open, a request of the subject was refused less than ``legal_hold_days`` ago (default 365), or
an incident that is not closed names the subject in an assessment or selects, by an
assessment's ``affected_rule``, a disclosure to the subject.

No storage, no clock: the read model (:mod:`projections.retention`) gathers the facts and calls
these; the job (:mod:`projections.retention_job`) acts on the answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ledger.verifier.consent_rules import Age, Decision, Policy, verdict_at
from ledger.verifier.request_rules import REFUSED
from ledger.verifier.times import parse_utc, stored

DEFAULT_LEGAL_HOLD_DAYS = 365


@dataclass(frozen=True)
class PurposeRetention:
    """One purpose the subject decided on, at the moment asked about."""

    purpose: str
    valid: bool
    """Consent is valid at the moment: nothing of the subject's is due."""
    status: str | None
    """The consent verdict's status (``withdrawn``, ``refused``, ``expired``, ...)."""
    since: str | None
    """When the current answer began (the period runs from here)."""
    retention_days: int | None
    period_end: str | None
    """``since`` plus the period; None while consent is valid or no period is known."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "purpose": self.purpose,
            "valid": self.valid,
            "status": self.status,
            "since": self.since,
            "retention_days": self.retention_days,
            "period_end": self.period_end,
        }


@dataclass(frozen=True)
class Hold:
    """Why a subject must be kept although its periods have passed (a legal hold)."""

    kind: str
    """``open_request``, ``refused_request`` or ``incident``"""
    ref: str
    """The request or incident id."""
    since: str
    until: str | None
    """None: until the request is answered, or the incident closed."""

    def describe(self) -> str:
        what = {
            "open_request": f"request {self.ref} is open",
            "refused_request": f"request {self.ref} was refused",
            "incident": f"incident {self.ref} is not closed",
        }[self.kind]
        return what + ("" if self.until is None else f" (held until {self.until})")

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ref": self.ref, "since": self.since, "until": self.until}


@dataclass(frozen=True)
class SubjectRetention:
    """Where one subject stands at ``moment``: when it is due, why, and what holds it."""

    subject: str
    """The pseudonym."""
    moment: str
    purposes: tuple[PurposeRetention, ...]
    last_event_at: str
    activity_days: int | None
    """The longest period of the purposes the subject's data served (see the module)."""
    activity_period_end: str | None
    due_at: str | None
    """None: not while consent is valid for a purpose, or while no period is known."""
    holds: tuple[Hold, ...] = ()

    @property
    def due(self) -> bool:
        return self.due_at is not None and self.due_at <= self.moment

    @property
    def held(self) -> bool:
        return self.due and bool(self.holds)

    @property
    def erasable(self) -> bool:
        return self.due and not self.holds

    def reason(self) -> str:
        """Why it is due (or not), in a line: purposes, periods and times, no personal data."""
        return "; ".join(self.reasons())

    def reasons(self) -> list[str]:
        """Each purpose's period, then the last event's."""
        parts = []
        for p in self.purposes:
            if p.valid:
                parts.append(f"{p.purpose}: consent valid")
            elif p.period_end is None:
                parts.append(f"{p.purpose}: {p.status or 'no decision yet'}, no period known")
            else:
                parts.append(
                    f"{p.purpose}: {p.status} {p.since}, {p.retention_days} days ended "
                    f"{p.period_end}"
                )
        if self.activity_period_end is None:
            parts.append(f"last event {self.last_event_at}, no period known")
        else:
            parts.append(
                f"last event {self.last_event_at} + {self.activity_days} days = "
                f"{self.activity_period_end}"
            )
        return parts

    def details(self) -> dict[str, Any]:
        """What the erasure event records: times and purposes only."""
        return {
            "due_at": self.due_at,
            "purposes": {p.purpose: p.period_end for p in self.purposes},
            "last_event_period_end": self.activity_period_end,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "due": self.due,
            "due_at": self.due_at,
            "held": self.held,
            "holds": [h.as_dict() for h in self.holds],
            "reason": self.reason(),
            "purposes": [p.as_dict() for p in self.purposes],
            "last_event_at": self.last_event_at,
            "last_event_period_end": self.activity_period_end,
        }


def retention_of(
    subject: str,
    moment: str,
    *,
    decisions: Mapping[str, Sequence[Decision]],
    policies: Mapping[str, Policy],
    periods: Mapping[tuple[str, str], int],
    age: Age | None,
    default_minimum_age: int,
    last_event_at: str,
    disclosed: Iterable[tuple[str, str]] = (),
    holds: Sequence[Hold] = (),
) -> SubjectRetention:
    """When ``subject`` is due for erasure, judged at ``moment`` (stored form).

    ``decisions``: per purpose, the subject's consent decisions; ``periods``: the retention
    days of ``(policy version, purpose)``; ``disclosed``: the ``(policy version, purpose)`` of
    each disclosure naming the subject. Pure: no storage, no clock.
    """
    purposes = []
    for purpose in sorted(decisions):
        own = decisions[purpose]
        verdict = verdict_at(moment, own, policies, age, default_minimum_age)
        days = periods.get((verdict.policy_version or "", purpose))
        if days is None:  # no decision yet at the moment, or a version without the purpose
            days = _longest(periods, purpose, {d.policy_version for d in own})
        end = None
        if not verdict.valid and verdict.since is not None and days is not None:
            end = plus_days(verdict.since, days)
        purposes.append(
            PurposeRetention(purpose, verdict.valid, verdict.status, verdict.since, days, end)
        )
    served = [periods.get(pair) for pair in disclosed]
    served += [p.retention_days for p in purposes]
    if not decisions:
        served.append(_longest_of_latest(policies, periods, moment))
    known = [days for days in served if days is not None]
    activity_days = max(known) if known else None
    activity_end = None if activity_days is None else plus_days(last_event_at, activity_days)
    ends = [p.period_end for p in purposes]
    due_at = None
    if activity_end is not None and all(end is not None for end in ends):
        due_at = max([activity_end, *(end for end in ends if end is not None)])
    return SubjectRetention(
        subject=subject,
        moment=moment,
        purposes=tuple(purposes),
        last_event_at=last_event_at,
        activity_days=activity_days,
        activity_period_end=activity_end,
        due_at=due_at,
        holds=tuple(holds),
    )


def _longest(
    periods: Mapping[tuple[str, str], int], purpose: str, versions: Iterable[str]
) -> int | None:
    """The longest period the cited versions declare for ``purpose`` (or, if none declares
    it, any version)."""
    cited = [periods[(v, purpose)] for v in versions if (v, purpose) in periods]
    if not cited:
        cited = [days for (_, p), days in periods.items() if p == purpose]
    return max(cited) if cited else None


def _longest_of_latest(
    policies: Mapping[str, Policy], periods: Mapping[tuple[str, str], int], moment: str
) -> int | None:
    """The longest period of the latest version in effect at ``moment`` (or published)."""
    ordered = sorted(policies.values(), key=lambda p: (p.effective_at, p.seq))
    in_effect = [p for p in ordered if p.effective_at <= moment] or ordered
    if not in_effect:
        return None
    latest = in_effect[-1].version
    days = [d for (version, _), d in periods.items() if version == latest]
    return max(days) if days else None


def plus_days(moment: str, days: int) -> str:
    """``moment`` (stored form) ``days`` later (earlier when negative), stored; the last
    moment there is when that overflows."""
    try:
        return stored(parse_utc(moment) + timedelta(days=days))
    except OverflowError:
        return "9999-12-31T23:59:59.999999Z"


@dataclass(frozen=True)
class RequestFacts:
    request_id: str
    received_at: str | None
    closing: str | None
    """``request.fulfilled`` or ``request.refused``"""
    closed_at: str | None


@dataclass(frozen=True)
class IncidentFacts:
    incident_id: str
    opened_at: str
    closed_at: str | None
    named: frozenset[str]
    """Pseudonyms its assessments name."""
    rules: tuple[tuple[str, str, str], ...]
    """(recipient, from, to) of its assessments' ``affected_rule``, any assessment."""


def holds_of(
    subject: str,
    moment: str,
    *,
    requests: Iterable[RequestFacts],
    incidents: Iterable[IncidentFacts],
    disclosures: Iterable[tuple[str, str]],
    legal_hold_days: int,
) -> list[Hold]:
    """The legal holds on ``subject`` at ``moment``. ``disclosures``: (recipient, occurred_at)
    of each disclosure naming it. Pure."""
    holds = []
    for r in requests:
        if r.received_at is None or r.received_at > moment:
            continue
        if r.closed_at is None or r.closed_at > moment:
            holds.append(Hold("open_request", r.request_id, r.received_at, None))
        elif r.closing == REFUSED:
            until = plus_days(r.closed_at, legal_hold_days)
            if moment < until:
                holds.append(Hold("refused_request", r.request_id, r.closed_at, until))
    sent = list(disclosures)
    for i in incidents:
        if i.opened_at > moment or (i.closed_at is not None and i.closed_at <= moment):
            continue
        selected = any(
            recipient == rule_recipient and start <= at < end
            for recipient, at in sent
            for rule_recipient, start, end in i.rules
        )
        if subject in i.named or selected:
            holds.append(Hold("incident", i.incident_id, i.opened_at, None))
    return holds
