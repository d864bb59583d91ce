"""A fact's time is RFC 3339 text, never a number of seconds: pydantic's own parser would read
``"1700000000"`` (and ``"0"``) as Unix seconds in UTC, a careless emitter's epoch that names no
offset and that the OpenAPI document's ``date-time`` refuses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import ValidationError
from ledger.events import parse_fact

CONSENT: dict[str, Any] = {
    "type": "consent.given",
    "event_id": "evt-time",
    "subject": "user-1",
    "purposes": ["marketing_email"],
    "policy_version": "2026-03",
    "collection_method": "web_form",
}


def rules_of(occurred_at: Any) -> set[str]:
    try:
        parse_fact(dict(CONSENT, occurred_at=occurred_at))
    except ValidationError as exc:
        return {p.rule for p in exc.problems if p.field == "occurred_at"}
    return set()


@given(st.integers(min_value=0, max_value=4_102_444_799))
def test_an_epoch_as_text_is_refused(epoch: int) -> None:
    """Every Unix time from 1970 to 2099, as digits (and with a fraction), is not a time."""
    assert rules_of(str(epoch)) == {"datetime_parsing"}
    assert rules_of(f"{epoch}.5") == {"datetime_parsing"}


@pytest.mark.parametrize("value", [0, 1_700_000_000, 1.7e9, True, None, [], {}])
def test_a_time_is_text(value: Any) -> None:
    assert rules_of(value) == {"datetime_type"}


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("2026-03-05T21:14:03+09:00", None),
        ("2026-03-05T21:14:03.123456-09:30", None),
        ("2026-03-05 21:14:03Z", None),
        ("2026-03-05T21:14:03", "timezone_aware"),
        ("2026-03-05", "datetime_parsing"),
        (" 2026-03-05T21:14:03Z", "datetime_parsing"),
        ("2026-03-05T24:00:00Z", "datetime_parsing"),
        ("2026-03-05T21:14:03+14:01", "offset_out_of_range"),
        ("1969-12-31T23:59:59Z", "time_out_of_range"),
    ],
)
def test_text_times_are_judged_as_before(value: str, rule: str | None) -> None:
    assert rules_of(value) == ({rule} if rule else set())
