"""The subject keys' part of a commit: what the committer asks of the key store, under the
log's write lock, before and after it writes a group's events.

The committer (:mod:`ledger.recorder`) queues units of work, signs their entries and grows the
tree; everything about subjects' names, keys, erasures and lifecycles is here, in three steps
it calls in order:

1. :meth:`SubjectCommit.store`: the group's new names and wrapped keys are stored before its
   events (a name or key is durable no later than the first event that uses it); a unit whose
   name or key lost a race with another writer, or whose reference was erased meanwhile, is
   refused.
2. :meth:`SubjectCommit.check`: a unit sealing under an erased subject's key, or starting a
   lifecycle that is not the next, is refused (in group order, so a unit that erases a subject
   refuses the units after it that seal under that key).
3. :meth:`SubjectCommit.finish`: after the write, the keys erased are destroyed and the new
   lifecycles named, for the units whose events were written only.

Each step answers one refusal (or None) per unit, in the order given; the committer fails the
refused units and carries on with the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from eventsourcing.persistence import IntegrityError

from ledger.errors import SubjectErasedError
from ledger.subject_keys import KeyStore, Survey
from ledger.unit_of_work import UnitOfWork

Refusals = list[BaseException | None]
"""One entry per unit of work: why it is refused, or None."""
FinishInTransaction = Callable[[Sequence[str], Mapping[str, str]], bool]
"""The backend's way to destroy keys and name lifecycles in the log's own transaction; False
when the key store is not in the log's database."""


def new_keys(works: Sequence[UnitOfWork]) -> dict[str, bytes]:
    """The wrapped keys of the subjects a group is the first to seal for (the first unit's
    wins when two made one; the other unit is then refused and tries again)."""
    wanted: dict[str, bytes] = {}
    for work in works:
        for pseudonym, wrapped in work.new_keys.items():
            wanted.setdefault(pseudonym, wrapped)
    return wanted


def new_names(works: Sequence[UnitOfWork]) -> dict[str, str]:
    """The names of the references a group is the first to mention (the first unit's wins
    when two made one; the other unit is then refused and tries again)."""
    wanted: dict[str, str] = {}
    for work in works:
        for lookup, pseudonym in work.new_names.items():
            wanted.setdefault(lookup, pseudonym)
    return wanted


def involved(works: Sequence[UnitOfWork]) -> list[str]:
    """The subjects whose erasure the commit must know of: those sealed under or erased."""
    return sorted({p for work in works for p in work.sealed_under | work.erase})


class SubjectCommit:
    """The key store's part of the committer's transaction."""

    def __init__(self, key_store: KeyStore) -> None:
        self.key_store = key_store

    def store(
        self,
        works: Sequence[UnitOfWork],
        stored_keys: dict[str, bytes] | None,
        named: Survey | None,
    ) -> Refusals:
        """Store the group's new names and keys; refuse the units whose name or key lost.

        ``stored_keys`` and ``named`` are what the backend stored in the log's own transaction
        (PostgreSQL's key store shares its database); None when it could not (SQLite's key
        store is a file of its own): then they are committed here, just before the log's
        transaction commits. A name or key stored for a unit that then fails joins nothing.
        """
        keys, names = new_keys(works), new_names(works)
        if not keys and not names:
            return [None] * len(works)
        if stored_keys is None:
            stored_keys, named = self.key_store.persist_subjects(keys, names)
        elif names and named is None:
            named = self.key_store.persist_names(names)
        refusals: Refusals = []
        for work in works:
            if not all(stored_keys.get(p) == w for p, w in work.new_keys.items()):
                refusals.append(IntegrityError("another writer made this subject's key first"))
            elif named is not None and any(lookup in named.erased for lookup in work.new_names):
                refusals.append(SubjectErasedError([]))
            elif named is not None and any(
                named.names.get(lookup) != p for lookup, p in work.new_names.items()
            ):
                refusals.append(IntegrityError("another writer named this subject first"))
            else:
                refusals.append(None)
        return refusals

    def check(
        self, works: Sequence[UnitOfWork], erased_here: set[str] | None
    ) -> tuple[Refusals, set[str]]:
        """Refuse units that seal under an erased subject's key, or start a lifecycle that is
        not the next; also answer the subjects erased before this commit.

        ``erased_here`` is which of :func:`involved` the backend found erased in the log's
        transaction; None when the key store is not in the log's database (then it is asked:
        erasures happen under the log's write lock, so it cannot change meanwhile).
        """
        erased = set(erased_here) if erased_here is not None else set()
        subjects = involved(works)
        if erased_here is None and subjects:
            erased = self.key_store.erased(subjects)
        before = set(erased)
        lookups = sorted({lookup for work in works for lookup in work.lifecycles})
        live = self.key_store.survey(lookups).names if lookups else {}
        refusals: Refusals = []
        for work in works:
            clash = work.sealed_under & erased
            if clash:
                refusals.append(SubjectErasedError(sorted(clash)))
                continue
            if any(
                lookup in live and live[lookup] not in erased | work.erase
                for lookup in work.lifecycles
            ):
                refusals.append(IntegrityError("another writer started this lifecycle first"))
                continue
            live.update(work.lifecycles)
            erased |= work.erase
            refusals.append(None)
        return refusals, before

    def finish(
        self,
        written: Sequence[UnitOfWork],
        erased_before: set[str],
        in_transaction: FinishInTransaction,
    ) -> None:
        """Destroy the keys the written units erase and name the lifecycles they start.

        Only units whose events were written count: a write that failed destroyed nothing.
        """
        destroyed = sorted({p for work in written for p in work.erase} - erased_before)
        lifecycles = {
            lookup: pseudonym for work in written for lookup, pseudonym in work.lifecycles.items()
        }
        if not destroyed and not lifecycles:
            return
        if not in_transaction(destroyed, lifecycles):
            if destroyed:
                self.key_store.destroy(destroyed)
            for lookup, pseudonym in sorted(lifecycles.items()):
                self.key_store.start_lifecycle(lookup, pseudonym)
