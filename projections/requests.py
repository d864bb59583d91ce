"""The register of data-subject requests: access, rectification, erasure, withdrawal,
cancellation, each with its deadline (GDPR 12(3); the first customer's policy: 15 days).

Stored: one row per request in ``proj_requests``, its subject by pseudonym. Computed when asked,
never stored: the due date (received + the days of the request's jurisdiction, or the default,
+ every extension), whether an open request is overdue, whether a closed one was answered late,
and the days left. So another deadline setting needs no rebuild.

A request whose identity was verified more than once shows the first verification, with its
``seq``; a request is closed once, by its fulfilment or its refusal. A row holds the request as
:mod:`ledger.verifier.requests_fold` folds it, the fold the report renders from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, ClassVar

from ledger.verifier import request_rules as rules
from ledger.verifier.fold import FoldError
from ledger.verifier.request_rules import IDENTITY_VERIFIED, OPEN_STATUSES, REQUEST_TYPES
from ledger.verifier.requests_fold import FIELDS, Request, correct, fold
from projections.base import CorrectableProjection, LoggedEvent, ProjectionError, parse_utc
from projections.database import KeyedRows, ProjectionDatabase, Row, Sql

REQUESTS = "proj_requests"

COLUMNS = FIELDS
"""The fields of :class:`ledger.verifier.requests_fold.Request`, one column each."""


class RequestRegister(CorrectableProjection):
    name = "requests"
    version = 1
    topics = REQUEST_TYPES
    tables: ClassVar[Mapping[str, str]] = {
        REQUESTS: (
            "request_id TEXT PRIMARY KEY, subject TEXT NOT NULL, kind TEXT NOT NULL, "
            "channel TEXT NOT NULL, jurisdiction TEXT, received_at TEXT NOT NULL, "
            "received_seq BIGINT NOT NULL, identity_verified_at TEXT, "
            "identity_verified_seq BIGINT, extension_days INTEGER NOT NULL, "
            "extensions INTEGER NOT NULL, status TEXT NOT NULL, closed_at TEXT, "
            "closed_seq BIGINT, refusal_ground TEXT, last_seq BIGINT NOT NULL"
        ),
    }
    indexes = (
        f"CREATE INDEX IF NOT EXISTS proj_requests_subject ON {REQUESTS} (subject)",
        f"CREATE INDEX IF NOT EXISTS proj_requests_status ON {REQUESTS} (status, received_at)",
    )

    def __init__(self) -> None:
        self._requests = KeyedRows(REQUESTS, "request_id", COLUMNS)
        """Per page: the rows of the requests it names."""

    def begin(self, sql: Sql, events: Sequence[LoggedEvent] = ()) -> None:
        self._requests.reset()
        self._requests.load(sql, (e.data["request_id"] for e in events if e.type in self.topics))

    def flush(self, sql: Sql) -> None:
        self._requests.flush(sql)

    def process(self, sql: Sql, event: LoggedEvent) -> None:
        """The row becomes the request as :func:`ledger.verifier.requests_fold.fold` leaves
        it (the fold the report renders from)."""
        request_id = event.data["request_id"]
        row = self._requests.get(sql, request_id)
        state = None if row is None else Request.from_fields(row)
        try:
            after = fold(state, event)
        except FoldError as exc:
            raise ProjectionError(f"the request register: {exc}") from exc
        if state is None:
            self._requests.add(request_id, after.fields())
        else:
            self._requests.change(request_id, after.fields())

    def correct(self, sql: Sql, original: LoggedEvent, corrected: LoggedEvent) -> None:
        """Apply the corrected fields to the columns they fill, by
        :func:`ledger.verifier.requests_fold.correct` (a value the catalogue would refuse is
        ignored there too)."""
        request_id = original.data["request_id"]
        row = self._requests.get(sql, request_id)
        if row is None:
            if original.type == IDENTITY_VERIFIED:
                raise ProjectionError(f"request {request_id!r} was never received in the register")
            return
        state = Request.from_fields(row)
        try:
            after = correct(state, original, corrected)
        except FoldError as exc:
            raise ProjectionError(f"the request register: {exc}") from exc
        if after != state:
            self._requests.change(request_id, after.fields())


# -- the query side ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRecord:
    """One request as the register holds it, and its deadline as it stands at ``now``."""

    request_id: str
    subject: str
    """The subject's pseudonym."""
    kind: str
    channel: str
    jurisdiction: str | None
    received_at: datetime
    received_seq: int
    identity_verified_at: datetime | None
    identity_verified_seq: int | None
    extension_days: int
    """The days of every extension, together."""
    extensions: int
    status: str
    closed_at: datetime | None
    closed_seq: int | None
    refusal_ground: str | None
    last_seq: int
    # computed at the moment asked about
    due_at: datetime
    overdue: bool
    """Still open, and ``now`` is past the due date."""
    answered_late: bool
    """Closed after the due date."""
    days_left: int | None
    """Whole days until the due date (negative once overdue); ``None`` once closed."""

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def as_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


class RequestRegisterView:
    """Questions about data-subject requests, answered from the request register."""

    def __init__(
        self,
        db: ProjectionDatabase,
        due_days: int = 15,
        due_days_by_jurisdiction: Mapping[str, int] | None = None,
    ) -> None:
        self.db = db
        self.due_days = due_days
        self.due_days_by_jurisdiction = dict(due_days_by_jurisdiction or {})

    def list(
        self, now: datetime, *, overdue_only: bool = False, subject: str | None = None
    ) -> list[RequestRecord]:
        """Requests in the order they were received; ``subject`` is a pseudonym."""
        _check_aware(now)
        where: list[str] = []
        params: list[Any] = []
        if overdue_only:
            where.append(f"status IN ({', '.join('?' for _ in OPEN_STATUSES)})")
            params.extend(OPEN_STATUSES)
        if subject is not None:
            where.append("subject = ?")
            params.append(subject)
        rows = self.db.query(
            f"SELECT {', '.join(COLUMNS)} FROM {REQUESTS}"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY received_at, request_id",
            params,
        )
        records = [self._record(row, now) for row in rows]
        return [r for r in records if r.overdue] if overdue_only else records

    def get(self, request_id: str, now: datetime) -> RequestRecord | None:
        _check_aware(now)
        rows = self.db.query(
            f"SELECT {', '.join(COLUMNS)} FROM {REQUESTS} WHERE request_id = ?", (request_id,)
        )
        return self._record(rows[0], now) if rows else None

    def due_days_for(self, jurisdiction: str | None) -> int:
        return rules.due_days_for(jurisdiction, self.due_days, self.due_days_by_jurisdiction)

    def _record(self, row: Row, now: datetime) -> RequestRecord:
        stored = dict(zip(COLUMNS, row, strict=True))
        for name in COLUMNS:
            if name.endswith("_at") and stored[name] is not None:
                stored[name] = parse_utc(stored[name])
        stored["extension_days"] = int(stored["extension_days"])
        stored["extensions"] = int(stored["extensions"])
        due_at = rules.due_at(
            stored["received_at"],
            self.due_days_for(stored["jurisdiction"]),
            stored["extension_days"],
        )
        status = stored["status"]
        return RequestRecord(
            **stored,
            due_at=due_at,
            overdue=rules.overdue(status, due_at, now),
            answered_late=rules.answered_late(stored["closed_at"], due_at),
            days_left=rules.days_left(status, due_at, now),
        )


def _check_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime (with its offset)")


def _plain(value: Any) -> Any:
    """A value as JSON holds it: times in the stored form."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return value
