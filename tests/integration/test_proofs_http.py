"""Proofs over HTTP, checked against an independent recomputation, on both backends.

The app runs in this process (its lifespan included, the signer thread off so the test decides
when checkpoints are signed) and is called through httpx. Every proof the API serves is checked
with ``ledger.verifier.merkle`` against roots recomputed here from the entry bytes that
``/v1/entries`` returns, never from the server's stored nodes; every checkpoint the ledger
signed is opened with the verifier key that ``/v1/keys`` publishes.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from api.http.app import ServerSettings, create_app, open_client_database
from api.token_store import Scope, SqlTokenStore
from ledger.application import LedgerApplication
from ledger.config import Settings, load_keyring
from ledger.verifier.checkpoint import Checkpoint, open_checkpoint
from ledger.verifier.entry import parse_entry, signature_is_valid
from ledger.verifier.merkle import (
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from ledger.verifier.note import parse_verifier_key
from tests import facts
from tests.support.in_process import InProcess

MAX_BATCH = 1000
LOG_SIZE = 3000
T = TypeVar("T")


@dataclass
class Api:
    http: InProcess
    ledger: LedgerApplication
    settings: Settings
    tokens: dict[str, str]

    def get(self, path: str, who: str | None = "auditor", **params: Any) -> Any:
        headers = {} if who is None else {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.http.get(path, params=params, headers=headers)

    def json(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def append(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        response = self.http.post(
            "/v1/events", json=events, headers={"Authorization": f"Bearer {self.tokens['writer']}"}
        )
        assert response.status_code == 201, response.text
        receipts: list[dict[str, Any]] = response.json()["receipts"]
        return receipts


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    store = SqlTokenStore(open_client_database(settings))
    tokens = {
        "writer": store.add("writer", [Scope.WRITE_EVENTS])[1],
        "auditor": store.add("auditor", [Scope.READ_HISTORY])[1],
        "admin": store.add("admin", [Scope.ADMIN])[1],
        "reader": store.add("reader", [Scope.READ_STATE, Scope.WRITE_EVENTS])[1],
    }
    store.db.close()
    app = create_app(settings, server=ServerSettings(projections=False, signer=False))
    http = InProcess(app)
    try:
        yield Api(http, app.state.ledger, settings, tokens)
    finally:
        http.close()


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def consent_batch(count: int, policy_version: str, subjects: list[str]) -> list[dict[str, Any]]:
    kinds = ["withdrawn", "given", "given"]
    return [
        facts.consent(subjects[n % len(subjects)], policy_version, kinds[n % 3])
        for n in range(count)
    ]


def all_entries(api: Api) -> list[dict[str, Any]]:
    """Every entry, following ``next`` from 0 to the end of the log."""
    found: list[dict[str, Any]] = []
    start: int | None = 0
    while start is not None:
        response = api.get("/v1/entries", start=start)
        if response.status_code == 404:
            break  # past the end of the log
        assert response.status_code == 200, response.text
        page = response.json()
        assert 1 <= len(page["entries"]) <= MAX_BATCH
        found.extend(page["entries"])
        start = page["next"]
    return found


class Recomputed:
    """Leaf hashes from the entry bytes, and roots from them (RFC 9162's own recursion)."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.leaves = [leaf_hash(b64(e["entry"])) for e in entries]
        self._roots: dict[int, bytes] = {}

    def root(self, size: int) -> bytes:
        if size not in self._roots:
            self._roots[size] = root_from_leaf_hashes(self.leaves[:size])
        return self._roots[size]


def verifier_checkpoint(api: Api, note: str) -> Checkpoint:
    keys = api.get("/v1/keys", who=None)
    assert keys.status_code == 200
    verifiers = [parse_verifier_key(line) for line in keys.text.splitlines()]
    origin = verifiers[0].name
    return open_checkpoint(note, origin, verifiers)


def grow(api: Api, rng: random.Random) -> list[dict[str, Any]]:
    """The log grown to about LOG_SIZE events in batches of random size, a checkpoint after
    each: many small trees first (sizes 1, 2, 3 ...), then larger steps."""
    pol = facts.policy()
    receipts = api.append([pol])
    api.ledger.sign_checkpoint()
    subjects = [facts.ref("user") for _ in range(7)]
    steps = [1, 1, 1, 2, 1, 3, 5, 2, 8, 13, 1, 21, 34] + [rng.randint(1, 64) for _ in range(6)]
    while sum(steps) < LOG_SIZE:
        steps.append(rng.randint(65, MAX_BATCH))
    for step in steps:
        receipts += api.append(consent_batch(step, pol["version"], subjects))
        api.ledger.sign_checkpoint()
    return receipts


def test_proofs_at_random_sizes_verify_against_a_recomputed_tree(api: Api) -> None:
    rng = random.Random(9162)
    receipts = grow(api, rng)
    entries = all_entries(api)
    head = api.ledger.head()
    assert [e["index"] for e in entries] == list(range(head))
    assert head >= LOG_SIZE
    keyring = load_keyring(api.settings)
    for e in entries:
        entry, body = b64(e["entry"]), b64(e["body"])
        assert parse_entry(entry).body_sha256 == hashlib.sha256(body).digest()
        assert parse_entry(entry).seq == e["index"] + 1
        public_key = keyring.public_keys[e["key_id"]]
        assert signature_is_valid(entry, b64(e["signature"]), public_key)
    tree = Recomputed(entries)

    # Receipts name their leaf: the entry there is the one whose hash the receipt carries.
    for receipt in receipts:
        assert receipt["leaf_index"] == receipt["seq"] - 1
        entry = b64(entries[receipt["leaf_index"]]["entry"])
        assert hashlib.sha256(entry).hexdigest() == receipt["event_hash"]

    # Every signed checkpoint's root is the recomputed root of its size.
    checkpoints = api.ledger.ledger.checkpoints()
    assert len(checkpoints) > 20
    for signed in checkpoints:
        opened = verifier_checkpoint(api, signed.note)
        assert opened.size == signed.size and opened.root_hash == tree.root(signed.size)

    # Inclusion: random (index, size) pairs, small sizes, edges and powers of two included.
    sizes = [1, 2, 3, 4, 5, 7, 8, 9, 1023, 1024, 1025, 2048, head]
    sizes += [rng.randint(1, head) for _ in range(60)]
    sizes += [c.size for c in checkpoints]
    for size in sizes:
        indexes = {0, size - 1, rng.randrange(size), rng.randrange(size)}
        for index in sorted(indexes):
            answer = api.json("/v1/proofs/inclusion", index=index, size=size)
            assert (answer["index"], answer["size"]) == (index, size)
            assert "checkpoint" not in answer
            assert b64(answer["leaf_hash"]) == tree.leaves[index]
            proof = [b64(h) for h in answer["proof"]]
            verify_inclusion(index, size, tree.leaves[index], proof, tree.root(size))

    # Without size: the latest checkpoint's tree, its note in the same answer.
    for receipt in rng.sample(receipts, 20):
        answer = api.json("/v1/proofs/inclusion", index=receipt["leaf_index"])
        latest = verifier_checkpoint(api, answer["checkpoint"])
        assert answer["size"] == latest.size == head
        proof = [b64(h) for h in answer["proof"]]
        leaf = leaf_hash(b64(entries[receipt["leaf_index"]]["entry"]))
        verify_inclusion(receipt["leaf_index"], latest.size, leaf, proof, latest.root_hash)

    # Consistency: random (m, n) pairs at any sizes, and the degenerate ones.
    pairs = [(1, 1), (1, 2), (2, 3), (3, 4), (4, 8), (7, 9), (1024, 1025), (1, head), (head, head)]
    for _ in range(150):
        m, n = sorted((rng.randint(1, head), rng.randint(1, head)))
        pairs.append((m, n))
    for m, n in pairs:
        answer = api.json("/v1/proofs/consistency", **{"from": m, "to": n})
        assert (answer["from"], answer["to"]) == (m, n)
        proof = [b64(h) for h in answer["proof"]]
        verify_consistency(m, n, proof, tree.root(m), tree.root(n))
    for n in (0, 1, 5, head):
        empty = api.json("/v1/proofs/consistency", **{"from": 0, "to": n})
        assert empty["proof"] == []  # every tree extends the empty one: nothing to prove


def test_every_pair_of_signed_checkpoints_is_proven_consistent_over_http(api: Api) -> None:
    rng = random.Random(6962)
    pol = facts.policy()
    subjects = [facts.ref("user") for _ in range(3)]
    api.append([pol])
    api.ledger.sign_checkpoint()
    for _ in range(24):
        step = rng.choice([1, 1, 2, 3, 7, 16, 40, 130])
        api.append(consent_batch(step, pol["version"], subjects))
        api.ledger.sign_checkpoint()
        if rng.random() < 0.2:
            api.ledger.sign_checkpoint()  # nothing new: the same checkpoint, not a new one
    signed = api.ledger.ledger.checkpoints()
    opened = [verifier_checkpoint(api, c.note) for c in signed]
    assert [c.size for c in opened] == sorted({c.size for c in opened})  # one per size
    assert len(opened) == 25
    for old, new in itertools.combinations_with_replacement(opened, 2):
        answer = api.json("/v1/proofs/consistency", **{"from": old.size, "to": new.size})
        proof = [b64(h) for h in answer["proof"]]
        verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
    # Without `to`: from each checkpoint to the latest, in one round trip.
    for old in opened:
        answer = api.json("/v1/proofs/consistency", **{"from": old.size})
        latest = verifier_checkpoint(api, answer["checkpoint"])
        assert latest == opened[-1]
        proof = [b64(h) for h in answer["proof"]]
        verify_consistency(old.size, latest.size, proof, old.root_hash, latest.root_hash)


@pytest.fixture
def small(api: Api) -> Api:
    """A log of 10 events with a checkpoint of all 10, then 3 more not yet checkpointed."""
    pol = facts.policy()
    subjects = [facts.ref("user")]
    api.append([pol, *consent_batch(8, pol["version"], subjects)])  # and subject.registered
    assert api.ledger.sign_checkpoint().size == 10
    api.append(consent_batch(3, pol["version"], subjects))
    assert api.ledger.head() == 13
    return api


BAD: list[tuple[str, dict[str, Any], int, str, str]] = [
    # (path, params, status, parameter, rule)
    ("/v1/proofs/inclusion", {}, 400, "index", "required"),
    ("/v1/proofs/inclusion", {"index": "x"}, 400, "index", "not_an_integer"),
    ("/v1/proofs/inclusion", {"index": "1.5", "size": 4}, 400, "index", "not_an_integer"),
    ("/v1/proofs/inclusion", {"index": "", "size": 4}, 400, "index", "not_an_integer"),
    ("/v1/proofs/inclusion", {"index": -1, "size": 4}, 400, "index", "out_of_range"),
    ("/v1/proofs/inclusion", {"index": 0, "size": 0}, 400, "size", "out_of_range"),
    ("/v1/proofs/inclusion", {"index": 0, "size": -3}, 400, "size", "out_of_range"),
    ("/v1/proofs/inclusion", {"index": 0, "size": "1e3"}, 400, "size", "not_an_integer"),
    ("/v1/proofs/inclusion", {"index": 0, "size": 2**63}, 400, "size", "out_of_range"),
    ("/v1/proofs/inclusion", {"index": [1, 2], "size": 4}, 400, "index", "repeated"),
    ("/v1/proofs/inclusion", {"index": 4, "size": 4}, 400, "index", "outside_tree"),
    ("/v1/proofs/inclusion", {"index": 10}, 400, "index", "outside_tree"),  # checkpoint: 10
    ("/v1/proofs/inclusion", {"index": 0, "size": 14}, 404, "size", "beyond_log"),
    ("/v1/proofs/inclusion", {"index": 0, "size": 2**63 - 1}, 404, "size", "beyond_log"),
    ("/v1/proofs/consistency", {}, 400, "from", "required"),
    ("/v1/proofs/consistency", {"from": "one", "to": 4}, 400, "from", "not_an_integer"),
    ("/v1/proofs/consistency", {"from": -1, "to": 4}, 400, "from", "out_of_range"),
    ("/v1/proofs/consistency", {"from": 1, "to": -4}, 400, "to", "out_of_range"),
    ("/v1/proofs/consistency", {"from": 5, "to": 4}, 400, "from", "sizes_reversed"),
    ("/v1/proofs/consistency", {"from": 11}, 400, "from", "sizes_reversed"),  # checkpoint: 10
    ("/v1/proofs/consistency", {"from": 1, "to": 14}, 404, "to", "beyond_log"),
    ("/v1/entries", {}, 400, "start", "required"),
    ("/v1/entries", {"start": "zero"}, 400, "start", "not_an_integer"),
    ("/v1/entries", {"start": -1}, 400, "start", "out_of_range"),
    ("/v1/entries", {"start": 0, "end": 0}, 400, "end", "out_of_range"),
    ("/v1/entries", {"start": 5, "end": 5}, 400, "end", "empty_range"),
    ("/v1/entries", {"start": 5, "end": 2}, 400, "end", "empty_range"),
    ("/v1/entries", {"start": 13}, 404, "start", "beyond_log"),
    ("/v1/entries", {"start": 200, "end": 300}, 404, "start", "beyond_log"),
]


def test_bad_parameters_get_a_problem_naming_the_parameter(small: Api) -> None:
    failures = []
    for path, params, status, name, rule in BAD:
        response = small.get(path, **params)
        body = response.json()
        got = (
            response.status_code,
            response.headers["content-type"],
            [(e["field"], e["rule"]) for e in body.get("errors", [])],
        )
        want = (status, "application/problem+json", [(f"query.{name}", rule)])
        if got != want or body["status"] != status or name not in body["detail"]:
            failures.append(f"{path} {params}: {got} {body.get('detail')}")
        if status == 404:
            assert body["log_size"] == 13
    assert failures == [], f"{len(failures)} of {len(BAD)}:\n" + "\n".join(failures)


def test_edges_that_are_not_errors(small: Api) -> None:
    # A proof to a tree size beyond the latest checkpoint, but within the log.
    answer = small.json("/v1/proofs/inclusion", index=12, size=13)
    assert (answer["index"], answer["size"], "checkpoint" in answer) == (12, 13, False)
    assert small.json("/v1/proofs/inclusion", index=0, size=1)["proof"] == []
    assert small.json("/v1/proofs/consistency", **{"from": 13, "to": 13})["proof"] == []
    assert small.json("/v1/proofs/consistency", **{"from": 0})["proof"] == []
    assert small.json("/v1/proofs/consistency", **{"from": 0, "to": 0})["proof"] == []
    # end past the head: up to the head, and `next` says where the log will go on.
    page = small.json("/v1/entries", start=10, end=500)
    assert ([e["index"] for e in page["entries"]], page["next"]) == ([10, 11, 12], 13)
    page = small.json("/v1/entries", start=2, end=5)
    assert ([e["index"] for e in page["entries"]], page["next"]) == ([2, 3, 4], None)
    assert small.json("/v1/entries", start=12)["next"] == 13


def test_a_page_of_entries_stops_at_the_limit_and_says_where_to_go_on(api: Api) -> None:
    pol = facts.policy()
    api.append([pol, *consent_batch(MAX_BATCH - 1, pol["version"], [facts.ref("user")])])
    api.append(consent_batch(200, pol["version"], [facts.ref("user")]))
    head = api.ledger.head()
    page = api.json("/v1/entries", start=5, end=head)
    assert len(page["entries"]) == MAX_BATCH and page["next"] == 5 + MAX_BATCH
    rest = api.json("/v1/entries", start=page["next"], end=head)
    assert rest["entries"][-1]["index"] == head - 1 and rest["next"] is None


def test_entries_and_proofs_need_history_read_and_the_checkpoint_and_keys_are_public(
    small: Api,
) -> None:
    small.ledger.sign_checkpoint()
    routes = [
        ("/v1/proofs/inclusion", {"index": 0, "size": 3}),
        ("/v1/proofs/consistency", {"from": 1, "to": 3}),
        ("/v1/entries", {"start": 0, "end": 2}),
    ]
    for path, params in routes:
        assert small.get(path, who=None, **params).status_code == 401
        forbidden = small.get(path, who="reader", **params)
        assert forbidden.status_code == 403
        assert "history:read" in forbidden.json()["detail"]
        assert small.get(path, who="auditor", **params).status_code == 200
        assert small.get(path, who="admin", **params).status_code == 200
    unauthenticated = small.get("/v1/entries", who=None, start="not a number")
    assert unauthenticated.status_code == 401  # the token is checked before the parameters
    checkpoint = small.get("/v1/checkpoint", who=None)
    assert checkpoint.status_code == 200
    assert verifier_checkpoint(small, checkpoint.text).size == 13
