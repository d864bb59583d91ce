"""Scopes and tags: how an entry says whom it concerns without saying it to anyone else.

Every event concerns a few **scopes**, named as text:

==========================  ================================================================
``subject:<pseudonym>``     a subject the event names (consents, age, requests, disclosures,
                            incident assessments that list affected subjects, reads
                            of their personal data)
``recipient:<id>``          a recipient's registration, update or termination
``told:<id>``               a notice to that recipient: owed, delivered, acknowledged (GDPR
                            19; its ``told_subjects`` mention names the subject, whose scope
                            it concerns too)
``disclosed-to:<id>``       a disclosure to that recipient
``incident:<id>``           an incident's events
``incident-at:<id>``        the opening of an incident against that recipient
``incident-rule:<id>``      an incident assessment whose ``affected_rule`` names that recipient
``policy``                  a policy version
``day:<YYYY-MM-DD>``        the UTC day the event occurred (every event)
==========================  ================================================================

A correction concerns every scope of the event it corrects, as recorded and as corrected
(days included; recorded in its data, under ``concerns``: :func:`correction_concerns`), and
the day it occurred.

The entry carries one **tag** per scope: ``BLAKE2b(seq as 8 bytes big-endian, key = K,
digest size 16)`` (RFC 7693, keyed mode), where ``K = SHA-256("consent-ledger/tag/v1" || 0x00 ||
scope as UTF-8)``. A tag differs from one entry to the next, so tags link nothing; whoever knows a
scope's name (an exported bundle gives the names of its scopes) can test every entry for it.
A subject's scope name holds the pseudonym, which only the ledger can compute from the
subject's reference, so the tags of other people's events tell a bundle's reader nothing.
Organisation-level scopes (recipients, incidents, days, policy) can be tested by anyone who
guesses the name: they reveal that some event concerned that recipient or that day, never whom.

Standard library only.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, timedelta
from typing import Any, NamedTuple

from ledger.verifier.corrections import apply_correction
from ledger.verifier.incident_rules import rule_selects
from ledger.verifier.times import parse_utc, utc

TAG_DOMAIN = b"consent-ledger/tag/v1\x00"
SUBJECT_PREFIX = "subject:"
NOTICE_TYPES = frozenset({"recipient.notice_due", "recipient.notified", "recipient.acknowledged"})
"""The ledger's own events about a notice to a recipient (``ledger/notices.py``)."""
SUBJECT_LISTS = ("subjects", "affected_subjects")
"""Data fields that list subjects, each as ``{"subject": pseudonym, ...}``."""


# -- subjects: how a body names them (one place, so that the naming can change) ---------------


def subject_scope(pseudonym: str) -> str:
    """The scope name of a subject, from the pseudonym the bodies name it by."""
    return f"{SUBJECT_PREFIX}{pseudonym}"


def subjects_named(data: Mapping[str, Any]) -> list[str]:
    """The pseudonyms a fact's data names: ``subject``, and the ``subject`` of each item of
    ``subjects`` and ``affected_subjects``, in that order."""
    named = [data["subject"]] if isinstance(data.get("subject"), str) else []
    for name in SUBJECT_LISTS:
        listed = data.get(name)
        if isinstance(listed, list):
            named += [
                item["subject"]
                for item in listed
                if isinstance(item, Mapping) and isinstance(item.get("subject"), str)
            ]
    return named


def concerned_scopes(data: Mapping[str, Any]) -> list[str]:
    """A correction's ``concerns``: the scopes it lists as such, and its subjects' (listed
    apart, as mentions: :mod:`ledger.verifier.mentions`), sorted."""
    concerns = data.get("concerns", [])
    named = {str(scope) for scope in concerns} if isinstance(concerns, list) else set()
    subjects = data.get("concerned_subjects", [])
    if isinstance(subjects, list):
        named.update(subject_scope(s) for s in subjects if isinstance(s, str))
    return sorted(named)


def subjects_of_scopes(scopes: Iterable[str]) -> list[str]:
    """The pseudonyms of the subject scopes among ``scopes`` (a correction's ``concerns``)."""
    return [s.removeprefix(SUBJECT_PREFIX) for s in scopes if s.startswith(SUBJECT_PREFIX)]


def scopes_of(type_name: str, data: Mapping[str, Any], occurred_at: str) -> list[str]:
    """The scopes an event concerns, from its type and its data as stored (sorted)."""
    scopes = {f"day:{occurred_at[:10]}"}
    family = type_name.partition(".")[0]
    if family == "correction":
        scopes.update(concerned_scopes(data))
        return sorted(scopes)
    if family == "personal_data":  # a read of their data concerns each subject it opened
        opened = data.get("opened_subjects", [])
        if isinstance(opened, list):
            scopes.update(subject_scope(s) for s in opened if isinstance(s, str))
        return sorted(scopes)
    scopes.update(subject_scope(subject) for subject in subjects_named(data))
    recipient = data.get("recipient_id")
    if type_name in NOTICE_TYPES:  # a notice concerns its recipient and its subject
        told = data.get("told_subjects")
        if isinstance(told, list):
            scopes.update(subject_scope(s) for s in told if isinstance(s, str))
        if isinstance(recipient, str):
            scopes.add(f"told:{recipient}")
        return sorted(scopes)
    if family == "recipient" and isinstance(recipient, str):
        scopes.add(f"recipient:{recipient}")
    elif family == "disclosure" and isinstance(recipient, str):
        scopes.add(f"disclosed-to:{recipient}")
    incident = data.get("incident_id")
    if family == "incident" and isinstance(incident, str):
        scopes.add(f"incident:{incident}")
        if isinstance(recipient, str):
            scopes.add(f"incident-at:{recipient}")
        ruled = _ruled_recipient(data.get("affected_rule"))
        if ruled is not None:
            scopes.add(f"incident-rule:{ruled}")
    if family == "policy":
        scopes.add("policy")
    return sorted(scopes)


def correction_concerns(
    type_name: str,
    data: Mapping[str, Any],
    occurred_at: str,
    corrected_fields: Mapping[str, Any],
) -> list[str]:
    """What a correction of an event records under ``concerns``: every scope of the event as
    recorded, and as corrected (with the day it then occurs on). So a correction is found
    wherever what it corrects is looked for: with the event, in any scope that holds it (a
    period that holds it by its recorded day included); a disclosure moved into a period by
    that period's day; an assessment whose rule now names another recipient by that
    recipient."""
    fixed_at, fixed = apply_correction(occurred_at, data, corrected_fields)
    return sorted(
        {*scopes_of(type_name, data, occurred_at), *scopes_of(type_name, fixed, fixed_at)}
    )


def _ruled_recipient(rule: object) -> str | None:
    """The recipient an ``affected_rule`` names, if it is one."""
    if isinstance(rule, Mapping) and isinstance(rule.get("recipient_id"), str):
        return str(rule["recipient_id"])
    return None


def without_days(scopes: Iterable[str]) -> list[str]:
    """The scopes a correction inherits from the event it corrects (not its day)."""
    return sorted(scope for scope in scopes if not scope.startswith("day:"))


@functools.lru_cache(maxsize=4096)
def tag_key(scope: str) -> bytes:
    """The key whose HMACs are a scope's tags."""
    return hashlib.sha256(TAG_DOMAIN + scope.encode()).digest()


def tag(key: bytes, seq: int) -> bytes:
    """The tag an entry at ``seq`` carries for the scope of ``key``."""
    return hashlib.blake2b(seq.to_bytes(8, "big"), key=key, digest_size=16).digest()


def tags_for(scopes: Iterable[str], seq: int) -> list[bytes]:
    """The tags of an entry at ``seq`` that concerns ``scopes``, sorted."""
    return sorted({tag(tag_key(scope), seq) for scope in scopes})


SCOPE_KINDS = ("subject", "recipient", "incident", "period", "all")


class ScopeError(ValueError):
    """A bundle's scope is not one the ledger exports."""


def days_between(start: str, end: str) -> list[str]:
    """The UTC days ``day:YYYY-MM-DD`` that meet the period [start, end)."""
    first, last = parse_utc(start), parse_utc(end)
    if last <= first:
        raise ScopeError(f"the period ends ({end}) before it starts ({start})")
    days = []
    day = first.astimezone(UTC).date()
    final = (last - timedelta(microseconds=1)).astimezone(UTC).date()
    while day <= final:
        days.append(f"day:{day.isoformat()}")
        day += timedelta(days=1)
    return days


Rule = tuple[str, str, str]
"""An assessment's ``affected_rule`` as the closure keeps it: (recipient, from, to), the
times stored."""


class Fact(NamedTuple):
    """What the closure keeps of an event that can add names: a disclosure or an incident
    event, as recorded or as a correction makes it (a correction names what it corrects by
    its ``concerns``)."""

    scopes: frozenset[str]
    """The event's scopes (a correction's: its ``concerns`` and its day): it counts once the
    closure holds one of them."""
    kind: str
    """``disclosure`` or ``incident``."""
    recipient: str | None
    """A disclosure's recipient; the recipient an incident was opened against."""
    occurred_at: str | None
    """When a disclosure occurred (as recorded, or as a correction says)."""
    subjects: tuple[str, ...]
    """A disclosure's subjects; the subjects an assessment names."""
    incident: str | None
    rule: Rule | None
    """An assessment's rule (as recorded, or as a correction says)."""


class Closure:
    """The scope names a bundle must be complete for: its own, and the context its report needs.

    "The events that decide what the report says", one definition for the exporter (which
    finds them), the verifier (which checks that the bundle holds exactly them) and the report
    (which lists what they select, as the read models do). A bundle starts from the names of
    its scope; an event *counts* once it concerns a name the closure holds; the events that
    count add names by the rules below, until none adds one (a least fixpoint, which the
    exporter and the verifier both compute from the bundle's events alone):

    - a subject S: ``subject:S`` and ``policy``; each recipient R of a disclosure of S's data
      (``recipient:R``, its registration, for the verdicts; ``incident-rule:R``, the
      assessments whose rule names R); each incident an assessment of which names S, or whose
      rule (:func:`ledger.verifier.incident_rules.rule_selects`) selects one of S's
      disclosures, with all its events (``incident:I``);
    - a recipient R: ``recipient:R``, ``disclosed-to:R``, ``told:R`` (the notices it was
      owed), ``policy``, ``incident-at:R`` and ``incident-rule:R``; each subject of a
      disclosure to R (their consent decides the verdicts); each incident opened against R
      or whose rule names R (``incident:I``);
    - an incident I: ``incident:I``; the recipient it was opened against; for the recipient R
      its rule names, ``recipient:R``, ``disclosed-to:R`` and ``policy``; then each subject of
      a disclosure the rule selects;
    - a period: ``day:D`` for each of its days, and ``policy``; the recipient and the subjects
      of each disclosure that occurred in the period;
    - all: every entry (no names: nothing may be left out).

    A correction concerns what it corrects, as recorded and as corrected
    (:func:`correction_concerns`), so the corrections of every event in scope are in scope, and
    a disclosure's time or an assessment's rule counts as recorded and as corrected: the
    closure may hold an event the report then does not list (a disclosure corrected out of the
    period), never miss one it lists.
    """

    def __init__(self, scope: Mapping[str, Any]) -> None:
        self.kind = scope.get("kind")
        self.names: set[str] = set()
        self._given: set[str] = set()
        self._facts: list[Fact] = []
        try:
            if self.kind == "subject":
                self.key = str(scope["subject"])
                self.names |= {subject_scope(self.key), "policy"}
            elif self.kind == "recipient":
                self.key = str(scope["recipient_id"])
                self.names |= {
                    f"recipient:{self.key}",
                    f"disclosed-to:{self.key}",
                    f"told:{self.key}",
                    f"incident-at:{self.key}",
                    f"incident-rule:{self.key}",
                    "policy",
                }
            elif self.kind == "incident":
                self.key = str(scope["incident_id"])
                self.names.add(f"incident:{self.key}")
            elif self.kind == "period":
                self.start, self.end = utc(str(scope["from"])), utc(str(scope["to"]))
                self.names |= {*days_between(self.start, self.end), "policy"}
            elif self.kind != "all":
                raise ScopeError(f"scope kind {self.kind!r} is not one of {', '.join(SCOPE_KINDS)}")
        except (KeyError, ValueError) as exc:
            raise ScopeError(f"scope {dict(scope)!r} is incomplete: {exc}") from None

    @property
    def everything(self) -> bool:
        return self.kind == "all"

    def see(self, type_name: str, data: Mapping[str, Any], occurred_at: str) -> None:
        """Take note of one event of the bundle (in any order)."""
        if self.kind == "all":
            return  # every entry is in scope already: the events add nothing
        fact = _fact(type_name, data, occurred_at)
        if fact is not None:
            self._facts.append(fact)

    def state(self) -> tuple[set[str], list[Any], list[Any]]:
        """What :meth:`see` noted, for :meth:`merge` into the closure of the same scope (the
        verifier checks chunks of events in separate processes)."""
        return set(self.names), list(self._facts), []

    def merge(self, state: tuple[set[str], list[Any], list[Any]]) -> None:
        """Add what another closure of the same scope saw (:meth:`state`)."""
        names, facts, _ = state
        self.names |= names
        self._facts += [Fact(*fact) for fact in facts]

    def grow(self) -> set[str]:
        """The names not handed out yet: the scope's own at first, then those the events seen
        since add. Empty when the closure is complete."""
        while True:
            before = len(self.names)
            counting = [f for f in self._facts if not f.scopes.isdisjoint(self.names)]
            self._add(counting)
            if len(self.names) == before:
                break
        new = self.names - self._given
        self._given |= new
        return new

    def _add(self, facts: list[Fact]) -> None:
        """The names the counting ``facts`` add, by the scope's rules."""
        disclosures = [f for f in facts if f.kind == "disclosure"]
        incidents = [f for f in facts if f.kind == "incident"]
        if self.kind == "subject":
            rows = {
                (f.recipient, f.occurred_at)
                for f in disclosures
                if self.key in f.subjects and f.recipient is not None and f.occurred_at
            }
            for recipient, _ in rows:
                self.names |= {f"recipient:{recipient}", f"incident-rule:{recipient}"}
            for f in incidents:
                if f.incident is not None and (
                    self.key in f.subjects
                    or (f.rule is not None and any(_selects(f.rule, *row) for row in rows))
                ):
                    self.names.add(f"incident:{f.incident}")
        elif self.kind == "recipient":
            for f in disclosures:
                if f.recipient == self.key:
                    self.names.update(subject_scope(s) for s in f.subjects)
            for f in incidents:
                if f.incident is not None and self.key in (
                    f.recipient,
                    None if f.rule is None else f.rule[0],
                ):
                    self.names.add(f"incident:{f.incident}")
        elif self.kind == "incident":
            rules = [f.rule for f in incidents if f.incident == self.key and f.rule is not None]
            for f in incidents:
                if f.incident == self.key and f.recipient is not None:
                    self.names.add(f"recipient:{f.recipient}")
            for ruled, _, _ in rules:
                self.names |= {f"recipient:{ruled}", f"disclosed-to:{ruled}", "policy"}
            for f in disclosures:
                if any(_selects(rule, f.recipient, f.occurred_at) for rule in rules):
                    self.names.update(subject_scope(s) for s in f.subjects)
        elif self.kind == "period":
            for f in disclosures:
                if f.occurred_at is not None and self.start <= f.occurred_at < self.end:
                    if f.recipient is not None:
                        self.names.add(f"recipient:{f.recipient}")
                    self.names.update(subject_scope(s) for s in f.subjects)


def _selects(rule: Rule, recipient: str | None, occurred_at: str | None) -> bool:
    return (
        recipient is not None
        and occurred_at is not None
        and rule_selects(
            {"recipient_id": rule[0], "disclosed_from": rule[1], "disclosed_to": rule[2]},
            recipient,
            occurred_at,
        )
    )


def _fact(type_name: str, data: Mapping[str, Any], occurred_at: str) -> Fact | None:
    """What the closure keeps of an event, or None if it can add no name."""
    family = type_name.partition(".")[0]
    scopes = frozenset(scopes_of(type_name, data, occurred_at))
    if family == "disclosure":
        recipient = data.get("recipient_id")
        return Fact(
            scopes,
            "disclosure",
            recipient if isinstance(recipient, str) else None,
            utc(occurred_at),
            tuple(subjects_named(data)),
            None,
            None,
        )
    if family == "incident":
        incident = data.get("incident_id")
        recipient = data.get("recipient_id")
        return Fact(
            scopes,
            "incident",
            recipient if isinstance(recipient, str) else None,
            None,
            tuple(subjects_named(data)),
            incident if isinstance(incident, str) else None,
            _rule(data.get("affected_rule")),
        )
    if family != "correction":
        return None
    concerns = data.get("concerns")
    fields = data.get("corrected_fields")
    if not isinstance(concerns, list) or not isinstance(fields, Mapping):
        return None
    named = concerned_scopes(data)
    if any(name.startswith("disclosed-to:") for name in named) and "occurred_at" in fields:
        recipient = next(n for n in named if n.startswith("disclosed-to:"))
        return Fact(
            scopes,
            "disclosure",
            recipient.removeprefix("disclosed-to:"),
            utc(str(fields["occurred_at"])),
            tuple(subjects_of_scopes(named)),
            None,
            None,
        )
    incidents = [n.removeprefix("incident:") for n in named if n.startswith("incident:")]
    if incidents and "affected_rule" in fields:
        rule = _rule(fields["affected_rule"])
        return Fact(scopes, "incident", None, None, (), incidents[0], rule)
    return None


def _rule(rule: object) -> Rule | None:
    """A well-formed ``affected_rule``, its times in the stored form."""
    ruled = _ruled_recipient(rule)
    if ruled is None:
        return None
    assert isinstance(rule, Mapping)
    try:
        return (ruled, utc(str(rule["disclosed_from"])), utc(str(rule["disclosed_to"])))
    except (KeyError, ValueError):
        return None
