"""What the suite reads from wrk's output, and how it asks wrk for a paced load
(``.venv/bin/pytest bench/test_wrk_load.py``; no server, no wrk needed)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from wrk_load import BENCH, Decisions, Ingest, parse_wrk

OUT = """Running 5s test @ http://127.0.0.1:8000/v1/events
LEDGER_RESULT requests=120 errors=20 seconds=10.000 p50_ms=1.50 p99_ms=9.00 p999_ms=12.00 \
max_ms=15.00
LEDGER_COUNTS window_ok=80 window_bad=5 status_2xx=100 status_503=20 status_other=0
LEDGER_ACCEPTED n=100 p50_ms=1000.000 p99_ms=4000.000 p999_ms=4100.000 max_ms=4200.000
LEDGER_REFUSED n=20 p50_ms=3.000 p99_ms=9.000 p999_ms=9.500 max_ms=9.900
"""


def test_the_summary_counts_and_each_latency_line_are_read() -> None:
    result = parse_wrk(OUT, connections=64, batch=500, rate=None)
    assert (result.requests, result.errors, result.seconds) == (120, 20, 10.0)
    assert result.events_per_s == 100 * 500 / 10
    assert (result.window_ok, result.window_bad, result.status_503) == (80, 5, 20)
    assert result.accepted is not None and result.accepted.p99_ms == 4000.0
    assert result.refused is not None and result.refused.n == 20
    assert result.from_due is None and result.from_due_p99_ms is None


def test_output_without_the_result_line_is_an_error_not_a_zero() -> None:
    try:
        parse_wrk("Running 5s test\n", connections=2, batch=1)
    except RuntimeError as error:
        assert "no result" in str(error)
    else:
        raise AssertionError("parsed a run that printed no result")


@given(connections=st.integers(min_value=1, max_value=128), rate=st.floats(1.0, 1e5))
def test_a_paced_ingest_splits_its_rate_over_the_threads_wrk_runs(
    connections: int, rate: float
) -> None:
    load = Ingest("http://x", "t", "p", connections, rate=rate, window=(10.0, 12.5))
    command, env = load.command(5), load.env()
    threads = int(next(a for a in command if a.startswith("-t"))[2:])
    assert env["LEDGER_THREADS"] == str(threads)
    assert float(env["LEDGER_RATE"]) == round(rate, 3)
    assert (env["LEDGER_WINDOW_FROM_MS"], env["LEDGER_WINDOW_TO_MS"]) == ("10000.000", "12500.000")
    assert str(BENCH) in env["LUA_PATH"] and (BENCH / "pace.lua").exists()


def test_timing_each_batch_runs_one_connection_per_wrk_thread() -> None:
    load = Ingest("http://x", "t", "p", 64, batch=500, one_connection=True, retry_after=True)
    command = load.command(20)
    assert "-t64" in command and "-c64" in command
    assert load.env()["LEDGER_ONE_CONNECTION"] == "1"
    assert load.env()["LEDGER_RETRY_AFTER"] == "1"
    assert Path(command[command.index("-s") + 1]).name == "ingest.lua"


def test_a_closed_loop_ingest_is_not_paced() -> None:
    assert Ingest("http://x", "t", "p", 64).env()["LEDGER_RATE"] == "0"


def test_decisions_are_asked_from_one_connection_per_thread_at_the_rate_given() -> None:
    ask = Decisions("http://x", "t", "dec-", 1000, "marketing_email", rate=100, connections=8)
    command, env = ask.command(5), ask.env()
    assert "-t8" in command and "-c8" in command
    assert (env["LEDGER_THREADS"], float(env["LEDGER_RATE"])) == ("8", 100.0)
    assert Path(command[command.index("-s") + 1]).name == "decision.lua"
