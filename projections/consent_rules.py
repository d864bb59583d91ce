"""When consent is valid: the rules live in :mod:`ledger.verifier.consent_rules`.

They are pure and need only the standard library, so the offline verifier re-derives the
report's verdicts with the same code the read models use. Re-exported here for readers of
``projections``.
"""

from __future__ import annotations

from ledger.verifier.consent_rules import (
    DPV_STATUS,
    Age,
    Decision,
    Interval,
    Policy,
    Verdict,
    age_on,
    in_time_order,
    intervals,
    moment_text,
    superseded_at,
    verdict_at,
)

__all__ = [
    "DPV_STATUS",
    "Age",
    "Decision",
    "Interval",
    "Policy",
    "Verdict",
    "age_on",
    "in_time_order",
    "intervals",
    "moment_text",
    "superseded_at",
    "verdict_at",
]
