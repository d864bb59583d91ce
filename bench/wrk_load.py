"""The load generator of the suite's HTTP rows: wrk (Debian package) with the Lua scripts here.

wrk is written in C and leaves the two cores to the server it loads; a Python generator fast
enough to load it would take one of them. wrk has no rate option, so ``pace.lua`` gives each
wrk thread a fixed schedule (``rate=``): requests leave at fixed slots, and a slot already past
leaves at once, so the offered rate holds while connections are free (wrk2's ``-R``, which
Debian does not package). ``decision.lua`` also times each question from its slot, not from its
send (wrk2's correction for coordinated omission). ``ingest.lua`` can count the answers that
arrive inside a window (``window=``, ``CLOCK_MONOTONIC`` as ``time.monotonic()``), which is how
the suite knows the load actually reached while it measured something else.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
INGEST_LUA = BENCH / "ingest.lua"
DECISION_LUA = BENCH / "decision.lua"


@dataclass
class Latencies:
    """Latencies the Lua scripts kept themselves (``pace.report``), in ms."""

    n: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float


@dataclass
class WrkResult:
    """wrk's summary: requests answered (errors included), its latency percentiles from each
    request's send, and what the scripts counted."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    connections: int
    batch: int
    offered_rate: float | None = None
    """Requests a second the schedule offered, or None for wrk's closed loop (as fast as it can)."""
    status_2xx: int | None = None
    status_503: int | None = None
    status_other: int | None = None
    window_ok: int | None = None
    """2xx answers that arrived inside the window (ingest.lua)."""
    window_bad: int | None = None
    from_due: Latencies | None = None
    """decision.lua: latencies counted from each question's slot (coordinated omission)."""
    accepted: Latencies | None = None
    """ingest.lua, one connection a thread: latencies of the 2xx answers alone."""
    refused: Latencies | None = None
    """ingest.lua, one connection a thread: latencies of the 503 answers alone."""

    @property
    def from_due_p99_ms(self) -> float | None:
        return None if self.from_due is None else self.from_due.p99_ms

    @property
    def requests_per_s(self) -> float:
        return (self.requests - self.errors) / self.seconds

    @property
    def events_per_s(self) -> float:
        return self.requests_per_s * self.batch


RESULT = re.compile(
    r"LEDGER_RESULT requests=(\d+) errors=(\d+) seconds=([\d.]+) p50_ms=([\d.]+) "
    r"p99_ms=([\d.]+) p999_ms=([\d.]+) max_ms=([\d.]+)"
)
COUNTS = re.compile(
    r"LEDGER_COUNTS window_ok=(\d+) window_bad=(\d+) status_2xx=(\d+) status_503=(\d+) "
    r"status_other=(\d+)"
)
LATENCIES = r" n=(\d+) p50_ms=([\d.]+) p99_ms=([\d.]+) p999_ms=([\d.]+) max_ms=([\d.]+)"


def latencies(name: str, out: str) -> Latencies | None:
    found = re.search(name + LATENCIES, out)
    if found is None:
        return None
    return Latencies(int(found[1]), *(float(found[i]) for i in range(2, 6)))


def threads_for(connections: int) -> int:
    return min(2, connections)


def wrk_command(
    url: str, seconds: float, connections: int, script: Path, threads: int | None = None
) -> list[str]:
    threads = threads or threads_for(connections)
    return [
        *("wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s"),
        *("-s", str(script), url),
    ]


def lua_env(threads: int, rate: float | None, **extra: str) -> dict[str, str]:
    """The environment of a wrk run: pace.lua on LUA_PATH, the schedule, the script's own."""
    env = dict(os.environ, LUA_PATH=f"{BENCH}/?.lua;;", LEDGER_THREADS=str(threads), **extra)
    env["LEDGER_RATE"] = f"{rate:.3f}" if rate else "0"
    return env


def parse_wrk(out: str, connections: int, batch: int, rate: float | None = None) -> WrkResult:
    found = RESULT.search(out)
    if found is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    result = WrkResult(
        requests=int(found[1]),
        errors=int(found[2]),
        seconds=float(found[3]),
        p50_ms=float(found[4]),
        p99_ms=float(found[5]),
        p999_ms=float(found[6]),
        max_ms=float(found[7]),
        connections=connections,
        batch=batch,
        offered_rate=rate,
    )
    counts = COUNTS.search(out)
    if counts is not None:
        result.window_ok, result.window_bad = int(counts[1]), int(counts[2])
        result.status_2xx, result.status_503 = int(counts[3]), int(counts[4])
        result.status_other = int(counts[5])
    result.from_due = latencies("LEDGER_FROM_DUE", out)
    result.accepted = latencies("LEDGER_ACCEPTED", out)
    result.refused = latencies("LEDGER_REFUSED", out)
    return result


@dataclass
class Ingest:
    """A run of ingest.lua against ``url``: one new ``consent.given`` per fact, ``batch`` facts
    a request, from ``connections`` connections, closed loop or at ``rate`` requests a second."""

    url: str
    token: str
    policy: str
    connections: int
    batch: int = 1
    rate: float | None = None
    count_status: bool = False
    window: tuple[float, float] | None = None
    """(from, to) in ``time.monotonic()`` seconds: count the answers that arrive inside."""
    one_connection: bool = False
    """One connection a wrk thread, so the script times accepted and refused answers apart."""
    retry_after: bool = False
    """After a 503, wait what its ``Retry-After`` says before the next request."""

    def threads(self) -> int:
        return self.connections if self.one_connection else threads_for(self.connections)

    def command(self, seconds: float) -> list[str]:
        return wrk_command(
            f"{self.url}/v1/events", seconds, self.connections, INGEST_LUA, self.threads()
        )

    def env(self) -> dict[str, str]:
        extra = {
            "LEDGER_TOKEN": self.token,
            "LEDGER_POLICY": self.policy,
            "LEDGER_BATCH": str(self.batch),
            "LEDGER_RUN": f"{self.batch}-{time.time_ns()}",
            "LEDGER_COUNT_STATUS": "1" if self.count_status else "0",
            "LEDGER_ONE_CONNECTION": "1" if self.one_connection else "0",
            "LEDGER_RETRY_AFTER": "1" if self.retry_after else "0",
        }
        if self.window is not None:
            extra["LEDGER_WINDOW_FROM_MS"] = f"{1000 * self.window[0]:.3f}"
            extra["LEDGER_WINDOW_TO_MS"] = f"{1000 * self.window[1]:.3f}"
        return lua_env(self.threads(), self.rate, **extra)

    def run(self, seconds: float) -> WrkResult:
        done = subprocess.run(
            self.command(seconds), env=self.env(), capture_output=True, text=True, check=True
        )
        return self.parse(done.stdout)

    def start(self, seconds: float) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(seconds),
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def parse(self, out: str) -> WrkResult:
        return parse_wrk(out, self.connections, self.batch, self.rate)


@dataclass
class Decisions:
    """A run of decision.lua: ``rate`` questions a second from ``connections`` connections, one
    per wrk thread, about ``subjects`` subjects named ``prefix0`` .. recorded before."""

    url: str
    token: str
    prefix: str
    subjects: int
    purpose: str
    rate: float
    connections: int = 2

    def command(self, seconds: float) -> list[str]:
        url = f"{self.url}/v1/consent/decision"
        return wrk_command(url, seconds, self.connections, DECISION_LUA, self.connections)

    def env(self) -> dict[str, str]:
        return lua_env(
            self.connections,
            self.rate,
            LEDGER_TOKEN=self.token,
            LEDGER_SUBJECT_PREFIX=self.prefix,
            LEDGER_SUBJECTS=str(self.subjects),
            LEDGER_PURPOSE=self.purpose,
        )

    def run(self, seconds: float) -> WrkResult:
        done = subprocess.run(
            self.command(seconds), env=self.env(), capture_output=True, text=True, check=True
        )
        return parse_wrk(done.stdout, self.connections, 1, self.rate)
