"""The ledger's errors, one tree under :class:`LedgerError`.

::

    LedgerError
    ├── ValidationError          bad input; carries one or more field problems
    ├── IdempotencyConflictError an event id was reused with different content
    ├── ConcurrencyError         a stream kept changing under a command (retries exhausted)
    ├── OverloadedError          too many events in flight: refused before any work, retry later
    ├── StorageError             the database failed or refused a write
    ├── KeyMaterialError         a signing or master key is missing, unreadable or wrong
    └── EventNotFoundError       no event at the requested sequence number

Each error builds its message from its fields, then is raised; callers (the CLI, the HTTP
problem handlers) act on the class and read the fields, never parse the message.
"""

from __future__ import annotations

from dataclasses import dataclass


class LedgerError(Exception):
    """The root of every error the ledger raises on purpose."""


@dataclass(frozen=True)
class FieldProblem:
    """One broken rule: where (``index`` in the batch, dotted ``field`` path), which rule, why."""

    field: str
    rule: str
    message: str
    index: int | None = None

    def describe(self) -> str:
        where = self.field if self.index is None else f"[{self.index}].{self.field}"
        return f"{where}: {self.message} (rule: {self.rule})"


class ValidationError(LedgerError):
    """Raised when an event or a batch breaks a rule; nothing of it has been stored."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        if not problems:
            raise ValueError("a ValidationError needs at least one problem")
        self.problems = problems
        super().__init__("; ".join(problem.describe() for problem in problems))

    @classmethod
    def single(cls, field: str, rule: str, message: str) -> ValidationError:
        return cls([FieldProblem(field=field, rule=rule, message=message)])

    def at_index(self, index: int) -> ValidationError:
        """The same problems, located at item ``index`` of a batch."""
        return ValidationError(
            [
                FieldProblem(field=p.field, rule=p.rule, message=p.message, index=index)
                for p in self.problems
            ]
        )


class IdempotencyConflictError(LedgerError):
    """Raised when an event id that was recorded before arrives with different content."""

    def __init__(self, event_id: str, seq: int, index: int | None = None) -> None:
        self.event_id = event_id
        self.seq = seq
        self.index = index
        where = "" if index is None else f"item {index}: "
        super().__init__(
            f"{where}event_id {event_id!r} was already recorded as event {seq} "
            "with different content; an event id can name only one event"
        )


class ConcurrencyError(LedgerError):
    """Raised when a command kept losing version races after every retry."""


class OverloadedError(LedgerError):
    """Raised at once, before any validation, when admitting an append would put more events
    in flight (admitted but not yet committed) than the ledger's bound; nothing of it is stored.

    Past saturation a queue only grows latency, never throughput: refusing early keeps the
    latency of the appends admitted bounded, and tells the sender when to come back.
    """

    def __init__(self, events: int, pending: int, limit: int, retry_after: int) -> None:
        self.events = events
        self.pending = pending
        self.limit = limit
        self.retry_after = retry_after
        """Whole seconds after which the events in flight now should be committed, by the
        committer's recent rate (at least 1)."""
        what = f"the {events} of this request were" if events else "this request was"
        super().__init__(
            f"{pending} events are in flight and this ledger admits at most {limit}: "
            f"{what} not admitted; nothing of it was stored, and "
            f"sending it again in {retry_after} s is safe (its event ids make it idempotent)"
        )


class StorageError(LedgerError):
    """Raised when the database cannot be reached or refuses a write."""


class SubjectErasedError(LedgerError):
    """Personal data of an erased subject was about to be sealed: the append is refused."""

    def __init__(self, pseudonyms: list[str]) -> None:
        self.pseudonyms = sorted(pseudonyms)
        named = f"subject {', '.join(self.pseudonyms)}" if self.pseudonyms else "the subject"
        super().__init__(
            f"{named} was erased: nothing more is recorded for "
            "it; to record facts about a new relationship with the same reference, start a new "
            "lifecycle first (a subject.lifecycle_started fact)"
        )


class KeyMaterialError(LedgerError):
    """Raised when a signing key or the master key is missing, unreadable or wrong."""


class EventNotFoundError(LedgerError):
    """Raised when no event has the requested sequence number."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        super().__init__(f"no event has sequence number {seq}")


FORMAT_1_LOG = (
    "the log in {where} was written by a development version (entry format 1, before "
    "entries carried scope tags); this version reads format 2 only: start a new data "
    "directory or schema and import the facts again"
)
