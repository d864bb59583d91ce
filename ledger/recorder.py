"""The ledger's committer: one signed, gapless, append-only log, written by group commit.

:class:`LedgerRecorder` is an ``eventsourcing`` :class:`ApplicationRecorder` whose
notification ids are the ledger's own sequence numbers (1, 2, 3 ... with no gaps), so
projections built on the library see the same order the signatures cover. Its read queries
are :class:`ledger.log_reads.LogReads`; this module is the write side. Backends
(:mod:`ledger.sqlite`, :mod:`ledger.postgres`) supply the template hooks; this module owns the
commit protocol:

1. Callers hand a :class:`ledger.unit_of_work.UnitOfWork` (the events of one command or
   batch, the emitter event ids they claim, the subjects' new names and keys, its erasures
   and new lifecycles) to :meth:`LedgerRecorder.append` and block.
2. One committer thread takes every unit waiting, opens one write transaction (which holds the
   log's write lock), stores the new names and keys, reads the head, refuses units sealing
   under an erased subject, gives each event the next sequence number, builds and signs its
   entry, inserts entries, claims and the Merkle nodes they complete (from the tree's right
   edge), destroys the keys erased, names new lifecycles, and commits.
3. Only after the commit returns does any caller get its :class:`LogRecord` list back.

A unit that conflicts (a stream version or an event id taken by another writer) fails alone:
the group is retried one unit per transaction, and the losers get
:class:`eventsourcing.persistence.IntegrityError`.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventsourcing.persistence import IntegrityError, StoredEvent

from ledger.errors import StorageError, SubjectErasedError
from ledger.log_reads import RECORD_COLUMNS, LogReads, LogRecord, RecordedClaim
from ledger.merkle_log import (
    Checkpointer,
    SignedCheckpoint,
    StoredTree,
    TreeTransaction,
    build_missing_nodes,
    nodes_for_leaves,
    origin_of,
    right_edge,
)
from ledger.signing import Signer
from ledger.subject_keys import KeyStore, Survey
from ledger.unit_of_work import Claim, UnitOfWork
from ledger.verifier.entry import encode_entry
from ledger.verifier.scopes import tags_for

__all__ = [
    "RECORD_COLUMNS",
    "Claim",
    "Head",
    "LedgerRecorder",
    "LogRecord",
    "RecordedClaim",
    "UnitOfWork",
    "WriteTransaction",
    "entry_for",
]


@dataclass(frozen=True)
class Head:
    """What a commit reads first, under the log's write lock."""

    seq: int
    """The highest sequence number."""
    taken: set[str]
    """Which of the event ids asked about are claimed already."""
    erased: set[str] | None
    """Which of the subjects asked about were erased (their keys destroyed); None when the key
    store is not in the log's database: then the key store is asked (erasures happen under
    the log's write lock, so it cannot change meanwhile)."""
    stored_keys: dict[str, bytes] | None
    """The wrapped key now stored for each new key handed in: the one given, or the one
    another writer stored first. None when the key store is not in the log's database: then
    the recorder stores them in a transaction of their own, committed first."""
    named: Survey | None = None
    """The new names handed in, stored in this transaction (as :meth:`KeyStore.persist_names`
    answers); None when the backend leaves them to the recorder."""


class WriteTransaction(Protocol):
    """What the commit protocol needs from a backend while it holds the write lock."""

    def read_head(
        self,
        event_ids: Sequence[str],
        pseudonyms: Sequence[str],
        new_keys: Mapping[str, bytes],
        new_names: Mapping[str, str],
    ) -> Head:
        """Store ``new_keys`` and ``new_names`` (as :meth:`KeyStore.persist` and
        :meth:`KeyStore.persist_names` do) where the backend can do it in this transaction,
        and read the head, the claims of ``event_ids`` and which of ``pseudonyms`` were erased
        (a backend may do all of it in one round trip)."""
        ...

    def read_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Stored Merkle nodes by (level, index)."""
        ...

    def write(
        self,
        records: Sequence[LogRecord],
        claims: Sequence[RecordedClaim],
        nodes: Sequence[tuple[int, int, bytes]],
    ) -> None:
        """Insert records, claims and the Merkle nodes they complete (IntegrityError on a clash)."""
        ...

    def finish_subjects(self, erased: Sequence[str], lifecycles: Mapping[str, str]) -> bool:
        """In this transaction, destroy the keys of the ``erased`` subjects (and the names
        that pointed at them), then name the new ``lifecycles`` (lookup id -> pseudonym);
        False if the key store is not in the log's database (then the recorder asks it)."""
        ...


def entry_for(seq: int, stored_event: StoredEvent, key_id: str) -> bytes:
    """The signed entry of a body at ``seq``: its hash and the tags of the scopes it concerns."""
    scopes: tuple[str, ...] = getattr(stored_event, "scopes", ())
    return encode_entry(seq, key_id, stored_event.state, tags_for(scopes, seq))


@dataclass
class _Unit:
    """A unit of work handed in, and what its caller waits for."""

    work: UnitOfWork
    done: threading.Event = field(default_factory=threading.Event)
    result: list[LogRecord] | None = None
    error: BaseException | None = None


class LedgerRecorder(LogReads, ABC):
    """The committer: one thread writes every unit of work handed in, by group commit."""

    def __init__(
        self, signer: Signer, key_store: KeyStore, *, max_group_events: int = 2000
    ) -> None:
        self.signer = signer
        self.key_store = key_store
        self.max_group_events = max_group_events
        self._queue: list[_Unit] = []
        self._condition = threading.Condition()
        self._closed = False
        self._committer: threading.Thread | None = None
        self.groups_committed = 0
        self.events_committed = 0
        self.on_commit: Callable[[float, int], None] | None = None
        self._edge: tuple[int, dict[tuple[int, int], bytes]] = (-1, {})
        """The tree's right edge after this recorder's last commit, and the size it is of:
        the next commit reads it from the database only when another writer came between."""
        """Called after each commit with its duration in seconds and its number of events."""

    # -- writing ------------------------------------------------------------------------------

    def append(self, work: UnitOfWork) -> list[LogRecord]:
        """Persist a unit of work atomically; return its events' records once committed.

        Its new names and keys are stored before its events commit (a unit whose name or key
        lost a race with another writer fails with
        :class:`eventsourcing.persistence.IntegrityError`); a unit sealing under a subject
        erased meanwhile fails with :class:`SubjectErasedError`; the keys it erases are
        destroyed, and the lifecycles it starts named, with its commit (see
        :class:`UnitOfWork`).
        """
        if not work.stored_events:
            return []
        unit = _Unit(work)
        with self._condition:
            if self._closed:
                raise StorageError("the recorder is closed")
            if self._committer is None:
                self._committer = threading.Thread(
                    target=self._run_committer, name="ledger-committer", daemon=True
                )
                self._committer.start()
            self._queue.append(unit)
            self._condition.notify_all()
        unit.done.wait()
        if unit.error is not None:
            raise unit.error
        assert unit.result is not None
        return unit.result

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        claims: Sequence[Claim] = kwargs.get("claims", ())
        return [record.seq for record in self.append(UnitOfWork(stored_events, claims))]

    def close(self) -> None:
        """Stop after committing every unit already handed in."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
            committer = self._committer
        if committer is not None:
            committer.join()
        self._close_connections()
        self.key_store.close()

    def _run_committer(self) -> None:
        while True:
            with self._condition:
                while not self._queue and not self._closed:
                    self._condition.wait()
                if not self._queue:
                    return
                group: list[_Unit] = []
                total = 0
                while self._queue and (
                    not group or total + self._queue[0].work.size <= self.max_group_events
                ):
                    unit = self._queue.pop(0)
                    group.append(unit)
                    total += unit.work.size
            self._commit_group(group)

    def _commit_group(self, group: list[_Unit]) -> None:
        try:
            self._commit(group)
        except IntegrityError:
            if len(group) == 1:
                group[0].error = IntegrityError("a stream version or event id was taken")
            else:
                for unit in group:
                    self._commit_group([unit])
                return
        except BaseException as exc:  # every waiter must wake, whatever happened
            for unit in group:
                if unit.result is None and unit.error is None:
                    unit.error = _as_storage_error(exc)
        for unit in group:
            unit.done.set()

    def _keep_stored_keys(self, group: list[_Unit], head: Head) -> list[_Unit]:
        """Store the group's new names and subject keys before its events; units whose name
        or key lost (or whose reference was erased meanwhile) fail.

        Keys go in the log's own transaction when the backend can (PostgreSQL:
        :meth:`read_head` did), else they are committed just before it (SQLite's key store is
        a file of its own), as names are: a name or key is durable no later than the first
        event that uses it. A name or key stored for a unit that then fails joins nothing.
        """
        wanted = _new_keys(group)
        names = _new_names(group)
        if not wanted and not names:
            return group
        stored = head.stored_keys
        if stored is None:  # the key store is not in the log's database: one commit for both
            stored, named = self.key_store.persist_subjects(wanted, names)
        else:
            named = head.named if names else None
            if names and named is None:
                named = self.key_store.persist_names(names)
        ready = []
        for unit in group:
            if not all(stored.get(p) == w for p, w in unit.work.new_keys.items()):
                unit.error = IntegrityError("another writer made this subject's key first")
            elif named is not None and any(
                lookup in named.erased for lookup in unit.work.new_names
            ):
                unit.error = SubjectErasedError([])
            elif named is not None and any(
                named.names.get(lookup) != p for lookup, p in unit.work.new_names.items()
            ):
                unit.error = IntegrityError("another writer named this subject first")
            else:
                ready.append(unit)
        return ready

    def _check_subjects(
        self, group: list[_Unit], erased_here: set[str] | None
    ) -> tuple[list[_Unit], set[str]]:
        """Refuse units that seal under an erased subject's key, or start a lifecycle that is
        not the next; return the others and the subjects erased before this commit.

        In group order: a unit that erases a subject comes before the units after it, which
        then may not seal under that subject's key either.
        """
        involved = sorted({p for unit in group for p in unit.work.sealed_under | unit.work.erase})
        erased = set(erased_here) if erased_here is not None else set()
        if erased_here is None and involved:
            erased = self.key_store.erased(involved)
        before = set(erased)
        lookups = sorted({lookup for unit in group for lookup in unit.work.lifecycles})
        live = self.key_store.survey(lookups).names if lookups else {}
        ready: list[_Unit] = []
        for unit in group:
            clash = unit.work.sealed_under & erased
            if clash:
                unit.error = SubjectErasedError(sorted(clash))
                continue
            if any(
                lookup in live and live[lookup] not in erased | unit.work.erase
                for lookup in unit.work.lifecycles
            ):
                unit.error = IntegrityError("another writer started this lifecycle first")
                continue
            live.update(unit.work.lifecycles)
            ready.append(unit)
            erased |= unit.work.erase
        return ready, before

    def _finish_subjects(
        self, written: list[_Unit], erased_before: set[str], txn: WriteTransaction
    ) -> None:
        """After the write, still under the lock: destroy the keys erased, name lifecycles.

        Only units whose events were written count; a write that failed destroyed nothing.
        """
        destroyed = sorted({p for unit in written for p in unit.work.erase} - erased_before)
        lifecycles = {
            lookup: pseudonym
            for unit in written
            for lookup, pseudonym in unit.work.lifecycles.items()
        }
        if not destroyed and not lifecycles:
            return
        if not txn.finish_subjects(destroyed, lifecycles):
            if destroyed:
                self.key_store.destroy(destroyed)
            for lookup, pseudonym in sorted(lifecycles.items()):
                self.key_store.start_lifecycle(lookup, pseudonym)

    def _commit(self, group: list[_Unit]) -> None:
        started = time.perf_counter()
        outcomes: list[tuple[_Unit, list[LogRecord] | None, BaseException | None]] = []
        with self._write_transaction() as txn:
            head = txn.read_head(
                [c.event_id for unit in group for c in unit.work.claims],
                sorted({p for unit in group for p in unit.work.sealed_under | unit.work.erase}),
                _new_keys(group),
                _new_names(group),
            )
            group = self._keep_stored_keys(group, head)
            group, erased_before = self._check_subjects(group, head.erased)
            seq, taken = head.seq, set(head.taken)
            tree_size = seq
            cached_size, cached_edge = self._edge
            edge = (
                cached_edge
                if cached_size == tree_size  # no other writer appended since our last commit
                else txn.read_nodes(right_edge(tree_size))
            )
            new_edge = (cached_size, cached_edge)
            versions: set[tuple[str, int]] = set()
            records: list[LogRecord] = []
            claims: list[RecordedClaim] = []
            for unit in group:
                unit_versions = {
                    (str(e.originator_id), e.originator_version) for e in unit.work.stored_events
                }
                unit_ids = {claim.event_id for claim in unit.work.claims}
                if unit_ids & taken or unit_versions & versions:
                    clash = IntegrityError("a stream version or event id was taken")
                    outcomes.append((unit, None, clash))
                    continue
                taken |= unit_ids
                versions |= unit_versions
                unit_records = []
                for stored_event in unit.work.stored_events:
                    seq += 1
                    entry = entry_for(seq, stored_event, self.signer.key_id)
                    unit_records.append(
                        LogRecord(
                            seq=seq,
                            originator_id=str(stored_event.originator_id),
                            originator_version=stored_event.originator_version,
                            topic=stored_event.topic,
                            entry=entry,
                            body=stored_event.state,
                            signature=self.signer.sign(entry),
                            key_id=self.signer.key_id,
                        )
                    )
                claims.extend(
                    RecordedClaim(c.event_id, c.digest, unit_records[c.position].seq)
                    for c in unit.work.claims
                )
                records.extend(unit_records)
                outcomes.append((unit, unit_records, None))
            if records:
                nodes = nodes_for_leaves(tree_size, [r.entry for r in records], edge)
                txn.write(records, claims, nodes)
                known = {**edge, **{(level, index): value for level, index, value in nodes}}
                size = tree_size + len(records)
                new_edge = (size, {key: known[key] for key in right_edge(size)})
                written = [unit for unit, result, _ in outcomes if result is not None]
                self._finish_subjects(written, erased_before, txn)
        # Committed: only now may anyone see a receipt.
        self._edge = new_edge
        self.groups_committed += 1
        self.events_committed += len(records)
        if self.on_commit is not None:
            self.on_commit(time.perf_counter() - started, len(records))
        for unit, result, error in outcomes:
            unit.result, unit.error = result, error

    # -- template hooks for backends -----------------------------------------------------------

    @abstractmethod
    def _write_transaction(self) -> AbstractContextManager[WriteTransaction]:
        """A transaction holding the log's write lock; commits on clean exit.

        Must raise :class:`eventsourcing.persistence.IntegrityError` on a uniqueness
        violation, and commit durably (fsync) before returning.
        """

    @abstractmethod
    def _tree_transaction(self) -> AbstractContextManager[TreeTransaction]:
        """A transaction in which no append commits: for building the tree and checkpoints."""

    @abstractmethod
    def _close_connections(self) -> None: ...

    # -- the Merkle tree and checkpoints --------------------------------------------------------

    def build_tree(self) -> int:
        """Add the Merkle nodes of events recorded before the tree was kept (a one-off)."""
        with self._tree_transaction() as txn:
            return build_missing_nodes(txn)

    def origin(self, configured: str | None = None) -> str:
        with self._tree_transaction() as txn:
            return origin_of(txn, configured)

    def sign_checkpoint(self, checkpointer: Checkpointer) -> SignedCheckpoint:
        with self._tree_transaction() as txn:
            return checkpointer.sign(txn)

    def tree(self) -> StoredTree:
        return StoredTree(self)


def _new_keys(group: Sequence[_Unit]) -> dict[str, bytes]:
    """The wrapped keys of the subjects a group is the first to seal for (the first unit's
    wins when two made one)."""
    wanted: dict[str, bytes] = {}
    for unit in group:
        for pseudonym, wrapped in unit.work.new_keys.items():
            wanted.setdefault(pseudonym, wrapped)
    return wanted


def _new_names(group: Sequence[_Unit]) -> dict[str, str]:
    """The names of the references a group is the first to mention (the first unit's wins
    when two made one; the other unit then fails and tries again)."""
    wanted: dict[str, str] = {}
    for unit in group:
        for lookup, pseudonym in unit.work.new_names.items():
            wanted.setdefault(lookup, pseudonym)
    return wanted


def _as_storage_error(exc: BaseException) -> BaseException:
    if isinstance(exc, (StorageError, IntegrityError)):
        return exc
    error = StorageError(f"the append was not committed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
