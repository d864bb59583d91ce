"""The throughput and latency suite: every target of the performance issue, one command.

    .venv/bin/python bench/suite.py [--quick] [--full] [--rows ROW,ROW] [--pg URL] [--profile]

It starts what it needs (a real ``consent-ledger serve`` on a fresh PostgreSQL schema and on a
fresh SQLite data directory, the read models and the checkpoint signer as processes of their
own, a no-op server for the HTTP baseline), loads each server with wrk from a separate process,
measures the baselines in the same run, and prints one table: figure, value, baseline, ratio,
target, pass/fail. The same figures go to ``bench/results/suite-<UTC timestamp>.json``.
Rows (``--rows``, default all): see ``ROWS`` below and ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from harness import (
    RESULTS_DIR,
    ROOT,
    announce,
    cli,
    free_port,
    machine_facts,
    markdown_table,
    temporary_directory,
    temporary_schema,
)

BENCH = Path(__file__).resolve().parent
INGEST_LUA = BENCH / "ingest.lua"
DECISION_LUA = BENCH / "decision.lua"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PURPOSE = "marketing_email"

ROWS = {
    "ingest1": "HTTP ingest, one event per request, 64 connections (PostgreSQL)",
    "ingest500": "HTTP ingest, 500 events per request (PostgreSQL)",
    "projections": "read models catching up from zero, all four",
    "decision": "consent decision p99 under 50% of max ingest (PostgreSQL)",
    "lag": "checkpoint lag under max ingest (PostgreSQL)",
    "export": "export and offline verify of the whole log (SQLite-filled ledger)",
    "sqlite": "HTTP ingest on the SQLite embedded default, one event per request",
}


# -- figures ------------------------------------------------------------------------------------


@dataclass
class Figure:
    row: str
    what: str
    value: float | None
    unit: str
    target: str
    passed: bool | None
    baselines: list[tuple[str, float | None]] = field(default_factory=list)
    """(what, value), the first is the row's main baseline; ratio = value / baseline."""
    detail: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return value / base


def number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms" or unit == "s":
        return f"{value:.2f} {unit}"
    if unit == "MB":
        return f"{value:.0f} MB"
    return f"{value:,.0f} {unit}"


def format_table(figures: list[Figure]) -> str:
    headers = ["figure", "value", "baseline", "ratio", "target", "result"]
    lines: list[list[str]] = []
    for f in figures:
        bases = f.baselines or [("", None)]
        for i, (what, base) in enumerate(bases):
            r = ratio(f.value, base)
            lines.append(
                [
                    f.what if i == 0 else "  (same figure)",
                    number(f.value, f.unit),
                    f"{number(base, f.unit)} ({what})" if what else "-",
                    "-" if r is None else f"{r:.2f}",
                    f.target if i == 0 else "",
                    ("-" if f.passed is None else "PASS" if f.passed else "FAIL") if i == 0 else "",
                ]
            )
    return markdown_table(headers, lines)


# -- processes ----------------------------------------------------------------------------------


def wait_healthy(url: str, processes: list[subprocess.Popen[bytes]], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        if any(p.poll() is not None for p in processes):
            raise RuntimeError(f"a process of the server at {url} exited")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server at {url} did not start")
        time.sleep(0.2)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process we started (by pid), then wait; SIGKILL what does not stop."""
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in reversed(processes):
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class LedgerServer:
    """``consent-ledger serve`` and, when ``separate``, ``projections run`` and
    ``checkpoint --every 0.5`` as processes of their own (``serve --no-projections --no-signer``,
    as docker-compose.yml runs it)."""

    def __init__(
        self, name: str, env: dict[str, str], logs: Path, workers: int, separate: bool
    ) -> None:
        self.name = name
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.separate = separate
        self.token = (
            cli(env, "clients", "add", "bench", "--scope", "admin").strip().splitlines()[-1]
        )
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []

    def _spawn(self, label: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{self.name}-{label}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", *args],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def __enter__(self) -> LedgerServer:
        serve = ["serve", "--port", str(self.port), "--log-level", "warning"]
        if self.workers > 1:
            serve += ["--workers", str(self.workers)]
        if self.separate:
            serve += ["--no-projections", "--no-signer"]
        self.server = self._spawn("serve", *serve)
        if self.separate:
            self._spawn("projections", "projections", "run")
            self._spawn("signer", "checkpoint", "--every", "0.5")
        wait_healthy(self.url, self.processes, 90)
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.processes)

    def post(self, body: Any) -> Any:
        response = httpx.post(f"{self.url}/v1/events", json=body, headers=self.headers, timeout=60)
        response.raise_for_status()
        return response.json()

    def publish_policy(self) -> str:
        version = f"bench-{secrets.token_hex(4)}"
        self.post(
            {
                "type": "policy.version_published",
                "event_id": f"policy-{version}",
                "occurred_at": datetime.now(UTC).isoformat(),
                "version": version,
                "effective_at": "2026-01-01T00:00:00Z",
                "material": False,
                "text_digest": "sha256:" + "ab" * 32,
                "purposes": [
                    {
                        "id": PURPOSE,
                        "name": "Marketing e-mail",
                        "legal_basis": "consent",
                        "retention_days": 730,
                    }
                ],
            }
        )
        return version

    def metrics(self) -> dict[str, float]:
        text = httpx.get(f"{self.url}/metrics", headers=self.headers, timeout=30).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out

    def commits(self) -> dict[str, float]:
        """The group-commit counters of /metrics (one worker's, when there are several)."""
        names = ("ledger_commit_seconds", "ledger_commit_events")
        found = self.metrics()
        return {
            f"{name}_{part}": found.get(f"{name}_{part}", 0.0)
            for name in names
            for part in ("sum", "count")
        }

    @contextlib.contextmanager
    def commit_meter(self) -> Iterator[dict[str, float]]:
        """Group commits during the block: how many, events in each, how long each took."""
        result: dict[str, float] = {}
        before = self.commits()
        t0 = time.monotonic()
        yield result
        after = self.commits()
        delta = {k: after[k] - before[k] for k in after}
        count = delta["ledger_commit_seconds_count"]
        if count:
            result["commits_per_s"] = round(count / (time.monotonic() - t0), 1)
            result["events_per_commit"] = round(delta["ledger_commit_events_sum"] / count, 2)
            result["commit_ms"] = round(1000 * delta["ledger_commit_seconds_sum"] / count, 2)

    def head(self) -> int:
        return int(self.metrics()["ledger_head"])

    def settle(self, limit_s: float = 120) -> float:
        """Wait until every read model has caught up (so that the next figure does not share
        the CPU with a catch-up); the seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit_s:
            lags = [v for k, v in self.metrics().items() if k.startswith("ledger_projection_lag_e")]
            if lags and max(lags) == 0:
                break
            time.sleep(0.5)
        return time.monotonic() - t0

    def worker_pids(self) -> list[int]:
        """The serve process and its uvicorn workers (children)."""
        pids = [self.server.pid]
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{self.server.pid}/task/{self.server.pid}/children")
            pids += [int(p) for p in children.read_text().split()]
        return pids

    def roles(self) -> dict[str, list[int]]:
        names = ["serve", "projections", "signer"] if self.separate else ["serve"]
        roles = {name: [p.pid] for name, p in zip(names, self.processes, strict=False)}
        roles["serve"] = self.worker_pids()
        return roles


@contextlib.contextmanager
def noop_server(workers: int, logs: Path) -> Iterator[str]:
    """``bench/noop_app.py`` under uvicorn with ``workers`` workers, each listening as
    ``serve``'s do (``bench/noop_serve.py``): the HTTP stack alone."""
    port = free_port()
    log = (logs / "noop.log").open("ab")
    args = [sys.executable, str(BENCH / "noop_serve.py")]
    args += ["--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, [process], 60)
        yield url
    finally:
        stop([process])


# -- CPU: who used the two cores ----------------------------------------------------------------


def _cpu_ticks() -> dict[int, tuple[str, int, int]]:
    """Every process: (command name, parent pid, user + system clock ticks)."""
    out: dict[int, tuple[str, int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        out[int(entry.name)] = (comm, int(fields[1]), int(fields[11]) + int(fields[12]))
    return out


@contextlib.contextmanager
def cpu_meter(roles: dict[str, list[int]]) -> Iterator[dict[str, float]]:
    """Cores used during the block, by role: the given pids and their children, ``postgres``
    (every PostgreSQL process), ``wrk``, and ``other`` (the rest of the machine, this suite
    included). Processes that start or end inside the block count only while both
    snapshots saw them."""
    result: dict[str, float] = {}
    before = _cpu_ticks()
    t0 = time.monotonic()
    yield result
    after = _cpu_ticks()
    elapsed = time.monotonic() - t0
    tick = os.sysconf("SC_CLK_TCK")
    role_of: dict[int, str] = {}
    for name, pids in roles.items():
        for pid in pids:
            role_of[pid] = name
    for pid, (comm, ppid, ticks) in after.items():
        if pid not in before:
            continue
        role: str | None = role_of.get(pid) or role_of.get(ppid)
        if role is None:
            role = (
                "postgres" if comm.startswith("postgres") else "wrk" if comm == "wrk" else "other"
            )
        result[role] = result.get(role, 0.0) + (ticks - before[pid][2]) / tick / elapsed
    for role in list(result):
        result[role] = round(result[role], 2)


# -- wrk -----------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    connections: int
    batch: int

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


def wrk_command(url: str, seconds: float, connections: int, script: Path) -> list[str]:
    threads = min(2, connections)
    return [
        *("wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s"),
        *("-s", str(script), url),
    ]


def parse_wrk(out: str, connections: int, batch: int) -> WrkResult:
    found = RESULT.search(out)
    if found is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    return WrkResult(
        requests=int(found[1]),
        errors=int(found[2]),
        seconds=float(found[3]),
        p50_ms=float(found[4]),
        p99_ms=float(found[5]),
        p999_ms=float(found[6]),
        max_ms=float(found[7]),
        connections=connections,
        batch=batch,
    )


def ingest_env(token: str, policy: str, batch: int, delay_ms: float = 0) -> dict[str, str]:
    return dict(
        os.environ,
        LEDGER_TOKEN=token,
        LEDGER_POLICY=policy,
        LEDGER_BATCH=str(batch),
        LEDGER_RUN=f"{batch}-{time.time_ns()}",
        LEDGER_DELAY_MS=f"{delay_ms:.0f}",
    )


def wrk_ingest(
    url: str, token: str, policy: str, seconds: float, connections: int, batch: int
) -> WrkResult:
    done = subprocess.run(
        wrk_command(f"{url}/v1/events", seconds, connections, INGEST_LUA),
        env=ingest_env(token, policy, batch),
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_wrk(done.stdout, connections, batch)


# -- profiling -----------------------------------------------------------------------------------


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start_profile(
    pids: list[int], seconds: float, out: Path, idle: bool = False
) -> subprocess.Popen[bytes] | None:
    """py-spy record (raw collapsed stacks) of the serve process and its workers: the thread
    holding the GIL (``--gil``: where Python's one core goes), or with ``idle`` every
    thread's stack whether running or waiting (wall time: where requests wait)."""
    tool = py_spy()
    if tool is None:
        print("   (py-spy not installed: no profile; .venv/bin/pip install py-spy)")
        return None
    args = [tool, "record", "--pid", str(pids[0]), "--subprocesses", "--format", "raw"]
    args += ["--duration", f"{seconds:.0f}", "--rate", "100", "-o", str(out)]
    args.append("--idle" if idle else "--gil")
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarise_profile(raw: Path, top: int = 25) -> dict[str, Any]:
    """Self and total share of samples per function, from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        # With --subprocesses the first frame is 'process PID:"COMMAND LINE"', and a command
        # line may hold ';' (multiprocessing's spawn_main); thread frames come next.
        stack = re.sub(r'^(process \d+:"[^"]*"(;|$))+', "", stack)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples += count
        own[_frame(frames[-1])] += count
        for name in {_frame(f) for f in frames}:
            total[name] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / samples, 1)) for name, n in counter.most_common(top)]

    return {"samples": samples, "self": share(own), "total": share(total)}


def _frame(frame: str) -> str:
    """``function (path/to/file.py:123)`` -> ``function (file.py)``: one name per function."""
    found = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if found is None:
        return frame
    path = found[2]
    for marker in ("site-packages/", "/work/main/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{found[1]} ({path})"


# -- the eventsourcing baselines -----------------------------------------------------------------


def library_saves(
    pg_url: str, threads: int, events_per_save: int, seconds: float
) -> dict[str, Any]:
    """Plain eventsourcing on PostgreSQL (no signing, sealing or group commit): ``threads``
    threads calling ``save()`` of ``events_per_save`` new aggregates (one event each)."""
    import group_commit
    from group_commit import Baseline, BenchAggregate

    with group_commit.postgres_backend(pg_url) as backend:
        app = Baseline(env=backend.baseline_env)
        try:

            def make_op(worker: int) -> Callable[[], None]:
                def op() -> None:
                    app.save(*[BenchAggregate() for _ in range(events_per_save)])

                return op

            m = group_commit.measure(threads, make_op, warmup=1.0, seconds=seconds)
        finally:
            app.close()
    return {
        "threads": threads,
        "events_per_save": events_per_save,
        "saves_per_s": round(m.per_second, 1),
        "events_per_s": round(m.per_second * events_per_save, 1),
        "errors": m.errors,
        "cpu_cores": round(m.cpu_cores, 2),
    }


# -- the rows ------------------------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    logs: Path
    figures: list[Figure] = field(default_factory=list)
    max_ingest_pg: float | None = None
    profile: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        bases = ", ".join(f"{w}: {number(b, figure.unit)}" for w, b in figure.baselines)
        verdict = "-" if figure.passed is None else "PASS" if figure.passed else "FAIL"
        print(
            f"   => {figure.what}: {number(figure.value, figure.unit)} [{bases}] "
            f"target {figure.target}: {verdict}",
            flush=True,
        )


@contextlib.contextmanager
def backend_env(name: str, pg_url: str) -> Iterator[dict[str, str]]:
    with temporary_directory(f"bench-suite-{name}-") as tmp:
        env = dict(os.environ, PYTHONPATH=str(ROOT), CONSENT_LEDGER_DATA_DIR=str(tmp / "data"))
        for variable in ("CONSENT_LEDGER_DATABASE_URL", "CONSENT_LEDGER_DATABASE_SCHEMA"):
            env.pop(variable, None)
        if name == "sqlite":
            cli(env, "keygen")
            yield env
            return
        with temporary_schema(pg_url, "bench_suite_") as schema:
            env.update(CONSENT_LEDGER_DATABASE_URL=pg_url, CONSENT_LEDGER_DATABASE_SCHEMA=schema)
            cli(env, "keygen")
            yield env


def run_postgres_server_rows(ctx: Context, rows: list[str]) -> None:
    """ingest1, ingest500, decision, lag: one server (fresh schema), rows in that order."""
    args = ctx.args
    seconds = args.seconds
    side = " --no-projections --no-signer, + projections run, checkpoint --every 0.5"
    print(f"\n== PostgreSQL: serve --workers {args.workers}{side if args.separate else ''}")
    noop: dict[int, WrkResult] = {}
    with noop_server(args.workers, ctx.logs) as url:
        for batch, conns in ((1, 64), (500, args.batch_connections)):
            if (batch == 1 and "ingest1" in rows) or (batch == 500 and "ingest500" in rows):
                result = wrk_ingest(url, "none", "none", seconds, conns, batch)
                noop[batch] = result
                print(f"   no-op POST x{conns}, {batch}/request: {result.events_per_s:,.0f} ev/s")
    with (
        backend_env("postgres", args.pg) as env,
        LedgerServer("postgres", env, ctx.logs, args.workers, args.separate) as server,
    ):
        policy = server.publish_policy()
        if "ingest1" in rows or "decision" in rows or "lag" in rows:
            with server.commit_meter() as commits_one, cpu_meter(server.roles()) as cpu_one:
                one = wrk_ingest(server.url, server.token, policy, seconds, 64, 1)
            print(f"   cores used: {cpu_one}; group commits: {commits_one}", flush=True)
            if args.profile:
                # Separate runs: py-spy pauses the process to sample it, which slows it down, so
                # the measured figure above comes from a run without it.
                ctx.profile = {}
                for kind in ("gil", "wall"):
                    server.settle()
                    out = ctx.logs / f"profile-ingest1-{kind}.txt"
                    profiler = start_profile(
                        server.worker_pids(), seconds - 2, out, idle=kind == "wall"
                    )
                    if profiler is None:
                        break
                    time.sleep(1)
                    under = wrk_ingest(server.url, server.token, policy, seconds, 64, 1)
                    profiler.wait(timeout=120)
                    if out.exists():
                        kept = RESULTS_DIR / f"profile-ingest1-{kind}-{args.stamp}.txt.gz"
                        kept.write_bytes(gzip.compress(out.read_bytes()))
                        ctx.profile[kind] = summarise_profile(out)
                        ctx.profile[kind]["raw"] = str(kept.relative_to(ROOT))
                        ctx.profile[kind]["events_per_s_while_profiled"] = under.events_per_s
            ctx.max_ingest_pg = one.events_per_s
            print(f"   read models caught up after {server.settle():.1f} s", flush=True)
            if "ingest1" in rows:
                library = library_saves(args.pg, 64, 1, seconds)
                ctx.add(
                    Figure(
                        "ingest1",
                        "HTTP ingest, 1 event/request, 64 conns (PG)",
                        one.events_per_s,
                        "ev/s",
                        ">= 6,000 ev/s",
                        one.events_per_s >= 6000 and one.errors == 0,
                        [
                            ("no-op POST, same body", noop[1].events_per_s),
                            ("eventsourcing, 1 event/save, 64 threads", library["events_per_s"]),
                        ],
                        {
                            "wrk": asdict(one),
                            "noop": asdict(noop[1]),
                            "library": library,
                            "cpu_cores": cpu_one,
                            "group_commits": commits_one,
                            "profiled": args.profile,
                        },
                    )
                )
        if "ingest500" in rows:
            conns = args.batch_connections
            with server.commit_meter() as commits_many, cpu_meter(server.roles()) as cpu_many:
                many = wrk_ingest(server.url, server.token, policy, seconds, conns, 500)
            print(f"   cores used: {cpu_many}; group commits: {commits_many}", flush=True)
            print(f"   read models caught up after {server.settle():.1f} s", flush=True)
            library = library_saves(args.pg, 4, 100, seconds)
            ctx.add(
                Figure(
                    "ingest500",
                    f"HTTP ingest, 500 events/request, {conns} conns (PG)",
                    many.events_per_s,
                    "ev/s",
                    ">= 25,000 ev/s",
                    many.events_per_s >= 25000 and many.errors == 0,
                    [
                        ("eventsourcing, 100 events/save, 4 threads", library["events_per_s"]),
                        ("no-op POST, same body", noop[500].events_per_s),
                    ],
                    {
                        "wrk": asdict(many),
                        "noop": asdict(noop[500]),
                        "library": library,
                        "cpu_cores": cpu_many,
                        "group_commits": commits_many,
                    },
                )
            )
        if "decision" in rows:
            decision_row(ctx, server, policy)
        if "lag" in rows:
            lag_row(ctx, server, policy)


def decision_row(ctx: Context, server: LedgerServer, policy: str) -> None:
    args = ctx.args
    seconds = args.seconds
    prefix = f"dec-{secrets.token_hex(3)}-"
    subjects = 1000
    for first in range(0, subjects, 500):
        server.post(
            [
                {
                    "type": "consent.given",
                    "event_id": f"e-{prefix}{n}",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "subject": f"{prefix}{n}",
                    "purposes": [PURPOSE],
                    "policy_version": policy,
                    "collection_method": "api",
                }
                for n in range(first, first + 500)
            ]
        )
    server.settle()
    query_env = dict(
        os.environ,
        LEDGER_TOKEN=server.token,
        LEDGER_SUBJECT_PREFIX=prefix,
        LEDGER_SUBJECTS=str(subjects),
        LEDGER_PURPOSE=PURPOSE,
        LEDGER_DELAY_MS=str(args.decision_delay_ms),
    )
    query = wrk_command(f"{server.url}/v1/consent/decision", seconds, 2, DECISION_LUA)

    def ask() -> WrkResult:
        done = subprocess.run(query, env=query_env, capture_output=True, text=True, check=True)
        return parse_wrk(done.stdout, 2, 1)

    idle = ask()
    print(f"   decisions, no ingest: p99 {idle.p99_ms:.2f} ms ({idle.requests_per_s:,.0f}/s)")
    maximum = ctx.max_ingest_pg
    if maximum is None:
        maximum = wrk_ingest(server.url, server.token, policy, 5, 64, 1).events_per_s
        server.settle()
    target_rate = maximum / 2
    conns = 16
    # wrk has no rate option: each connection waits delay() ms after each answer. Calibrate the
    # delay with a short run, taking off the latency it showed, to land near the target rate.
    period_ms = 1000 * conns / target_rate
    delay_ms = period_ms
    trial_cmd = wrk_command(f"{server.url}/v1/events", 4, conns, INGEST_LUA)
    trial = subprocess.run(
        trial_cmd,
        env=ingest_env(server.token, policy, 1, delay_ms),
        capture_output=True,
        text=True,
        check=True,
    )
    rate = parse_wrk(trial.stdout, conns, 1).events_per_s
    latency_ms = max(0.0, 1000 * conns / max(rate, 1e-9) - delay_ms)
    delay_ms = max(1.0, period_ms - latency_ms)
    load_cmd = wrk_command(f"{server.url}/v1/events", seconds + 4, conns, INGEST_LUA)
    load = subprocess.Popen(
        load_cmd,
        env=ingest_env(server.token, policy, 1, delay_ms),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2)
    busy = ask()
    out, _ = load.communicate(timeout=seconds + 60)
    ingest = parse_wrk(out, conns, 1)
    server.settle()
    print(
        f"   decisions under {ingest.events_per_s:,.0f} ev/s ingest "
        f"(target {target_rate:,.0f} = 50% of {maximum:,.0f}): p99 {busy.p99_ms:.2f} ms"
    )
    ctx.add(
        Figure(
            "decision",
            f"decision p99 under {ingest.events_per_s / maximum:.0%} of max ingest (PG)",
            busy.p99_ms,
            "ms",
            "p99 <= 5 ms",
            busy.p99_ms <= 5 and busy.errors == 0,
            [("same query, no ingest", idle.p99_ms)],
            {
                "under_load": asdict(busy),
                "idle": asdict(idle),
                "ingest": asdict(ingest),
                "ingest_target_events_per_s": round(target_rate, 1),
                "max_ingest_events_per_s": round(maximum, 1),
                "ingest_delay_ms": round(delay_ms, 1),
            },
        )
    )


def lag_row(ctx: Context, server: LedgerServer, policy: str) -> None:
    """checkpoint_lag.py's method under wrk's full single-event load: a probe process sends
    20 events a second (open loop) and records each receipt's leaf index and arrival; a poller
    here notes when each checkpoint size was first seen; lag = first covering sighting -
    receipt."""
    from checkpoint_lag import CheckpointWatch, percentile

    seconds = ctx.args.seconds
    watch = CheckpointWatch(server.url, 0.02)
    head_before = server.head()
    load = subprocess.Popen(
        wrk_command(f"{server.url}/v1/events", seconds + 2, 64, INGEST_LUA),
        env=ingest_env(server.token, policy, 1),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)
    probe = subprocess.run(
        [
            *(sys.executable, str(BENCH / "checkpoint_lag.py"), "load", server.url, server.token),
            *(policy, "20", "1", str(seconds)),
        ],
        env=server.env,
        capture_output=True,
        text=True,
        check=True,
    )
    out, _ = load.communicate(timeout=seconds + 60)
    ingest = parse_wrk(out, 64, 1)
    answers = [json.loads(line) for line in probe.stdout.splitlines() if line]
    head = server.head()
    try:
        watch.wait_for(head)
    except SystemExit as exc:
        print(f"   {exc}")
    watch.stop.set()
    watch.thread.join()
    lags: list[float] = []
    uncovered = 0
    for answer in answers:
        for index in answer["leaf_indexes"]:
            covered = watch.covering(index)
            if covered is None:
                uncovered += 1
            else:
                lags.append(max(0.0, covered - answer["at"]))
    window = [t for s, t in zip(watch.sizes, watch.seen_at, strict=True) if s > head_before]
    intervals = [b - a for a, b in itertools.pairwise(window)]
    p99 = percentile(lags, 0.99) if lags else None
    server.settle()
    print(
        f"   checkpoint lag under {ingest.events_per_s:,.0f} ev/s: "
        f"median {statistics.median(lags) if lags else float('nan'):.3f} s, p99 {p99} s"
    )
    ctx.add(
        Figure(
            "lag",
            f"checkpoint lag p99 under max ingest ({ingest.events_per_s:,.0f} ev/s, PG)",
            p99,
            "s",
            "<= 1 s",
            None if p99 is None else p99 <= 1.0 and uncovered == 0,
            [],
            {
                "ingest": asdict(ingest),
                "probe_events": len(lags),
                "probe_errors": sum(not a["ok"] for a in answers),
                "uncovered": uncovered,
                "lag_median_s": round(statistics.median(lags), 3) if lags else None,
                "lag_max_s": round(max(lags), 3) if lags else None,
                "checkpoint_interval_median_s": (
                    round(statistics.median(intervals), 3) if intervals else None
                ),
            },
            note=f"lag max {max(lags):.3f} s" if lags else "",
        )
    )


def sqlite_row(ctx: Context) -> None:
    seconds = ctx.args.seconds
    print("\n== SQLite embedded default: serve (one process: API, read models, signer)")
    with noop_server(1, ctx.logs) as url:
        noop = wrk_ingest(url, "none", "none", seconds, 64, 1)
    print(f"   no-op POST x64 (1 worker): {noop.events_per_s:,.0f} ev/s")
    with (
        backend_env("sqlite", ctx.args.pg) as env,
        LedgerServer("sqlite", env, ctx.logs, 1, False) as server,
    ):
        policy = server.publish_policy()
        with server.commit_meter() as commits, cpu_meter(server.roles()) as cpu:
            one = wrk_ingest(server.url, server.token, policy, seconds, 64, 1)
        print(f"   cores used: {cpu}; group commits: {commits}", flush=True)
        settle = server.settle()
    ctx.add(
        Figure(
            "sqlite",
            "SQLite embedded default, 1 event/request, 64 conns",
            one.events_per_s,
            "ev/s",
            ">= 3,000 ev/s",
            one.events_per_s >= 3000 and one.errors == 0,
            [("no-op POST, same body, 1 worker", noop.events_per_s)],
            {
                "wrk": asdict(one),
                "noop": asdict(noop),
                "read_models_settled_after_s": settle,
                "cpu_cores": cpu,
                "group_commits": commits,
            },
        )
    )


def projections_row(ctx: Context, backend: str) -> None:
    """read_model_rebuild.py's fill and measurements: the four read models rebuilt from zero
    (ProjectionRunner.rebuild()), against reading and decoding the raw log."""
    import read_model_rebuild as rmr

    from ledger.config import open_ledger
    from projections.read_models import ReadModels

    events = ctx.args.projection_events
    context = rmr.postgres_backend(ctx.args.pg) if backend == "postgres" else rmr.sqlite_backend()
    print(f"\n== read models, {backend}: fill {events:,} events", end="", flush=True)
    with context as settings:
        app = open_ledger(settings)
        try:
            fill, _ = rmr.fill_ledger(app, events, secrets.token_hex(3))
            rmr.read_raw(app)
            raw = rmr.timed(
                backend, "raw read", fill.events, fill.events, lambda: rmr.read_raw(app)
            )
            models = ReadModels(app, settings)
            try:
                rebuilt = rmr.timed(
                    backend, "all four", fill.events, fill.events, lambda: models.runner.rebuild()
                )
                problems = rmr.check_status(models.runner, fill.events)
            finally:
                models.close()
        finally:
            app.close()
    ctx.add(
        Figure(
            f"projections-{backend}",
            f"read models from zero, all four ({backend}, {fill.events:,} events)",
            rebuilt.per_s,
            "ev/s",
            ">= 20,000 ev/s",
            rebuilt.per_s >= 20000 and not problems,
            [("raw read and decode", raw.per_s)],
            {
                "raw": asdict(raw),
                "rebuild": asdict(rebuilt),
                "problems": problems,
                "fill_events_per_s": round(fill.per_second, 1),
            },
        )
    )


def export_row(ctx: Context) -> None:
    """export_verify.py's phases, each in a fresh process (its own peak RSS)."""
    import export_verify

    events = ctx.args.export_events
    print(f"\n== export and verify, SQLite, {events:,} facts", flush=True)
    with temporary_directory("bench-suite-export-") as scratch:
        ns = argparse.Namespace(
            events=events,
            pg=None,
            schema=None,
            data_dir=str(scratch / "data"),
            keys=str(scratch / "keys.txt"),
        )
        fill = export_verify.run_phase(ns, "fill")
        print(f"   filled: {fill['head']:,} log events in {fill['seconds']:.1f} s")
        bundle = str(scratch / "all")
        exported = export_verify.run_phase(ns, "export-all", bundle=bundle)
        verified = export_verify.run_phase(ns, "verify-all", bundle=bundle)
        alone = export_verify.run_phase(ns, "baseline", bundle=bundle)
        size = sum(p.stat().st_size for p in Path(bundle).iterdir())
    leaves = exported["leaves"]
    base = alone["entries"] / alone["seconds"]
    for name, phase in (("export --all", exported), ("offline verify", verified)):
        rate = phase["leaves"] / phase["seconds"]
        ctx.add(
            Figure(
                f"export-{name.split()[0]}",
                f"{name} ({leaves:,} log events), peak {phase['peak_mb']:.0f} MB",
                rate,
                "ev/s",
                ">= 40,000 ev/s, < 300 MB",
                rate >= 40000 and phase["peak_mb"] < 300,
                [("Ed25519 verify alone, same entries", base)],
                {"phase": phase, "baseline": alone, "fill": fill, "bundle_bytes": size},
            )
        )


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, small logs (minutes)")
    parser.add_argument(
        "--full", action="store_true", help="export/verify 1,000,000 events (default 100,000)"
    )
    parser.add_argument("--rows", default=",".join(ROWS), help=f"any of {', '.join(ROWS)}")
    parser.add_argument(
        "--pg", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL), help="PostgreSQL URL"
    )
    parser.add_argument("--seconds", type=float, default=None, help="wrk run length")
    parser.add_argument(
        "--workers", type=int, default=1, help="serve --workers on PostgreSQL (see docs)"
    )
    parser.add_argument(
        "--in-process",
        dest="separate",
        action="store_false",
        help="PostgreSQL: read models and signer inside serve (default: processes of their own)",
    )
    parser.add_argument("--batch-connections", type=int, default=4)
    parser.add_argument("--decision-delay-ms", type=int, default=10)
    parser.add_argument("--projection-events", type=int, default=None)
    parser.add_argument("--projection-backends", default=None, help="postgres,sqlite")
    parser.add_argument("--export-events", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="py-spy the PG single-event run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    if args.seconds is None:
        args.seconds = 5.0 if args.quick else 15.0
    if args.projection_events is None:
        args.projection_events = 5000 if args.quick else 20000
    if args.projection_backends is None:
        args.projection_backends = "postgres" if args.quick else "postgres,sqlite"
    if args.export_events is None:
        args.export_events = 1_000_000 if args.full else 20_000 if args.quick else 100_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None and any(
        r in args.rows for r in ("ingest1", "ingest500", "decision", "lag", "sqlite")
    ):
        raise SystemExit("wrk is needed (the load generator): apt-get install -y wrk")
    started = datetime.now(UTC)
    args.stamp = started.strftime("%Y%m%dT%H%M%SZ")
    facts = machine_facts(args.pg)
    command = announce("Consent Ledger performance suite", started, facts)
    ctx = Context(args, Path())
    failures: list[str] = []
    with temporary_directory("bench-suite-logs-") as logs:
        ctx.logs = logs
        steps: list[tuple[str, Callable[[], None]]] = []
        pg_rows = [r for r in ("ingest1", "ingest500", "decision", "lag") if r in args.rows]
        if pg_rows:
            steps.append(("postgres server", lambda: run_postgres_server_rows(ctx, pg_rows)))
        if "sqlite" in args.rows:
            steps.append(("sqlite", lambda: sqlite_row(ctx)))
        if "projections" in args.rows:
            for backend in args.projection_backends.split(","):
                steps.append(
                    (f"projections {backend}", functools.partial(projections_row, ctx, backend))
                )
        if "export" in args.rows:
            steps.append(("export", lambda: export_row(ctx)))
        for name, step in steps:
            try:
                step()
            except Exception as exc:  # a row that breaks must not hide the others' figures
                failures.append(f"{name}: {exc!r}")
                print(f"   !! {name} failed: {exc!r}", file=sys.stderr)
                for log in sorted(logs.glob(f"{name.split()[0]}*.log")):
                    tail = log.read_text(errors="replace").splitlines()[-15:]
                    if tail:
                        print(f"   --- {log.name}\n" + "\n".join(tail), file=sys.stderr)
    facts["loadavg_at_end"] = list(os.getloadavg())
    table = format_table(ctx.figures)
    print()
    print(table)
    for kind, summary in (ctx.profile or {}).items():
        print(
            f"\npy-spy ({kind}), serve under 1 event/request x64 ({summary['samples']} samples, "
            f"{summary['events_per_s_while_profiled']:,.0f} ev/s while profiled):"
        )
        for column in ("self", "total"):
            print(f"  top by {column} samples:")
            for name, pct in summary[column][:15]:
                print(f"    {pct:5.1f}%  {name}")
    path = args.json or RESULTS_DIR / f"suite-{args.stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "suite",
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "command": command,
        "config": {k: v for k, v in vars(args).items() if k != "json"},
        "load_generator": "wrk (Debian package), a separate process",
        "machine": facts,
        "figures": [
            dict(asdict(f), ratio=ratio(f.value, f.baselines[0][1]) if f.baselines else None)
            for f in ctx.figures
        ],
        "profile": ctx.profile,
        "failures": failures,
        "table": table,
    }
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")
    for failure in failures:
        print(f"row failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
