"""The suite's table says what each figure was measured against, and refuses a ratio taken
under less load than its label names (``.venv/bin/pytest bench/test_figures.py``)."""

from __future__ import annotations

from figures import Figure, format_table, reached_enough
from hypothesis import given
from hypothesis import strategies as st

rates = st.floats(min_value=1.0, max_value=1e6, allow_nan=False)


@given(reached=rates, target=rates)
def test_a_ratio_is_refused_exactly_when_the_load_reached_is_below_90_percent(
    reached: float, target: float
) -> None:
    refused = reached_enough(reached, target)
    assert bool(refused) == (reached < 0.9 * target)
    if refused:
        assert f"{target:,.0f} ev/s" in refused


def test_without_a_target_load_the_ratio_is_refused() -> None:
    assert "not measured" in reached_enough(100.0, 0.0)


def figure(**overrides: object) -> Figure:
    fields: dict[str, object] = dict(
        row="decision-postgres",
        what="decision p99 at 50% of max ingest (PG): 150 of 180 ev/s reached",
        value=12.0,
        unit="ms",
        target="<= 2x idle and <= 10 ms",
        passed=False,
        baselines=[("same decisions, no ingest", 4.0)],
    )
    fields.update(overrides)
    return Figure(**fields)  # type: ignore[arg-type]


def test_a_refused_figure_keeps_its_value_but_prints_no_ratio_and_no_verdict() -> None:
    why = reached_enough(150.0, 180.0)
    refused = figure(refused=why)
    assert refused.ratio() is None
    assert refused.verdict() == "-"
    assert refused.record()["ratio"] is None
    table = format_table([refused])
    assert "refused" in table
    assert "12.00 ms" in table
    assert "FAIL" not in table
    assert f"1. no ratio: {why}" in table


def test_a_measured_figure_prints_its_ratio_to_the_first_baseline_and_its_verdict() -> None:
    shown = figure(baselines=[("same decisions, no ingest", 4.0), ("other", 24.0)])
    assert shown.ratio() == 3.0
    assert shown.ratio(1) == 0.5
    table = format_table([shown])
    first, second = (line for line in table.splitlines() if "ms (" in line)
    assert "3.00" in first and "FAIL" in first
    assert "0.50" in second and "(same figure)" in second


def test_a_figure_without_a_baseline_or_target_is_neither_passed_nor_failed() -> None:
    lag = figure(row="lag", unit="s", value=0.5, baselines=[], passed=None, target="<= 1 s")
    assert lag.ratio() is None
    row = format_table([lag]).splitlines()[2]
    assert row.rstrip(" |").endswith("-")
