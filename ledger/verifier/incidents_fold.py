"""The incident register's one fold: an incident after each of its facts.

:func:`fold` takes an incident's state (``None`` before its opening) and one fact of it, and
returns the state after; :func:`correct` applies a ``correction.recorded`` to a state already
folded. The incident register stores :class:`Incident`'s fields as its row (and the subjects
an assessment names in a table of their own); the report folds the bundle's facts
(corrections already applied) and renders the state. The 72-hour deadline and the GDPR 33(3)
contents are computed from the state when asked (:mod:`ledger.verifier.incident_rules`).

The rules (:func:`ledger.verifier.incident_rules.step`): the status only moves forward; the
latest assessment and containment are the ones shown, the *first* notification of the
authority and of the subjects is the one shown; the subjects named by any assessment stay
affected, in the order first named.

Standard library only: the offline verifier's report uses it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from ledger.verifier.fold import Fact, FoldError
from ledger.verifier.incident_rules import OPENED, STEP_SEQ, contribution, step


@dataclass(frozen=True, slots=True)
class Incident:
    """One incident as its facts leave it; times in the stored form. Never change the lists
    or the rule in place: a fold returns a new state."""

    incident_id: str
    opened_seq: int
    detected_at: str
    summary: str
    recipient_id: str | None
    status: str = "open"
    risk: str | None = None
    data_categories: Sequence[str] = ()
    likely_consequences: str | None = None
    affected_rule: Mapping[str, Any] | None = None
    """As :func:`ledger.verifier.incident_rules.normalised_rule` keeps it."""
    approximate_subject_count: int | None = None
    assessed_at: str | None = None
    assessed_seq: int | None = None
    contained_at: str | None = None
    contained_seq: int | None = None
    measures: str | None = None
    authority_notified_at: str | None = None
    authority_notified_seq: int | None = None
    authority: str | None = None
    authority_reference: str | None = None
    dpo_contact: str | None = None
    delay_reason: str | None = None
    subjects_notified_at: str | None = None
    subjects_notified_seq: int | None = None
    subjects_notified_channel: str | None = None
    subjects_notified_count: int | None = None
    closed_at: str | None = None
    closed_seq: int | None = None
    resolution: str | None = None
    last_seq: int = 0
    affected: tuple[str, ...] = ()
    """The subjects the assessments name (pseudonyms, or withheld placeholders in another
    subject's bundle), in the order first named. Not among :data:`FIELDS`."""

    def fields(self) -> dict[str, Any]:
        """The fields by name but ``affected``, in :data:`FIELDS` order (the register's
        columns)."""
        return {name: getattr(self, name) for name in FIELDS}

    @classmethod
    def from_fields(cls, values: Mapping[str, Any], affected: Sequence[str] = ()) -> Incident:
        """The state a register row holds (its columns by name, lists and the rule decoded)."""
        return cls(**{name: values[name] for name in FIELDS}, affected=tuple(affected))


FIELDS = tuple(f.name for f in fields(Incident) if f.name != "affected")


def fold(state: Incident | None, fact: Fact) -> Incident:
    """The incident after ``fact``; ``state`` is ``None`` before its ``incident.opened``.

    Raises :class:`FoldError` for a second opening, a step of an incident never opened, or a
    fact of another register."""
    data = fact.data
    if fact.type == OPENED:
        if state is not None:
            raise FoldError(f"incident {state.incident_id!r} was opened twice")
        return Incident(
            incident_id=data["incident_id"],
            opened_seq=fact.seq,
            **_contribution(fact),
            last_seq=fact.seq,
        )
    if state is None:
        raise FoldError(f"incident {data.get('incident_id')!r} was never opened")
    if fact.type not in STEP_SEQ:
        raise FoldError(f"{fact.type} is not an incident fact")
    changes = step(
        fact.type,
        fact.seq,
        fact.occurred_at,
        data,
        state.status,
        getattr(state, STEP_SEQ[fact.type]),
    )
    affected = state.affected
    named = data.get("affected_subjects", ())
    if named:
        known = dict.fromkeys(affected)
        for item in named:
            known.setdefault(item["subject"], None)
        affected = tuple(known)
    return replace(state, **changes, affected=affected)


def correct(state: Incident, original: Fact, corrected: Fact) -> Incident:
    """The incident once ``corrected`` (the same fact, its corrected fields applied) replaces
    what ``original`` contributed, when the state still shows it.

    A field that fills none of the state (``incident_id`` included: a fact stays in its
    incident) is ignored; so is a correction of an assessment or containment a later one
    replaced, or of a follow-up notification, and the opening's categories once an assessment
    replaced them. The affected subjects are personal data, never corrected this way."""
    before = _contribution(original)
    changed = {
        name: value for name, value in _contribution(corrected).items() if before.get(name) != value
    }
    if not changed:
        return state
    if original.type == OPENED:
        if state.assessed_seq is not None:  # an assessment's categories replaced these
            changed.pop("data_categories", None)
    elif getattr(state, STEP_SEQ[original.type]) != original.seq:
        return state
    return replace(state, **changed) if changed else state


def _contribution(fact: Fact) -> dict[str, Any]:
    try:
        return contribution(fact.type, fact.seq, fact.occurred_at, fact.data)
    except ValueError as exc:
        raise FoldError(str(exc)) from exc
