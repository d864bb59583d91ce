"""Scopes and tags: how an entry says whom it concerns without saying it to anyone else.

Every event concerns a few **scopes**, named as text:

==========================  ================================================================
``subject:<pseudonym>``     a subject the event names (consents, age, requests, disclosures,
                            incident assessments that list affected subjects)
``recipient:<id>``          a recipient's registration, update or termination
``disclosed-to:<id>``       a disclosure to that recipient
``incident:<id>``           an incident's events
``policy``                  a policy version
``day:<YYYY-MM-DD>``        the UTC day the event occurred (every event)
==========================  ================================================================

A correction concerns the scopes of the event it corrects (recorded in its data, under
``concerns``), and the day it occurred.

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
from typing import Any

from ledger.verifier.times import parse_utc, utc

TAG_DOMAIN = b"consent-ledger/tag/v1\x00"
SUBJECT_LISTS = ("subjects", "affected_subjects")
"""Data fields that list subjects, each as ``{"subject": pseudonym, ...}``."""


def scopes_of(type_name: str, data: Mapping[str, Any], occurred_at: str) -> list[str]:
    """The scopes an event concerns, from its type and its data as stored (sorted)."""
    scopes = {f"day:{occurred_at[:10]}"}
    family = type_name.partition(".")[0]
    if family == "correction":
        concerns = data.get("concerns", [])
        if isinstance(concerns, list):
            scopes.update(str(scope) for scope in concerns)
        return sorted(scopes)
    subject = data.get("subject")
    if isinstance(subject, str):
        scopes.add(f"subject:{subject}")
    for name in SUBJECT_LISTS:
        listed = data.get(name)
        if isinstance(listed, list):
            scopes.update(
                f"subject:{item['subject']}"
                for item in listed
                if isinstance(item, Mapping) and isinstance(item.get("subject"), str)
            )
    recipient = data.get("recipient_id")
    if family == "recipient" and isinstance(recipient, str):
        scopes.add(f"recipient:{recipient}")
    elif family == "disclosure" and isinstance(recipient, str):
        scopes.add(f"disclosed-to:{recipient}")
    incident = data.get("incident_id")
    if family == "incident" and isinstance(incident, str):
        scopes.add(f"incident:{incident}")
    if family == "policy":
        scopes.add("policy")
    return sorted(scopes)


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


class Closure:
    """The scope names a bundle must be complete for: its own, and the context its report needs.

    A bundle starts from the names of its scope and grows, by rules applied to the events it
    holds, until no event adds a name:

    - a subject: the subject's events and the policy; then each recipient the subject's data
      was disclosed to (its registration, updates, termination) and each incident that names
      the subject;
    - a recipient: its registration and every disclosure to it, and the policy; then every
      subject of those disclosures (their consent decides the verdicts);
    - an incident: its events; then the recipient it names, and for the recipient its
      assessment's rule names, every disclosure to it and the policy; then the subjects of the
      disclosures in the rule's window;
    - a period: every event that occurred on its days, and the policy; then the subjects and
      recipients of the disclosures that occurred in the period;
    - all: every entry (no names: nothing may be left out).
    """

    def __init__(self, scope: Mapping[str, Any]) -> None:
        self.kind = scope.get("kind")
        self.names: set[str] = set()
        self._given: set[str] = set()
        self._rules: list[tuple[str, str, str]] = []
        self._disclosures: list[tuple[str, str, list[str]]] = []
        try:
            if self.kind == "subject":
                self.key = str(scope["subject"])
                self.names |= {f"subject:{self.key}", "policy"}
            elif self.kind == "recipient":
                self.key = str(scope["recipient_id"])
                self.names |= {f"recipient:{self.key}", f"disclosed-to:{self.key}", "policy"}
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
        family = type_name.partition(".")[0]
        subjects = _subjects_named(data)
        recipient = data.get("recipient_id")
        if family == "disclosure" and isinstance(recipient, str):
            self._disclosures.append((recipient, utc(occurred_at), subjects))
            if self.kind == "subject" and self.key in subjects:
                self.names.add(f"recipient:{recipient}")
            elif self.kind == "recipient" and recipient == self.key:
                self.names.update(f"subject:{s}" for s in subjects)
        elif family == "incident":
            incident = data.get("incident_id")
            if self.kind == "subject" and self.key in subjects and isinstance(incident, str):
                self.names.add(f"incident:{incident}")
            if self.kind == "incident" and incident == self.key:
                self._see_incident(data)
        elif family == "correction" and self.kind == "incident":
            fields = data.get("corrected_fields")
            if f"incident:{self.key}" in data.get("concerns", []) and isinstance(fields, Mapping):
                self._see_incident(fields)

    def _see_incident(self, data: Mapping[str, Any]) -> None:
        recipient = data.get("recipient_id")
        if isinstance(recipient, str):
            self.names.add(f"recipient:{recipient}")
        rule = data.get("affected_rule")
        if isinstance(rule, Mapping) and isinstance(rule.get("recipient_id"), str):
            ruled = rule["recipient_id"]
            self.names |= {f"recipient:{ruled}", f"disclosed-to:{ruled}", "policy"}
            self._rules.append(
                (ruled, utc(str(rule["disclosed_from"])), utc(str(rule["disclosed_to"])))
            )

    def state(self) -> tuple[set[str], list[Any], list[Any]]:
        """What :meth:`see` noted, for :meth:`merge` into the closure of the same scope (the
        verifier checks chunks of events in separate processes)."""
        return set(self.names), list(self._rules), list(self._disclosures)

    def merge(self, state: tuple[set[str], list[Any], list[Any]]) -> None:
        """Add what another closure of the same scope saw (:meth:`state`)."""
        names, rules, disclosures = state
        self.names |= names
        self._rules += rules
        self._disclosures += disclosures

    def grow(self) -> set[str]:
        """The names not handed out yet: the scope's own at first, then those the events seen
        since add. Empty when the closure is complete."""
        for recipient, occurred_at, subjects in self._disclosures:
            if self.kind == "period" and self.start <= occurred_at < self.end:
                self.names.add(f"recipient:{recipient}")
                self.names.update(f"subject:{s}" for s in subjects)
            for ruled, start, end in self._rules:
                if recipient == ruled and start <= occurred_at < end:
                    self.names.update(f"subject:{s}" for s in subjects)
        new = self.names - self._given
        self._given |= new
        return new


def _subjects_named(data: Mapping[str, Any]) -> list[str]:
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
