"""The throughput and latency suite: every target of the performance issue, one command.

    .venv/bin/python bench/suite.py [--quick | --full] [--rows ROW,ROW] [--backends B,B]

It starts what it needs (a real ``consent-ledger serve`` on a fresh PostgreSQL schema and on a
fresh SQLite data directory, the read models and the checkpoint signer beside it, a no-op server
for the HTTP baseline), loads each server with wrk from a separate process, measures each row's
baseline in the same run, and prints one table: figure, value, baseline, ratio, target, result.
The same figures go to ``bench/results/suite-<UTC timestamp>.json``. Each row, its baseline, its
load and why that baseline: ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import itertools
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from figures import Figure, format_table, number, ratio, reached_enough
from harness import (
    RESULTS_DIR,
    ROOT,
    announce,
    machine_facts,
    temporary_directory,
    temporary_schema,
)
from profiling import start_profile, summarise_profile
from servers import (
    BENCH,
    PURPOSE,
    LedgerServer,
    backend_env,
    cpu_meter,
    noop_server,
    runqueue_meter,
)
from wrk_load import Decisions, Ingest, WrkResult

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ("postgres", "sqlite")

ROWS = {
    "ingest1": "HTTP ingest, 1 event/request, 64 connections, against a no-op POST",
    "decision": "decision p99 at half of this run's max ingest, against the same decision idle",
    "lag": "checkpoint lag p99 at max ingest",
    "ingest500": "HTTP ingest, 500 events/request, against eventsourcing's unsigned 100/save",
    "saturation": "500-event batches at 64 connections next to 16: p50, p99, events/s",
    "projections": "read models from zero, against a raw read of the log",
    "export": "export and offline verify, against Ed25519 verify alone on one core; peak memory",
    "growth": "append, proof and decision cost at 10^5 and at 10^6 events (bench/growth.py)",
}
SERVER_ROWS = ("ingest1", "decision", "lag", "ingest500", "saturation")
SQLITE_DEFAULT_ROWS = ("ingest1",)
"""The server rows run on SQLite unless ``--full`` or ``--rows`` asks for more: the issue's
only SQLite server target is single-event ingest."""

TARGETS = {
    ("ingest1", "postgres"): 0.5,
    ("ingest1", "sqlite"): 0.3,
    ("ingest500", "postgres"): 1.0,
}
"""The issue's ratio targets of the ingest rows, by (row, backend)."""
STRETCH = {("ingest1", "postgres"): 6000.0, ("ingest500", "postgres"): 25000.0}


# -- the eventsourcing baseline ------------------------------------------------------------------


def library_saves(
    backend: str, pg_url: str, threads: int, events_per_save: int, seconds: float
) -> dict[str, Any]:
    """Plain eventsourcing on ``backend`` (no signing, sealing or group commit): ``threads``
    threads calling ``save()`` of ``events_per_save`` new aggregates (one event each)."""
    import group_commit
    from group_commit import Baseline, BenchAggregate

    storage = (
        group_commit.postgres_backend(pg_url)
        if backend == "postgres"
        else group_commit.sqlite_backend()
    )
    with storage as found:
        app = Baseline(env=found.baseline_env)
        try:

            def make_op(worker: int) -> Callable[[], None]:
                def op() -> None:
                    app.save(*[BenchAggregate() for _ in range(events_per_save)])

                return op

            m = group_commit.measure(threads, make_op, warmup=1.0, seconds=seconds)
        finally:
            app.close()
    return {
        "backend": backend,
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
    max_ingest: dict[str, float] = field(default_factory=dict)
    """Single-event ingest at 64 connections, closed loop, by backend: this run's maximum."""
    profile: dict[str, Any] | None = None
    failures: list[str] = field(default_factory=list)
    """Rows that could not run, with the error: the run goes on, and exits 1 at the end."""

    def fail(self, name: str, exc: Exception) -> None:
        self.failures.append(f"{name}: {exc!r}")
        print(f"   !! {name} failed: {exc!r}", file=sys.stderr, flush=True)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        bases = ", ".join(f"{w}: {number(b, figure.unit)}" for w, b in figure.baselines)
        r = figure.ratio()
        shown = "refused" if figure.refused else "-" if r is None else f"{r:.2f}"
        print(
            f"   => {figure.what}: {number(figure.value, figure.unit)} [{bases}] ratio {shown}, "
            f"target {figure.target}: {figure.verdict()}",
            flush=True,
        )
        if figure.refused:
            print(f"      no ratio: {figure.refused}", flush=True)

    def server_rows(self, backend: str) -> list[str]:
        args = self.args
        wanted = [r for r in SERVER_ROWS if r in args.rows]
        if backend == "sqlite" and not (args.full or args.rows_explicit):
            wanted = [r for r in wanted if r in SQLITE_DEFAULT_ROWS]
        return wanted


def tag(backend: str) -> str:
    return "PG" if backend == "postgres" else "SQLite"


def run_server_rows(ctx: Context, backend: str, rows: list[str]) -> None:
    """The HTTP rows on one ``serve`` (fresh storage), in the order of ``SERVER_ROWS``: the
    decision and lag rows come right after ingest1, on a log of the size ingest1 left."""
    args = ctx.args
    workers = args.workers if backend == "postgres" else 1
    separate = args.separate and backend == "postgres"
    side = " --no-projections --no-signer, + projections run, checkpoint --every 0.5"
    print(
        f"\n== {backend}: serve --workers {workers} --committer {args.committer}"
        f"{side if separate else ''}",
        flush=True,
    )
    noop: WrkResult | None = None
    if "ingest1" in rows:
        with noop_server(workers, ctx.logs) as url:
            noop = Ingest(url, "none", "none", 64).run(args.seconds)
        print(f"   no-op POST x64, {workers} worker(s): {noop.events_per_s:,.0f} ev/s")
    with (
        backend_env(backend, args.pg) as env,
        LedgerServer(
            backend,
            env,
            ctx.logs,
            workers,
            separate,
            reads="decision" in rows and args.reads,
            reads_nice=args.reads_nice,
        ) as server,
    ):
        policy = server.publish_policy()
        for row in rows:
            try:
                if row == "ingest1":
                    assert noop is not None
                    ingest1_row(ctx, backend, server, policy, noop)
                elif row == "decision":
                    decision_row(ctx, backend, server, policy)
                elif row == "lag":
                    lag_row(ctx, backend, server, policy)
                elif row == "ingest500":
                    ingest500_row(ctx, backend, server, policy)
                elif row == "saturation":
                    saturation_row(ctx, backend, server, policy)
            except Exception as exc:  # one row that breaks must not hide the server's others
                ctx.fail(f"{row} {backend}", exc)
                with contextlib.suppress(Exception):  # a dead server fails the next row too
                    server.settle()


def ingest1_row(
    ctx: Context, backend: str, server: LedgerServer, policy: str, noop: WrkResult
) -> None:
    args = ctx.args
    load = Ingest(server.url, server.token, policy, 64)
    with server.commit_meter() as commits, cpu_meter(server.roles()) as cpu:
        one = load.run(args.seconds)
    print(f"   cores used: {cpu}; group commits: {commits}", flush=True)
    if args.profile and backend == "postgres":
        ctx.profile = profile_ingest(ctx, server, load)
    ctx.max_ingest[backend] = one.events_per_s
    settled = server.settle()
    print(f"   read models caught up after {settled:.1f} s", flush=True)
    library = None
    if backend == "postgres":
        library = library_saves(backend, args.pg, 64, 1, args.seconds)
    share = TARGETS[("ingest1", backend)]
    stretch = STRETCH.get(("ingest1", backend))
    r = ratio(one.events_per_s, noop.events_per_s)
    workers = args.workers if backend == "postgres" else 1
    baselines: list[tuple[str, float | None]] = [
        (f"no-op POST, same body and stack, {workers} worker(s)", noop.events_per_s)
    ]
    if library is not None:
        baselines.append(("eventsourcing, 1 event/save, 64 threads", library["events_per_s"]))
    ctx.add(
        Figure(
            f"ingest1-{backend}",
            f"HTTP ingest, 1 event/request, 64 conns ({tag(backend)})",
            one.events_per_s,
            "ev/s",
            f">= {share}x no-op" + (f" (stretch {stretch:,.0f} ev/s)" if stretch else ""),
            r is not None and r >= share and one.errors == 0,
            baselines,
            {
                "wrk": asdict(one),
                "noop": asdict(noop),
                "library": library,
                "cpu_cores": cpu,
                "group_commits": commits,
                "read_models_settled_after_s": round(settled, 1),
                "profiled": bool(args.profile and backend == "postgres"),
            },
            note=f"latency p50 {one.p50_ms:.0f} ms, p99 {one.p99_ms:.0f} ms; errors {one.errors}",
        )
    )


def profile_ingest(ctx: Context, server: LedgerServer, load: Ingest) -> dict[str, Any]:
    """py-spy of serve under the ingest1 load, in runs of their own (py-spy pauses the process
    to sample it, so the measured figure comes from a run without it)."""
    args = ctx.args
    profile: dict[str, Any] = {}
    for kind in ("gil", "wall"):
        server.settle()
        out = ctx.logs / f"profile-ingest1-{kind}.txt"
        profiler = start_profile(server.worker_pids(), args.seconds - 2, out, idle=kind == "wall")
        if profiler is None:
            break
        time.sleep(1)
        under = load.run(args.seconds)
        profiler.wait(timeout=120)
        if out.exists():
            kept = RESULTS_DIR / f"profile-ingest1-{kind}-{args.stamp}.txt.gz"
            kept.write_bytes(gzip.compress(out.read_bytes()))
            profile[kind] = summarise_profile(out)
            profile[kind]["raw"] = str(kept.relative_to(ROOT))
            profile[kind]["events_per_s_while_profiled"] = under.events_per_s
    return profile


def ingest500_row(ctx: Context, backend: str, server: LedgerServer, policy: str) -> None:
    """500 new facts a request against the library saving 100 new aggregates a ``save()``,
    unsigned, from as many threads as wrk has connections: both in events a second."""
    args = ctx.args
    conns = args.batch_connections
    load = Ingest(server.url, server.token, policy, conns, batch=500, count_status=True)
    with server.commit_meter() as commits, cpu_meter(server.roles()) as cpu:
        many = load.run(args.seconds)
    print(f"   cores used: {cpu}; group commits: {commits}", flush=True)
    settled = server.settle()
    print(f"   read models caught up after {settled:.1f} s", flush=True)
    library = library_saves(backend, args.pg, conns, 100, args.seconds)
    share = TARGETS.get(("ingest500", backend))
    stretch = STRETCH.get(("ingest500", backend))
    r = ratio(many.events_per_s, library["events_per_s"])
    ctx.add(
        Figure(
            f"ingest500-{backend}",
            f"HTTP ingest, 500 events/request, {conns} conns ({tag(backend)})",
            many.events_per_s,
            "ev/s",
            (
                f">= {share}x library" + (f" (stretch {stretch:,.0f} ev/s)" if stretch else "")
                if share
                else "- (no target)"
            ),
            None if share is None else r is not None and r >= share and many.errors == 0,
            [
                (
                    f"eventsourcing, 100 events/save unsigned, {conns} threads",
                    library["events_per_s"],
                )
            ],
            {
                "wrk": asdict(many),
                "library": library,
                "cpu_cores": cpu,
                "group_commits": commits,
                "read_models_settled_after_s": round(settled, 1),
            },
            note=f"latency p50 {many.p50_ms / 1000:.2f} s, p99 {many.p99_ms / 1000:.2f} s; "
            f"errors {many.errors}",
        )
    )


def saturation_row(ctx: Context, backend: str, server: LedgerServer, policy: str) -> None:
    """Past saturation: the same 500-fact batches from 16 and from 64 connections, closed loop
    (each connection sends its next batch when answered), each connection a wrk thread of its
    own so that accepted (2xx) and refused (503) batches are timed apart. Clients honour
    ``Retry-After`` unless ``--saturation-ignore-retry-after``. Without push-back, 64
    connections only queue: the same events a second, four times the latency; with it, the
    accepted batches' latency stays near the 16-connection figure and the 503s are counted."""
    args = ctx.args
    seconds = args.saturation_seconds
    few, many = args.saturation_connections
    results: dict[int, WrkResult] = {}
    for conns in (few, many):
        load = Ingest(
            server.url,
            server.token,
            policy,
            conns,
            batch=500,
            count_status=True,
            one_connection=True,
            retry_after=args.retry_after,
        )
        results[conns] = r = load.run(seconds)
        p50 = None if r.accepted is None else r.accepted.p50_ms / 1000
        p99 = None if r.accepted is None else r.accepted.p99_ms / 1000
        print(
            f"   500/request x{conns}: {r.events_per_s:,.0f} ev/s accepted; accepted p50 "
            f"{number(p50, 's')}, p99 {number(p99, 's')}; 503s {r.status_503}, "
            f"errors {r.errors}",
            flush=True,
        )
        server.settle(limit_s=300)
    low, high = results[few], results[many]

    def accepted(result: WrkResult, field: str) -> float | None:
        found = result.accepted
        return None if found is None or not found.n else getattr(found, field) / 1000

    detail: dict[str, Any] = {f"wrk_{c}": asdict(r) for c, r in results.items()}
    detail |= {"seconds": seconds, "retry_after_honoured": args.retry_after}
    refused = high.refused
    pushed_back = (
        f"503 answers: {high.status_503} at {many} (p99 {refused.p99_ms:.0f} ms), "
        f"{low.status_503} at {few}"
        if refused is not None and refused.n
        else f"503 answers: {high.status_503} at {many}, {low.status_503} at {few}"
    )
    for name, value, base, unit in (
        ("accepted p50", accepted(high, "p50_ms"), accepted(low, "p50_ms"), "s"),
        ("accepted p99", accepted(high, "p99_ms"), accepted(low, "p99_ms"), "s"),
        ("accepted events/s", high.events_per_s, low.events_per_s, "ev/s"),
    ):
        first = name.endswith("p50")
        ctx.add(
            Figure(
                f"saturation-{name.split()[-1].replace('/', '')}-{backend}",
                f"500-event batches, {many} conns: {name} ({tag(backend)})",
                value,
                unit,
                "- (push-back: judged by the issue's work)",
                None,
                [(f"same, {few} conns", base)],
                detail if first else {},
                note=(
                    f"{seconds:g} s at each, Retry-After "
                    f"{'honoured' if args.retry_after else 'ignored'}; batches in flight when "
                    f"wrk stops are not counted (at most {many}); {pushed_back}"
                    if first
                    else ""
                ),
            )
        )


def seed_decisions(server: LedgerServer, policy: str, prefix: str, subjects: int) -> None:
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
                for n in range(first, min(subjects, first + 500))
            ]
        )
    server.settle()


def decision_row(ctx: Context, backend: str, server: LedgerServer, policy: str) -> None:
    """The same paced decisions idle and then while single-event ingest is offered at half of
    this run's maximum (paced, 64 connections, to the ingesting process); the load reached is
    counted inside the decisions' window, and a ratio is refused below 90% of the load named.

    The decisions are asked of the reads process (``serve --role reads``), the row's figure, and
    of the ingesting process itself, for comparison. Each of ``--decision-rounds`` rounds asks
    each process idle and then under load, back to back, the two processes in turns (the first
    of a round goes last in the next), so that a shared machine's swings fall on both alike;
    the figures are the medians over the rounds."""
    args = ctx.args
    seconds = args.seconds
    prefix = f"dec-{secrets.token_hex(3)}-"
    subjects = 1000
    seed_decisions(server, policy, prefix, subjects)
    places: list[tuple[str, str]] = [("ingesting process", server.url)]
    if server.reads_url is not None:
        places.insert(0, ("reads process", server.reads_url))

    def ask(url: str) -> Decisions:
        return Decisions(
            url,
            server.token,
            prefix,
            subjects,
            PURPOSE,
            args.decision_rate,
            args.decision_connections,
        )

    maximum = ctx.max_ingest.get(backend)
    if maximum is None:
        maximum = Ingest(server.url, server.token, policy, 64).run(seconds).events_per_s
        ctx.max_ingest[backend] = maximum
        server.settle()
        print(f"   max ingest (1 event/request x64): {maximum:,.0f} ev/s", flush=True)
    target = maximum * args.decision_load_share
    share = args.decision_load_share
    idle: dict[str, list[WrkResult]] = {name: [] for name, _ in places}
    loaded: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in places}
    for round_ in range(args.decision_rounds):
        for name, url in places if round_ % 2 == 0 else list(reversed(places)):
            pids = server.worker_pids() if url == server.url else server.reads_pids()
            # Warm first, not timed: new connections, a token checked a second ago, pooled
            # database connections; otherwise the idle run pays for them and the loaded one,
            # right after it, does not.
            ask(url).run(DECISION_WARMUP_S)
            with runqueue_meter(pids) as waits:
                quiet = ask(url).run(seconds)
            idle[name].append(quiet)
            busy = decisions_under_load(ctx, server, policy, ask(url), target, pids)
            busy["runqueue_idle"] = waits
            loaded[name].append(busy)
            print(
                f"   round {round_ + 1}, decisions at the {name}: p99 idle "
                f"{quiet.from_due_p99_ms:.2f} ms, under {busy['reached']:,.0f} ev/s reached of "
                f"{target:,.0f} offered ({share:.0%} of {maximum:,.0f}): p99 "
                f"{number(busy['busy'].from_due_p99_ms, 'ms')}; cores used {busy['cpu_cores']}; "
                f"its run-queue wait idle {waits}, under load {busy['runqueue']}",
                flush=True,
            )
    for name, _ in places:
        judged = name == "reads process" or server.reads_url is None
        values = [b["busy"].from_due_p99_ms for b in loaded[name]]
        bases = [i.from_due_p99_ms for i in idle[name]]
        value = statistics.median(v for v in values if v is not None) if any(values) else None
        base = statistics.median(b for b in bases if b is not None) if any(bases) else None
        reached = min(b["reached"] for b in loaded[name])
        refused = reached_enough(reached, target)
        r = ratio(value, base)
        errors = sum(b["busy"].errors for b in loaded[name]) + sum(i.errors for i in idle[name])
        passed = r is not None and r <= 2 and value is not None and value <= 10 and not errors
        rounds = args.decision_rounds
        ctx.add(
            Figure(
                f"decision-{backend}" if judged else f"decision-writer-{backend}",
                f"decision p99 at {share:.0%} of max ingest, asked of the {name} "
                f"({tag(backend)}): >= {reached:,.0f} of {target:,.0f} ev/s reached",
                value,
                "ms",
                "<= 2x idle and <= 10 ms" if judged else "- (comparison)",
                None if refused or not judged else passed,
                [("same decisions, same process, no ingest", base)],
                {
                    "asked_of": name,
                    "rounds": [
                        {
                            "idle": asdict(quiet),
                            "under_load": asdict(busy["busy"]),
                            "ingest": asdict(busy["ingest"]),
                            "cpu_cores": busy["cpu_cores"],
                            "runqueue_idle": busy["runqueue_idle"],
                            "runqueue_under_load": busy["runqueue"],
                            "reached_events_per_s": round(busy["reached"], 1),
                            "window_s": busy["window"],
                            "decisions_ran_s": busy["ran"],
                            "read_models_settled_after_s": busy["settled"],
                        }
                        for quiet, busy in zip(idle[name], loaded[name], strict=True)
                    ],
                    "max_ingest_events_per_s": round(maximum, 1),
                    "target_events_per_s": round(target, 1),
                    "reached_events_per_s_lowest": round(reached, 1),
                    "reached_share_of_target": round(reached / target, 3) if target else None,
                },
                refused=refused,
                note=(
                    f"median of {rounds} round(s), p99s under load "
                    f"{', '.join(number(v, 'ms') for v in values)}, idle "
                    f"{', '.join(number(b, 'ms') for b in bases)}; latency from each question's "
                    f"due time, {args.decision_rate:g} questions/s over "
                    f"{args.decision_connections} connections"
                ),
            )
        )


DECISION_WARMUP_S = 2.0


def decisions_under_load(
    ctx: Context, server: LedgerServer, policy: str, ask: Decisions, target: float, pids: list[int]
) -> dict[str, Any]:
    """``ask`` run while single facts are offered to the ingesting process at ``target`` a
    second (paced, 64 connections), its answers counted inside the decisions' window; how long
    the answering process (``pids``) waited for a core meanwhile."""
    seconds = ctx.args.seconds
    warmup = 3.0
    window_from = time.monotonic() + warmup
    window = (window_from, window_from + seconds)
    load = Ingest(server.url, server.token, policy, 64, rate=target, window=window)
    running = load.start(warmup + seconds + 2)
    ask.run(DECISION_WARMUP_S)  # warm, as before the idle run, while the ingest warms up
    time.sleep(max(0.0, window_from - time.monotonic()))
    asked_from = time.monotonic()
    with cpu_meter(server.roles()) as cpu, runqueue_meter(pids) as waits:
        busy = ask.run(seconds)
    asked_to = time.monotonic()
    out, err = running.communicate(timeout=seconds + 120)
    if running.returncode != 0:
        raise RuntimeError(f"wrk failed: {err}")
    ingest = load.parse(out)
    settled = server.settle()
    return {
        "busy": busy,
        "ingest": ingest,
        "reached": (ingest.window_ok or 0) / seconds,
        "cpu_cores": cpu,
        "runqueue": waits,
        "window": [round(window[0], 3), round(window[1], 3)],
        "ran": [round(asked_from, 3), round(asked_to, 3)],
        "settled": round(settled, 1),
    }


def lag_row(ctx: Context, backend: str, server: LedgerServer, policy: str) -> None:
    """checkpoint_lag.py's method under wrk's full single-event load: a probe process sends
    20 events a second (open loop) and records each receipt's leaf index and arrival; a poller
    here notes when each checkpoint size was first seen; lag = first covering sighting -
    receipt."""
    from checkpoint_lag import CheckpointWatch, percentile

    seconds = ctx.args.seconds
    watch = CheckpointWatch(server.url, 0.02)
    head_before = server.head()
    load = Ingest(server.url, server.token, policy, 64)
    running = load.start(seconds + 2)
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
    out, _ = running.communicate(timeout=seconds + 60)
    ingest = load.parse(out)
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
    maximum = ctx.max_ingest.get(backend)
    of_max = f", {ingest.events_per_s / maximum:.0%} of the run's max" if maximum else ""
    print(
        f"   checkpoint lag under {ingest.events_per_s:,.0f} ev/s: "
        f"median {statistics.median(lags) if lags else float('nan'):.3f} s, p99 {p99} s"
    )
    ctx.add(
        Figure(
            f"lag-{backend}",
            f"checkpoint lag p99 at max ingest ({ingest.events_per_s:,.0f} ev/s{of_max}, "
            f"{tag(backend)})",
            p99,
            "s",
            "<= 1 s",
            None if p99 is None else p99 <= 1.0 and uncovered == 0,
            [],
            {
                "ingest": asdict(ingest),
                "max_ingest_events_per_s": maximum,
                "probe_events": len(lags),
                "probe_errors": sum(not a["ok"] for a in answers),
                "uncovered": uncovered,
                "lag_median_s": round(statistics.median(lags), 3) if lags else None,
                "lag_max_s": round(max(lags), 3) if lags else None,
                "checkpoint_interval_median_s": (
                    round(statistics.median(intervals), 3) if intervals else None
                ),
            },
            note=f"lag max {max(lags):.3f} s, {uncovered} receipts never covered" if lags else "",
        )
    )


def projections_row(ctx: Context, backend: str) -> None:
    """read_model_rebuild.py's fill and measurements: every read model rebuilt from zero
    (ProjectionRunner.rebuild()), against reading and decoding the raw log on the same
    backend, in pages of the runner's size."""
    import read_model_rebuild as rmr

    from ledger.config import open_ledger
    from projections.read_models import ReadModels

    events = ctx.args.projection_events
    context = rmr.postgres_backend(ctx.args.pg) if backend == "postgres" else rmr.sqlite_backend()
    print(f"\n== read models, {backend}: fill {events:,} events", flush=True)
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
                    backend, "all", fill.events, fill.events, lambda: models.runner.rebuild()
                )
                problems = rmr.check_status(models.runner, fill.events)
            finally:
                models.close()
        finally:
            app.close()
    r = ratio(rebuilt.per_s, raw.per_s)
    ctx.add(
        Figure(
            f"projections-{backend}",
            f"read models from zero, all ({tag(backend)}, {fill.events:,} events)",
            rebuilt.per_s,
            "ev/s",
            ">= 0.25x raw read (20,000 ev/s)",
            r is not None and r >= 0.25 and not problems,
            [("raw read and decode, same log", raw.per_s)],
            {
                "raw": asdict(raw),
                "rebuild": asdict(rebuilt),
                "problems": problems,
                "fill_events_per_s": round(fill.per_second, 1),
            },
            note="; ".join(problems),
        )
    )


def export_row(ctx: Context, backend: str) -> None:
    """export_verify.py's phases, each in a fresh process (its own peak RSS): export --all,
    offline verify, and the baseline, Ed25519 verify of the same entries on one core."""
    import export_verify

    events = ctx.args.export_events
    print(f"\n== export and verify, {backend}, {events:,} facts", flush=True)
    with temporary_directory("bench-suite-export-") as scratch:
        ns = argparse.Namespace(
            events=events,
            pg=None,
            schema=None,
            data_dir=str(scratch / "data"),
            keys=str(scratch / "keys.txt"),
        )
        with (
            temporary_schema(ctx.args.pg, "bench_suite_export_")
            if backend == "postgres"
            else contextlib.nullcontext("")
        ) as schema:
            if schema:
                ns.pg, ns.schema = ctx.args.pg, schema
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
        r = ratio(rate, base)
        ctx.add(
            Figure(
                f"export-{name.split()[0].removeprefix('--')}-{backend}",
                f"{name} ({leaves:,} log events, {tag(backend)}), peak {phase['peak_mb']:.0f} MB",
                rate,
                "ev/s",
                ">= 1.5x Ed25519, < 300 MB",
                r is not None and r >= 1.5 and phase["peak_mb"] < 300,
                [("Ed25519 verify alone, same entries, 1 core", base)],
                {"phase": phase, "baseline": alone, "fill": fill, "bundle_bytes": size},
            )
        )


def growth_row(ctx: Context, backend: str) -> None:
    """bench/growth.py at each size of ``--growth-events`` (without its export: the export row
    measures that), in a process of its own; the append's p50 at the largest size against the
    smallest, and the same for an inclusion proof and a decision."""
    sizes = ctx.args.growth_events
    runs: dict[int, dict[str, Any]] = {}
    for size in sizes:
        print(f"\n== growth, {backend}, {size:,} facts", flush=True)
        with temporary_directory("bench-suite-growth-") as scratch:
            out = scratch / "growth.json"
            command = [sys.executable, str(BENCH / "growth.py"), "--events", str(size)]
            command += ["--no-export", "--json", str(out)]
            if backend == "postgres":
                command += ["--pg", ctx.args.pg]
            subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            runs[size] = json.loads(out.read_text())
    small, large = runs[sizes[0]], runs[sizes[-1]]
    what = f"{large['log_events']:,} against {small['log_events']:,} log events"
    for key, name, judged in (
        ("append_single", "append p50, 1 fact", True),
        ("inclusion_proof", "inclusion proof p50", False),
        ("decision", "decision p50", False),
    ):
        value, base = large[key]["p50_ms"], small[key]["p50_ms"]
        r = ratio(value, base)
        ctx.add(
            Figure(
                f"growth-{key}-{backend}",
                f"{name}, {what} ({tag(backend)})",
                value,
                "ms",
                "<= 1.2x (flat)" if judged else "- (flat, by design)",
                (r is not None and r <= 1.2) if judged else None,
                [(f"same at {small['log_events']:,} log events", base)],
                {"runs": runs} if judged else {},
            )
        )


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short runs, small logs (minutes)")
    mode.add_argument(
        "--full",
        action="store_true",
        help="every row on both backends, export at 1,000,000 facts, growth to 10^6",
    )
    parser.add_argument("--rows", default=None, help=f"any of {', '.join(ROWS)}")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="postgres,sqlite")
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
    parser.add_argument("--saturation-connections", default="16,64", help="FEW,MANY")
    parser.add_argument("--saturation-seconds", type=float, default=None)
    parser.add_argument(
        "--saturation-ignore-retry-after",
        dest="retry_after",
        action="store_false",
        help="saturation row: send again at once after a 503 (default: wait its Retry-After)",
    )
    parser.add_argument("--decision-rate", type=float, default=100, help="questions/s")
    parser.add_argument("--decision-connections", type=int, default=8, help="one per wrk thread")
    parser.add_argument("--decision-load-share", type=float, default=0.5)
    parser.add_argument(
        "--decision-rounds",
        type=int,
        default=None,
        help="decision row: rounds of idle then loaded, each process (3; 1 with --quick)",
    )
    parser.add_argument(
        "--reads-nice",
        type=int,
        default=0,
        help="decision row: start the reads process with this nice value (below 0 needs "
        "privilege): what CPU priority over the ingest buys",
    )
    parser.add_argument(
        "--committer",
        choices=("process", "thread"),
        default=os.environ.get("CONSENT_LEDGER_COMMITTER", "process"),
        help="server rows: serve's CONSENT_LEDGER_COMMITTER (process: one committer process "
        "for every worker; thread: each worker commits its own) [env CONSENT_LEDGER_COMMITTER]",
    )
    parser.add_argument(
        "--no-reads-process",
        dest="reads",
        action="store_false",
        help="decision row: ask the ingesting process only (default: a serve --role reads "
        "beside it too, the row's figure)",
    )
    parser.add_argument("--projection-events", type=int, default=None)
    parser.add_argument("--export-events", type=int, default=None)
    parser.add_argument("--export-backends", default="sqlite")
    parser.add_argument("--growth-events", default="100000,1000000", help="SMALL,LARGE facts")
    parser.add_argument("--profile", action="store_true", help="py-spy the PG single-event run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.rows_explicit = args.rows is not None
    os.environ["CONSENT_LEDGER_COMMITTER"] = args.committer  # every serve the suite starts
    default_rows = [r for r in ROWS if r != "growth" or args.full]
    rows = args.rows.split(",") if args.rows else default_rows
    args.rows = [r.strip() for r in rows if r.strip()]
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.export_backends = [b.strip() for b in args.export_backends.split(",") if b.strip()]
    for backend in [*args.backends, *args.export_backends]:
        if backend not in BACKENDS:
            parser.error(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    few, many = (int(c) for c in args.saturation_connections.split(","))
    args.saturation_connections = (few, many)
    args.growth_events = sorted(int(n) for n in args.growth_events.split(","))
    if args.seconds is None:
        args.seconds = 5.0 if args.quick else 15.0
    if args.decision_rounds is None:
        args.decision_rounds = 1 if args.quick else 3
    if args.saturation_seconds is None:
        args.saturation_seconds = max(20.0, 2 * args.seconds)
    if args.projection_events is None:
        args.projection_events = 5000 if args.quick else 20000
    if args.export_events is None:
        args.export_events = 1_000_000 if args.full else 20_000 if args.quick else 100_000
    return args


def plan(ctx: Context) -> list[tuple[str, Callable[[], None]]]:
    """The steps of this run, each (name, callable): one per backend's server, then the
    offline rows."""
    args = ctx.args
    steps: list[tuple[str, Callable[[], None]]] = []
    for backend in args.backends:
        rows = ctx.server_rows(backend)
        if rows:
            steps.append((backend, functools.partial(run_server_rows, ctx, backend, rows)))
    if "projections" in args.rows:
        for backend in args.backends:
            steps.append(
                (f"projections {backend}", functools.partial(projections_row, ctx, backend))
            )
    if "export" in args.rows:
        for backend in args.export_backends:
            steps.append((f"export {backend}", functools.partial(export_row, ctx, backend)))
    if "growth" in args.rows:
        for backend in args.backends:
            steps.append((f"growth {backend}", functools.partial(growth_row, ctx, backend)))
    return steps


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None and any(r in args.rows for r in SERVER_ROWS):
        raise SystemExit("wrk is needed (the load generator): apt-get install -y wrk")
    started = datetime.now(UTC)
    args.stamp = started.strftime("%Y%m%dT%H%M%SZ")
    facts = machine_facts(args.pg)
    command = announce("Consent Ledger performance suite", started, facts)
    ctx = Context(args, Path())
    with temporary_directory("bench-suite-logs-") as logs:
        ctx.logs = logs
        for name, step in plan(ctx):
            try:
                step()
            except Exception as exc:  # a row that breaks must not hide the others' figures
                ctx.fail(name, exc)
                for log in sorted(logs.glob(f"{name.split()[-1]}*.log")):
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
        "load_generator": "wrk (Debian package), a separate process; paced by bench/pace.lua",
        "machine": facts,
        "figures": [f.record() for f in ctx.figures],
        "profile": ctx.profile,
        "failures": ctx.failures,
        "table": table,
    }
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")
    for failure in ctx.failures:
        print(f"row failed: {failure}", file=sys.stderr)
    return 1 if ctx.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
