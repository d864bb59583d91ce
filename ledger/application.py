"""The ledger application: validate facts, run them through their aggregates, append.

:meth:`LedgerApplication.append` is the one way in. A batch is all-or-nothing: every fact is
validated, every aggregate command is checked (one per fact type, in :mod:`ledger.handlers`),
and then all resulting events go to the recorder as one unit (see :mod:`ledger.recorder`).
Event ids make it idempotent.
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

import orjson
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import ApplicationRecorder, IntegrityError, Mapper, StoredEvent
from eventsourcing.utils import Environment, EnvType

from ledger import events as ev
from ledger.access_records import AccessAction, AccessRecord
from ledger.aggregates import DataAccess, PolicyVersion, RecipientNotice
from ledger.domain import (
    EVENT_CLASSES,
    LedgerAggregate,
    LedgerCreated,
    LedgerEvent,
    rule,
    stream_id,
)
from ledger.errors import (
    ConcurrencyError,
    EventNotFoundError,
    FieldProblem,
    IdempotencyConflictError,
    LedgerError,
    SubjectErasedError,
    ValidationError,
)
from ledger.handlers import Command, handler_for, record_erasure
from ledger.mapper import LedgerMapper, format_time
from ledger.merkle_log import Checkpointer, SignedCheckpoint
from ledger.notices import TOLD_SUBJECTS, AckVia, Delivery, NoticeDue, Reply
from ledger.receipts import DecodedEvent, Receipt, claimed_record, fact_position
from ledger.recorder import LedgerRecorder, LogRecord
from ledger.sealing import (
    blind_fact,
    fact_subject_refs,
    mentions_opened,
    open_data,
    withhold_others,
)
from ledger.subject_keys import KeySession, SubjectKeys
from ledger.unit_of_work import Claim, UnitOfWork
from ledger.verifier.entry import entry_hash, parse_body
from ledger.vocabulary import ErasureGround

A = TypeVar("A", bound=LedgerAggregate)

MAX_ATTEMPTS = 20


@dataclass(frozen=True)
class Limits:
    """The rules an append is held to (all configurable, see ``docs/configuration.md``)."""

    max_batch: int = 1000
    minimum_age: int = 18
    backdate_tolerance: timedelta = timedelta(hours=24)
    """Facts that occurred longer ago than this before recording are flagged ``backdated``."""
    future_tolerance: timedelta = timedelta(minutes=5)
    """Facts dated further than this into the ledger's future are refused (clock skew)."""


class _StreamLocks:
    """Striped locks over stream ids: one process's writers to a stream take turns.

    Without them, two requests for one subject would both read version n, both build
    version n + 1, and one would lose at commit and retry. Locks are taken in index order,
    so two batches can never wait for each other.
    """

    def __init__(self, stripes: int = 1024) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    @contextmanager
    def holding(self, streams: Iterable[UUID]) -> Iterator[None]:
        indexes = sorted({stream.int % len(self._locks) for stream in streams})
        for index in indexes:
            self._locks[index].acquire()
        try:
            yield
        finally:
            for index in reversed(indexes):
                self._locks[index].release()


class Batch:
    """The aggregates one batch touches and the events it produces, in batch order."""

    def __init__(
        self,
        app: LedgerApplication,
        emitter: dict[str, Any] | None = None,
        unknown_subjects: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.emitter = emitter
        self.aggregates: dict[UUID, LedgerAggregate] = {}
        self.events: list[LedgerEvent] = []
        self.created: set[UUID] = set()
        self.erasing: set[str] = set()
        """Pseudonyms whose keys this batch destroys when it commits."""
        self.keys = app.subject_keys.session(unknown_subjects)

    def find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        aggregate = self.aggregates.get(aggregate_id)
        if aggregate is None:
            if str(aggregate_id) in self.keys.fresh:
                # A pseudonym made for this batch: its stream cannot exist yet, so it is not
                # read; should one exist after all, the commit clashes and the retry reads it.
                return None
            try:
                aggregate = self.app.repository.get(aggregate_id)
            except AggregateNotFoundError:
                return None
            self.aggregates[aggregate_id] = aggregate
        if not isinstance(aggregate, cls):
            raise LedgerError(f"stream {aggregate_id} is a {type(aggregate).__name__}")
        return aggregate

    def absent(self, cls: type[A], kind: str, natural_id: str, field: str, name: str) -> UUID:
        """The id for a new stream; rule ``name`` is broken when it exists already."""
        key = stream_id(kind, natural_id)
        if self.find(cls, key) is not None:
            raise rule(field, name, f"{kind} {natural_id} is recorded already")
        return key

    def existing(self, cls: type[A], kind: str, natural_id: str, field: str, name: str) -> A:
        """A stream that must exist; rule ``name`` is broken when it does not."""
        aggregate = self.find(cls, stream_id(kind, natural_id))
        if aggregate is None:
            raise rule(field, name, f"no {kind} {natural_id} was recorded")
        return aggregate

    def create(
        self, cls: type[A], created: type[LedgerCreated], aggregate_id: UUID, **kw: Any
    ) -> A:
        aggregate = cls._create(created, id=aggregate_id, **kw)
        self.aggregates[aggregate_id] = aggregate
        self.created.add(aggregate_id)
        self.events.extend(aggregate.collect_events())  # type: ignore[arg-type]
        return aggregate

    def trigger(
        self, aggregate: LedgerAggregate, event_class: type[LedgerEvent], **kw: Any
    ) -> None:
        aggregate.record(event_class, **kw)
        self.events.extend(aggregate.collect_events())  # type: ignore[arg-type]


class LedgerApplication(Application[UUID]):
    name = "ConsentLedger"

    def __init__(
        self,
        recorder: LedgerRecorder,
        subject_keys: SubjectKeys,
        limits: Limits | None = None,
        clock: Callable[[], datetime] | None = None,
        *,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self.checkpointer = checkpointer
        self._ledger_recorder = recorder
        self.subject_keys = subject_keys
        self.limits = limits or Limits()
        self.clock = clock or (lambda: datetime.now(UTC))
        self._policies: dict[str, PolicyVersion] = {}
        self._policies_lock = threading.Lock()
        self._stream_locks = _StreamLocks()
        super().__init__(env={"AGGREGATE_CACHE_MAXSIZE": "10000"})
        self.ledger: LedgerRecorder = recorder

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        """Only the given settings: the ledger is configured by ``ledger.config``, and
        eventsourcing variables in the process environment must not change its storage."""
        return Environment(name, dict(env or {}))

    def construct_mapper(self) -> Mapper[UUID]:
        return LedgerMapper(mentions=self.mentions_opened)

    def mentions_opened(
        self, data: dict[str, Any], stream: UUID | str, stream_version: int
    ) -> dict[str, Any]:
        """Stored ``data`` with the pseudonyms of its mentions opened (nothing else): for the
        ledger's own readers (:func:`ledger.sealing.mentions_opened`)."""
        return mentions_opened(data, stream, stream_version, self.subject_keys)

    def construct_recorder(self) -> ApplicationRecorder:
        return self._ledger_recorder

    def close(self) -> None:
        self._ledger_recorder.close()
        super().close()

    # -- appending -----------------------------------------------------------------------------

    def append(
        self, raw_facts: Sequence[Mapping[str, Any]], emitter: Mapping[str, Any] | None = None
    ) -> list[Receipt]:
        """Record a batch of facts, all or nothing; a receipt per fact, in order.

        ``emitter`` is the sending service's signature of its request (client, key id, body
        hash, signature), kept in every new event of the batch (non-repudiation). Refused at
        once, before any validation, with :class:`ledger.errors.OverloadedError` when its facts
        would put more events in flight than the ledger admits (``max_pending_events``).
        """
        with self.ledger.admission.holding(len(raw_facts)):
            return self._append(raw_facts, emitter)

    def _append(
        self, raw_facts: Sequence[Mapping[str, Any]], emitter: Mapping[str, Any] | None
    ) -> list[Receipt]:
        facts = self._parse_batch(raw_facts)
        now = self.clock()
        self._check_clocks(facts, now)
        refs = [ref for fact in facts for ref in fact_subject_refs(fact)]
        unknown_subjects = self.subject_keys.prefetch(refs)
        refreshed = False
        for attempt in range(MAX_ATTEMPTS):
            # The first attempt takes every fact for new and reads nothing it need not: a
            # repeated event id then fails the commit (or the checks, for a fact whose
            # aggregate it changed), and the next attempt reads the claims and answers it.
            first = attempt == 0
            batch = Batch(
                self,
                None if emitter is None else dict(emitter),
                unknown_subjects if first else frozenset(),
            )
            receipts: list[Receipt | None] = [None] * len(facts)
            try:
                recorded = {} if first else self.ledger.select_claims([f.event_id for f in facts])
                fresh: list[int] = []
                for index, fact in enumerate(facts):
                    claim = recorded.get(fact.event_id)
                    if claim is None:
                        fresh.append(index)
                    elif claim.digest != self._digest(fact, batch.keys, index):
                        raise IdempotencyConflictError(fact.event_id, claim.seq, index)
                    else:
                        record = claimed_record(claim, self.ledger.get_record)
                        if record is None:
                            raise EventNotFoundError(claim.seq)
                        receipts[index] = Receipt.from_record(record, fact.event_id, duplicate=True)
                if fresh:
                    streams = [s for i in fresh for s in self._streams_written(facts[i])]
                    with self._stream_locks.holding(streams):
                        records = self._run_batch(batch, [facts[i] for i in fresh], fresh, now)
                    for index, record in zip(fresh, records, strict=True):
                        receipts[index] = Receipt.from_record(
                            record, facts[index].event_id, duplicate=False
                        )
            except ValidationError:
                batch.keys.abandoned()
                if first:
                    continue  # perhaps a repeated event: answered with its claim, or again
                raise
            except IntegrityError:
                # Another process took a stream version, an event id or a subject's name:
                # start again.
                batch.keys.abandoned()
                time.sleep(random.uniform(0, 0.005 * attempt))  # noqa: S311
                continue
            except SubjectErasedError as exc:
                # Erased meanwhile by another process, or it started a new lifecycle that
                # this process had not seen yet: look again, once.
                batch.keys.abandoned()
                if refreshed:
                    raise ValidationError.single("subject", "subject_erased", str(exc)) from None
                self.subject_keys.refresh(refs)
                refreshed = True
                continue
            except BaseException:
                batch.keys.abandoned()
                raise
            if fresh:
                batch.keys.committed()
            else:
                batch.keys.abandoned()
            self.subject_keys.forget(batch.erasing)
            return [r for r in receipts if r is not None]
        raise ConcurrencyError(
            f"the batch lost {MAX_ATTEMPTS} races for its streams in a row; try again"
        )

    def _digest(self, fact: ev.Fact, keys: KeySession, index: int) -> bytes:
        """The keyed digest an event id stands for: the fact normalised, with its personal
        data blinded (:func:`blind_fact`), so that it tells nothing once a subject is erased."""
        try:
            return self.subject_keys.digest(_canonical(blind_fact(fact, keys)))
        except SubjectErasedError as exc:
            field = "subject" if hasattr(fact, "subject") else "subjects"
            raise ValidationError.single(field, "subject_erased", str(exc)).at_index(
                index
            ) from None

    def _streams_written(self, fact: ev.Fact) -> list[UUID]:
        """The streams a fact appends to (so that in-process writers take turns on them)."""
        return handler_for(fact).streams(fact, self.subject_keys)

    def _parse_batch(self, raw_facts: Sequence[Mapping[str, Any]]) -> list[ev.Fact]:
        if not raw_facts:
            raise ValidationError.single("", "batch_empty", "a batch needs at least one event")
        if len(raw_facts) > self.limits.max_batch:
            raise ValidationError.single(
                "",
                "batch_too_large",
                f"a batch holds at most {self.limits.max_batch} events, not {len(raw_facts)}",
            )
        problems: list[FieldProblem] = []
        facts: list[ev.Fact] = []
        seen: dict[str, int] = {}
        for index, raw in enumerate(raw_facts):
            try:
                fact = ev.parse_fact(raw)
            except ValidationError as exc:
                problems.extend(exc.at_index(index).problems)
                continue
            if fact.event_id in seen:
                problems.append(
                    FieldProblem(
                        "event_id",
                        "event_id_repeated",
                        f"event_id {fact.event_id!r} also names item {seen[fact.event_id]}",
                        index,
                    )
                )
            seen[fact.event_id] = index
            facts.append(fact)
        if problems:
            raise ValidationError(problems)
        return facts

    def _check_clocks(self, facts: list[ev.Fact], now: datetime) -> None:
        """No time at which something happened (``occurred_at``, ``detected_at``, also as a
        correction sets it) is later than the ledger's clock plus the tolerance."""
        limit = now + self.limits.future_tolerance
        problems = [
            FieldProblem(
                field,
                f"{field.rpartition('.')[2].removesuffix('_at')}_in_future",
                f"{field} {moment.isoformat()} is after the ledger's clock "
                f"{format_time(now)} by more than {self.limits.future_tolerance}",
                index,
            )
            for index, fact in enumerate(facts)
            for field, moment in ev.happened_times(fact)
            if moment > limit
        ]
        if problems:
            raise ValidationError(problems)

    def _run_batch(
        self,
        batch: Batch,
        facts: list[ev.Fact],
        indexes: list[int],
        now: datetime,
    ) -> list[LogRecord]:
        principal: list[int] = []
        digests: list[bytes] = []
        for fact, index in zip(facts, indexes, strict=True):
            before = len(batch.events)
            try:
                handler_for(fact).handle(Command(self, batch, fact, now))
            except ValidationError as exc:
                raise exc.at_index(index) from None
            except SubjectErasedError as exc:
                field = "subject" if hasattr(fact, "subject") else "subjects"
                raise ValidationError.single(field, "subject_erased", str(exc)).at_index(
                    index
                ) from None
            # After the command: a fact that starts a lifecycle is digested with its new name.
            digests.append(self._digest(fact, batch.keys, index))
            principal.append(fact_position(batch.events, before, fact.event_id))
        stored: list[StoredEvent] = [self.mapper.to_stored_event(e) for e in batch.events]
        claims = [
            Claim(fact.event_id, digest, position)
            for fact, digest, position in zip(facts, digests, principal, strict=True)
        ]
        records = self.ledger.append(UnitOfWork.of_batch(stored, batch.keys, claims, batch.erasing))
        return [records[position] for position in principal]

    def erase(
        self,
        *,
        subject_ref: str | None = None,
        pseudonym: str | None = None,
        ground: ErasureGround = ErasureGround.OPERATOR,
        details: Mapping[str, Any] | None = None,
    ) -> Receipt:
        """Erase a subject (by reference or pseudonym): destroy its key, record why.

        The erasure event holds no personal data (``details``, such as the retention periods
        that ended, must hold none either); every event sealed under the key stays, signed and
        proven, and shows ``[erased]`` where the personal data was.
        """
        # Counted in flight but never refused: an erasure is a duty, rare, and one event.
        with self.ledger.admission.holding(1, refuse=False):
            return self._erase(subject_ref, pseudonym, ground, details)

    def _erase(
        self,
        subject_ref: str | None,
        pseudonym: str | None,
        ground: ErasureGround,
        details: Mapping[str, Any] | None,
    ) -> Receipt:
        if (subject_ref is None) == (pseudonym is None):
            raise LedgerError("name the subject by its reference or by its pseudonym")
        now = self.clock()
        envelope = {"timestamp": now, "emitter": None}
        for attempt in range(MAX_ATTEMPTS):
            batch = Batch(self)
            target = pseudonym or self.subject_keys.current(str(subject_ref))
            if target is None:
                if self.subject_keys.was_erased(str(subject_ref)):
                    raise LedgerError("the subject with this reference was erased already")
                raise LedgerError("no subject has this reference: nothing to erase")
            store = self.subject_keys.store
            if not store.select([target]) and not store.erased([target]):
                raise LedgerError(f"no subject {target} is known to the ledger: nothing to erase")
            with self._stream_locks.holding([UUID(target)]):
                record_erasure(batch, target, ground, envelope, details=details)
                stored = [self.mapper.to_stored_event(e) for e in batch.events]
                try:
                    # subject.erased last (after subject.registered, for a subject known
                    # only from disclosures or requests).
                    *_, record = self.ledger.append(
                        UnitOfWork.of_batch(stored, batch.keys, erase=batch.erasing)
                    )
                except IntegrityError:
                    time.sleep(random.uniform(0, 0.005 * attempt))  # noqa: S311
                    continue
            self.subject_keys.forget(batch.erasing)
            return Receipt.from_record(record, "", duplicate=False)
        raise ConcurrencyError("the erasure lost the race for the subject's stream; try again")

    def record_access(self, record: AccessRecord) -> Receipt:
        """Append ``personal_data.accessed`` for a read of personal data (invariant 11), before
        the data is answered: the caller answers nothing if this raises.

        Refused like an append when the ledger is full (:class:`OverloadedError`), so that an
        overloaded ledger stops opening data rather than opening it off the record. Raises
        :class:`ValidationError` for a record that breaks :meth:`AccessRecord.problems`.
        """
        record.check()
        with self.ledger.admission.holding(1):
            now = self.clock()
            envelope = {"timestamp": now, "emitter": None}
            system = dict(envelope, event_id=None, backdated=False, occurred_at=now)
            key = uuid4()
            data = record.data()
            if record.subjects:
                data["opened_subjects"] = [
                    self.subject_keys.seal_mention(p, key, 1, f"opened_subjects[{index}]")
                    for index, p in enumerate(record.subjects)
                ]
            batch = Batch(self)
            batch.create(DataAccess, DataAccess.Recorded, key, data=data, **system)
            stored = [self.mapper.to_stored_event(e) for e in batch.events]
            try:
                (written,) = self.ledger.append(UnitOfWork.of_batch(stored, batch.keys))
            finally:
                batch.keys.abandoned()  # the record makes no key and no name
            return Receipt.from_record(written, "", duplicate=False)

    # -- notices to recipients (GDPR 19; ledger/notices.py) -------------------------------------

    def record_notice_due(self, notice: NoticeDue) -> Receipt | None:
        """Append ``recipient.notice_due``: the ledger owes ``notice.recipient_id`` a notice
        about ``notice.pseudonym`` (sealed as a mention). None when the notice was recorded
        before (its id, and so its stream, is derived from its cause and recipient): a
        follower that derives it again after a crash records nothing twice."""
        key = UUID(notice.notice_id)
        data = notice.data()
        data[TOLD_SUBJECTS] = [
            self.subject_keys.seal_mention(notice.pseudonym, key, 1, f"{TOLD_SUBJECTS}[0]")
        ]

        def build(batch: Batch) -> bool:
            if batch.find(RecipientNotice, key) is not None:
                return False
            batch.create(
                RecipientNotice, RecipientNotice.Due, key, data=data, **self._system_envelope()
            )
            return True

        return self._record_notice_step(build)

    def record_notified(self, notice: str, delivery: Delivery) -> Receipt | None:
        """Append ``recipient.notified`` for the notice ``notice``; None when it was recorded
        before (a dispatcher that restarted between delivering and recording)."""
        return self._notice_event(notice, RecipientNotice.Notified, delivery.data(), None)

    def acknowledge_notice(
        self, notice: str, recipient_id: str, client: str | None, reply: Reply | None = None
    ) -> Receipt:
        """Append ``recipient.acknowledged``, at most once per notice, however it came: through
        the API by ``client`` (``via: api``) or in the recipient's signed ``reply`` to the
        webhook (``via: webhook_reply``, checked by :func:`ledger.notices.check_reply`).
        ``recipient_id`` is who acknowledges: a notice owed to another recipient is not found
        (:class:`NoticeNotFoundError`); one acknowledged before breaks the rule
        ``notice_acknowledged`` (:class:`ValidationError`)."""
        how: dict[str, Any] = (
            reply.data() if reply is not None else {"client": client, "via": str(AckVia.API)}
        )
        receipt = self._notice_event(notice, RecipientNotice.Acknowledged, how, recipient_id)
        assert receipt is not None
        return receipt

    def _notice_event(
        self,
        notice: str,
        event_class: type[LedgerEvent],
        extra: dict[str, Any],
        recipient_id: str | None,
    ) -> Receipt | None:
        try:
            key = UUID(notice)
        except ValueError:
            raise NoticeNotFoundError(notice) from None

        def build(batch: Batch) -> bool:
            try:
                found = batch.find(RecipientNotice, key)
            except LedgerError:  # another kind of stream: to the caller, no notice either
                raise NoticeNotFoundError(notice) from None
            if found is None or (recipient_id is not None and found.recipient_id != recipient_id):
                raise NoticeNotFoundError(notice)
            if event_class is RecipientNotice.Notified:
                if found.notified:
                    return False
            else:
                found.check_not_acknowledged()
            version = found.version + 1
            pseudonym = self.subject_keys.open_mention(found.told, key, 1, f"{TOLD_SUBJECTS}[0]")
            data: dict[str, Any] = {"notice_id": notice, "recipient_id": found.recipient_id}
            data.update(extra)
            data[TOLD_SUBJECTS] = [
                self.subject_keys.seal_mention(pseudonym, key, version, f"{TOLD_SUBJECTS}[0]")
            ]
            batch.trigger(found, event_class, data=data, **self._system_envelope())
            return True

        return self._record_notice_step(build)

    def _system_envelope(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "timestamp": now,
            "emitter": None,
            "event_id": None,
            "backdated": False,
            "occurred_at": now,
        }

    def _record_notice_step(self, build: Callable[[Batch], bool]) -> Receipt | None:
        """One event of a notice's stream, appended like :meth:`record_access` (refused when
        the ledger is full); tried again when another writer took the stream's next version."""
        with self.ledger.admission.holding(1):
            for attempt in range(MAX_ATTEMPTS):
                batch = Batch(self)
                try:
                    if not build(batch):
                        return None
                    stored = [self.mapper.to_stored_event(e) for e in batch.events]
                    (written,) = self.ledger.append(UnitOfWork.of_batch(stored, batch.keys))
                except IntegrityError:
                    time.sleep(random.uniform(0, 0.005 * attempt))  # noqa: S311
                    continue
                finally:
                    batch.keys.abandoned()  # a notice makes no key and no name
                return Receipt.from_record(written, "", duplicate=False)
        raise ConcurrencyError("the notice's stream was written by others meanwhile; try again")

    def reapply_erasures(self) -> list[str]:
        """Destroy again every key the log says was destroyed (after restoring an older key
        store, which brings erased subjects' keys back). Returns the pseudonyms it destroyed."""
        erased: list[str] = []
        position = 0
        while True:
            page = self.ledger.select_notifications(
                position, 1000, topics=["subject.erased"], inclusive_of_start=False
            )
            erased += [parse_body(n.state)["data"]["subject"] for n in page]
            if len(page) < 1000:
                break
            position = page[-1].id
        revived = sorted(self.subject_keys.store.select(erased))
        if revived:
            self.subject_keys.store.destroy(revived)
            self.subject_keys.forget(revived)
        return revived

    def published_policy(self, batch: Batch, version: str, field: str) -> PolicyVersion:
        """A published policy version (rule ``policy_version_unknown`` on ``field`` if not)."""
        with self._policies_lock:
            cached = self._policies.get(version)
        if cached is not None:
            return cached
        policy = batch.existing(PolicyVersion, "policy", version, field, "policy_version_unknown")
        if policy.id not in batch.created:  # published versions never change: cache them
            with self._policies_lock:
                self._policies[version] = policy
        return policy

    # -- reading -------------------------------------------------------------------------------

    def get_event(self, seq: int) -> DecodedEvent:
        record = self.ledger.get_record(seq)
        if record is None:
            raise EventNotFoundError(seq)
        return self.decode(record)

    def decode(self, record: LogRecord, only_subject: str | None = None) -> DecodedEvent:
        """The event for reading; with ``only_subject`` (a pseudonym), others' data withheld."""
        body = parse_body(record.body)
        data = open_data(
            body["type"],
            body["data"],
            UUID(body["stream"]),
            body["stream_version"],
            self.subject_keys,
            only=only_subject,
        )
        if only_subject is not None:
            data = withhold_others(body["type"], data, only_subject)
        return DecodedEvent(
            seq=record.seq,
            type=body["type"],
            type_version=body.get("type_version", 1),
            stream=body["stream"],
            stream_version=body["stream_version"],
            event_id=body["event_id"],
            occurred_at=body["occurred_at"],
            recorded_at=body["recorded_at"],
            backdated=body["backdated"],
            data=data,
            event_hash=entry_hash(record.entry).hex(),
            signature=base64.b64encode(record.signature).decode(),
            key_id=record.key_id,
            emitter=body.get("emitter"),
        )

    def iter_records(self, start: int = 1, page: int = 1000) -> Iterator[LogRecord]:
        while True:
            records = self.ledger.select_records(start, page)
            yield from records
            if len(records) < page:
                return
            start = records[-1].seq + 1

    def refuse_when_full(self) -> None:
        """Raise :class:`OverloadedError` now if the ledger admits no more appends (its bound
        of events in flight is reached), so an entrypoint can refuse before reading a body."""
        self.ledger.admission.refuse_when_full()

    @property
    def appends_refused(self) -> int:
        """Appends refused by push-back since this process started (for metrics)."""
        return self.ledger.admission.refused

    def observe_commits(self, observer: Callable[[float, int], None] | None) -> None:
        """Call ``observer`` after each group commit with its duration in seconds and its
        number of events (for metrics); None stops it."""
        self.ledger.on_commit = observer

    def sign_checkpoint(self) -> SignedCheckpoint:
        """Sign a checkpoint of the log as it stands (or return the last, if nothing is new)."""
        if self.checkpointer is None:
            raise LedgerError("this ledger was opened without a checkpoint signer")
        return self.ledger.sign_checkpoint(self.checkpointer)

    def head(self) -> int:
        return self.ledger.max_notification_id() or 0


def _canonical(blinded: dict[str, Any]) -> bytes:
    """The content an event id stands for: the validated fact, blinded, normalised."""
    return orjson.dumps(blinded, option=orjson.OPT_SORT_KEYS)


class NoticeNotFoundError(LedgerError):
    """No notice has this id (or it is owed to another recipient than the one asking)."""

    def __init__(self, notice: str) -> None:
        self.notice = notice
        super().__init__("no notice has this id")


__all__ = [
    "EVENT_CLASSES",
    "AccessAction",
    "AccessRecord",
    "Delivery",
    "LedgerApplication",
    "Limits",
    "NoticeDue",
    "NoticeNotFoundError",
]
