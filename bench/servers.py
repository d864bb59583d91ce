"""The processes the suite's HTTP rows measure: the ledger's ``serve`` (with its read models and
signer, in the process or beside it), the no-op baseline server, and who used the CPU meanwhile.

Every process is started here by the suite and stopped by its pid (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from harness import ROOT, cli, free_port, temporary_directory, temporary_schema

BENCH = Path(__file__).resolve().parent
PURPOSE = "marketing_email"


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
    as docker-compose.yml runs it); when ``reads``, a ``serve --role reads`` beside them
    (``reads_url``), which answers the read routes from the same storage."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        logs: Path,
        workers: int,
        separate: bool,
        reads: bool = False,
        reads_nice: int = 0,
    ) -> None:
        self.name = name
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.separate = separate
        self.reads_port = free_port() if reads else None
        self.reads_url = None if self.reads_port is None else f"http://127.0.0.1:{self.reads_port}"
        self.reads_process: subprocess.Popen[bytes] | None = None
        self.reads_nice = reads_nice
        self.token = (
            cli(env, "clients", "add", "bench", "--scope", "admin").strip().splitlines()[-1]
        )
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []

    def _spawn(self, label: str, *args: str, nice: int = 0, **env: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{self.name}-{label}.log").open("ab")
        niced = ["nice", "-n", str(nice)] if nice else []
        process = subprocess.Popen(
            [*niced, sys.executable, "-m", "api.cli", *args],
            env=self.env | env,
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
        if self.reads_port is not None and self.reads_url is not None:
            self.reads_process = self._spawn(
                "reads",
                *("serve", "--role", "reads", "--port", str(self.reads_port)),
                *("--log-level", "warning"),
                nice=self.reads_nice,
                CONSENT_LEDGER_WRITER_URL=self.url,
            )
            wait_healthy(self.reads_url, self.processes, 90)
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
        # With several workers each /metrics is one worker's: two readings from two workers
        # give a negative difference, and no figure.
        if count > 0 and all(v >= 0 for v in delta.values()):
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

    def reads_pids(self) -> list[int]:
        """The reads process and its uvicorn workers, if any."""
        if self.reads_process is None:
            return []
        pids = [self.reads_process.pid]
        with contextlib.suppress(OSError):
            pid = self.reads_process.pid
            children = Path(f"/proc/{pid}/task/{pid}/children")
            pids += [int(p) for p in children.read_text().split()]
        return pids

    def roles(self) -> dict[str, list[int]]:
        names = ["serve", "projections", "signer"] if self.separate else ["serve"]
        roles = {name: [p.pid] for name, p in zip(names, self.processes, strict=False)}
        roles["serve"] = self.worker_pids()
        if self.reads_process is not None:
            roles["reads"] = [self.reads_process.pid]
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


def _waits(pids: list[int]) -> tuple[int, int]:
    """Nanoseconds the threads of ``pids`` ran, and waited on a run queue for a core
    (``/proc/<pid>/task/<tid>/schedstat``), so far; threads that ended are not counted."""
    ran = waited = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    fields = (task / "schedstat").read_text().split()
                    ran += int(fields[0])
                    waited += int(fields[1])
    return ran, waited


@contextlib.contextmanager
def runqueue_meter(pids: list[int]) -> Iterator[dict[str, float]]:
    """How long the threads of ``pids`` waited for a core during the block, per second, and
    per second of their running: a process answering in milliseconds that waits on a run queue
    behind others' work is late by that wait, whatever its own code costs."""
    result: dict[str, float] = {}
    ran0, waited0 = _waits(pids)
    t0 = time.monotonic()
    yield result
    ran1, waited1 = _waits(pids)
    elapsed = time.monotonic() - t0
    ran, waited = (ran1 - ran0) / 1e9, (waited1 - waited0) / 1e9
    result["ran_s_per_s"] = round(ran / elapsed, 3)
    result["waited_s_per_s"] = round(waited / elapsed, 3)
    result["waited_per_ran"] = round(waited / ran, 2) if ran else 0.0


@contextlib.contextmanager
def backend_env(name: str, pg_url: str) -> Iterator[dict[str, str]]:
    """The environment of a fresh ledger on ``name`` (``sqlite`` or ``postgres``): a new data
    directory with its keys and, on PostgreSQL, a new schema; both removed at the end."""
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
