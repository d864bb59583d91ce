"""What sealing personal data costs on append throughput.

Appends the same consent facts (a contact address, an IP address and a user agent each: three
personal-data fields plus the sealed reference) to two fresh ledgers, turn by turn, in the same
run: one as the ledger does it (every value sealed under the subject's key with
XChaCha20-Poly1305, a key per new subject, wrapped under the master key) and one with sealing
replaced by a no-op that stores the values as they came. Everything else (validation, signing,
the Merkle tree, group commit, fsync) is the same. Loads: batches of 100 facts from one thread,
and one fact per call from 16 threads.

Run: ``python bench/encryption_cost.py [--pg URL] [--seconds 8] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from itertools import count
from typing import Any

import harness

import ledger.sealing
from ledger.application import LedgerApplication
from ledger.config import Settings, generate_keys, open_ledger

EVIDENCE = {
    "notice_id": "signup-notice",
    "ip_address": "203.0.113.24",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/133.0 Safari/537.36",
}
REAL_SEAL = ledger.sealing.__dict__["seal_text"]


def no_seal(key: bytes, plaintext: str, aad: bytes) -> str:
    return plaintext


@contextmanager
def sealing(enabled: bool) -> Iterator[None]:
    setattr(ledger.sealing, "seal_text", REAL_SEAL if enabled else no_seal)  # noqa: B010
    try:
        yield
    finally:
        setattr(ledger.sealing, "seal_text", REAL_SEAL)  # noqa: B010


def facts(prefix: str, numbers: Iterator[int], n: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    out = []
    for _ in range(n):
        i = next(numbers)
        out.append(
            {
                "type": "consent.given",
                "event_id": f"{prefix}-{i}",
                "occurred_at": now,
                "subject": f"{prefix}-user-{i}",
                "purposes": ["marketing_email"],
                "policy_version": "bench-v1",
                "collection_method": "web_form",
                "evidence": EVIDENCE,
                "contact": f"user{i}@example.org",
            }
        )
    return out


def policy() -> dict[str, Any]:
    return harness.marketing_policy("bench-v1", "2026-01-01T00:00:00Z")


def measure(seconds: float, threads: int, op: Callable[[], int]) -> float:
    """Events per second appended by ``threads`` threads calling ``op`` for ``seconds``."""
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def work(index: int) -> None:
        while time.perf_counter() < stop:
            done[index] += op()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default=None)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    started = datetime.now(UTC)
    machine = harness.machine_facts(args.pg)
    print(harness.announce("encryption cost", started, machine))
    results: dict[str, dict[str, list[float]]] = {}
    with ExitStack() as stack:
        apps: dict[bool, LedgerApplication] = {}
        for enabled in (True, False):
            scratch = stack.enter_context(harness.temporary_directory("bench-seal-"))
            env = {"CONSENT_LEDGER_DATA_DIR": str(scratch)}
            if args.pg:
                schema = stack.enter_context(harness.temporary_schema(args.pg, "bench_seal"))
                env |= {
                    "CONSENT_LEDGER_DATABASE_URL": args.pg,
                    "CONSENT_LEDGER_DATABASE_SCHEMA": schema,
                }
            settings = Settings.from_env(env)
            generate_keys(settings)
            apps[enabled] = open_ledger(settings, create_keys=False)
            stack.callback(apps[enabled].close)
            apps[enabled].append([policy()])
        numbers = count()
        loads: dict[str, tuple[int, int]] = {"batches of 100, 1 thread": (1, 100)}
        loads["1 per call, 16 threads"] = (16, 1)
        for _ in range(args.rounds):
            for load, (threads, size) in loads.items():
                for enabled in (True, False):
                    app = apps[enabled]
                    prefix = "sealed" if enabled else "plain"

                    def op(
                        app: LedgerApplication = app, prefix: str = prefix, size: int = size
                    ) -> int:
                        app.append(facts(prefix, numbers, size))
                        return size

                    with sealing(enabled):
                        rate = measure(args.seconds, threads, op)
                    key = "sealed" if enabled else "not sealed"
                    results.setdefault(load, {}).setdefault(key, []).append(rate)
        # The no-op really stored plaintext, and the real one sealed it.
        plain = apps[False].ledger.get_record(3)
        sealed = apps[True].ledger.get_record(3)
        assert plain is not None and sealed is not None
        assert b"@example.org" in plain.body and b"@example.org" not in sealed.body
    lines = []
    for load, by_mode in results.items():
        with_sealing = max(by_mode["sealed"])
        without = max(by_mode["not sealed"])
        lines.append(
            [load, f"{with_sealing:,.0f}", f"{without:,.0f}", f"{with_sealing / without:.2f}"]
        )
    backend = "PostgreSQL" if args.pg else "SQLite"
    print(f"\n{backend}, best of {args.rounds} rounds of {args.seconds:.0f} s each")
    print(
        harness.markdown_table(["load", "sealed events/s", "not sealed events/s", "ratio"], lines)
    )
    harness.RESULTS_DIR.mkdir(exist_ok=True)
    name = f"encryption_cost-{'pg' if args.pg else 'sqlite'}-{started:%Y%m%dT%H%M%SZ}.json"
    (harness.RESULTS_DIR / name).write_text(
        json.dumps({"facts": machine, "backend": backend, "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
