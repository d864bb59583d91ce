"""The catalogue's bounds keep every derived deadline inside the horizon the stack computes with."""

from __future__ import annotations

from datetime import timedelta, timezone

from ledger import events as ev
from projections.read_models import ReadModelSettings


def test_every_derived_deadline_of_the_latest_time_is_before_the_horizon() -> None:
    latest = ev.LATEST - timedelta(microseconds=1)
    # Retention periods and the legal hold: at most MAX_PERIOD_DAYS from a time.
    assert latest + timedelta(days=ev.MAX_PERIOD_DAYS) < ev.HORIZON
    # A request: the longest configurable due days, plus every extension, each corrected to
    # the most one extension may be (corrections move the total by the difference).
    most_extensions = ev.MAX_TOTAL_EXTENSION_DAYS  # each extension is at least one day
    due = timedelta(days=365 + most_extensions * ev.MAX_EXTENSION_DAYS)
    assert latest + due < ev.HORIZON
    # The authority deadline: at most a year of hours.
    assert latest + timedelta(hours=24 * 365) < ev.HORIZON
    # The read models' settings cannot configure longer periods than these.
    settings = ReadModelSettings.from_env(
        {
            "CONSENT_LEDGER_LEGAL_HOLD_DAYS": str(ev.MAX_PERIOD_DAYS),
            "CONSENT_LEDGER_REQUEST_DUE_DAYS": "365",
            "CONSENT_LEDGER_AUTHORITY_DEADLINE_HOURS": str(24 * 365),
        }
    )
    assert settings.legal_hold_days <= ev.MAX_PERIOD_DAYS


def test_the_earliest_and_latest_times_hold_every_offset() -> None:
    for minutes in (-14 * 60, 0, 14 * 60):
        offset = timedelta(minutes=minutes)
        for moment in (ev.EARLIEST, ev.LATEST - timedelta(microseconds=1)):
            shifted = moment.astimezone(timezone(offset))
            assert ev.check_time(shifted) == shifted
