"""Who must be told, and telling them: the notice follower, its outbox and its dispatcher.

The follower reads the log from a durable position and keeps, beside the read models, what it
needs to know who received whose data (``notice_disclosures``: pseudonym, recipient, purpose,
the disclosure's seq; ``notice_requests``: each request's kind). When it reads a cause, it
derives the notices owed, in the same transaction as its position:

* ``consent.withdrawn``: every recipient that received the subject's data, before the
  withdrawal, for one of the purposes withdrawn;
* ``subject.erased``: every recipient of the subject's data;
* ``request.fulfilled`` of a ``rectification`` request: every recipient of the subject's data.

Each notice is a row of the outbox (``notice_outbox``), keyed by its id, which is derived from
the cause's seq and the recipient (:func:`ledger.notices.notice_id`): deriving it again inserts
nothing. The follower then records each row not yet in the log as ``recipient.notice_due``
(the ledger refuses a second one of the same id), and the dispatcher delivers it: an HTTP POST
or a RabbitMQ message (:mod:`projections.notice_transports`) signed per Standard Webhooks,
retried with exponential back-off, with the same ``webhook-id`` on
every attempt. The outbox row is marked delivered in its own transaction after the 2xx, and
``recipient.notified`` is appended after that: a dispatcher killed between the 2xx and the mark
sends the notice once more with the same id (at-least-once; a recipient dedupes on the id), and
one killed after the mark records the delivery when it starts again, never twice.

These tables are not read models: the outbox holds what was sent, which a rebuild could not
make again, so they are ``notice_*``, never dropped by ``projections rebuild``. Several
processes may run the service; a lease (``notice_lease``) lets one of them work at a time.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ledger.application import Delivery, LedgerApplication, NoticeDue
from ledger.errors import LedgerError, ValidationError
from ledger.mapper import format_time
from ledger.notices import (
    ACKNOWLEDGED,
    NOTICE_DUE,
    NOTIFIED,
    AckVia,
    DeliveryStatus,
    Endpoint,
    NoticeReason,
    Reply,
    as_endpoint,
    check_reply,
    endpoints_from,
    seal_reference,
    webhook_body,
    webhook_headers,
)
from projections.base import LoggedEvent
from projections.database import ProjectionDatabase, Sql
from projections.notice_transports import WEBHOOK, Sent, send

logger = logging.getLogger("consent_ledger.notices")

TABLES = (
    "CREATE TABLE IF NOT EXISTS notice_position (name TEXT PRIMARY KEY, position BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS notice_lease ("
    "name TEXT PRIMARY KEY, holder TEXT NOT NULL, lease_until TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS notice_disclosures ("
    "pseudonym TEXT NOT NULL, recipient_id TEXT NOT NULL, purpose TEXT NOT NULL, "
    "seq BIGINT NOT NULL, sealed_ref TEXT, PRIMARY KEY (pseudonym, recipient_id, purpose, seq))",
    "CREATE TABLE IF NOT EXISTS notice_requests (request_id TEXT PRIMARY KEY, kind TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS notice_outbox ("
    "notice_id TEXT PRIMARY KEY, recipient_id TEXT NOT NULL, pseudonym TEXT NOT NULL, "
    "reason TEXT NOT NULL, cause_seq BIGINT NOT NULL, purposes TEXT NOT NULL, "
    "disclosure_seqs TEXT NOT NULL, sealed_ref TEXT, due_seq BIGINT, due_at TEXT, "
    "attempts BIGINT NOT NULL DEFAULT 0, next_attempt_at TEXT, last_error TEXT, "
    "delivered_at TEXT, response_status BIGINT, transport TEXT, notified_seq BIGINT, "
    "acknowledged_seq BIGINT, acknowledged_at TEXT)",
    # A recipient's signed acknowledgement in its answer to the webhook, kept in the commit
    # that marks the delivery, recorded in the log after recipient.notified (outcome set then).
    "CREATE TABLE IF NOT EXISTS notice_replies ("
    "notice_id TEXT PRIMARY KEY, recipient_id TEXT NOT NULL, reply_timestamp BIGINT NOT NULL, "
    "reply_signature TEXT NOT NULL, reply_body TEXT NOT NULL, outcome TEXT)",
    # How each notice was acknowledged (the via of its recipient.acknowledged), for the register.
    "CREATE TABLE IF NOT EXISTS notice_acks (notice_id TEXT PRIMARY KEY, via TEXT NOT NULL)",
)
TOPICS = (
    "disclosure.recorded",
    "request.received",
    "consent.withdrawn",
    "subject.erased",
    "request.fulfilled",
    NOTICE_DUE,
    NOTIFIED,
    ACKNOWLEDGED,
)
PAGE = 1000
FOLLOWER = "notices"
ENDPOINTS_FILE = "notice-endpoints.json"
"""In the data directory: ``{"<recipient_id>": "https://..."}``, read again every round."""
RETRY_FIRST = timedelta(seconds=10)
RETRY_MAX = timedelta(hours=1)
OVERDUE_AFTER = timedelta(days=7)
"""A notice not acknowledged this long after it was recorded as due is overdue."""
REGISTER_LIMIT = 1000


@dataclass(frozen=True)
class NoticeRow:
    """One notice as the register shows it (no pseudonym, no reference)."""

    notice_id: str
    recipient_id: str
    reason: str
    cause_seq: int
    purposes: list[str]
    disclosure_seqs: list[int]
    due_seq: int | None
    due_at: str | None
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    delivered_at: str | None
    notified_seq: int | None
    acknowledged_seq: int | None
    acknowledged_at: str | None
    overdue: bool
    transport: str | None = None
    """How it was delivered: ``webhook`` or ``amqp`` (None until it was)."""
    acknowledged_via: str | None = None
    """How it was acknowledged: ``api`` or ``webhook_reply`` (None until it was)."""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _now() -> datetime:
    return datetime.now(UTC)


def file_endpoints(data_dir: Path) -> Callable[[], dict[str, Endpoint]]:
    """Endpoints read from ``<data_dir>/notice-endpoints.json`` at each call (none when the
    file is absent or not a JSON object: nothing is delivered, notices wait in the outbox)."""

    def read() -> dict[str, Endpoint]:
        try:
            raw = json.loads((data_dir / ENDPOINTS_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return endpoints_from(raw) if isinstance(raw, dict) else {}

    return read


class NoticeService:
    """Derives the notices owed, records them, delivers them (one :meth:`step` a round)."""

    def __init__(
        self,
        app: LedgerApplication,
        db: ProjectionDatabase,
        endpoints: Callable[[], Mapping[str, str | Endpoint]],
        *,
        clock: Callable[[], datetime] = _now,
        retry_first: timedelta = RETRY_FIRST,
        retry_max: timedelta = RETRY_MAX,
        overdue_after: timedelta = OVERDUE_AFTER,
        lease: timedelta = timedelta(seconds=10),
        timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.db = db
        self.endpoints = endpoints
        self.clock = clock
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.overdue_after = overdue_after
        self.lease = lease
        self.timeout = timeout
        self.holder = str(uuid.uuid4())
        self.wake = threading.Event()
        with db.transaction() as sql:
            db.lock_schema(sql)
            for statement in TABLES:
                sql.execute(statement)

    # -- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Rounds until ``stop`` is set; a failed round is logged and tried again."""
        while not stop.is_set():
            try:
                self.step()
            except Exception:
                logger.exception("notices: the round failed; trying again")
            self.wake.wait(interval)
            self.wake.clear()

    def step(self) -> bool:
        """One round, if this process holds the lease: follow the log to its head, record the
        notices owed, deliver those due. False when another process holds the lease."""
        if not self._take_lease():
            return False
        self.follow()
        self.record_due()
        self.deliver()
        return True

    def _take_lease(self) -> bool:
        now = self.clock()
        with self.db.transaction() as sql:
            _durable(self.db, sql)
            rows = sql.execute(
                "SELECT holder, lease_until FROM notice_lease WHERE name = ?", (FOLLOWER,)
            )
            until = format_time(now + self.lease)
            if not rows:
                sql.execute(
                    "INSERT INTO notice_lease (name, holder, lease_until) VALUES (?, ?, ?)",
                    (FOLLOWER, self.holder, until),
                )
                return True
            holder, lease_until = rows[0]
            if holder != self.holder and str(lease_until) > format_time(now):
                return False
            sql.execute(
                "UPDATE notice_lease SET holder = ?, lease_until = ? WHERE name = ?",
                (self.holder, until, FOLLOWER),
            )
            return True

    # -- 1. who must be told -------------------------------------------------------------------

    def follow(self) -> int:
        """Read the log from the follower's position to its head, a page a transaction;
        the number of events read."""
        read = 0
        while True:
            with self.db.transaction() as sql:
                _durable(self.db, sql)
                rows = sql.execute(
                    "SELECT position FROM notice_position WHERE name = ?", (FOLLOWER,)
                )
                position = int(rows[0][0]) if rows else 0
                page = self.app.ledger.select_notifications(
                    start=position, limit=PAGE, topics=TOPICS, inclusive_of_start=False
                )
                if not page:
                    return read
                mentions = self.app.mentions_opened
                boxes = self._boxes()
                for notification in page:
                    event = LoggedEvent.from_body(notification.id, notification.state, mentions)
                    self._apply(sql, event, boxes)
                end = page[-1].id
                if rows:
                    sql.execute(
                        "UPDATE notice_position SET position = ? WHERE name = ?", (end, FOLLOWER)
                    )
                else:
                    sql.execute(
                        "INSERT INTO notice_position (name, position) VALUES (?, ?)",
                        (FOLLOWER, end),
                    )
                read += len(page)
            if len(page) < PAGE:
                return read

    def _boxes(self) -> dict[str, bytes]:
        """Recipient id -> the public key it receives references sealed to (those that gave
        one)."""
        found: dict[str, bytes] = {}
        for recipient, value in self.endpoints().items():
            key = as_endpoint(value).box_key
            if key is not None:
                found[recipient] = key
        return found

    def _sealed_refs(self, event: LoggedEvent, box: bytes | None) -> list[str | None]:
        """For each subject of a disclosure, its reference sealed to the recipient's ``box``
        key (None without a key, or once the subject was erased): captured now, while the
        subject's key still opens it, so that a notice of a later erasure can carry it. The
        ledger cannot open what it seals here."""
        count = len(event.data.get("subjects", []))
        if box is None:
            return [None] * count
        opened = self.app.get_event(event.seq).data.get("subjects", [])
        refs = [item.get("ref") if isinstance(item, Mapping) else None for item in opened]
        return [
            seal_reference(box, ref) if isinstance(ref, str) and ref != "[erased]" else None
            for ref in refs
        ]

    def _apply(self, sql: Sql, event: LoggedEvent, boxes: Mapping[str, bytes]) -> None:
        data = event.data
        if event.type == "disclosure.recorded":
            sealed = self._sealed_refs(event, boxes.get(data["recipient_id"]))
            for item, sealed_ref in zip(data.get("subjects", []), sealed, strict=True):
                sql.execute(
                    "INSERT INTO notice_disclosures (pseudonym, recipient_id, purpose, seq, "
                    "sealed_ref) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (item["subject"], data["recipient_id"], data["purpose"], event.seq, sealed_ref),
                )
        elif event.type == "request.received":
            sql.execute(
                "INSERT INTO notice_requests (request_id, kind) VALUES (?, ?) "
                "ON CONFLICT DO NOTHING",
                (data["request_id"], data["kind"]),
            )
        elif event.type == "consent.withdrawn":
            self._owe(sql, event, NoticeReason.CONSENT_WITHDRAWN, set(data["purposes"]))
        elif event.type == "subject.erased":
            self._owe(sql, event, NoticeReason.ERASURE, None)
        elif event.type == "request.fulfilled":
            kind = sql.execute(
                "SELECT kind FROM notice_requests WHERE request_id = ?", (data["request_id"],)
            )
            if kind and kind[0][0] == "rectification":
                self._owe(sql, event, NoticeReason.RECTIFICATION, None)
        elif event.type == NOTICE_DUE:
            sql.execute(
                "UPDATE notice_outbox SET due_seq = ?, due_at = ? WHERE notice_id = ?",
                (event.seq, event.recorded_at, data["notice_id"]),
            )
        elif event.type == NOTIFIED:
            sql.execute(
                "UPDATE notice_outbox SET notified_seq = ?, "
                "delivered_at = COALESCE(delivered_at, ?) WHERE notice_id = ?",
                (event.seq, data.get("delivered_at"), data["notice_id"]),
            )
        elif event.type == ACKNOWLEDGED:
            sql.execute(
                "UPDATE notice_outbox SET acknowledged_seq = ?, acknowledged_at = ? "
                "WHERE notice_id = ?",
                (event.seq, event.recorded_at, data["notice_id"]),
            )
            sql.execute(
                "INSERT INTO notice_acks (notice_id, via) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (data["notice_id"], str(data.get("via", AckVia.API))),
            )

    def _owe(
        self, sql: Sql, event: LoggedEvent, reason: NoticeReason, purposes: set[str] | None
    ) -> None:
        """Outbox rows for every recipient of the subject's data (for ``purposes``, when
        given) disclosed before ``event``."""
        pseudonym = event.data["subject"]
        by_recipient: dict[str, tuple[set[str], set[int]]] = {}
        sealed: dict[str, str] = {}
        for recipient, purpose, seq, sealed_ref in sql.execute(
            "SELECT recipient_id, purpose, seq, sealed_ref FROM notice_disclosures "
            "WHERE pseudonym = ? AND seq < ? ORDER BY recipient_id, seq",
            (pseudonym, event.seq),
        ):
            if sealed_ref is not None:  # the latest disclosure's, of any purpose
                sealed[str(recipient)] = str(sealed_ref)
            if purposes is not None and purpose not in purposes:
                continue
            found = by_recipient.setdefault(str(recipient), (set(), set()))
            found[0].add(str(purpose))
            found[1].add(int(seq))
        for recipient, (told_purposes, seqs) in sorted(by_recipient.items()):
            due = NoticeDue(
                event.seq,
                recipient,
                pseudonym,
                reason,
                tuple(sorted(told_purposes)) if purposes is not None else (),
                tuple(sorted(seqs)),
            )
            sql.execute(
                "INSERT INTO notice_outbox (notice_id, recipient_id, pseudonym, reason, "
                "cause_seq, purposes, disclosure_seqs, sealed_ref) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    due.notice_id,
                    recipient,
                    pseudonym,
                    str(reason),
                    event.seq,
                    json.dumps(list(due.purposes)),
                    json.dumps(list(due.disclosure_seqs)),
                    sealed.get(recipient),
                ),
            )

    def record_due(self) -> int:
        """Append ``recipient.notice_due`` for every outbox row the log does not hold yet; the
        number appended."""
        rows = self.db.query(
            "SELECT notice_id, recipient_id, pseudonym, reason, cause_seq, purposes, "
            "disclosure_seqs FROM notice_outbox WHERE due_seq IS NULL ORDER BY cause_seq, "
            "recipient_id LIMIT ?",
            (PAGE,),
        )
        appended = 0
        for notice, recipient, pseudonym, reason, cause, purposes, seqs in rows:
            due = NoticeDue(
                int(cause),
                str(recipient),
                str(pseudonym),
                NoticeReason(reason),
                tuple(json.loads(purposes)),
                tuple(json.loads(seqs)),
            )
            receipt = self.app.record_notice_due(due)
            if receipt is None:
                continue  # recorded before: the follower marks it when it reads the event
            appended += 1
            with self.db.transaction() as sql:
                _durable(self.db, sql)
                sql.execute(
                    "UPDATE notice_outbox SET due_seq = ?, due_at = ? WHERE notice_id = ?",
                    (receipt.seq, receipt.recorded_at, notice),
                )
        return appended

    # -- 2. telling them -----------------------------------------------------------------------

    def deliver(self) -> int:
        """POST every notice due whose recipient has an endpoint and whose next attempt is
        not later than now; record deliveries not yet recorded. The number delivered."""
        self._record_deliveries()
        endpoints = dict(self.endpoints())
        if not endpoints:
            return 0
        now = format_time(self.clock())
        rows = self.db.query(
            "SELECT notice_id, recipient_id, reason, cause_seq, purposes, disclosure_seqs, "
            "due_seq, attempts, sealed_ref FROM notice_outbox WHERE due_seq IS NOT NULL AND "
            "delivered_at IS NULL AND (next_attempt_at IS NULL OR next_attempt_at <= ?) "
            "ORDER BY due_seq LIMIT ?",
            (now, PAGE),
        )
        delivered = 0
        for notice, recipient, reason, cause, purposes, seqs, due_seq, attempts, sealed in rows:
            endpoint = endpoints.get(str(recipient))
            if endpoint is None:
                continue
            url = as_endpoint(endpoint).url
            timestamp = int(self.clock().timestamp())
            body = webhook_body(
                notice=str(notice),
                recipient_id=str(recipient),
                reason=str(reason),
                subject_ref=self._reference(int(cause), str(reason)),
                subject_ref_sealed=None if sealed is None else str(sealed),
                purposes=json.loads(purposes),
                cause_seqs=[int(cause)],
                disclosure_seqs=json.loads(seqs),
                due_seq=int(due_seq),
                timestamp=timestamp,
            )
            headers = webhook_headers(str(notice), timestamp, body, self.app.ledger.signer.sign)
            tried = int(attempts) + 1
            delay = min(self.retry_first * 2 ** (tried - 1), self.retry_max)
            # The attempt is counted, and its retry scheduled, before it is made: a process
            # killed after the send still counts it (attempts never under-count the sends).
            with self.db.transaction() as sql:
                _durable(self.db, sql)
                sql.execute(
                    "UPDATE notice_outbox SET attempts = ?, next_attempt_at = ? "
                    "WHERE notice_id = ?",
                    (tried, format_time(self.clock() + delay), notice),
                )
            sent = send(url, body, headers, self.timeout)
            reply = self._reply(str(notice), str(recipient), as_endpoint(endpoint), sent)
            with self.db.transaction() as sql:
                _durable(self.db, sql)
                if sent.delivered:
                    sql.execute(
                        "UPDATE notice_outbox SET delivered_at = ?, response_status = ?, "
                        "transport = ?, last_error = NULL WHERE notice_id = ?",
                        (format_time(self.clock()), sent.status, sent.transport, notice),
                    )
                    if reply is not None:
                        sql.execute(
                            "INSERT INTO notice_replies (notice_id, recipient_id, "
                            "reply_timestamp, reply_signature, reply_body) "
                            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                            (notice, recipient, reply.timestamp, reply.signature, reply.body),
                        )
                    delivered += 1
                else:
                    sql.execute(
                        "UPDATE notice_outbox SET last_error = ? WHERE notice_id = ?",
                        (sent.error, notice),
                    )
        self._record_deliveries()
        return delivered

    def _reply(self, notice: str, recipient: str, endpoint: Endpoint, sent: Sent) -> Reply | None:
        """The recipient's acknowledgement in its 2xx answer, when it gave a key to check it
        with and the answer is signed by it for this notice; else None (delivered, not
        acknowledged: a bad or missing signature is never an error)."""
        if not sent.delivered or endpoint.ack_key is None or not sent.reply_headers:
            return None
        return check_reply(
            notice=notice,
            recipient_id=recipient,
            headers=sent.reply_headers,
            body=sent.reply_body,
            ack_key=endpoint.ack_key,
            now=self.clock().timestamp(),
        )

    def _record_replies(self) -> None:
        """Append ``recipient.acknowledged`` (``via: webhook_reply``) for every signed reply
        kept and not recorded yet, once its delivery is in the log; a notice acknowledged
        before (through the API meanwhile) is not acknowledged twice."""
        for notice, recipient, stamp, signature, body in self.db.query(
            "SELECT r.notice_id, r.recipient_id, r.reply_timestamp, r.reply_signature, "
            "r.reply_body FROM notice_replies r JOIN notice_outbox o ON o.notice_id = r.notice_id "
            "WHERE r.outcome IS NULL AND o.notified_seq IS NOT NULL LIMIT ?",
            (PAGE,),
        ):
            reply = Reply(int(stamp), str(signature), str(body))
            try:
                receipt = self.app.acknowledge_notice(str(notice), str(recipient), None, reply)
                outcome = "recorded"
            except ValidationError:  # acknowledged before: the rule notice_acknowledged
                receipt, outcome = None, "acknowledged_before"
            with self.db.transaction() as sql:
                _durable(self.db, sql)
                sql.execute(
                    "UPDATE notice_replies SET outcome = ? WHERE notice_id = ?", (outcome, notice)
                )
                if receipt is not None:
                    sql.execute(
                        "UPDATE notice_outbox SET acknowledged_seq = ?, acknowledged_at = ? "
                        "WHERE notice_id = ?",
                        (receipt.seq, receipt.recorded_at, notice),
                    )
                    sql.execute(
                        "INSERT INTO notice_acks (notice_id, via) VALUES (?, ?) "
                        "ON CONFLICT DO NOTHING",
                        (notice, str(AckVia.WEBHOOK_REPLY)),
                    )

    def _reference(self, cause_seq: int, reason: str) -> str | None:
        """The subject's reference as the recipient knows it, opened from the cause (it names
        the subject by it); None after an erasure, whose key is gone with the reference."""
        if reason == NoticeReason.ERASURE:
            return None
        try:
            ref = self.app.get_event(cause_seq).data.get("subject_ref")
        except LedgerError:
            return None
        return ref if isinstance(ref, str) and ref != "[erased]" else None

    def _record_deliveries(self) -> None:
        """Append ``recipient.notified`` for every delivery the log does not hold yet."""
        for notice, attempts, delivered_at, status, transport in self.db.query(
            "SELECT notice_id, attempts, delivered_at, response_status, transport "
            "FROM notice_outbox WHERE delivered_at IS NOT NULL AND notified_seq IS NULL LIMIT ?",
            (PAGE,),
        ):
            delivery = Delivery(
                str(transport or WEBHOOK),
                DeliveryStatus.DELIVERED,
                int(attempts),
                str(delivered_at),
                None if status is None else int(status),
            )
            receipt = self.app.record_notified(str(notice), delivery)
            if receipt is None:
                continue
            with self.db.transaction() as sql:
                _durable(self.db, sql)
                sql.execute(
                    "UPDATE notice_outbox SET notified_seq = ? WHERE notice_id = ?",
                    (receipt.seq, notice),
                )
        self._record_replies()

    # -- 4. the register -----------------------------------------------------------------------

    def notices_about(self, pseudonym: str) -> list[str]:
        """The ids (the streams) of the notices recorded about a subject, for their history."""
        return [
            str(row[0])
            for row in self.db.query(
                "SELECT notice_id FROM notice_outbox WHERE pseudonym = ? AND due_seq IS NOT NULL "
                "ORDER BY due_seq",
                (pseudonym,),
            )
        ]

    def register(
        self,
        *,
        overdue: bool | None = None,
        recipient_id: str | None = None,
        limit: int = REGISTER_LIMIT,
        notice_id: str | None = None,
    ) -> list[NoticeRow]:
        """The notices, oldest cause first: all, or only those overdue (not acknowledged
        :attr:`overdue_after` after they were recorded as due) or not overdue; of one
        recipient, or the one notice, when given."""
        query = (
            "SELECT o.notice_id, o.recipient_id, o.reason, o.cause_seq, o.purposes, "
            "o.disclosure_seqs, o.due_seq, o.due_at, o.attempts, o.next_attempt_at, "
            "o.last_error, o.delivered_at, o.notified_seq, o.acknowledged_seq, "
            "o.acknowledged_at, o.transport, a.via FROM notice_outbox o "
            "LEFT JOIN notice_acks a ON a.notice_id = o.notice_id"
        )
        params: list[Any] = []
        where = []
        if recipient_id is not None:
            where.append("o.recipient_id = ?")
            params.append(recipient_id)
        if notice_id is not None:
            where.append("o.notice_id = ?")
            params.append(notice_id)
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY o.cause_seq, o.recipient_id"
        late = format_time(self.clock() - self.overdue_after)
        found = []
        for row in self.db.query(query, params):
            is_overdue = row[13] is None and row[7] is not None and str(row[7]) <= late
            if overdue is not None and is_overdue != overdue:
                continue
            found.append(
                NoticeRow(
                    str(row[0]),
                    str(row[1]),
                    str(row[2]),
                    int(row[3]),
                    json.loads(row[4]),
                    json.loads(row[5]),
                    _int(row[6]),
                    row[7],
                    int(row[8]),
                    row[9],
                    row[10],
                    row[11],
                    _int(row[12]),
                    _int(row[13]),
                    row[14],
                    is_overdue,
                    None if row[15] is None else str(row[15]),
                    None if row[13] is None else str(row[16] or AckVia.API),
                )
            )
            if len(found) >= limit:
                break
        return found

    def counts(self) -> list[NoticeCount]:
        """The notices recorded as due, by recipient and reason: how many, how many not
        delivered, not acknowledged, and overdue (as :meth:`register` decides), over the whole
        outbox (the register stops at :data:`REGISTER_LIMIT` rows; these do not)."""
        late = format_time(self.clock() - self.overdue_after)
        rows = self.db.query(
            "SELECT recipient_id, reason, COUNT(*), "
            "SUM(CASE WHEN delivered_at IS NULL THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN acknowledged_seq IS NULL THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN acknowledged_seq IS NULL AND due_at <= ? THEN 1 ELSE 0 END) "
            "FROM notice_outbox WHERE due_seq IS NOT NULL "
            "GROUP BY recipient_id, reason ORDER BY recipient_id, reason",
            (late,),
        )
        return [
            NoticeCount(str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]))
            for r in rows
        ]


@dataclass(frozen=True)
class NoticeCount:
    """The notices owed one recipient for one reason, by state (:meth:`NoticeService.counts`)."""

    recipient_id: str
    reason: str
    owed: int
    undelivered: int
    unacknowledged: int
    overdue: int


def _int(value: object) -> int | None:
    return None if value is None else int(str(value))


def _durable(db: ProjectionDatabase, sql: Sql) -> None:
    """The read models commit asynchronously on PostgreSQL (a crash of the server may lose
    the last few); the outbox must not forget a delivery it marked."""
    if db.dialect == "postgres":
        sql.execute("SET LOCAL synchronous_commit = on")


def outbox_counts(rows: Iterable[NoticeRow]) -> dict[str, int]:
    """Notices by state, for metrics and the CLI: due, delivered, acknowledged, overdue."""
    counts = {"due": 0, "delivered": 0, "acknowledged": 0, "overdue": 0}
    for row in rows:
        counts["due"] += 1
        counts["delivered"] += row.delivered_at is not None
        counts["acknowledged"] += row.acknowledged_seq is not None
        counts["overdue"] += row.overdue
    return counts


__all__ = [
    "ENDPOINTS_FILE",
    "NoticeCount",
    "NoticeRow",
    "NoticeService",
    "file_endpoints",
    "outbox_counts",
]
