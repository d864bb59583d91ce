"""Times as the log stores them: RFC 3339, UTC, microseconds, ``Z``.

Stored times compare as strings, so the rules compare them without parsing. Standard library
only: the projections and the offline verifier share these helpers.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc(text: str) -> str:
    """Any RFC 3339 time as the stored form: UTC, microseconds, ``Z``."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no offset")
    return stored(moment)


def parse_utc(text: str) -> datetime:
    """A stored (or any RFC 3339) time as an aware datetime."""
    return datetime.fromisoformat(text)


def stored(moment: datetime) -> str:
    """An aware datetime in the stored form."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
