"""The command line accepts the times it prints (RFC 3339 with fractions and Z), dates, and
offsets, and refuses the rest naming the option: what a privacy officer pastes back in."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from api.cli.params import MOMENT
from ledger.config import Settings
from ledger.mapper import format_time
from tests import facts
from tests.cli_runner import run_cli


def test_a_printed_time_goes_back_in_as_it_was_printed(settings: Settings) -> None:
    pol = facts.policy()
    subject = facts.ref("user")
    lines = "\n".join(
        orjson.dumps(f).decode() for f in [pol, facts.consent(subject, pol["version"])]
    )
    assert run_cli(settings, "import", "-", stdin=lines).exit_code == 0
    state = orjson.loads(run_cli(settings, "consent", "state", subject).output)
    since = state["purposes"][0]["since"]  # as the tool prints it: ...T..:..:...ffffffZ
    assert since.endswith("Z") and "." in since
    at = run_cli(settings, "consent", "check", subject, "marketing_email", "--at", since)
    assert at.exit_code == 0, at.output
    assert orjson.loads(at.output)["allowed"] is True
    rows = run_cli(settings, "disclosures", "--from", since, "--to", "2199-12-31")
    assert rows.exit_code == 0, rows.output


def test_times_it_cannot_use_are_refused_naming_the_option(settings: Settings) -> None:
    for value, why in (
        ("yesterday", "is not a time"),
        ("2026-13-01", "is not a time"),
        ("9999-01-01", "from 1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z"),
        ("0001-01-01T00:00:00+14:00", "from 1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z"),
        ("9999-12-31T23:59:59-14:00", "from 1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z"),
        ("2026-04-01T00:00:00+14:01", "within -14:00 and +14:00"),
    ):
        result = run_cli(settings, "consent", "check", "user-1", "marketing_email", "--at", value)
        assert result.exit_code == 2, result.output
        assert "--at" in result.output and why in result.output


def test_the_bounds_are_the_http_apis(settings: Settings) -> None:
    """The same times as a query parameter: the horizon and offsets of 14 hours included."""
    policy = orjson.dumps(facts.policy()).decode()  # marketing_email: a known purpose
    assert run_cli(settings, "import", "-", stdin=policy).exit_code == 0
    for value in ("2200-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "2026-04-01T00:00:00-14:00"):
        result = run_cli(settings, "consent", "check", "user-1", "marketing_email", "--at", value)
        assert result.exit_code == 3, result.output  # answered (no such subject: no)


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2199, 12, 30), timezones=st.just(UTC)
    )
)
def test_every_time_the_ledger_writes_reads_back_as_the_same_moment(moment: datetime) -> None:
    assert MOMENT.convert(format_time(moment), None, None) == moment
