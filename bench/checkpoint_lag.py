"""Checkpoint lag: how long after its receipt a signed checkpoint covers an event, under load.

A real ``consent-ledger serve`` (one worker, read models and the checkpoint signer in the
process, as it starts by default) takes appends at a steady rate from a load generator in a
separate process (this script, ``load`` mode: Python threads and httpx, open loop: request ``n``
is sent at ``n / rate`` seconds whether or not earlier ones were answered). This process polls
``GET /v1/checkpoint`` every ``--poll`` seconds and notes when each checkpoint size was first
seen. An event's lag is the time from its receipt reaching the generator to the first poll that
saw a checkpoint of more than its leaf index (0 when one was seen before the receipt arrived).

    .venv/bin/python bench/checkpoint_lag.py [--backend sqlite|postgres|both] [--seconds 20]
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from harness import (
    RESULTS_DIR,
    ROOT,
    announce,
    cli,
    machine_facts,
    markdown_table,
    marketing_policy,
    start_server,
    temporary_directory,
    temporary_schema,
)

RUNS = [(50, 1), (250, 10), (1000, 100)]
"""(events per second, events per request) for each backend."""
SUBJECTS = 500
"""Each load run cycles through this many subjects (a subject's first fact adds a second row)."""
CATCH_UP_DEADLINE = 60.0


@dataclass
class Row:
    backend: str
    target_events_per_s: int
    batch: int
    events: int
    events_per_s: float
    log_rows_per_s: float
    errors: int
    checkpoints_seen: int
    checkpoint_interval_median_s: float | None
    lag_median_s: float
    lag_p99_s: float
    lag_max_s: float
    append_p50_ms: float
    append_p99_ms: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the load generator (a process of its own) --------------------------------------------------


def load(url: str, token: str, version: str, rate: float, batch: int, seconds: float) -> None:
    """Append ``rate`` events a second in requests of ``batch`` for ``seconds``; print one JSON
    line per request: the receipts' leaf indexes, when the answer came, how long it took."""
    per_s = rate / batch
    subjects = [f"lag-{version}-{n}" for n in range(SUBJECTS)]
    lock = threading.Lock()
    lines: list[str] = []
    http = httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
    )

    def send(n: int) -> None:
        facts = [
            {
                "type": "consent.given",
                "event_id": f"lag-{version}-{n}-{i}",
                "occurred_at": datetime.now(UTC).isoformat(),
                "subject": subjects[(n * batch + i) % SUBJECTS],
                "purposes": ["marketing_email"],
                "policy_version": version,
                "collection_method": "web_form",
            }
            for i in range(batch)
        ]
        sent = time.monotonic()
        try:
            response = http.post("/v1/events", json=facts)
            ok = response.status_code == 201
            indexes = [r["leaf_index"] for r in response.json()["receipts"]] if ok else []
        except httpx.HTTPError:
            ok, indexes = False, []
        answered = time.monotonic()
        line = json.dumps({"ok": ok, "leaf_indexes": indexes, "sent": sent, "at": answered})
        with lock:
            lines.append(line)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=48) as pool:
        n = 0
        while (due := started + n / per_s) < started + seconds:
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            pool.submit(send, n)
            n += 1
    http.close()
    sys.stdout.write("\n".join(lines) + "\n")


# -- the measurement -----------------------------------------------------------------------------


class CheckpointWatch:
    """Polls the checkpoint; the first time each size was seen (``time.monotonic``, which is
    one clock for every process on Linux)."""

    def __init__(self, url: str, interval: float) -> None:
        self.url = url
        self.interval = interval
        self.sizes: list[int] = []
        self.seen_at: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="checkpoint-watch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                try:
                    response = http.get(f"{self.url}/v1/checkpoint")
                except httpx.HTTPError:
                    response = None
                now = time.monotonic()
                if response is not None and response.status_code == 200:
                    size = int(response.text.split("\n")[1])
                    if not self.sizes or size > self.sizes[-1]:
                        self.sizes.append(size)
                        self.seen_at.append(now)
                self.stop.wait(self.interval)

    def covering(self, leaf_index: int) -> float | None:
        """When a checkpoint of more than ``leaf_index`` leaves was first seen."""
        at = bisect.bisect_right(self.sizes, leaf_index)
        return self.seen_at[at] if at < len(self.seen_at) else None

    def wait_for(self, size: int) -> None:
        deadline = time.monotonic() + CATCH_UP_DEADLINE
        while not self.sizes or self.sizes[-1] < size:
            if time.monotonic() > deadline:
                raise SystemExit(f"no checkpoint of {size} within {CATCH_UP_DEADLINE:.0f} s")
            time.sleep(0.05)


def head_of(url: str, token: str) -> int:
    metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}).text
    for line in metrics.splitlines():
        if line.startswith("ledger_head "):
            return int(float(line.split()[1]))
    raise SystemExit("no ledger_head in /metrics")


def measure(
    name: str, env: dict[str, str], seconds: float, poll: float, runs: list[tuple[int, int]]
) -> list[Row]:
    token = cli(env, "clients", "add", "bench", "--scope", "admin").strip().splitlines()[-1]
    server, url = start_server(env)
    rows: list[Row] = []
    try:
        for rate, batch in runs:
            version = f"lag-{time.time_ns()}"
            policy = marketing_policy(version, datetime.now(UTC).isoformat())
            headers = {"Authorization": f"Bearer {token}"}
            httpx.post(f"{url}/v1/events", json=policy, headers=headers).raise_for_status()
            print(f"   {name}: {rate} events/s in requests of {batch} ...", end="", flush=True)
            watch = CheckpointWatch(url, poll)
            head_before = head_of(url, token)
            started = time.monotonic()
            generator = subprocess.run(
                [
                    *(sys.executable, __file__, "load", url, token, version),
                    *(str(rate), str(batch), str(seconds)),
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            elapsed = time.monotonic() - started
            answers = [json.loads(line) for line in generator.stdout.splitlines() if line]
            head = head_of(url, token)
            watch.wait_for(head)
            watch.stop.set()
            watch.thread.join()
            lags: list[float] = []
            for answer in answers:
                for index in answer["leaf_indexes"]:
                    covered = watch.covering(index)
                    assert covered is not None
                    lags.append(max(0.0, covered - answer["at"]))
            latencies = [1000 * (a["at"] - a["sent"]) for a in answers if a["ok"]]
            window = [t for s, t in zip(watch.sizes, watch.seen_at, strict=True) if s > head_before]
            intervals = [b - a for a, b in itertools.pairwise(window)]
            row = Row(
                backend=name,
                target_events_per_s=rate,
                batch=batch,
                events=len(lags),
                events_per_s=round(len(lags) / elapsed, 1),
                log_rows_per_s=round((head - head_before) / elapsed, 1),
                errors=sum(not a["ok"] for a in answers),
                checkpoints_seen=len(window),
                checkpoint_interval_median_s=(
                    round(statistics.median(intervals), 3) if intervals else None
                ),
                lag_median_s=round(statistics.median(lags), 3),
                lag_p99_s=round(percentile(lags, 0.99), 3),
                lag_max_s=round(max(lags), 3),
                append_p50_ms=round(percentile(latencies, 0.50), 1),
                append_p99_ms=round(percentile(latencies, 0.99), 1),
            )
            rows.append(row)
            print(
                f" {row.events_per_s:,.0f} events/s, lag median {row.lag_median_s:.3f} s,"
                f" p99 {row.lag_p99_s:.3f} s, max {row.lag_max_s:.3f} s",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        url, token, version, rate, batch, seconds = sys.argv[2:8]
        load(url, token, version, float(rate), int(batch), float(seconds))
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=20, help="load time per run")
    parser.add_argument("--poll", type=float, default=0.02, help="checkpoint poll interval")
    parser.add_argument(
        "--runs",
        default=",".join(f"{rate}x{batch}" for rate, batch in RUNS),
        help="events/s x events per request, separated by commas",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    runs = [(int(r), int(b)) for r, b in (part.split("x") for part in args.runs.split(","))]
    started = datetime.now(UTC)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    facts = machine_facts(args.pg_url if "postgres" in backends else None)
    command = announce("Checkpoint lag benchmark", started, facts)
    rows: list[Row] = []
    for name in backends:
        with temporary_directory("bench-lag-") as tmp:
            env = dict(os.environ, PYTHONPATH=str(ROOT), CONSENT_LEDGER_DATA_DIR=str(tmp / "data"))
            env.pop("CONSENT_LEDGER_DATABASE_URL", None)
            if name == "sqlite":
                cli(env, "keygen")
                rows.extend(measure(name, env, args.seconds, args.poll, runs))
                continue
            with temporary_schema(args.pg_url, "bench_lag_") as schema:
                env.update(
                    CONSENT_LEDGER_DATABASE_URL=args.pg_url, CONSENT_LEDGER_DATABASE_SCHEMA=schema
                )
                cli(env, "keygen")
                rows.extend(measure(name, env, args.seconds, args.poll, runs))
    headers = [
        "backend",
        "target ev/s",
        "batch",
        "events",
        "ev/s",
        "rows/s",
        "errors",
        "checkpoints",
        "interval s",
        "lag p50 s",
        "lag p99 s",
        "lag max s",
        "append p50 ms",
        "append p99 ms",
    ]
    lines = [
        [
            r.backend,
            str(r.target_events_per_s),
            str(r.batch),
            f"{r.events:,}",
            f"{r.events_per_s:,.0f}",
            f"{r.log_rows_per_s:,.0f}",
            str(r.errors),
            str(r.checkpoints_seen),
            ""
            if r.checkpoint_interval_median_s is None
            else f"{r.checkpoint_interval_median_s:.2f}",
            f"{r.lag_median_s:.3f}",
            f"{r.lag_p99_s:.3f}",
            f"{r.lag_max_s:.3f}",
            f"{r.append_p50_ms:.1f}",
            f"{r.append_p99_ms:.1f}",
        ]
        for r in rows
    ]
    table = markdown_table(headers, lines)
    print()
    print(table)
    path = args.json or RESULTS_DIR / f"checkpoint_lag-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "command": command,
        "machine": facts,
        "poll_interval_s": args.poll,
        "seconds_per_run": args.seconds,
        "results": [asdict(r) for r in rows],
        "table": table,
    }
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}")
    return 1 if any(r.errors for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
