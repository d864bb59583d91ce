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
   log's write lock), reads the head, lets :mod:`ledger.subject_commit` store the new names
   and keys and refuse units sealing under an erased subject, gives each event the next
   sequence number, builds and signs its entry, inserts entries, claims and the Merkle nodes
   they complete (from the tree's right edge), lets :mod:`ledger.subject_commit` destroy the
   keys erased and name new lifecycles, and commits.
3. Only after the commit returns does any caller get its :class:`LogRecord` list back.

In front of the queue stands :class:`Admission`: an append takes room for its events before
any validation work and gives it back when it is committed or failed; past
``max_pending_events`` it is refused at once with :class:`OverloadedError`, whose retry-after
comes from the committer's recent rate (:class:`CommitRate`).

A unit that conflicts (a stream version or an event id taken by another writer) fails alone:
the group is retried one unit per transaction, and the losers get
:class:`eventsourcing.persistence.IntegrityError`.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventsourcing.persistence import IntegrityError, StoredEvent

from ledger.errors import OverloadedError, StorageError
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
from ledger.subject_commit import SubjectCommit, involved, new_keys, new_names
from ledger.subject_keys import KeyStore, Survey
from ledger.unit_of_work import Claim, UnitOfWork
from ledger.verifier.entry import encode_entry
from ledger.verifier.scopes import tags_for

__all__ = [
    "RECORD_COLUMNS",
    "Admission",
    "Claim",
    "CommitLink",
    "CommitRate",
    "Head",
    "LedgerRecorder",
    "LogRecord",
    "Outcome",
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


class CommitRate:
    """The committer's recent rate, in events per second: what a refused sender is told to
    wait for (the events in flight divided by it)."""

    WINDOW_S = 10.0
    """Commits older than this say nothing about now."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._commits: deque[tuple[float, int]] = deque(maxlen=256)
        self._lock = threading.Lock()

    def committed(self, events: int, started: float) -> None:
        """A commit of ``events`` events that began at ``started`` (by :attr:`clock`) ended now."""
        with self._lock:
            self._commits.append((started, events))
            self._commits.append((self.clock(), 0))

    def per_second(self) -> float | None:
        """Events committed per second of the recent window; None before enough was seen."""
        now = self.clock()
        with self._lock:
            recent = [(at, n) for at, n in self._commits if now - at <= self.WINDOW_S]
        if len(recent) < 2:
            return None
        events = sum(n for _, n in recent)
        span = max(now - recent[0][0], 1e-3)
        return events / span if events else None


class Admission:
    """At most ``limit`` events in flight (admitted, not yet committed or failed) per process.

    An append asks for room for its events before it does any work, and is refused at once
    (:class:`OverloadedError`) when that would pass the bound: past saturation a longer queue
    only makes every append slower, so the sender is told to come back instead, with a
    Retry-After estimated from the committer's recent rate. A batch larger than the bound is
    admitted when nothing else is in flight, so that a legal batch is never starved.
    """

    MAX_RETRY_AFTER_S = 60

    def __init__(self, limit: int, rate: CommitRate) -> None:
        self.limit = limit
        self.rate = rate
        self.pending = 0
        self.refused = 0
        """Appends refused so far (for metrics)."""
        self._lock = threading.Lock()

    @contextmanager
    def holding(self, events: int, *, refuse: bool = True) -> Iterator[None]:
        """Room for ``events`` while the block runs; with ``refuse`` False it is taken even
        past the bound (for what must not be refused, such as an erasure)."""
        self.enter(events, refuse=refuse)
        try:
            yield
        finally:
            self.leave(events)

    def enter(self, events: int, *, refuse: bool = True) -> None:
        with self._lock:
            pending = self.pending
            if refuse and pending and pending + events > self.limit:
                self.refused += 1
            else:
                self.pending = pending + events
                return
        raise OverloadedError(events, pending, self.limit, self.retry_after(pending))

    def refuse_when_full(self) -> None:
        """Refuse now if no append could be admitted (the bound is reached): what
        :meth:`enter` would answer any batch, without the batch, so a caller can refuse before
        reading or parsing it."""
        with self._lock:
            pending = self.pending
            if not pending or pending < self.limit:
                return
            self.refused += 1
        raise OverloadedError(0, pending, self.limit, self.retry_after(pending))

    def leave(self, events: int) -> None:
        with self._lock:
            self.pending -= events

    def retry_after(self, pending: int) -> int:
        """Whole seconds until ``pending`` events are committed at the recent rate (1..60)."""
        rate = self.rate.per_second()
        if rate is None:
            return 1
        return max(1, min(self.MAX_RETRY_AFTER_S, math.ceil(pending / rate)))


Outcome = list[LogRecord] | BaseException
"""What became of a unit of work: its records, once committed, or why it was refused."""


class CommitLink(Protocol):
    """A committer elsewhere (:class:`ledger.committer.CommitterLink`)."""

    in_flight: int
    """How many groups a worker may hand over before the first is answered."""

    def commit(self, works: Sequence[UnitOfWork]) -> list[Outcome]:
        """Commit each unit (or refuse it) and answer each one's outcome, in order."""
        ...

    def close(self) -> None: ...


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
        self,
        signer: Signer,
        key_store: KeyStore,
        *,
        max_group_events: int = 2000,
        max_pending_events: int = 2000,
    ) -> None:
        self.signer = signer
        self.key_store = key_store
        self.subjects = SubjectCommit(key_store)
        self.max_group_events = max_group_events
        self.rate = CommitRate()
        self.admission = Admission(max_pending_events, self.rate)
        self._queue: list[_Unit] = []
        self._condition = threading.Condition()
        self._closed = False
        self._committers: list[threading.Thread] = []
        self.groups_committed = 0
        self.events_committed = 0
        self.on_commit: Callable[[float, int], None] | None = None
        """Called after each commit with its duration in seconds and its number of events."""
        self.link: CommitLink | None = None
        """Where groups are committed when not here: the committer process
        (:mod:`ledger.committer`); None: this recorder commits them itself."""
        self._edge: tuple[int, dict[tuple[int, int], bytes]] = (-1, {})
        """The tree's right edge after this recorder's last commit, and the size it is of:
        the next commit reads it from the database only when another writer came between."""

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
        (outcome,) = self.append_each([work])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def append_each(self, works: Sequence[UnitOfWork]) -> list[Outcome]:
        """Hand in several units at once (so they can share a commit), wait until each is
        committed or refused, and answer each one's records or error, in order: what the
        committer process does with a worker's group."""
        units = [_Unit(work) for work in works]
        waiting = [unit for unit in units if unit.work.stored_events]
        for unit in units:
            if not unit.work.stored_events:
                unit.result = []
        if waiting:
            with self._condition:
                if self._closed:
                    raise StorageError("the recorder is closed")
                if not self._committers:
                    # One thread commits here; with a committer elsewhere, as many as it lets
                    # a worker have groups in flight.
                    count = 1 if self.link is None else self.link.in_flight
                    self._committers = [
                        threading.Thread(
                            target=self._run_committer, name="ledger-committer", daemon=True
                        )
                        for _ in range(count)
                    ]
                    for thread in self._committers:
                        thread.start()
                self._queue.extend(waiting)
                self._condition.notify_all()
            for unit in waiting:
                unit.done.wait()
        outcomes: list[Outcome] = []
        for unit in units:
            if unit.error is not None:
                outcomes.append(unit.error)
            else:
                assert unit.result is not None
                outcomes.append(unit.result)
        return outcomes

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
            committers = list(self._committers)
        for committer in committers:
            committer.join()
        if self.link is not None:
            self.link.close()
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
        if self.link is not None:
            self._commit_elsewhere(self.link, group)
            return
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

    def _commit_elsewhere(self, link: CommitLink, group: list[_Unit]) -> None:
        """Hand the group to the committer process and give each unit its answer."""
        started = time.perf_counter()
        started_at = self.rate.clock()
        try:
            outcomes = link.commit([unit.work for unit in group])
        except BaseException as exc:  # every waiter must wake, whatever happened
            for unit in group:
                unit.error = _as_storage_error(exc)
        else:
            committed = 0
            for unit, outcome in zip(group, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    unit.error = outcome
                else:
                    unit.result = outcome
                    committed += len(outcome)
            self.groups_committed += 1
            self.events_committed += committed
            self.rate.committed(committed, started_at)
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - started, committed)
        finally:
            for unit in group:
                unit.done.set()

    @staticmethod
    def _refuse(group: list[_Unit], refusals: Sequence[BaseException | None]) -> list[_Unit]:
        """Fail the refused units; the others go on."""
        ready = []
        for unit, refusal in zip(group, refusals, strict=True):
            if refusal is None:
                ready.append(unit)
            else:
                unit.error = refusal
        return ready

    def _commit(self, group: list[_Unit]) -> None:
        started = time.perf_counter()
        started_at = self.rate.clock()
        outcomes: list[tuple[_Unit, list[LogRecord] | None, BaseException | None]] = []
        with self._write_transaction() as txn:
            works = [unit.work for unit in group]
            head = txn.read_head(
                [c.event_id for work in works for c in work.claims],
                involved(works),
                new_keys(works),
                new_names(works),
            )
            subjects = self.subjects
            group = self._refuse(group, subjects.store(works, head.stored_keys, head.named))
            refusals, erased_before = subjects.check([unit.work for unit in group], head.erased)
            group = self._refuse(group, refusals)
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
            key_id, sign = self.signer.key_id, self.signer.sign
            records: list[LogRecord] = []
            claims: list[RecordedClaim] = []
            for unit in group:
                stored_events = unit.work.stored_events
                streams = [str(e.originator_id) for e in stored_events]
                unit_versions = {
                    (stream, e.originator_version)
                    for stream, e in zip(streams, stored_events, strict=True)
                }
                unit_ids = {claim.event_id for claim in unit.work.claims}
                if unit_ids & taken or unit_versions & versions:
                    clash = IntegrityError("a stream version or event id was taken")
                    outcomes.append((unit, None, clash))
                    continue
                taken |= unit_ids
                versions |= unit_versions
                unit_records = []
                for stream, stored_event in zip(streams, stored_events, strict=True):
                    seq += 1
                    entry = entry_for(seq, stored_event, key_id)
                    unit_records.append(
                        LogRecord(
                            seq=seq,
                            originator_id=stream,
                            originator_version=stored_event.originator_version,
                            topic=stored_event.topic,
                            entry=entry,
                            body=stored_event.state,
                            signature=sign(entry),
                            key_id=key_id,
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
                written = [unit.work for unit, result, _ in outcomes if result is not None]
                subjects.finish(written, erased_before, txn.finish_subjects)
        # Committed: only now may anyone see a receipt.
        self._edge = new_edge
        self.groups_committed += 1
        self.events_committed += len(records)
        self.rate.committed(len(records), started_at)
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


def _as_storage_error(exc: BaseException) -> BaseException:
    if isinstance(exc, (StorageError, IntegrityError)):
        return exc
    error = StorageError(f"the append was not committed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
