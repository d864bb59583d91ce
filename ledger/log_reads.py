"""The log's read queries: records, entries, claims, notifications, checkpoints.

:class:`LogReads` is the read side of :class:`ledger.recorder.LedgerRecorder`: every query
that reads the log outside the committer's write transaction, written once in portable SQL
over one hook (:meth:`LogReads._select`) that the backends (:mod:`ledger.sqlite`,
:mod:`ledger.postgres`) implement, with the few reads that differ by backend left abstract.
It is also the ``eventsourcing`` :class:`ApplicationRecorder` read interface
(``select_events``, ``select_notifications``, ``max_notification_id``, ``subscribe``) that
projections built on the library follow. The committer (group commit, signing, the tree's
right edge) is :mod:`ledger.recorder`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import (
    ApplicationRecorder,
    ListenNotifySubscription,
    Notification,
    StoredEvent,
    Subscription,
)

from ledger.merkle_log import SignedCheckpoint


@dataclass(frozen=True)
class RecordedClaim:
    event_id: str
    digest: bytes
    seq: int


@dataclass(frozen=True)
class LogRecord:
    """One row of the log as stored: the signed entry, the body it commits to, the signature."""

    seq: int
    originator_id: str
    originator_version: int
    topic: str
    entry: bytes
    body: bytes
    signature: bytes
    key_id: str

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> LogRecord:
        """A row selected as :data:`RECORD_COLUMNS`."""
        return cls(
            seq=int(row[0]),
            originator_id=str(row[1]),
            originator_version=int(row[2]),
            topic=str(row[3]),
            entry=bytes(row[4]),
            body=bytes(row[5]),
            signature=bytes(row[6]),
            key_id=str(row[7]),
        )


RECORD_COLUMNS = "seq, originator_id, originator_version, topic, entry, body, signature, key_id"
MAX_SEQ = 2**63 - 1


class LogReads(ApplicationRecorder, ABC):
    """The log's read queries, over the backends' read hooks."""

    # -- hooks for backends --------------------------------------------------------------------

    @abstractmethod
    def select_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Stored Merkle nodes by (level, index), outside any transaction."""

    @abstractmethod
    def select_record_rows(self) -> Iterator[LogRecord]:
        """Every stored row in storage order, whatever it holds (for verification)."""

    @abstractmethod
    def select_all_claims(self) -> Iterator[RecordedClaim]: ...

    events_table = "ledger_events"
    """How SQL names the log table (backends may qualify it)."""
    claims_table = "ledger_claims"
    checkpoints_table = "ledger_checkpoints"

    @abstractmethod
    def _select(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run one read; ``query`` marks its parameters with ``?``."""

    # -- checkpoints ---------------------------------------------------------------------------

    def checkpoints(self) -> list[SignedCheckpoint]:
        """Every checkpoint signed, smallest first."""
        query = f"SELECT size, root, note FROM {self.checkpoints_table} ORDER BY size"  # noqa: S608
        return [
            SignedCheckpoint(int(r[0]), bytes(r[1]), str(r[2])) for r in self._select(query, ())
        ]

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        query = f"SELECT size, root, note, signed_at FROM {self.checkpoints_table} "  # noqa: S608
        rows = self._select(query + "ORDER BY size DESC LIMIT 1", ())
        if not rows:
            return None
        size, root, note, signed_at = rows[0]
        return SignedCheckpoint(int(size), bytes(root), str(note), str(signed_at))

    # -- reading -------------------------------------------------------------------------------

    def select_claims(self, event_ids: Sequence[str]) -> dict[str, RecordedClaim]:
        """Recorded claims for those event ids (outside any write transaction)."""
        found: dict[str, RecordedClaim] = {}
        ids = list(event_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            query = f"SELECT event_id, digest, seq FROM {self.claims_table} "  # noqa: S608
            query += f"WHERE event_id IN ({', '.join('?' * len(chunk))})"
            for event_id, digest, seq in self._select(query, chunk):
                found[event_id] = RecordedClaim(event_id, bytes(digest), int(seq))
        return found

    def select_records(self, start: int, limit: int) -> list[LogRecord]:
        """Up to ``limit`` records with ``seq >= start``, in order."""
        if start > MAX_SEQ:
            return []  # storage holds 64-bit sequence numbers
        query = f"SELECT {RECORD_COLUMNS} FROM {self.events_table} "  # noqa: S608
        query += "WHERE seq >= ? ORDER BY seq LIMIT ?"
        return [LogRecord.from_row(row) for row in self._select(query, (start, limit))]

    def select_entries(self, start: int, stop: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` (seq, entry) pairs with ``start <= seq <= stop``, in order."""
        query = f"SELECT seq, entry FROM {self.events_table} "  # noqa: S608
        query += "WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?"
        return [(int(r[0]), bytes(r[1])) for r in self._select(query, (start, stop, limit))]

    def select_records_at(self, seqs: Sequence[int]) -> list[LogRecord]:
        """The records at these sequence numbers (those that exist), in order."""
        found: list[LogRecord] = []
        wanted = sorted(set(seqs))
        for first in range(0, len(wanted), 400):
            chunk = wanted[first : first + 400]
            query = f"SELECT {RECORD_COLUMNS} FROM {self.events_table} "  # noqa: S608
            query += f"WHERE seq IN ({', '.join('?' * len(chunk))}) ORDER BY seq"
            found.extend(LogRecord.from_row(row) for row in self._select(query, chunk))
        return found

    def select_stream_records(self, stream: str) -> list[LogRecord]:
        """Every record of one stream (aggregate), in order."""
        query = f"SELECT {RECORD_COLUMNS} FROM {self.events_table} "  # noqa: S608
        query += "WHERE originator_id = ? ORDER BY originator_version"
        return [LogRecord.from_row(row) for row in self._select(query, (stream,))]

    def get_record(self, seq: int) -> LogRecord | None:
        records = self.select_records(seq, 1)
        return records[0] if records and records[0].seq == seq else None

    def select_events(
        self,
        originator_id: Any,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        query = f"SELECT originator_id, originator_version, topic, body FROM {self.events_table}"  # noqa: S608
        query += " WHERE originator_id = ?"
        params: list[Any] = [str(originator_id)]
        if gt is not None:
            query += " AND originator_version > ?"
            params.append(gt)
        if lte is not None:
            query += " AND originator_version <= ?"
            params.append(lte)
        query += " ORDER BY originator_version" + (" DESC" if desc else "")
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        return [
            StoredEvent(originator_id=r[0], originator_version=r[1], topic=r[2], state=bytes(r[3]))
            for r in self._select(query, params)
        ]

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        query = (
            f"SELECT seq, originator_id, originator_version, topic, body FROM {self.events_table}"  # noqa: S608
        )
        query += " WHERE seq >= ?" if inclusive_of_start else " WHERE seq > ?"
        params: list[Any] = [start or 0]
        if stop is not None:
            query += " AND seq <= ?"
            params.append(stop)
        if topics:
            query += f" AND topic IN ({', '.join('?' * len(topics))})"
            params.extend(topics)
        query += " ORDER BY seq LIMIT ?"
        params.append(limit)
        return [
            Notification(
                id=r[0], originator_id=r[1], originator_version=r[2], topic=r[3], state=bytes(r[4])
            )
            for r in self._select(query, params)
        ]

    def max_notification_id(self) -> int | None:
        [(head,)] = self._select(f"SELECT max(seq) FROM {self.events_table}", ())  # noqa: S608
        return None if head is None else int(head)

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        return PollingSubscription(recorder=self, gt=gt, topics=topics)


class PollingSubscription(ListenNotifySubscription[ApplicationRecorder]):
    """Follows the log by polling (a lost wake-up can only delay, never stall, it)."""

    poll_interval = 0.1

    def __init__(
        self, recorder: ApplicationRecorder, gt: int | None = None, topics: Sequence[str] = ()
    ) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._poller = threading.Thread(target=self._poll, daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._has_been_stopped:
            self._has_been_notified.set()
            threading.Event().wait(self.poll_interval)

    def __exit__(self, *args: object, **kwargs: Any) -> None:
        try:
            super().__exit__(*args, **kwargs)
        finally:
            self._poller.join()
