"""What a ``correction.recorded`` does to the fact it corrects.

The corrected fact stays in the log as recorded; readers apply ``corrected_fields`` on top of
it: each named field of the fact's data is replaced, and ``occurred_at`` (given with any offset)
replaces the fact's time in the stored form. Several corrections of one fact build on each
other, in the order they were recorded; a correction of a correction changes nothing (its
``corrected_fields`` are applied as recorded). The read models
(``projections.base.corrected_event``) and the report (:mod:`ledger.verifier.report`) apply
corrections with this one function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ledger.verifier.times import utc

CORRECTION = "correction.recorded"


def apply_correction(
    occurred_at: str, data: Mapping[str, Any], fields: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """``(occurred_at, data)`` of a fact once ``fields`` (its ``corrected_fields``) apply."""
    corrected = dict(data)
    for name, value in fields.items():
        if name == "occurred_at":
            occurred_at = utc(str(value))
        else:
            corrected[name] = value
    return occurred_at, corrected


def apply_corrections(
    occurred_at: str, data: Mapping[str, Any], corrections: Iterable[Mapping[str, Any]]
) -> tuple[str, dict[str, Any]]:
    """Several corrections of one fact, in the order they were recorded."""
    result = dict(data)
    for fields in corrections:
        occurred_at, result = apply_correction(occurred_at, result, fields)
    return occurred_at, result
