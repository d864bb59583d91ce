"""Reads of personal data, on the record (invariant 11): what a ``personal_data.accessed``
event holds, and the checks a record passes before it is appended.

Whenever the ledger opens a person's data for someone (a responder's list of the people an
incident affected, a subject's history, one event with its data opened, a bundle, a consent
receipt), the entrypoint builds an :class:`AccessRecord` and
:meth:`ledger.application.LedgerApplication.record_access` appends it *before* the data is
answered: no record, no data. The event names the client, what it read, the scope that let it,
the purpose it stated and the subjects whose data was opened. Those subjects are listed as
mentions (``opened_subjects``: sealed pseudonyms, :mod:`ledger.verifier.mentions`), so each of
them finds the read in their own history and bundle, and nobody else learns who they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import FieldProblem, ValidationError
from ledger.events import MAX_COUNT, MAX_SUBJECTS_PER_EVENT, check_one_line
from ledger.receipts import DecodedEvent
from ledger.verifier.mentions import is_pseudonym

ACCESS_TYPE = "personal_data.accessed"
MAX_PURPOSE = 500
"""Characters of a stated purpose (one line)."""
MAX_NAME = 200
"""Characters of a client name, action, scope or detail value."""
MAX_DETAILS = 16


class AccessAction:
    """What was read (the ``action`` of a record): one name per kind of read."""

    INCIDENT_AFFECTED = "incident_affected"
    """The people an incident affects, opened for notification."""
    SUBJECT_HISTORY = "subject_history"
    EVENT = "event"
    """One event with its personal data opened."""
    BUNDLE_EXPORT = "bundle_export"
    CONSENT_RECEIPT = "consent_receipt"
    OPERATOR_SHOW = "operator_show"
    """An event opened on the command line by someone holding the ledger's keys."""
    OPERATOR_TAIL = "operator_tail"
    """A page of events printed by ``consent-ledger tail``."""
    CONSOLE_INCIDENT_PEOPLE = "console_incident_people"
    """The people an incident affects, opened in the web console."""
    CONSOLE_SUBJECT_LOOKUP = "console_subject_lookup"
    """A subject looked up in the web console."""


@dataclass(frozen=True)
class AccessRecord:
    """One read of personal data: who, what, under which scope, why, whose.

    ``subjects`` are the pseudonyms whose personal data the read opened (at most
    :data:`~ledger.events.MAX_SUBJECTS_PER_EVENT`; a read of more, such as a recipient's
    bundle, names none and gives ``count``; a bundle of the whole log gives neither: the
    record then has no ``count``); ``details`` name what was read (an incident, an export, a
    sequence number) in short values that hold no personal data.
    """

    client: str
    action: str
    scope: str
    purpose: str | None = None
    subjects: Sequence[str] = ()
    count: int | None = None
    details: Mapping[str, str | int] = field(default_factory=dict)

    @classmethod
    def of_events(
        cls,
        events: Iterable[DecodedEvent],
        *,
        client: str,
        action: str,
        scope: str,
        purpose: str | None = None,
        details: Mapping[str, str | int] | None = None,
    ) -> AccessRecord | None:
        """The record of showing ``events`` with their personal data opened: every subject
        whose data they show (:meth:`DecodedEvent.opened_subjects`), counted, and named when
        they are at most :data:`~ledger.events.MAX_SUBJECTS_PER_EVENT`; None when they show
        nobody's (nothing to record)."""
        opened = list(dict.fromkeys(p for e in events for p in e.opened_subjects()))
        if not opened:
            return None
        named = opened if len(opened) <= MAX_SUBJECTS_PER_EVENT else []
        return cls(client, action, scope, purpose, named, len(opened), dict(details or {}))

    def problems(self) -> list[FieldProblem]:
        """What is wrong with the record (empty when it may be appended)."""
        found: list[FieldProblem] = []
        for name in ("client", "action", "scope"):
            found += _text_problems(name, getattr(self, name), MAX_NAME, required=True)
        if self.purpose is not None:
            found += _text_problems("purpose", self.purpose, MAX_PURPOSE, required=True)
        if len(self.subjects) > MAX_SUBJECTS_PER_EVENT:
            found.append(
                FieldProblem(
                    "subjects",
                    "too_many_subjects",
                    f"a record names at most {MAX_SUBJECTS_PER_EVENT} subjects",
                )
            )
        if not all(is_pseudonym(s) for s in self.subjects):
            found.append(FieldProblem("subjects", "not_a_pseudonym", "subjects are pseudonyms"))
        if len(set(self.subjects)) != len(self.subjects):
            found.append(FieldProblem("subjects", "repeated", "a subject is named twice"))
        count = self.opened_count
        if not 0 <= count <= MAX_COUNT or count < len(self.subjects):
            found.append(
                FieldProblem(
                    "count", "out_of_range", "count is at least the number of subjects named"
                )
            )
        if len(self.details) > MAX_DETAILS:
            found.append(FieldProblem("details", "too_many", f"at most {MAX_DETAILS} details"))
        for key, value in self.details.items():
            found += _text_problems(f"details.{key}", key, MAX_NAME, required=True)
            if isinstance(value, bool) or not isinstance(value, str | int):
                found.append(FieldProblem(f"details.{key}", "type", "a detail is text or a number"))
            elif isinstance(value, str):
                found += _text_problems(f"details.{key}", value, MAX_NAME, required=False)
            elif not 0 <= value <= MAX_COUNT:
                found.append(FieldProblem(f"details.{key}", "out_of_range", f"0 to {MAX_COUNT}"))
        return found

    def check(self) -> None:
        """Raise :class:`~ledger.errors.ValidationError` naming every problem, if any."""
        found = self.problems()
        if found:
            raise ValidationError(found)

    @property
    def opened_count(self) -> int:
        """How many people's data the read opened (``count``, else the subjects named)."""
        return len(self.subjects) if self.count is None else self.count

    def data(self) -> dict[str, Any]:
        """The event's data before its subjects are sealed (``opened_subjects`` as
        pseudonyms), in the order the catalogue documents."""
        data: dict[str, Any] = {
            "client": self.client,
            "action": self.action,
            "scope": self.scope,
        }
        if self.purpose is not None:
            data["purpose"] = self.purpose
        if self.count is not None or self.subjects:
            data["count"] = self.opened_count  # else not counted: everyone in a whole log
        if self.details:
            data["details"] = dict(self.details)
        return data


def _text_problems(name: str, value: object, limit: int, *, required: bool) -> list[FieldProblem]:
    if not isinstance(value, str):
        return [FieldProblem(name, "type", f"{name} is text")]
    if required and not value.strip():
        return [FieldProblem(name, "required", f"{name} must not be empty")]
    if len(value) > limit:
        return [FieldProblem(name, "too_long", f"{name} holds at most {limit} characters")]
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        return [FieldProblem(name, "not_unicode", f"{name} holds a lone surrogate")]
    try:
        check_one_line(value)
    except ValueError as exc:
        return [FieldProblem(name, "control_character", str(exc))]
    return []


__all__ = ["ACCESS_TYPE", "AccessAction", "AccessRecord"]
