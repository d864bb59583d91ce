"""The console's sessions and clocks, on their own: a session ends when idle, when old and when
closed; memory stays bounded; the cookie's id is not kept; the 72-hour clock says the right
thing in every state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from api.http.console.sessions import Sessions
from api.http.console.views import clock_of, consent_strip, hours_text, last_months


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_ends_when_idle_old_or_closed() -> None:
    clock = Clock()
    sessions = Sessions(idle_seconds=60, max_seconds=300, clock=clock)
    session_id, session = sessions.open("cl_token")
    assert sessions.find(session_id) is session
    for _ in range(4):  # used every 50 s: never idle, but old after 300 s
        clock.now += 50
        assert sessions.find(session_id) is session
    clock.now += 101
    assert sessions.find(session_id) is None
    idle_id, _ = sessions.open("cl_token")
    clock.now += 61
    assert sessions.find(idle_id) is None
    closed_id, _ = sessions.open("cl_token")
    sessions.close(closed_id)
    assert sessions.find(closed_id) is None


def test_the_id_is_random_unknown_ids_find_nothing_and_it_is_not_kept() -> None:
    sessions = Sessions()
    first, one = sessions.open("cl_a")
    second, two = sessions.open("cl_a")
    assert first != second and one.csrf != two.csrf and len(first) >= 40
    assert first not in repr(vars(sessions))  # kept by its hash only
    for other in (None, "", "x", first[:-1], "y" * 1000):
        assert sessions.find(other) is None


def test_the_oldest_session_goes_when_there_are_too_many() -> None:
    sessions = Sessions(max_sessions=3)
    ids = [sessions.open(f"cl_{n}")[0] for n in range(5)]
    assert len(sessions) == 3
    assert [sessions.find(i) is not None for i in ids] == [False, False, True, True, True]


NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_the_clock_in_each_state() -> None:
    deadline = NOW + timedelta(hours=5, minutes=7)

    def clock(**fields: object) -> str:
        values: dict[str, object] = {
            "notified_at": None,
            "notified_late": False,
            "overdue": False,
            "risk": None,
            "closed": False,
        }
        values.update(fields)
        return clock_of(deadline, now=NOW, **values).text  # type: ignore[arg-type]

    assert clock() == "5 h 07 min left"
    assert (
        clock_of(
            NOW - timedelta(hours=3),
            notified_at=None,
            notified_late=False,
            overdue=True,
            risk="risk",
            closed=False,
            now=NOW,
        ).text
        == "overdue by 3 h 00 min"
    )
    assert clock(notified_at=NOW) == "authority notified in time"
    assert clock(notified_at=NOW, notified_late=True) == "authority notified late"
    assert clock(risk="unlikely") == "no notification due (risk unlikely)"
    assert clock(closed=True) == "closed without notification"


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_hours_text_reads_back_to_the_minute(hours: float) -> None:
    text = hours_text(hours)
    numbers = [int(part) for part in text.split() if part.isdigit()]
    assert numbers[0] * 60 + numbers[1] == int(abs(hours) * 60)
    assert text.endswith("left") == (hours >= 0)


def test_the_chart_months_run_twelve_to_this_one() -> None:
    months = last_months(datetime(2026, 2, 10, tzinfo=UTC))
    assert months[0] == "2025-03" and months[-1] == "2026-02" and len(set(months)) == 12


def test_a_consent_strip_colours_each_state_in_order() -> None:
    events = [
        ("given", "2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z"),
        ("renewal_requested", "2026-02-01T00:00:00Z", None),
        ("given", "2026-04-01T00:00:00Z", None),
        ("withdrawn", "2026-05-01T00:00:00Z", None),
    ]
    svg = consent_strip(events, NOW, "marketing_email: consent over time")
    titles = [t for t in svg.split("<title>")[1:]]
    states = [t.partition("</title>")[0] for t in titles]
    assert states == [
        "given from 2026-01-01",
        "expired from 2026-03-01",
        "given from 2026-04-01",
        "withdrawn from 2026-05-01",
        "renewal requested 2026-02-01",
    ]
    assert 'aria-label="marketing_email: consent over time"' in svg
    assert consent_strip([], NOW, "nothing") == ""
    lapsed = consent_strip(
        events[2:3], NOW, "x", lapsed=("renewal_required", "2026-05-10T00:00:00Z")
    )
    assert "given from 2026-04-01" in lapsed and "renewal_required from 2026-05-10" in lapsed
