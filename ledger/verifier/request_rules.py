"""Data-subject requests: what each step records, and the deadline to answer (GDPR 12(3)).

A request is due a number of days after it was received (15 by default, as the first
customer's policy says; a jurisdiction may have its own), plus the days of every extension. An
open request past its due date is overdue; a request closed (fulfilled or refused) after it was
answered late. The first identity verification is the one shown; a request is closed once.

Standard library only: the request register and the offline verifier's report use these, the
steps through the one fold they share (:mod:`ledger.verifier.requests_fold`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

RECEIVED = "request.received"
IDENTITY_VERIFIED = "request.identity_verified"
EXTENDED = "request.extended"
FULFILLED = "request.fulfilled"
REFUSED = "request.refused"
REQUEST_TYPES = frozenset({RECEIVED, IDENTITY_VERIFIED, EXTENDED, FULFILLED, REFUSED})

OPEN_STATUSES = ("received", "identity_verified")
CLOSING = {FULFILLED: "fulfilled", REFUSED: "refused"}
DEFAULT_DUE_DAYS = 15


def contribution(
    type_name: str, seq: int, occurred_at: str, data: Mapping[str, Any]
) -> dict[str, Any]:
    """The fields an event fills (other than the status and the extension totals)."""
    if type_name == RECEIVED:
        return {
            "kind": data["kind"],
            "channel": data["channel"],
            "jurisdiction": data.get("jurisdiction"),
            "received_at": occurred_at,
        }
    if type_name == IDENTITY_VERIFIED:
        return {"identity_verified_at": occurred_at, "identity_verified_seq": seq}
    if type_name in CLOSING:
        return {"closed_at": occurred_at, "closed_seq": seq, "refusal_ground": data.get("ground")}
    if type_name == EXTENDED:
        return {}
    raise ValueError(f"{type_name} is not a request fact")


def due_days_for(
    jurisdiction: str | None,
    default: int = DEFAULT_DUE_DAYS,
    by_jurisdiction: Mapping[str, int] | None = None,
) -> int:
    """The days to answer a request of ``jurisdiction`` (before extensions)."""
    if jurisdiction is None or by_jurisdiction is None:
        return default
    return by_jurisdiction.get(jurisdiction, default)


def due_at(received_at: datetime, days: int, extension_days: int) -> datetime:
    return received_at + timedelta(days=days + extension_days)


def overdue(status: str, due: datetime, now: datetime) -> bool:
    """Still open, and ``now`` is past the due date."""
    return status in OPEN_STATUSES and now > due


def answered_late(closed_at: datetime | None, due: datetime) -> bool:
    return closed_at is not None and closed_at > due


def days_left(status: str, due: datetime, now: datetime) -> int | None:
    """Whole days until the due date (negative once overdue); ``None`` once closed."""
    if status not in OPEN_STATUSES:
        return None
    return math.floor((due - now) / timedelta(days=1))
