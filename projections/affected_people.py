"""The people an incident affects, opened for notification (GDPR 34): who, how each was found,
their reference and their contact data.

An incident affects the subjects its assessments name and those its assessment's rule selects
from the disclosure history (:func:`ledger.verifier.incident_rules.rule_selects`, as the
register's ``subjects_by_rule``). For each, the reference is opened from the event that names
them (their latest own fact, else the assessment or the disclosure that lists them) and the
contact data from their latest consent fact that carries one. An erased subject's data is gone:
the row says ``[erased]`` and opens nothing.

This module only reads. Opening these rows is a read of personal data: the entrypoint records
it (:meth:`ledger.application.LedgerApplication.record_access`) before it answers.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.application import LedgerApplication
from ledger.receipts import DecodedEvent
from ledger.sealing import ERASED
from ledger.verifier import incident_rules
from ledger.verifier.times import parse_utc, utc
from projections.disclosures import DisclosureHistoryView
from projections.incidents import IncidentRecord, IncidentRegisterView

MAX_PAGE = 1000


@dataclass(frozen=True)
class AffectedPerson:
    """One person an incident affects, their data opened (or ``[erased]``)."""

    subject: str
    """The pseudonym."""
    named: bool
    """An assessment names them."""
    by_rule: bool
    """The assessment's rule selects one of their disclosures."""
    subject_ref: str
    """The emitter's reference, opened; ``[erased]`` once their key is destroyed."""
    contact: str | None
    """The contact data of their latest consent fact that gave one."""
    erased: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class AffectedPage:
    people: list[AffectedPerson]
    total: int
    """Every person the incident affects (erased included), over all pages."""
    next_after: str | None
    """The pseudonym to give as ``after`` for the next page; None on the last."""

    @property
    def opened(self) -> list[str]:
        """The pseudonyms whose data this page opened (not the erased)."""
        return [p.subject for p in self.people if not p.erased]


class AffectedPeople:
    """Reads the incident register, the disclosure history and the log."""

    def __init__(
        self,
        ledger: LedgerApplication,
        incidents: IncidentRegisterView,
        disclosures: DisclosureHistoryView,
    ) -> None:
        self._ledger = ledger
        self._incidents = incidents
        self._disclosures = disclosures

    def page(self, record: IncidentRecord, after: str | None, limit: int) -> AffectedPage:
        """Up to ``limit`` people after pseudonym ``after``, in pseudonym order."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1 to {MAX_PAGE}")
        named = self._incidents.naming_events(record.incident_id)
        selected = self._selected(record.affected_rule)
        everyone = sorted(set(named) | set(selected))
        start = 0 if after is None else bisect_right(everyone, after)
        chosen = everyone[start : start + limit]
        decoded: dict[int, DecodedEvent] = {}
        people = [self._person(p, named, selected, decoded) for p in chosen]
        more = start + limit < len(everyone)
        return AffectedPage(people, len(everyone), chosen[-1] if more and chosen else None)

    def _selected(self, rule: Mapping[str, Any] | None) -> dict[str, int]:
        """Pseudonym -> the first disclosure the rule selects of theirs."""
        if rule is None:
            return {}
        found: dict[str, int] = {}
        for row in self._disclosures.find_all(
            recipient_id=str(rule["recipient_id"]),
            start=parse_utc(utc(rule["disclosed_from"])),
            end=parse_utc(utc(rule["disclosed_to"])),
        ):
            if incident_rules.rule_selects(rule, row.recipient_id, row.occurred_at):
                found.setdefault(row.subject, row.seq)
        return found

    def _person(
        self,
        pseudonym: str,
        named: Mapping[str, int],
        selected: Mapping[str, int],
        decoded: dict[int, DecodedEvent],
    ) -> AffectedPerson:
        ref: str | None = None
        contact: str | None = None
        own = self._ledger.ledger.select_stream_records(pseudonym)
        for record in reversed(own):  # their latest own fact first
            data = self._ledger.decode(record, only_subject=pseudonym).data
            if ref is None and isinstance(data.get("subject_ref"), str):
                ref = data["subject_ref"]
            if contact is None and isinstance(data.get("contact"), str):
                contact = data["contact"]
            if ref is not None and contact is not None:
                break
        if ref is None:  # known only from the lists that name them
            seq = named.get(pseudonym, selected.get(pseudonym))
            if seq is not None:
                ref = _listed_ref(self._event(seq, decoded), pseudonym)
        erased = ref in (None, ERASED) or self._ledger.subject_keys.store.erased([pseudonym])
        return AffectedPerson(
            subject=pseudonym,
            named=pseudonym in named,
            by_rule=pseudonym in selected,
            subject_ref=ERASED if erased or ref is None else ref,
            contact=None if erased or contact == ERASED else contact,
            erased=bool(erased),
        )

    def _event(self, seq: int, decoded: dict[int, DecodedEvent]) -> DecodedEvent:
        """Event ``seq`` with every subject's data opened, decoded once per page (a
        disclosure or an assessment may list a thousand people)."""
        event = decoded.get(seq)
        if event is None:
            event = decoded[seq] = self._ledger.get_event(seq)
        return event


def _listed_ref(event: DecodedEvent, pseudonym: str) -> str | None:
    """The reference a disclosure or an assessment gives for ``pseudonym`` in its list."""
    for name in ("affected_subjects", "subjects"):
        for item in event.data.get(name, []):
            if isinstance(item, Mapping) and item.get("subject") == pseudonym:
                ref = item.get("ref")
                return ref if isinstance(ref, str) else None
    return None


__all__ = ["MAX_PAGE", "AffectedPage", "AffectedPeople", "AffectedPerson"]
