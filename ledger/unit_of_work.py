"""What one command or batch hands the recorder to persist: a unit of work.

A :class:`UnitOfWork` is built once, when the batch's events are stored
(:meth:`UnitOfWork.of_batch`, from the events, their claims and what the batch's key session
changed), and given to
:meth:`ledger.recorder.LedgerRecorder.append`: the committer persists it whole (its events,
their claims, the subjects' new names and keys, its erasures and new lifecycles) or not at
all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from eventsourcing.persistence import StoredEvent


@dataclass(frozen=True)
class Claim:
    """An emitter's event id, the keyed digest of its content, and which event it names."""

    event_id: str
    digest: bytes
    position: int
    """Index, in the unit's stored events, of the event this id names."""


class KeyChanges(Protocol):
    """What a batch's key session (:class:`ledger.subject_keys.KeySession`) changed."""

    @property
    def new_wrapped_keys(self) -> dict[str, bytes]: ...

    new_names: dict[str, str]
    lifecycles: dict[str, str]
    sealed_under: set[str]


@dataclass(frozen=True)
class UnitOfWork:
    """The events of one command or batch and everything that must commit with them."""

    stored_events: Sequence[StoredEvent]
    claims: Sequence[Claim] = ()
    """The emitter event ids these events claim."""
    new_keys: Mapping[str, bytes] = field(default_factory=dict)
    """Pseudonym -> wrapped key, for the subjects whose data these events are the first to
    seal: stored durably before the events commit."""
    new_names: Mapping[str, str] = field(default_factory=dict)
    """Lookup id -> pseudonym, for the references these events are the first to mention:
    stored before the events commit, each only if no other writer named it first and it was
    never erased."""
    sealed_under: frozenset[str] = frozenset()
    """Every subject whose key sealed data in these events: if one was erased meanwhile, the
    unit fails with :class:`ledger.errors.SubjectErasedError`."""
    erase: frozenset[str] = frozenset()
    """Subjects whose keys are destroyed with this commit (its events record the erasure)."""
    lifecycles: Mapping[str, str] = field(default_factory=dict)
    """Lookup id -> pseudonym: new lifecycles of erased references that these events start,
    named with this commit."""

    @classmethod
    def of_batch(
        cls,
        stored_events: Sequence[StoredEvent],
        keys: KeyChanges,
        claims: Sequence[Claim] = (),
        erase: Iterable[str] = (),
    ) -> UnitOfWork:
        """What the recorder persists for a batch: its events and claims, with the names,
        keys and lifecycles its key session made, the subjects it sealed under, and those it
        erases."""
        return cls(
            stored_events=stored_events,
            claims=claims,
            new_keys=keys.new_wrapped_keys,
            new_names=dict(keys.new_names),
            sealed_under=frozenset(keys.sealed_under),
            erase=frozenset(erase),
            lifecycles=dict(keys.lifecycles),
        )

    @property
    def size(self) -> int:
        """How much of a group's room the unit takes (at least 1)."""
        return max(1, len(self.stored_events))
