"""Maps ledger events to the bytes the log stores, and back.

Writing, :meth:`LedgerMapper.to_stored_event` encodes the event's *body* (type, versions,
stream, envelope, ``data``) as canonical JSON and names the scopes the event concerns; the
recorder then signs an entry that commits to the body's hash and to the scopes' tags, once the
global sequence number is known (see :mod:`ledger.recorder`, :mod:`ledger.verifier.entry`).
Reading, :meth:`LedgerMapper.to_domain_event` takes the stored body and rebuilds the event,
upcasting old ``type_version`` bodies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

import orjson
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent, Transcoder
from eventsourcing.utils import get_topic

from ledger.domain import AGGREGATE_OF_CREATED, EVENT_CLASSES, LedgerCreated, LedgerEvent
from ledger.verifier.scopes import scopes_of


@dataclass(frozen=True)
class LedgerStoredEvent(StoredEvent):
    """A stored event (``state`` is its body) and the scopes its entry will be tagged with."""

    scopes: tuple[str, ...] = field(default=())


class OrjsonTranscoder(Transcoder):
    """Canonical JSON: UTF-8, sorted keys, no whitespace. Values must already be JSON types."""

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)

    def decode(self, data: bytes) -> Any:
        return orjson.loads(data)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as every stored timestamp is written."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


MentionsOpener = Callable[[dict[str, Any], UUID, int], dict[str, Any]]
"""Stored data, its stream and version -> the data with its mentions opened."""


class LedgerMapper(Mapper[UUID]):
    def __init__(self, mentions: MentionsOpener | None = None) -> None:
        super().__init__(transcoder=OrjsonTranscoder())
        self._mentions = mentions
        """Opens the sealed pseudonyms of a fact about many subjects: the entry is tagged for
        each of those subjects (:mod:`ledger.verifier.mentions`)."""

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        event = cast(LedgerEvent, domain_event)
        occurred_at = format_time(event.occurred_at)
        body: dict[str, Any] = {
            "backdated": event.backdated,
            "data": event.data,
            "event_id": event.event_id,
            "occurred_at": occurred_at,
            "recorded_at": format_time(event.timestamp),
            "stream": str(event.originator_id),
            "stream_version": event.originator_version,
            "type": event.TYPE,
            "type_version": getattr(type(event), "class_version", 1),
        }
        if event.emitter is not None:
            body["emitter"] = event.emitter
        return LedgerStoredEvent(
            originator_id=event.originator_id,
            originator_version=event.originator_version,
            topic=event.TYPE,
            state=self.transcoder.encode(body),
            scopes=tuple(scopes_of(event.TYPE, self._scoped_data(event), occurred_at)),
        )

    def _scoped_data(self, event: LedgerEvent) -> dict[str, Any]:
        if self._mentions is None:
            return event.data
        return self._mentions(event.data, event.originator_id, event.originator_version)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        try:
            body = self.transcoder.decode(stored_event.state)
            cls = EVENT_CLASSES[body["type"]]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            msg = (
                f"stored event {stored_event.originator_id} v{stored_event.originator_version} "
                f"is not a ledger event body: {exc!r}"
            )
            raise MapperDeserialisationError(msg) from exc
        return self.event_from_body(
            cls, body, UUID(str(stored_event.originator_id)), stored_event.originator_version
        )

    @staticmethod
    def event_from_body(
        cls: type[LedgerEvent], body: dict[str, Any], stream: UUID, stream_version: int
    ) -> LedgerEvent:
        state: dict[str, Any] = {
            "originator_id": stream,
            "originator_version": stream_version,
            "timestamp": parse_time(body["recorded_at"]),
            "event_id": body["event_id"],
            "occurred_at": parse_time(body["occurred_at"]),
            "backdated": body["backdated"],
            "emitter": body.get("emitter"),
            "data": body["data"],
        }
        if issubclass(cls, LedgerCreated):
            state["originator_topic"] = get_topic(AGGREGATE_OF_CREATED[cls])
        from_version = int(body.get("type_version", 1))
        while from_version < getattr(cls, "class_version", 1):
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event
