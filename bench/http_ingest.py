"""HTTP ingest: events/s through a real ``consent-ledger serve``, beside /healthz in the same run.

Load comes from wrk (Debian package ``wrk``), a separate process written in C: a Python load
generator would need more CPU than the server it measures on a 2-core machine. Each POST
carries new ``consent.given`` facts (unique event ids and subjects), from ``bench/ingest.lua``.

    .venv/bin/python bench/http_ingest.py [--backend sqlite|postgres|both] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

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

LUA = Path(__file__).resolve().parent / "ingest.lua"
RUNS = [("single event", 1, 64), ("batch of 100", 100, 16), ("batch of 500", 500, 4)]


@dataclass
class Row:
    backend: str
    what: str
    connections: int
    requests_per_s: float
    events_per_s: float
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    healthz_per_s: float
    ratio_to_healthz: float


def wrk(
    url: str, seconds: float, connections: int, script: Path | None, env: dict[str, str]
) -> str:
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "30s"]
    if script is not None:
        args += ["-s", str(script)]
    # ingest.lua requires pace.lua, beside it.
    env = dict(env, LUA_PATH=f"{LUA.parent}/?.lua;;")
    done = subprocess.run([*args, url], env=env, capture_output=True, text=True, check=True)
    return done.stdout


def run_backend(name: str, env: dict[str, str], seconds: float) -> list[Row]:
    token = cli(env, "clients", "add", "bench", "--scope", "admin").strip().splitlines()[-1]
    server, url = start_server(env)
    rows: list[Row] = []
    try:
        headers = {"Authorization": f"Bearer {token}"}
        version = f"bench-{int(time.time())}"
        policy = marketing_policy(version, datetime.now(UTC).isoformat())
        httpx.post(f"{url}/v1/events", json=policy, headers=headers, timeout=30).raise_for_status()
        print(f"   {name}: /healthz ...", end="", flush=True)
        health = wrk(f"{url}/healthz", seconds, 64, None, env)
        healthz = float(re.search(r"Requests/sec:\s+([\d.]+)", health)[1])  # type: ignore[index]
        print(f" {healthz:,.0f}/s", flush=True)
        for what, batch, connections in RUNS:
            print(f"   {name}: {what} x{connections} ...", end="", flush=True)
            load_env = dict(
                env,
                LEDGER_TOKEN=token,
                LEDGER_POLICY=version,
                LEDGER_BATCH=str(batch),
                LEDGER_RUN=f"{name}-{batch}-{time.time_ns()}",
            )
            out = wrk(f"{url}/v1/events", seconds, connections, LUA, load_env)
            result = re.search(
                r"LEDGER_RESULT requests=(\d+) errors=(\d+) seconds=([\d.]+) "
                r"p50_ms=([\d.]+) p99_ms=([\d.]+)",
                out,
            )
            assert result is not None, out
            requests, errors = int(result[1]), int(result[2])
            elapsed = float(result[3])
            per_s = (requests - errors) / elapsed
            rows.append(
                Row(
                    name,
                    what,
                    connections,
                    round(per_s, 1),
                    round(per_s * batch, 1),
                    errors,
                    float(result[4]),
                    float(result[5]),
                    round(healthz, 1),
                    round(per_s * batch / healthz, 3),
                )
            )
            print(f" {per_s * batch:,.0f} events/s", flush=True)
        metrics = httpx.get(f"{url}/metrics", headers=headers, timeout=30).text
        head = int(float(re.search(r"^ledger_head ([\d.e+]+)$", metrics, re.M)[1]))  # type: ignore[index]
        print(f"   {name}: the log holds {head:,} events", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    started = datetime.now(UTC)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    facts = machine_facts(args.pg_url if "postgres" in backends else None)
    command = announce("HTTP ingest benchmark", started, facts)
    rows: list[Row] = []
    for name in backends:
        with temporary_directory("bench-http-") as tmp:
            env = dict(os.environ, PYTHONPATH=str(ROOT), CONSENT_LEDGER_DATA_DIR=str(tmp / "data"))
            env.pop("CONSENT_LEDGER_DATABASE_URL", None)
            if name == "sqlite":
                cli(env, "keygen")
                rows.extend(run_backend(name, env, args.seconds))
                continue
            with temporary_schema(args.pg_url, "bench_http_") as schema:
                env.update(
                    CONSENT_LEDGER_DATABASE_URL=args.pg_url, CONSENT_LEDGER_DATABASE_SCHEMA=schema
                )
                cli(env, "keygen")
                rows.extend(run_backend(name, env, args.seconds))
    headers = [
        "backend",
        "what",
        "conns",
        "requests/s",
        "events/s",
        "errors",
        "p50 ms",
        "p99 ms",
        "healthz/s",
        "events/s ÷ healthz/s",
    ]
    lines = [
        [
            r.backend,
            r.what,
            str(r.connections),
            f"{r.requests_per_s:,.0f}",
            f"{r.events_per_s:,.0f}",
            str(r.errors),
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.healthz_per_s:,.0f}",
            f"{r.ratio_to_healthz:.3f}",
        ]
        for r in rows
    ]
    table = markdown_table(headers, lines, left=2)
    print()
    print(table)
    path = args.json or RESULTS_DIR / f"http_ingest-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "command": command,
                "machine": facts,
                "results": [asdict(r) for r in rows],
                "table": table,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {path}")
    return 1 if any(r.errors for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
