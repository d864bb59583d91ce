"""What a register's fold reads of an event, and what it refuses.

A fold is ``fold(state, fact) -> state``: the state of one request or one incident after one
more of its facts, computed from the fact alone. The read models (``projections/requests.py``,
``projections/incidents.py``) store the folded state in their rows, and the report
(:mod:`ledger.verifier.report`) renders from it, so each register has one definition.

Standard library only, like the rest of the verifier.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Fact(Protocol):
    """An event as a fold reads it, corrections applied or not: a read model's
    ``LoggedEvent`` and the report's facts both are one. Subjects in ``data`` are pseudonyms
    (mentions already opened) or, in a subject's bundle, withheld placeholders."""

    @property
    def type(self) -> str: ...

    @property
    def seq(self) -> int: ...

    @property
    def occurred_at(self) -> str:
        """The stored form: RFC 3339, UTC, microseconds, ``Z``."""
        ...

    @property
    def data(self) -> Mapping[str, Any]: ...


class FoldError(ValueError):
    """A fact the state cannot take: a step of a request or incident never started, a second
    start, or a fact of another register."""
