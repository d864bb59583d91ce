"""Fixed-rate scheduling: runs stay on their slots, whatever each run costs."""

from __future__ import annotations

import pytest

from api.schedule import run_every


class FakeTime:
    """A clock and a stop event in one: waiting advances the clock; stop after ``runs``."""

    def __init__(self, runs: int) -> None:
        self.now = 100.0
        self.waits: list[float] = []
        self.runs = runs

    def clock(self) -> float:
        return self.now

    def wait(self, timeout: float) -> bool:
        self.waits.append(round(timeout, 6))
        self.now += timeout
        return len(self.waits) > self.runs

    def set(self) -> None: ...


def test_a_run_that_takes_time_does_not_push_the_next_one_back() -> None:
    fake = FakeTime(runs=4)
    started: list[float] = []

    def action() -> None:
        started.append(round(fake.now, 6))
        fake.now += 0.3  # signing takes 0.3 s

    run_every(1.0, fake, action, clock=fake.clock)  # type: ignore[arg-type]
    assert started == [101.0, 102.0, 103.0, 104.0]
    assert fake.waits == [1.0, 0.7, 0.7, 0.7, 0.7]


def test_an_overrun_starts_the_next_run_at_once_without_making_up_missed_slots() -> None:
    fake = FakeTime(runs=3)
    started: list[float] = []

    def action() -> None:
        started.append(round(fake.now, 6))
        fake.now += 2.5 if len(started) == 1 else 0.1

    run_every(1.0, fake, action, clock=fake.clock)  # type: ignore[arg-type]
    assert started == [101.0, 103.5, 104.5]
    assert fake.waits == [1.0, 0.0, 0.9, 0.9]


def test_a_non_positive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        run_every(0, FakeTime(runs=0), lambda: None)  # type: ignore[arg-type]
