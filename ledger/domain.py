"""What every ledger aggregate and event shares, built on ``eventsourcing`` 9.5.

Each recorded fact is one :class:`LedgerEvent` of one aggregate. Its attributes are the
envelope (``event_id``, ``occurred_at``, ``backdated``) and ``data``: the fact's fields as
stored, personal data already sealed (see :mod:`ledger.sealing`). ``TYPE`` is the catalogue
name that the signed entry carries; the Python class never appears in stored bytes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from ledger.errors import ValidationError

LEDGER_NAMESPACE = UUID("6f1c3c9e-2b8e-4d52-9a57-0c0f7d0e5a11")


def stream_id(kind: str, natural_id: str) -> UUID:
    """The aggregate id of a policy version, recipient, incident, request ... by its own id."""
    return uuid5(LEDGER_NAMESPACE, f"{kind}:{natural_id}")


class LedgerEvent(Aggregate.Event):
    TYPE: ClassVar[str] = ""
    event_id: str | None
    occurred_at: datetime
    backdated: bool
    data: dict[str, Any]
    emitter: dict[str, Any] | None
    """The emitting service's signature over the request it sent, when it signs (else None)."""


class LedgerCreated(LedgerEvent, Aggregate.Created):
    pass


class LedgerAggregate(Aggregate):
    """An aggregate whose events are catalogue facts."""

    def record(self, event_class: type[LedgerEvent], **envelope: Any) -> None:
        self.trigger_event(event_class, **envelope)


EVENT_CLASSES: dict[str, type[LedgerEvent]] = {}
AGGREGATE_OF_CREATED: dict[type[LedgerEvent], type[LedgerAggregate]] = {}


def register(aggregate_class: type[LedgerAggregate]) -> type[LedgerAggregate]:
    """Class decorator: index the aggregate's event classes by their catalogue ``TYPE``."""
    for value in vars(aggregate_class).values():
        if isinstance(value, type) and issubclass(value, LedgerEvent) and value.TYPE:
            if value.TYPE in EVENT_CLASSES:
                raise TypeError(f"event type {value.TYPE} is registered twice")
            EVENT_CLASSES[value.TYPE] = value
            if issubclass(value, LedgerCreated):
                AGGREGATE_OF_CREATED[value] = aggregate_class
    return aggregate_class


def rule(field: str, name: str, message: str) -> ValidationError:
    """A domain rule broken by a command: reported like any other field problem."""
    return ValidationError.single(field, name, message)
