"""What the benchmarks share: machine facts, markdown tables, throwaway storage.

Run the benchmarks as scripts (``python bench/NAME.py``): this directory is then first on
``sys.path`` and ``import harness`` finds this module.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine_facts(pg_url: str | None) -> dict[str, Any]:
    """What a reader needs to compare runs: machine, versions, load, storage settings, commit."""
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    facts: dict[str, Any] = {
        "nproc": nproc,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "eventsourcing": metadata.version("eventsourcing"),
        "psycopg": metadata.version("psycopg"),
        "orjson": metadata.version("orjson"),
        "sqlite": sqlite3.sqlite_version,
        "sqlite_default_synchronous": _sqlite_default_synchronous(),
        "loadavg_at_start": list(os.getloadavg()),
        **git_facts(),
    }
    if pg_url is not None:
        try:
            with psycopg.connect(pg_url, autocommit=True, connect_timeout=10) as conn:
                for setting in (
                    "server_version",
                    "fsync",
                    "synchronous_commit",
                    "wal_sync_method",
                    "shared_buffers",
                ):
                    row = conn.execute(f"SHOW {setting}").fetchone()
                    facts[f"postgres_{setting}"] = row[0] if row else None
        except psycopg.Error as exc:
            facts["postgres_error"] = str(exc)
    return facts


def _sqlite_default_synchronous() -> str:
    """PRAGMA synchronous of a new WAL connection (what a library recorder gets)."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "probe.sqlite3")
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            level = conn.execute("PRAGMA synchronous").fetchone()[0]
        finally:
            conn.close()
    return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(level, str(level))


def git_facts() -> dict[str, Any]:
    """The commit measured, and the files changed since (the working tree is what runs)."""

    def git(*argv: str) -> str:
        done = subprocess.run(
            ["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
        # Only trailing white space: a porcelain line starts with its two status columns.
        return done.stdout.rstrip() if done.returncode == 0 else ""

    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if line]
    return {"git_commit": git("rev-parse", "--short", "HEAD") or None, "git_changed": changed}


def announce(title: str, started: datetime, facts: dict[str, Any]) -> str:
    """Print the run's title, command line and machine facts; return the command line."""
    python = Path(sys.executable)
    if python.is_relative_to(Path.cwd()):
        python = python.relative_to(Path.cwd())
    command = " ".join([str(python), *sys.argv])
    print(f"{title}, {started.isoformat(timespec='seconds')}")
    print(f"command: {command}")
    for key, value in facts.items():
        print(f"  {key}: {value}")
    return command


def markdown_table(headers: Sequence[str], lines: Sequence[Sequence[str]], left: int = 1) -> str:
    """A table with aligned columns; the first ``left`` columns left-aligned, numbers right."""
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    out = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for line in lines:
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


@contextmanager
def temporary_directory(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def temporary_schema(url: str, prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped with all it holds at the end."""
    import secrets

    schema = f"{prefix}{secrets.token_hex(6)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> str:
    """Run ``consent-ledger ARGS`` with ``env``; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """``consent-ledger serve`` on a free port with ``env``, once it answers ``/healthz``."""
    import httpx

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.terminate()
            raise SystemExit("the server did not start")
        time.sleep(0.2)


def marketing_policy(version: str, occurred_at: str) -> dict[str, Any]:
    """A policy version with one consent purpose (``marketing_email``) the benchmarks use."""
    return {
        "type": "policy.version_published",
        "event_id": f"policy-{version}",
        "occurred_at": occurred_at,
        "version": version,
        "effective_at": "2026-01-01T00:00:00Z",
        "material": False,
        "text_digest": "sha256:" + "ab" * 32,
        "purposes": [
            {
                "id": "marketing_email",
                "name": "Marketing e-mail",
                "legal_basis": "consent",
                "retention_days": 730,
            }
        ],
    }
