"""What every read model shares: the event as projections see it, and the projection role.

A projection is a pure function of the log. It sees events in sequence order, writes only its
own ``proj_*`` tables, and never reads another projection's tables: two projections at
different positions must not see each other half-way. Personal data stays sealed: read models
hold pseudonyms, never the emitter's references.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID

import orjson

from ledger.errors import LedgerError
from ledger.mapper import MentionsOpener
from ledger.verifier.corrections import apply_correction
from ledger.verifier.mentions import MENTION_LISTS, MENTION_STRINGS
from ledger.verifier.times import parse_utc, utc
from projections.database import Sql

T = TypeVar("T")

__all__ = [
    "CorrectableProjection",
    "LoggedEvent",
    "PoisonEventError",
    "Projection",
    "ProjectionError",
    "ReadModelFailure",
    "ReadModelStoppedError",
    "corrected_event",
    "dumps",
    "error_message",
    "parse_utc",
    "utc",
]


_MENTION_FIELDS = frozenset(MENTION_LISTS + MENTION_STRINGS)
"""The data fields a mention can be in (:func:`ledger.verifier.mentions.mention_paths`)."""


class LoggedEvent:
    """An event of the log, decoded for projections (personal data still sealed). Read it,
    never change it: the runner decodes a page once and hands the same events to every read
    model of the page.

    A plain class with slots, not a frozen dataclass: the runner makes one for every event of a
    page, and a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``
    (three times the cost of making it, measured: docs/performance.md, "Read models from zero",
    round three)."""

    __slots__ = (
        "_derived",
        "data",
        "event_id",
        "occurred_at",
        "recorded_at",
        "seq",
        "stream",
        "stream_version",
        "type",
    )

    def __init__(
        self,
        seq: int,
        type: str,
        stream: str,
        stream_version: int,
        event_id: str | None,
        occurred_at: str,
        recorded_at: str,
        data: dict[str, Any],
    ) -> None:
        self.seq = seq
        self.type = type
        self.stream = stream
        self.stream_version = stream_version
        self.event_id = event_id
        self.occurred_at = occurred_at
        self.recorded_at = recorded_at
        self.data = data
        self._derived: dict[str, Any] | None = None

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.seq,
            self.type,
            self.stream,
            self.stream_version,
            self.event_id,
            self.occurred_at,
            self.recorded_at,
            self.data,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LoggedEvent):
            return NotImplemented
        return self._fields() == other._fields()

    # Not hashable: its data is a dict.
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LoggedEvent(seq={self.seq!r}, type={self.type!r}, stream={self.stream!r})"

    @classmethod
    def from_body(
        cls, seq: int, body: bytes, mentions: MentionsOpener | None = None
    ) -> LoggedEvent:
        """The event whose stored body is ``body``, at ``seq`` in the log; with ``mentions``,
        the sealed pseudonyms of a fact about many subjects opened (read models need them)."""
        decoded = orjson.loads(body)
        data = decoded["data"]
        # Most events have no field that lists subjects: only those are searched for mentions
        # (by the opener, which gives ``data`` itself back when it finds none).
        if mentions is not None and not _MENTION_FIELDS.isdisjoint(data):
            data = mentions(data, UUID(decoded["stream"]), decoded["stream_version"])
        return cls(
            seq,
            decoded["type"],
            decoded["stream"],
            decoded["stream_version"],
            decoded["event_id"],
            decoded["occurred_at"],
            decoded["recorded_at"],
            data,
        )

    def derived(self, key: str, make: Callable[[LoggedEvent], T]) -> T:
        """What ``make`` derives from this event, made once and kept with it. The runner
        decodes a page once and hands the same events to every read model of the page, so a
        record that several of them derive (a consent decision's rows, which the book writes
        and consent state reads) is derived once a page, not once a read model. ``make`` must
        be a pure function of the event (a corrected event is another event, with nothing
        kept)."""
        kept = self._derived
        if kept is None:
            kept = self._derived = {}
        try:
            return cast(T, kept[key])
        except KeyError:
            value = kept[key] = make(self)
            return value


class ProjectionError(LedgerError):
    """A projection cannot go on; the message says which and why."""


MESSAGE_LIMIT = 300
"""Characters of an error's message that a failure record keeps."""
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def error_message(cause: BaseException) -> str:
    """What ``cause`` says, fit to be stored, shown on ``/readyz`` and logged: its first line
    (a database error's DETAIL line quotes row values), pseudonyms (UUIDs) masked, control
    characters (a NUL, which PostgreSQL text refuses) replaced, at most 300 characters.
    Projections see no emitter's reference (they are sealed), so none can be in it."""
    text = str(cause).strip()
    first = text.splitlines()[0] if text else ""
    first = _UUID.sub("<uuid>", first)
    first = "".join(c if c.isprintable() else "?" for c in first)
    return first if len(first) <= MESSAGE_LIMIT else first[: MESSAGE_LIMIT - 3] + "..."


class PoisonEventError(ProjectionError):
    """A projection failed on one event; it stops there and never skips it."""

    def __init__(
        self,
        projection: str,
        seq: int,
        type_name: str,
        cause: BaseException,
        *,
        via: str | None = None,
    ) -> None:
        self.projection = projection
        self.seq = seq
        self.type_name = type_name
        self.cause = cause
        self.via = via
        """The read model of its group that failed, when it is another one: the group stops
        together (:attr:`Projection.requires`)."""
        self.error_class = type(cause).__name__
        message = error_message(cause)
        if via is not None:
            message = error_message(ValueError(f"in {via}, of its group: {message}"))
        self.message = message
        super().__init__(
            f"projection {projection} stopped at event {seq} ({type_name}): "
            f"{self.error_class}: {self.message}"
        )

    def stopping(self, projection: str) -> PoisonEventError:
        """The same failure as it stops ``projection``, of the failing read model's group."""
        if projection == self.projection:
            return self
        return PoisonEventError(
            projection, self.seq, self.type_name, self.cause, via=self.via or self.projection
        )


@dataclass(frozen=True)
class ReadModelFailure:
    """A read model stopped at an event it cannot process, as recorded in ``proj_failures``:
    which read model, the event (seq and type) and the error (its class and message)."""

    name: str
    seq: int
    event_type: str
    error_class: str
    message: str
    first_failed_at: str
    last_failed_at: str
    attempts: int
    """How many times the runner tried this event and failed (it retries, backing off)."""

    def describe(self) -> str:
        return (
            f"read model {self.name} stopped at event {self.seq} ({self.event_type}): "
            f"{self.error_class}: {self.message}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "read_model": self.name,
            "seq": self.seq,
            "event_type": self.event_type,
            "error": self.error_class,
            "message": self.message,
            "since": self.first_failed_at,
            "last_attempt": self.last_failed_at,
            "attempts": self.attempts,
        }


class ReadModelStoppedError(ProjectionError):
    """A read model that a question needs is stopped at an event: it cannot answer it until
    the cause is fixed and the read model rebuilt (or resumed)."""

    def __init__(self, failure: ReadModelFailure) -> None:
        self.failure = failure
        super().__init__(failure.describe())


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class Projection(ABC):
    """A read model: its tables, the event types it reads, and how each changes its rows."""

    name: ClassVar[str]
    version: ClassVar[int]
    """Raise it when the code changes what rows hold: the projection then rebuilds itself."""
    tables: ClassVar[Mapping[str, str]]
    """Table name -> column definitions (portable SQL)."""
    indexes: ClassVar[tuple[str, ...]] = ()
    """``CREATE INDEX IF NOT EXISTS`` statements."""
    topics: ClassVar[frozenset[str]]
    """The event types it reads; a correction of one of them is read too."""
    requires: ClassVar[tuple[type[Projection], ...]] = ()
    """The read models whose tables (and memory) this one reads. It forms a *group* with them:
    the runner applies every page to the group in one transaction, theirs first, keeps the
    group's positions equal, and rebuilds and stops them together (docs/projections.md,
    "Groups"). A runner not given one of them makes it (with no arguments)."""
    retired_tables: ClassVar[tuple[str, ...]] = ()
    """Tables earlier versions of this read model had: dropped with its tables, so a database
    of an earlier version keeps none of them."""

    def bind(self, required: Mapping[str, Projection]) -> None:  # noqa: B027 (most need none)
        """The runner's instances of :attr:`requires`, by name: what this one reads from."""

    def version_tag(self) -> str:
        """What decides whether stored rows are still valid (the version, and parameters)."""
        return str(self.version)

    def create(self, sql: Sql) -> None:
        for table, columns in self.tables.items():
            sql.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
        for statement in self.indexes:
            sql.execute(statement)

    def drop(self, sql: Sql) -> None:
        for table in (*self.tables, *self.retired_tables):
            sql.execute(f"DROP TABLE IF EXISTS {table}")

    def reset(self, empty: bool) -> None:  # noqa: B027 (most projections keep nothing)
        """Forget whatever is kept in memory from page to page. The runner calls it before a
        page unless the last page it committed for this projection ended where this one starts
        (then the tables are as that page left them: a pure function of the log up to there);
        ``empty``: the page starts at position 0, where the tables are empty."""

    def begin(  # noqa: B027 (most projections keep nothing)
        self, sql: Sql, events: Sequence[LoggedEvent] = ()
    ) -> None:
        """A page of ``events`` starts in this transaction: forget what the last page held, and
        load in one go what this one needs.

        Within a page only this runner writes the projection's tables (its position row is
        locked), so state loaded here and kept up to date by the page's own changes is exact.
        Nothing held in memory may outlive the page, except what :meth:`reset` forgets: a page
        that fails is rolled back, and the next one starts from :meth:`reset` and ``begin``.
        """

    @abstractmethod
    def process(self, sql: Sql, event: LoggedEvent) -> None:
        """Apply one event (of :attr:`topics`, or ``correction.recorded``); it may be held in
        memory until :meth:`flush`."""

    def flush(self, sql: Sql) -> None:  # noqa: B027 (a projection that writes at once)
        """Write what the page holds in memory. The runner calls it once at the end of a page,
        in the page's transaction, before it records the new position.

        The rows after a page must not depend on where pages begin and end: applying a log one
        event per page, or five hundred, gives the same rows.
        """


class CorrectableProjection(Projection):
    """A projection that applies ``correction.recorded`` to the events it read."""

    @abstractmethod
    def correct(self, sql: Sql, original: LoggedEvent, corrected: LoggedEvent) -> None:
        """Replace what ``original`` contributed by what ``corrected`` says (same seq)."""


def corrected_event(original: LoggedEvent, fields: Mapping[str, Any]) -> LoggedEvent:
    """``original`` with the corrected fields applied (``occurred_at`` included); the rule is
    :func:`ledger.verifier.corrections.apply_correction`, which the report applies too."""
    occurred_at, data = apply_correction(original.occurred_at, original.data, fields)
    return LoggedEvent(
        seq=original.seq,
        type=original.type,
        stream=original.stream,
        stream_version=original.stream_version,
        event_id=original.event_id,
        occurred_at=occurred_at,
        recorded_at=original.recorded_at,
        data=data,
    )
