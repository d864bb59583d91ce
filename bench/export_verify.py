"""Export and offline verification of bundles: speed, peak memory, sizes.

Fills a ledger with N events (SQLite, or PostgreSQL with ``--pg``; ``--keep DIR`` keeps a SQLite
ledger to export again in a later run), then, each in a fresh process so that its peak memory
(max RSS of the largest of its processes: the export renders its report in worker processes)
is its own:

- exports the whole log (``--all``) and one subject's history;
- verifies both bundles with the offline verifier;
- as the baseline, verifies the Ed25519 signature of every entry of the whole-log bundle and
  nothing else: the (entry, signature) pairs are read from the bundle 10,000 at a time and only
  the verify calls are timed, on one core (PyNaCl, one ``VerifyKey``).

Each step's row carries the load average (1 min) before and after it: the machine may be
shared, and the baseline is measured in the same run for that reason; compare ratios. As the
load moves between steps, samples of the baseline (30,000 signatures) are also taken just after
the export and just after the verification, and each step's ratio to the sample(s) next to it
is shown in brackets.

Run: ``python bench/export_verify.py --events 100000 [--pg postgresql://...] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import harness

import ledger as ledger_module
from ledger.config import Settings, open_ledger

PURPOSES = [
    {
        "id": "service_provision",
        "name": "Service",
        "legal_basis": "contract",
        "retention_days": 730,
    },
    {"id": "marketing_email", "name": "E-mail", "legal_basis": "consent", "retention_days": 730},
    {"id": "usage_analytics", "name": "Analytics", "legal_basis": "consent", "retention_days": 365},
]
TARGET = "user-target"
SAMPLE = 30_000
"""Signatures in each sample of the baseline taken next to a step."""


def facts(n: int) -> list[dict[str, Any]]:
    """About ``n`` facts: consents, withdrawals and disclosures of n/4 subjects, one traced."""
    rng = random.Random(7)
    start = datetime(2026, 1, 2, tzinfo=UTC)
    # A minute apart, or closer when that would reach the future (the ledger refuses facts
    # dated more than 5 minutes ahead of its clock): 1,000,000 minutes is almost two years.
    step = min(60.0, 0.9 * (datetime.now(UTC) - start).total_seconds() / max(1, n))
    out: list[dict[str, Any]] = [
        {
            "type": "policy.version_published",
            "event_id": "bench-policy",
            "occurred_at": "2026-01-01T00:00:00Z",
            "version": "2026-01",
            "effective_at": "2026-01-01T00:00:00Z",
            "material": False,
            "text_digest": "sha256:" + "ab" * 32,
            "purposes": PURPOSES,
        },
        *[
            {
                "type": "recipient.registered",
                "event_id": f"bench-rcpt-{i}",
                "occurred_at": "2026-01-01T00:00:00Z",
                "recipient_id": f"rcpt-{i}",
                "name": f"Processor {i}",
                "role": "processor",
                "country": "IE",
            }
            for i in range(5)
        ],
    ]
    subjects = max(1, n // 4)
    for i in range(n - len(out)):
        subject = TARGET if i % 5000 == 0 else f"user-{rng.randrange(subjects)}"
        moment = (start + timedelta(seconds=i * step)).isoformat()
        roll = rng.random()
        if roll < 0.6:
            out.append(
                {
                    "type": "consent.given" if roll < 0.5 else "consent.withdrawn",
                    "event_id": f"bench-{i}",
                    "occurred_at": moment,
                    "subject": subject,
                    "purposes": ["marketing_email"],
                    "policy_version": "2026-01",
                    "collection_method": "web_form",
                    "contact": f"{subject}@example.org",
                }
            )
        else:
            out.append(
                {
                    "type": "disclosure.recorded",
                    "event_id": f"bench-{i}",
                    "occurred_at": moment,
                    "disclosure_id": f"disc-{i}",
                    "recipient_id": f"rcpt-{rng.randrange(5)}",
                    "kind": "delegated_processing",
                    "subjects": [subject],
                    "data_categories": ["contact"],
                    "purpose": "marketing_email",
                    "legal_basis": "consent",
                    "de_identified": False,
                    "destination_country": "IE",
                    "policy_version": "2026-01",
                }
            )
    return out


def settings_for(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env({"CONSENT_LEDGER_DATA_DIR": args.data_dir})
    if args.pg:
        settings = Settings.from_env(
            {
                "CONSENT_LEDGER_DATA_DIR": args.data_dir,
                "CONSENT_LEDGER_DATABASE_URL": args.pg,
                "CONSENT_LEDGER_DATABASE_SCHEMA": args.schema,
            }
        )
    return settings


def phase(args: argparse.Namespace) -> dict[str, Any]:
    """One measured step, in this (child) process."""
    started = time.perf_counter()
    result: dict[str, Any] = {}
    if args.phase == "fill":
        from ledger.config import generate_keys

        settings = settings_for(args)
        generate_keys(settings)
        app = open_ledger(settings, create_keys=False)
        try:
            batch = facts(args.events)
            for first in range(0, len(batch), 500):
                app.append(batch[first : first + 500])
            result["head"] = app.head()
        finally:
            app.close()
    elif args.phase.startswith("export"):
        from ledger.config import load_keyring
        from ledger.export import export_bundle
        from ledger.verifier.note import format_verifier_key

        settings = settings_for(args)
        app = open_ledger(settings)
        try:
            assert app.checkpointer is not None
            keys = [
                format_verifier_key(app.checkpointer.origin, k)
                for k in load_keyring(settings).public_keys.values()
            ]
            Path(args.keys).write_text("\n".join(keys) + "\n")
            scope = (
                {"kind": "all"}
                if args.phase == "export-all"
                else {"kind": "subject", "subject": app.subject_keys.pseudonym(TARGET)}
            )
            started = time.perf_counter()
            done = export_bundle(
                app,
                scope,
                Path(args.bundle),
                verifier_keys=keys,
                report_settings={"default_minimum_age": 18},
            )
            result |= {"entries": done.entries, "leaves": done.size}
        finally:
            app.close()
    elif args.phase.startswith("verify"):
        from ledger.verifier.__main__ import trusted_keys
        from ledger.verifier.bundle import verify_bundle

        report = verify_bundle(Path(args.bundle), trusted_keys([args.keys]), jobs=args.jobs)
        result |= {"entries": report.entries, "leaves": report.size}
    elif args.phase == "baseline":
        from nacl.signing import VerifyKey

        from ledger.verifier.__main__ import trusted_keys

        key = VerifyKey(trusted_keys([args.keys])[0].public_key)
        count, seconds = 0, 0.0
        for pairs in signed_entries(Path(args.bundle), 10_000):
            t0 = time.perf_counter()
            for entry, signature in pairs:
                key.verify(entry, signature)
            seconds += time.perf_counter() - t0
            count += len(pairs)
            if args.sample and count >= args.sample:
                break
        result |= {"entries": count, "verify_seconds": seconds}
    result["seconds"] = result.pop("verify_seconds", time.perf_counter() - started)
    return result


def signed_entries(bundle: Path, page: int) -> Any:
    """(entry, signature) of each event of a bundle, ``page`` at a time (bundle format 1 or 2)."""
    from ledger.verifier.entry import read_entries

    pairs: list[tuple[bytes, bytes]] = []
    if (bundle / "entries.jsonl").exists():  # format 1, for a run of the older code
        with (bundle / "entries.jsonl").open("rb") as file:
            for line in file:
                item = json.loads(line)
                pairs.append((base64.b64decode(item["entry"]), base64.b64decode(item["signature"])))
                if len(pairs) == page:
                    yield pairs
                    pairs = []
    else:
        with (bundle / "leaves.bin").open("rb") as leaves, (bundle / "events.tsv").open("rb") as ev:
            entries = enumerate(read_entries(leaves))
            for line in ev:
                index = int(line.split(b"\t", 1)[0])
                at, entry = next(entries)
                while at < index:
                    at, entry = next(entries)
                pairs.append((entry, base64.b64decode(line.split(b"\t", 2)[1])))
                if len(pairs) == page:
                    yield pairs
                    pairs = []
    if pairs:
        yield pairs


def run_phase(args: argparse.Namespace, name: str, **extra: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", name, "--events", str(args.events)]
    command += ["--data-dir", args.data_dir, "--keys", args.keys]
    if args.pg:
        command += ["--pg", args.pg, "--schema", args.schema]
    if getattr(args, "jobs", None):
        command += ["--jobs", str(args.jobs)]
    if extra.get("sample"):
        command += ["--sample", extra.pop("sample")]
    for option, value in extra.items():
        command += [f"--{option}", value]
    load_before = os.getloadavg()[0]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"phase {name} failed ({child.returncode})")
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    result["peak_mb"] = usage.ru_maxrss / 1024  # kilobytes on Linux; the largest process
    result["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 2)  # with its workers
    result["load"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--pg", default=None)
    parser.add_argument("--phase", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--schema", default=None)
    parser.add_argument("--keys", default=None)
    parser.add_argument("--bundle", default=None)
    parser.add_argument("--jobs", type=int, default=None, help="the verifier's processes")
    parser.add_argument("--sample", type=int, default=None, help="baseline: signatures to time")
    parser.add_argument(
        "--label",
        default=None,
        help="named in the JSON file's name (export_verify-LABEL-sqlite-TIME.json), e.g. the "
        "round and whether the code is the one before or after",
    )
    parser.add_argument(
        "--keep",
        default=None,
        help="a directory to fill once and keep (SQLite): a later run with the same --keep and "
        "--events exports the ledger it holds instead of filling a new one",
    )
    args = parser.parse_args()
    if args.phase is not None:
        print(json.dumps(phase(args)))
        return
    started = datetime.now(UTC)
    facts_ = harness.machine_facts(args.pg)
    print(harness.announce("export and verify", started, facts_))
    if args.keep and args.pg:
        raise SystemExit("--keep keeps a SQLite ledger only")
    with harness.temporary_directory("bench-export-") as scratch:
        args.data_dir = str(scratch / "data")
        args.keys = str(scratch / "keys.txt")
        if args.pg:
            schema_context = harness.temporary_schema(args.pg, "bench_export")
            args.schema = schema_context.__enter__()
        rows: dict[str, dict[str, Any]] = {}
        if args.keep:
            args.data_dir = str(Path(args.keep) / f"data-{args.events}")
        if args.keep and (Path(args.data_dir) / "filled.json").exists():
            rows["fill"] = json.loads((Path(args.data_dir) / "filled.json").read_text())
        else:
            rows["fill"] = run_phase(args, "fill")
            if args.keep:
                (Path(args.data_dir) / "filled.json").write_text(json.dumps(rows["fill"]))
        everything, subject = str(scratch / "all"), str(scratch / "subject.zip")
        rows["export all"] = run_phase(args, "export-all", bundle=everything)
        # Samples of the baseline just after the export and just after the verification: on a
        # shared machine the load moves between steps, and a ratio to the baseline taken next
        # to the step is the one that compares.
        sample = {"bundle": everything, "sample": str(SAMPLE)}
        samples = [run_phase(args, "baseline", **sample)]
        rows["verify all"] = run_phase(args, "verify-all", bundle=everything)
        samples.append(run_phase(args, "baseline", **sample))
        rows["Ed25519 verify alone (baseline)"] = run_phase(args, "baseline", bundle=everything)
        rows["export one subject"] = run_phase(args, "export-subject", bundle=subject)
        rows["verify one subject"] = run_phase(args, "verify-subject", bundle=subject)
        sizes = {
            name: sum(p.stat().st_size for p in (scratch / "all").iterdir()) for name in ["all"]
        }
        sizes["subject.zip"] = (scratch / "subject.zip").stat().st_size
        sizes["leaves.bin"] = (scratch / "all" / "leaves.bin").stat().st_size
        sizes["events.tsv"] = (scratch / "all" / "events.tsv").stat().st_size
        if args.pg:
            schema_context.__exit__(None, None, None)
    baseline = rows["Ed25519 verify alone (baseline)"]
    base_rate = baseline["entries"] / baseline["seconds"]
    sample_rates = [row["entries"] / row["seconds"] for row in samples]
    adjacent = {
        "export all": sample_rates[0],
        "verify all": sum(sample_rates) / len(sample_rates),
    }
    lines = []
    for name, row in rows.items():
        leaves = row.get("leaves") or row.get("head") or row.get("entries") or 0
        entries = row.get("entries", leaves)
        rate = leaves / row["seconds"]
        ratio = f"{rate / base_rate:.2f}" if name.startswith(("verify", "export")) else ""
        if name in adjacent:
            row["ratio_to_adjacent_baseline"] = rate / adjacent[name]
            ratio += f" ({rate / adjacent[name]:.2f})"
        lines.append(
            [
                name,
                f"{entries:,}",
                f"{leaves:,}",
                f"{row['seconds']:.1f}",
                f"{rate:,.0f}",
                ratio,
                f"{row['peak_mb']:.0f}",
                f"{row['cpu_seconds']:.1f}" if "cpu_seconds" in row else "",
                "{:.1f}-{:.1f}".format(*row["load"]) if "load" in row else "",
            ]
        )
    headers = ["step", "events in bundle", "log size", "seconds", "log events/s"]
    ratio_head = "÷ Ed25519 alone (÷ the sample next to it)"
    print(harness.markdown_table([*headers, ratio_head, "peak MB", "CPU s", "load"], lines))
    print(
        "\nEd25519 alone, samples of {:,} signatures after the export and after the verification: "
        "{}".format(SAMPLE, ", ".join(f"{rate:,.0f}/s" for rate in sample_rates))
    )
    events_tsv = sizes["events.tsv"]
    print(
        f"\nbundle of the whole log: {sizes['all'] / 1e6:.1f} MB ({sizes['all'] / args.events:.0f} "
        f"B/event; events.tsv {events_tsv / args.events:.0f} B/event; leaves.bin "
        f"{sizes['leaves.bin'] / args.events:.0f} B/leaf); one subject's zip: "
        f"{sizes['subject.zip'] / 1e6:.1f} MB"
    )
    record = {
        "facts": facts_,
        "events": args.events,
        "backend": "postgresql" if args.pg else "sqlite",
        "rows": rows,
        "baseline_samples": samples,
        "sizes": sizes,
        "label": args.label,
        "ledger_code": str(Path(ledger_module.__file__).resolve().parent),
    }
    harness.RESULTS_DIR.mkdir(exist_ok=True)
    label = f"{args.label}-" if args.label else ""
    backend = "pg" if args.pg else "sqlite"
    name = f"export_verify-{label}{backend}-{started:%Y%m%dT%H%M%SZ}.json"
    (harness.RESULTS_DIR / name).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    main()
