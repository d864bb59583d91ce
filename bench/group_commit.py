"""Group-commit benchmark: durable appends per second, the ledger against plain ``eventsourcing``.

Run by hand from the repository root::

    .venv/bin/python bench/group_commit.py [--backend sqlite|postgres|both] [--seconds S]
                                           [--json OUT]

For each backend and each thread count (1, 16, 64 by default) it measures, one after the other:

* **ledger**: ``LedgerApplication.append([fact])`` with one ``consent.given`` fact per call,
  each for a subject never seen before, from N threads. Each call returns only after its
  events are committed and fsynced (group commit: one committer thread, concurrent appends
  share one transaction; see ``ledger/recorder.py``).
* **baseline**: the plain ``eventsourcing`` library (no signing, no sealing, no group commit):
  ``Application.save(aggregate)`` of a new trivial aggregate, one event per ``save()``, from N
  threads, on the library's own SQLite or PostgreSQL recorder.

Each measurement runs its threads for a warm-up, then counts the calls that complete during a
fixed wall-clock window. Results go to stdout as a table and to a JSON file. See
``bench/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from harness import (
    RESULTS_DIR,
    announce,
    machine_facts,
    markdown_table,
    temporary_directory,
    temporary_schema,
)

from ledger.application import LedgerApplication
from ledger.config import Settings, generate_keys, open_ledger

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_THREADS = (1, 16, 64)
POLICY_VERSION = "bench-v1"
PURPOSE = "service"
MAX_ERRORS = 1000
"""A measurement stops early once this many calls have failed."""
JOIN_TIMEOUT = 60.0


# -- measurement harness ----------------------------------------------------------------------


@dataclass
class Measurement:
    threads: int
    completed: int
    """Calls that returned successfully inside the measured window."""
    seconds: float
    """Length of the measured window (wall clock)."""
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    stalled_threads: int = 0
    """Threads still running ``JOIN_TIMEOUT`` seconds after being told to stop."""
    cpu_cores: float = 0.0
    """Process CPU time (user + system, all threads) over the window, in cores."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0


def measure(
    threads: int,
    make_op: Callable[[int], Callable[[], None]],
    *,
    warmup: float,
    seconds: float,
    snapshot: Callable[[], dict[str, int]] | None = None,
) -> Measurement:
    """Run ``threads`` workers calling their op in a loop; count completions in the window.

    ``make_op(worker_index)`` builds each worker's operation (called in the main thread).
    ``snapshot()`` is read at the start and end of the window; the differences are returned
    in ``Measurement.extra``.
    """
    ops = [make_op(index) for index in range(threads)]
    counts = [0] * threads  # each worker writes only its own slot
    errors = [0] * threads
    samples: list[str] = []
    samples_lock = threading.Lock()
    stop = threading.Event()
    start = threading.Barrier(threads + 1)

    def work(index: int) -> None:
        op = ops[index]
        try:
            start.wait()
        except threading.BrokenBarrierError:
            return
        while not stop.is_set():
            try:
                op()
            except Exception:
                errors[index] += 1
                with samples_lock:
                    if len(samples) < 5:
                        samples.append(traceback.format_exc())
                if sum(errors) >= MAX_ERRORS:
                    stop.set()
                continue
            counts[index] += 1

    workers = [
        threading.Thread(target=work, args=(i,), name=f"bench-worker-{i}", daemon=True)
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    try:
        start.wait(timeout=30)
        time.sleep(warmup)
        before_counts = sum(counts)
        before = snapshot() if snapshot else {}
        cpu0 = os.times()
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while not stop.is_set() and (left := deadline - time.perf_counter()) > 0:
            stop.wait(min(left, 0.25))
        t1 = time.perf_counter()
        cpu1 = os.times()
        after_counts = sum(counts)
        after = snapshot() if snapshot else {}
    finally:
        stop.set()
        start.abort()
        give_up = time.monotonic() + JOIN_TIMEOUT
        for worker in workers:
            worker.join(timeout=max(0.0, give_up - time.monotonic()))
    return Measurement(
        threads=threads,
        completed=after_counts - before_counts,
        seconds=t1 - t0,
        errors=sum(errors),  # over the whole run, warm-up included: any failure matters
        error_samples=samples,
        stalled_threads=sum(worker.is_alive() for worker in workers),
        cpu_cores=(cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (t1 - t0),
        extra={key: after[key] - before.get(key, 0) for key in after},
    )


# -- the ledger -------------------------------------------------------------------------------


def policy_fact(now: str) -> dict[str, Any]:
    return {
        "type": "policy.version_published",
        "event_id": "bench-policy-1",
        "occurred_at": now,
        "version": POLICY_VERSION,
        "effective_at": now,
        "material": True,
        "purposes": [
            {
                "id": PURPOSE,
                "name": "Providing the service",
                "legal_basis": "consent",
                "retention_days": 365,
            }
        ],
        "text_digest": "sha256:" + "0" * 64,
    }


def consent_fact(event_id: str, subject: str, now: str) -> dict[str, Any]:
    return {
        "type": "consent.given",
        "event_id": event_id,
        "occurred_at": now,
        "subject": subject,
        "purposes": [PURPOSE],
        "policy_version": POLICY_VERSION,
        "collection_method": "api",
    }


def measure_ledger(
    app: LedgerApplication, threads: int, run_id: str, args: argparse.Namespace
) -> Measurement:
    now = datetime.now(UTC).isoformat()

    def make_op(worker: int) -> Callable[[], None]:
        numbers = itertools.count()

        def op() -> None:
            n = next(numbers)
            name = f"{run_id}-t{threads}-w{worker}-{n}"
            if args.subjects == "known":
                # Each worker cycles through its own share of subjects recorded before.
                subject = f"known-{(worker * 1000 + n) % KNOWN_SUBJECTS}"
            else:
                subject = f"subject-{name}"
            receipts = app.append([consent_fact(f"ev-{name}", subject, now)])
            if len(receipts) != 1 or receipts[0].duplicate:
                raise AssertionError(f"unexpected receipts {receipts!r}")

        return op

    def snapshot() -> dict[str, int]:
        return {
            "groups_committed": app.ledger.groups_committed,
            "events_committed": app.ledger.events_committed,
        }

    return measure(threads, make_op, warmup=args.warmup, seconds=args.seconds, snapshot=snapshot)


KNOWN_SUBJECTS = 64_000


def open_bench_ledger(settings: Settings, args: argparse.Namespace) -> LedgerApplication:
    app = open_ledger(settings)
    now = datetime.now(UTC).isoformat()
    app.append([policy_fact(now)])
    if args.subjects == "known":
        print(f"   recording {KNOWN_SUBJECTS:,} subjects first ...", flush=True)
        for start in range(0, KNOWN_SUBJECTS, 1000):
            app.append(
                [
                    consent_fact(f"ev-known-{n}", f"known-{n}", now)
                    for n in range(start, start + 1000)
                ]
            )
    return app


def close_ledger(app: LedgerApplication) -> None:
    app.close()


# -- the baseline: plain eventsourcing --------------------------------------------------------


class BenchAggregate(Aggregate):
    """A trivial aggregate: creating one triggers exactly one event (``Created``)."""


class Baseline(Application[Any]):
    name = "GroupCommitBaseline"


def measure_baseline(app: Baseline, threads: int, args: argparse.Namespace) -> Measurement:
    def make_op(worker: int) -> Callable[[], None]:
        def op() -> None:
            app.save(BenchAggregate())

        return op

    return measure(threads, make_op, warmup=args.warmup, seconds=args.seconds)


# -- backends ---------------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    ledger_settings: Settings
    baseline_env: dict[str, str]


@contextmanager
def sqlite_backend() -> Iterator[Backend]:
    with temporary_directory("bench-group-commit-") as tmp:
        yield Backend(
            name="sqlite",
            ledger_settings=Settings(data_dir=tmp / "ledger"),
            baseline_env={
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(tmp / "baseline.sqlite3"),
            },
        )


@contextmanager
def postgres_backend(url: str) -> Iterator[Backend]:
    info = psycopg.conninfo.conninfo_to_dict(url)
    with (
        temporary_directory("bench-group-commit-") as tmp,
        temporary_schema(url, "bench_gc_") as schema,
    ):
        settings = Settings(data_dir=tmp / "ledger", database_url=url, database_schema=schema)
        generate_keys(settings)
        yield Backend(
            name="postgres",
            ledger_settings=settings,
            baseline_env={
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": str(info.get("dbname", "test")),
                "POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
                "POSTGRES_PORT": str(info.get("port", "5432")),
                "POSTGRES_USER": str(info.get("user", "postgres")),
                "POSTGRES_PASSWORD": str(info.get("password", "")),
                "POSTGRES_SCHEMA": schema,
                "POSTGRES_ENABLE_DB_FUNCTIONS": "no",
            },
        )


# -- running and reporting --------------------------------------------------------------------


@dataclass
class Row:
    backend: str
    threads: int
    ledger_appends: int
    ledger_seconds: float
    ledger_per_s: float
    ledger_log_rows_per_s: float
    ledger_groups: int
    ledger_log_rows: int
    ledger_rows_per_group: float | None
    ledger_appends_per_group: float | None
    ledger_errors: int
    ledger_cpu_cores: float
    single_commit_per_s: float
    group_gain: float | None
    baseline_saves: int
    baseline_seconds: float
    baseline_per_s: float
    baseline_errors: int
    baseline_cpu_cores: float
    ratio: float | None
    error_samples: list[str] = field(default_factory=list)
    stalled_threads: int = 0


def run_backend(backend: Backend, threads: list[int], args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    run_id = secrets.token_hex(4)
    print(f"\n== {backend.name}: opening the ledger and the baseline application", flush=True)
    ledger = open_bench_ledger(backend.ledger_settings, args)
    # The same ledger with group commit off: one transaction per append, all else equal.
    single = open_ledger(replace(backend.ledger_settings, max_group_events=1))
    try:
        baseline = Baseline(env=backend.baseline_env)
        try:
            for n in threads:
                print(f"   {backend.name} x{n}: ledger ...", end="", flush=True)
                lm = measure_ledger(ledger, n, run_id, args)
                print(f" {lm.per_second:,.0f}/s; one commit each ...", end="", flush=True)
                sm = measure_ledger(single, n, run_id + "s", args)
                print(f" {sm.per_second:,.0f}/s; baseline ...", end="", flush=True)
                bm = measure_baseline(baseline, n, args)
                print(f" {bm.per_second:,.0f}/s", flush=True)
                groups = lm.extra.get("groups_committed", 0)
                log_rows = lm.extra.get("events_committed", 0)
                rows.append(
                    Row(
                        backend=backend.name,
                        threads=n,
                        ledger_appends=lm.completed,
                        ledger_seconds=round(lm.seconds, 3),
                        ledger_per_s=round(lm.per_second, 1),
                        ledger_log_rows_per_s=round(log_rows / lm.seconds, 1) if lm.seconds else 0,
                        ledger_groups=groups,
                        ledger_log_rows=log_rows,
                        ledger_rows_per_group=round(log_rows / groups, 2) if groups else None,
                        ledger_appends_per_group=(
                            round(lm.completed / groups, 2) if groups else None
                        ),
                        ledger_errors=lm.errors,
                        ledger_cpu_cores=round(lm.cpu_cores, 2),
                        single_commit_per_s=round(sm.per_second, 1),
                        group_gain=(
                            round(lm.per_second / sm.per_second, 3) if sm.per_second else None
                        ),
                        baseline_saves=bm.completed,
                        baseline_seconds=round(bm.seconds, 3),
                        baseline_per_s=round(bm.per_second, 1),
                        baseline_errors=bm.errors,
                        baseline_cpu_cores=round(bm.cpu_cores, 2),
                        ratio=(round(lm.per_second / bm.per_second, 3) if bm.per_second else None),
                        error_samples=lm.error_samples + bm.error_samples,
                        stalled_threads=lm.stalled_threads + bm.stalled_threads,
                    )
                )
                for sample in lm.error_samples + bm.error_samples:
                    print(sample, file=sys.stderr)
                if lm.stalled_threads or bm.stalled_threads:
                    print(
                        f"   WARNING: {lm.stalled_threads + bm.stalled_threads} worker threads "
                        f"did not stop within {JOIN_TIMEOUT:.0f}s",
                        file=sys.stderr,
                    )
        finally:
            baseline.close()
    finally:
        close_ledger(single)
        close_ledger(ledger)
    return rows


def format_table(rows: list[Row]) -> str:
    headers = [
        "backend",
        "threads",
        "ledger ev/s",
        "1 commit/append ev/s",
        "group gain",
        "baseline ev/s",
        "ratio",
        "ev/commit",
        "rows/commit",
        "errors",
    ]
    lines = []
    for r in rows:
        lines.append(
            [
                r.backend,
                str(r.threads),
                f"{r.ledger_per_s:,.0f}",
                f"{r.single_commit_per_s:,.0f}",
                "-" if r.group_gain is None else f"{r.group_gain:.2f}",
                f"{r.baseline_per_s:,.0f}",
                "-" if r.ratio is None else f"{r.ratio:.2f}",
                "-" if r.ledger_appends_per_group is None else f"{r.ledger_appends_per_group:.1f}",
                "-" if r.ledger_rows_per_group is None else f"{r.ledger_rows_per_group:.1f}",
                f"{r.ledger_errors}/{r.baseline_errors}",
            ]
        )
    return markdown_table(headers, lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Durable append throughput: the ledger (group commit) against plain "
        "eventsourcing (one event per save), with 1, 16 and 64 threads."
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--subjects",
        choices=("new", "known"),
        default="new",
        help="new: every append names a subject never seen (2 log rows, a new key); "
        "known: subjects recorded before the run (1 row, no new key)",
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="measured wall time per figure (default 5)"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="warm-up before each figure (default 1)"
    )
    parser.add_argument(
        "--threads",
        default=",".join(map(str, DEFAULT_THREADS)),
        help="comma-separated thread counts (default 1,16,64)",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL),
        help=f"PostgreSQL URL (default $BENCH_PG_URL or {DEFAULT_PG_URL})",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write the figures (default bench/results/group_commit-<UTC>.json)",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0:
        parser.error("--seconds must be > 0 and --warmup >= 0")
    try:
        args.thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        parser.error("--threads must be comma-separated integers")
    if not args.thread_counts or min(args.thread_counts) < 1:
        parser.error("--threads needs positive integers")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    json_path: Path = args.json or RESULTS_DIR / (
        f"group_commit-{args.subjects}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    )
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    facts = machine_facts(args.pg_url if "postgres" in backends else None)
    command = announce("group-commit benchmark", started, facts)
    print(
        f"  window: {args.seconds:g}s measured after {args.warmup:g}s warm-up, "
        f"threads {args.thread_counts}, {args.subjects} subjects"
    )

    rows: list[Row] = []
    for name in backends:
        context = sqlite_backend() if name == "sqlite" else postgres_backend(args.pg_url)
        with context as backend:
            rows.extend(run_backend(backend, args.thread_counts, args))

    facts["loadavg_at_end"] = list(os.getloadavg())
    table = format_table(rows)
    print()
    print(table)
    print(
        "\nledger ev/s: appends (one consent.given fact, one receipt) completed per second; "
        "baseline ev/s: save() calls (one event each) per second; ratio = ledger/baseline; "
        "ev/commit and rows/commit: appends and log rows per group commit (a first consent "
        "for a subject writes 2 rows: subject.registered + consent.given); errors: "
        "ledger/baseline failed calls."
    )
    result = {
        "benchmark": "group_commit",
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "command": command,
        "config": {
            "backends": backends,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "threads": args.thread_counts,
            "subjects": args.subjects,
            "pg_url": args.pg_url if "postgres" in backends else None,
        },
        "machine": facts,
        "results": [asdict(row) for row in rows],
        "table": table,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {json_path}")
    leftover = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if leftover:
        print(f"WARNING: threads still running at exit: {leftover}", file=sys.stderr)
    failed = any(r.ledger_errors or r.baseline_errors or r.stalled_threads for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
