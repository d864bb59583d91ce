"""How the cost grows with the log: append, decision, proofs and export at a log of N events.

    .venv/bin/python bench/growth.py --events 100000 [--pg URL] [--no-export] [--json OUT]

Fills a new ledger with ``export_verify.py``'s workload (consents, withdrawals and disclosures
of N/4 subjects; each subject's first fact adds a ``subject.registered`` row), then, at that
size, in this process (no HTTP, so the figures are the storage's and the code's, not the
server's):

- **append**: 200 single-fact appends one after the other (each durable before the next), then
  5 batches of 500: latency and events/s;
- **inclusion proof**: ``tree().inclusion_proof(i, size)`` for 300 random leaves, each from a
  fresh tree reader (no cache: every stored node is read, one query per node);
- **consistency proof**: ``tree().consistency_proof(m, size)`` for 100 random ``m``;
- **decision**: the consent_state read model caught up from zero (timed), then
  ``consent.decide(subject, purpose, now)`` for 1,000 random subjects;
- **export and verify** of the whole log (``export_verify.py``'s phases, each in a fresh
  process for its own peak memory), unless ``--no-export``.

Results go to stdout and ``bench/results/growth-<backend>-<N>-<UTC timestamp>.json`` (or
``--json OUT``: ``suite.py --full`` runs it so, at 10^5 and 10^6 facts, for its growth row).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import export_verify
import harness

from ledger.config import open_ledger
from projections.read_models import ReadModels


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(1000 * statistics.median(ordered), 3),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
        "mean_ms": round(1000 * statistics.fmean(ordered), 3),
    }


def timed_each(calls: list[Any], run: Any) -> list[float]:
    out = []
    for call in calls:
        t0 = time.perf_counter()
        run(call)
        out.append(time.perf_counter() - t0)
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    fill = export_verify.run_phase(args, "fill")
    result["fill"] = fill
    print(f"   filled {fill['head']:,} log events in {fill['seconds']:.1f} s", flush=True)
    settings = export_verify.settings_for(args)
    app = open_ledger(settings)
    rng = random.Random(11)
    try:
        size = app.head()
        result["log_events"] = size
        now = datetime.now(UTC).isoformat()
        subjects = [f"user-{rng.randrange(max(1, args.events // 4))}" for _ in range(1000)]

        def fact(n: int, subject: str) -> dict[str, Any]:
            return {
                "type": "consent.given",
                "event_id": f"growth-{n}",
                "occurred_at": now,
                "subject": subject,
                "purposes": ["marketing_email"],
                "policy_version": "2026-01",
                "collection_method": "web_form",
            }

        singles = timed_each(list(range(200)), lambda n: app.append([fact(n, subjects[n])]))
        result["append_single"] = percentiles(singles)
        t0 = time.perf_counter()
        for b in range(5):
            app.append([fact(1000 + b * 500 + i, subjects[i % 1000]) for i in range(500)])
        result["append_batch_500_events_per_s"] = round(2500 / (time.perf_counter() - t0), 1)
        print(f"   append: {result['append_single']}", flush=True)

        # The tree is extended in each append's transaction: its size is the head.
        tree_size = app.head()
        leaves = [rng.randrange(tree_size) for _ in range(300)]
        proof_lengths: list[int] = []

        def inclusion(index: int) -> None:
            proof_lengths.append(len(app.ledger.tree().inclusion_proof(index, tree_size)))

        result["inclusion_proof"] = percentiles(timed_each(leaves, inclusion))
        result["inclusion_proof"]["mean_hashes"] = round(statistics.fmean(proof_lengths), 2)
        olds = [rng.randrange(1, tree_size) for _ in range(100)]
        result["consistency_proof"] = percentiles(
            timed_each(olds, lambda m: app.ledger.tree().consistency_proof(m, tree_size))
        )
        print(f"   inclusion proof: {result['inclusion_proof']}", flush=True)

        models = ReadModels(app, settings)
        try:
            t0 = time.perf_counter()
            models.runner.rebuild(["consent_state"])
            catch_up = time.perf_counter() - t0
            result["consent_state_catch_up"] = {
                "seconds": round(catch_up, 2),
                "events_per_s": round(tree_size / catch_up, 1),
            }
            moment = datetime.now(UTC)
            pseudonyms = [app.subject_keys.pseudonym(s) for s in subjects]
            models.consent.decide(pseudonyms[0], "marketing_email", moment)  # warm
            result["decision"] = percentiles(
                timed_each(
                    pseudonyms, lambda p: models.consent.decide(p, "marketing_email", moment)
                )
            )
            print(f"   decision: {result['decision']}", flush=True)
        finally:
            models.close()
    finally:
        app.close()
    if args.export:
        bundle = str(Path(args.scratch) / "all")
        for name in ("export-all", "verify-all", "baseline"):
            phase = export_verify.run_phase(args, name, bundle=bundle)
            phase["events_per_s"] = round(
                (phase.get("leaves") or phase["entries"]) / phase["seconds"], 1
            )
            result[name] = phase
            print(f"   {name}: {phase}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--pg", default=None, help="PostgreSQL URL (default: SQLite)")
    parser.add_argument("--no-export", dest="export", action="store_false")
    parser.add_argument("--json", type=Path, default=None, help="where the figures go")
    args = parser.parse_args()
    started = datetime.now(UTC)
    facts = harness.machine_facts(args.pg)
    command = harness.announce("growth with the log", started, facts)
    with harness.temporary_directory("bench-growth-") as scratch:
        args.scratch = str(scratch)
        args.data_dir = str(scratch / "data")
        args.keys = str(scratch / "keys.txt")
        args.schema = None
        if args.pg:
            with harness.temporary_schema(args.pg, "bench_growth_") as schema:
                args.schema = schema
                result = measure(args)
        else:
            result = measure(args)
    backend = "postgres" if args.pg else "sqlite"
    record = {
        "benchmark": "growth",
        "command": command,
        "machine": facts,
        "backend": backend,
        "events": args.events,
        **result,
    }
    stamp = f"{started:%Y%m%dT%H%M%SZ}"
    path = args.json or harness.RESULTS_DIR / f"growth-{backend}-{args.events}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "fill"}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
