"""Two API processes on one log, one of them stopped and restarted: the checkpoints they sign
form one consistent sequence.

Two real ``consent-ledger serve`` processes share the storage (PostgreSQL: one schema; SQLite:
one data directory, whose file locks serialise their writers and signers) and each signs a
checkpoint every second with its own signer thread. Appends go through both at once; then one
is stopped (SIGTERM) and started again while appends continue through the other; then through
both again. Every checkpoint the log stored, and every one either process served while it ran,
must verify under the published key, one root per size, sizes growing, each proven consistent
with the one before it over HTTP, and each root equal to the root recomputed from the entries.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.client import LedgerClient
from ledger.config import Settings, open_ledger
from ledger.verifier.checkpoint import open_checkpoint
from ledger.verifier.merkle import (
    EMPTY_ROOT,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from ledger.verifier.note import parse_verifier_key
from tests import facts
from tests.support.processes import ROOT, add_client, free_port, settings_env
from tests.support.waiting import answers_healthz, wait_until

START_DEADLINE = 60.0
CATCH_UP_DEADLINE = 60.0


class ServeProcess:
    """One ``consent-ledger serve`` (read models elsewhere: this test is about the log)."""

    def __init__(self, name: str, settings: Settings, log_dir: Path) -> None:
        self.name = name
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)),
                    *("--no-projections", "--log-format", "json"),
                ],
                env=settings_env(self.settings),
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )
        process = self.process

        def started() -> bool:
            assert process.poll() is None, f"{self.name} exited: {self.tail()}"
            return answers_healthz(self.url)

        wait_until(
            started, lambda: f"{self.name} did not start: {self.tail()}", START_DEADLINE, 0.1
        )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=60)
        self.process = None
        assert status == 0, f"{self.name} stopped with status {status}: {self.tail()}"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


class Poller:
    """Asks every server for its latest checkpoint, over and over, and keeps every note."""

    def __init__(self, servers: list[ServeProcess]) -> None:
        self.servers = servers
        self.notes: set[str] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="poller", daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as http:
            while not self.stop.is_set():
                for server in self.servers:
                    try:
                        response = http.get(f"{server.url}/v1/checkpoint")
                    except httpx.TransportError:
                        continue  # stopped for a while
                    if response.status_code == 200:
                        self.notes.add(response.text)
                self.stop.wait(0.05)


def append_through(
    urls: list[str], token: str, policy_version: str, requests: int, seed: int
) -> list[dict[str, Any]]:
    """Batches of 1 to 40 consent facts, each request to the next of ``urls``; the receipts."""
    rng = random.Random(seed)
    subjects = [facts.ref("user") for _ in range(5)]
    receipts: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {token}"}
    clients = [httpx.Client(base_url=url, headers=headers, timeout=60) for url in urls]
    try:
        for n in range(requests):
            batch = [
                facts.consent(rng.choice(subjects), policy_version)
                for _ in range(rng.randint(1, 40))
            ]
            response = clients[n % len(clients)].post("/v1/events", json=batch)
            assert response.status_code == 201, response.text
            receipts.extend(response.json()["receipts"])
    finally:
        for client in clients:
            client.close()
    return receipts


def in_threads(
    count: int, urls: list[str], token: str, policy_version: str, requests: int, seed: int
) -> list[dict[str, Any]]:
    results: list[list[dict[str, Any]]] = [[] for _ in range(count)]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            # Each thread starts on another server, so both take requests at once.
            ordered = urls[i % len(urls) :] + urls[: i % len(urls)]
            results[i] = append_through(ordered, token, policy_version, requests, seed + i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return [receipt for result in results for receipt in result]


def wait_for_checkpoint_of(server: ServeProcess, size: int) -> None:
    """Poll until ``server`` serves a checkpoint of at least ``size`` leaves."""

    def covered() -> bool:
        response = httpx.get(f"{server.url}/v1/checkpoint", timeout=5)
        return response.status_code == 200 and int(response.text.split("\n")[1]) >= size

    wait_until(covered, f"no checkpoint of {size} from {server.name}", CATCH_UP_DEADLINE, 0.1)


@pytest.fixture
def servers(settings: Settings, tmp_path: Path) -> Iterator[list[ServeProcess]]:
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    pair = [ServeProcess(name, settings, tmp_path) for name in ("a", "b")]
    try:
        for server in pair:
            server.start()
        yield pair
    finally:
        for server in pair:
            if server.process is not None:
                server.process.kill()
                server.process.wait(timeout=30)


def test_checkpoints_of_two_processes_and_a_restart_form_one_consistent_sequence(
    settings: Settings, servers: list[ServeProcess]
) -> None:
    a, b = servers
    token = add_client(settings, "auditor", "events:write", "history:read")
    poller = Poller(servers)
    poller.thread.start()
    pol = facts.policy()
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        assert http.post(f"{a.url}/v1/events", json=pol).status_code == 201
        head = 1
        receipts: list[dict[str, Any]] = []

        # Through both at once.
        receipts += in_threads(4, [a.url, b.url], token, pol["version"], 30, seed=1)
        head = max(r["seq"] for r in receipts)
        wait_for_checkpoint_of(a, head)

        # b stops and starts again while appends go on through a.
        writer = threading.Thread(
            target=lambda: receipts.extend(
                in_threads(2, [a.url], token, pol["version"], 40, seed=100)
            )
        )
        writer.start()
        b.stop()
        b.start()
        writer.join()
        head = max(r["seq"] for r in receipts)
        wait_for_checkpoint_of(b, head)

        # Through both again, the restarted one included.
        receipts += in_threads(4, [b.url, a.url], token, pol["version"], 30, seed=200)
        head = max(r["seq"] for r in receipts)
        wait_for_checkpoint_of(a, head)
        wait_for_checkpoint_of(b, head)
    poller.stop.set()
    poller.thread.join()

    seqs = [r["seq"] for r in receipts]
    assert len(set(seqs)) == len(seqs)  # one order across both processes: no place given twice

    # Both publish the same verifier key; every checkpoint verifies under it.
    keys = {httpx.get(f"{s.url}/v1/keys", timeout=5).text for s in servers}
    assert len(keys) == 1
    verifiers = [parse_verifier_key(line) for line in keys.pop().splitlines()]
    origin = verifiers[0].name
    ledger = open_ledger(settings)
    try:
        stored = ledger.ledger.checkpoints()
        assert ledger.head() == head
    finally:
        ledger.close()
    opened = [open_checkpoint(c.note, origin, verifiers) for c in stored]
    served = [open_checkpoint(note, origin, verifiers) for note in poller.notes]
    assert poller.notes <= {c.note for c in stored}  # served only what was stored

    # One root per size, sizes strictly growing, the last one covering the whole log.
    roots: dict[int, set[bytes]] = defaultdict(set)
    for checkpoint in opened + served:
        roots[checkpoint.size].add(checkpoint.root_hash)
    assert {size: len(r) for size, r in roots.items() if len(r) > 1} == {}
    sizes = [c.size for c in opened]
    assert all(x < y for x, y in itertools.pairwise(sizes)), sizes
    assert sizes[-1] == head
    assert len(opened) >= 3

    # Each consecutive pair proven consistent, asking each server in turn.
    with (
        LedgerClient(a.url, token) as via_a,
        LedgerClient(b.url, token) as via_b,
    ):
        for n, (old, new) in enumerate(itertools.pairwise(opened)):
            if old.size == 0:
                # Signed before the first append: every tree extends the empty one (RFC 9162
                # has no proof for it); its root must be the empty tree's.
                assert old.root_hash == EMPTY_ROOT
                continue
            answer = (via_a, via_b)[n % 2].consistency_proof(old.size, new.size)
            verify_consistency(old.size, new.size, answer.proof, old.root_hash, new.root_hash)

        # Each root is the one recomputed from the entries themselves.
        entries = list(via_b.iter_entries())
        assert [e.index for e in entries] == list(range(head))
        leaves = [leaf_hash(e.entry) for e in entries]
        for receipt in receipts:
            entry = entries[receipt["leaf_index"]].entry
            assert hashlib.sha256(entry).hexdigest() == receipt["event_hash"]
        for checkpoint in opened:
            assert root_from_leaf_hashes(leaves[: checkpoint.size]) == checkpoint.root_hash

        # Every receipt's leaf is in the latest checkpoint (a sample, from either server).
        for n, receipt in enumerate(random.Random(7).sample(receipts, 50)):
            proof = (via_a, via_b)[n % 2].inclusion_proof(receipt["leaf_index"])
            assert proof.checkpoint is not None
            latest = open_checkpoint(proof.checkpoint, origin, verifiers)
            index = receipt["leaf_index"]
            assert proof.leaf_hash == leaves[index]
            verify_inclusion(index, latest.size, leaves[index], proof.proof, latest.root_hash)
