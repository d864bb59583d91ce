"""Erasure unlinks: with every file, key and secret of the ledger and the person's reference,
nobody can tell which events were theirs; everything still verifies.

The adversary here holds the master key (so the pseudonym secret and every live subject key),
the signing keys, every table of the log, the key store and the read models, and the erased
person's reference. It tries every way the ledger ever had of going from a reference to
events: the pseudonym as format 1 derived it, the key store's names, the lookup id and every
keyed hash of the reference in any stored byte, the reference itself, and the idempotency
digests of facts rebuilt from the log's bodies. The same attack on a subject who was not
erased finds their events, so the attack is real.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import psycopg

from ledger.application import LedgerApplication
from ledger.config import Settings, load_keyring
from ledger.events import FACT_TYPES
from ledger.integrity import check_log
from ledger.subject_keys import PSEUDONYM_SECRET_NAME, decrypt, load_master_key
from ledger.verifier.bundle import verify_bundle
from ledger.verifier.entry import parse_body
from projections.read_models import ReadModels
from tests import facts
from tests.support import bundles


class Adversary:
    """Everything of the ledger at rest, and what can be computed from it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        master = load_master_key(settings.master_key_file, {})
        wrapped = self._secret_row()
        self.secret = decrypt(master, wrapped, f"secret|{PSEUDONYM_SECRET_NAME}".encode())
        self.bodies = self._bodies()
        self.claims = self._claims()

    # -- what is at rest -----------------------------------------------------------------------

    def _query(self, database: str, query: str) -> list[tuple[Any, ...]]:
        if self.settings.database_url is None:
            path = self.settings.data_dir / database
            with sqlite3.connect(path) as conn:
                return list(conn.execute(query))
        with psycopg.connect(self.settings.database_url) as conn:
            conn.execute(f'SET search_path TO "{self.settings.database_schema}"')
            return list(conn.execute(query.encode()))

    def _secret_row(self) -> bytes:
        [(wrapped,)] = self._query(
            "keystore.sqlite3",
            f"SELECT wrapped FROM ledger_secrets WHERE name = '{PSEUDONYM_SECRET_NAME}'",
        )
        return bytes(wrapped)

    def _bodies(self) -> dict[int, dict[str, Any]]:
        rows = self._query("ledger.sqlite3", "SELECT seq, body FROM ledger_events")
        return {int(seq): parse_body(bytes(body)) for seq, body in rows}

    def _claims(self) -> dict[bytes, int]:
        rows = self._query("ledger.sqlite3", "SELECT digest, seq FROM ledger_claims")
        return {bytes(digest): int(seq) for digest, seq in rows}

    def everything(self) -> bytes:
        """Every stored byte: the files of the data directory (SQLite), or every row of every
        table of the schema as text (PostgreSQL)."""
        if self.settings.database_url is None:
            return b"".join(
                p.read_bytes() for p in sorted(self.settings.data_dir.rglob("*")) if p.is_file()
            )
        tables = self._query(
            "",
            "SELECT table_name FROM information_schema.tables "
            f"WHERE table_schema = '{self.settings.database_schema}'",
        )
        blob = b""
        for (table,) in tables:
            for row in self._query("", f'SELECT * FROM "{table}"'):
                blob += repr(row).encode() + b"\n"
                blob += b"".join(bytes(v) for v in row if isinstance(v, (bytes, memoryview)))
        return blob

    def erasures(self) -> dict[str, int]:
        rows = self._query(
            "keystore.sqlite3", "SELECT lookup, erasures FROM ledger_subject_erasures"
        )
        return {str(lookup): int(count) for lookup, count in rows}

    # -- ways from a reference to its events ---------------------------------------------------

    def candidates(self, reference: str) -> set[str]:
        """Every identifier the ledger ever derived, or could derive, from a reference."""
        found: set[str] = set()
        for label in (b"pseudonym", b"lookup", b"lock", b"nobody"):
            for message in (
                label + b"\0" + reference.encode(),
                label + b"\0" + reference.encode() + b"\x001",
            ):
                mac = hmac.new(self.secret, message, hashlib.sha256).digest()
                found |= {str(UUID(bytes=mac[:16])), mac.hex(), mac[:16].hex()}
        try:
            names = self._query(
                "keystore.sqlite3", "SELECT lookup, pseudonym FROM ledger_subject_names"
            )
        except (sqlite3.Error, psycopg.Error):
            names = []  # a key store of format 1 had no names
        for lookup, pseudonym in names:
            if lookup in found:
                found.add(str(pseudonym))
        return found - {self._nobody(reference)}

    def _nobody(self, reference: str) -> str:
        mac = hmac.new(self.secret, b"nobody\0" + reference.encode(), hashlib.sha256).digest()
        raw = bytearray(mac[:16])
        raw[6] = (raw[6] & 0x0F) | 0x80
        raw[8] = (raw[8] & 0x3F) | 0x80
        return str(UUID(bytes=bytes(raw)))

    def events_of(self, reference: str) -> set[int]:
        """The seqs the adversary can tie to the reference."""
        names = self.candidates(reference)
        seqs = {
            seq
            for seq, body in self.bodies.items()
            if any(name in orjson.dumps(body).decode() for name in names)
        }
        return seqs | self._digest_matches(reference)

    def _digest_matches(self, reference: str) -> set[int]:
        """Rebuild each fact from its body with the reference in it, and test the claims'
        digests (format 1 digested the fact as sent)."""
        matches: set[int] = set()
        for body in self.bodies.values():
            if body.get("event_id") is None or body["type"] not in FACT_TYPES:
                continue
            data = {k: v for k, v in body["data"].items() if k != "subject_ref"}
            fact: dict[str, Any] = {
                **data,
                "type": body["type"],
                "event_id": body["event_id"],
                "occurred_at": body["occurred_at"],
            }
            if "subject" not in fact:
                continue  # a fact about nobody in particular
            fact["subject"] = reference
            try:
                model = FACT_TYPES[body["type"]].model_validate(fact)
            except ValueError:
                continue
            canonical = orjson.dumps(model.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
            digest = hmac.new(self.secret, b"content\0" + canonical, hashlib.sha256).digest()
            if digest in self.claims:
                matches.add(self.claims[digest])
        return matches


def test_with_every_secret_and_the_reference_an_erased_subjects_events_are_not_found(
    ledger: LedgerApplication, settings: Settings, models: ReadModels, tmp_path: Path
) -> None:
    pol = facts.policy()
    alice, bob, recipient = facts.ref("alice"), facts.ref("bob"), facts.ref("rcpt")
    ledger.append([pol, facts.recipient(recipient)])
    alice_seqs = [
        r.seq
        for r in ledger.append(
            [
                facts.consent(alice, pol["version"]),
                facts.consent(alice, pol["version"], contact="alice@example.org"),
                facts.age(alice, 30),
                facts.request(alice, kind="access", details="my flat at 12 Rue Secrète"),
            ]
        )
    ]
    ledger.append(
        [
            facts.consent(bob, pol["version"]),
            facts.disclosure(recipient, [alice, bob], pol["version"]),
        ]
    )
    models.runner.catch_up()
    alice_pseudonym = ledger.subject_keys.pseudonym(alice)
    ledger.erase(subject_ref=alice)
    models.runner.catch_up()

    adversary = Adversary(settings)
    # The attack works: a subject who was not erased is found, by name and by digest.
    assert adversary.events_of(bob)
    # Erased: nothing ties the reference to any event, nor to the pseudonym it had.
    assert adversary.events_of(alice) == set()
    assert alice_pseudonym not in adversary.candidates(alice)
    # What the key store keeps of alice: that her reference was erased (its lookup id in the
    # erasures table), nothing more; no other stored byte holds anything derived from it.
    lookup = ledger.subject_keys.lookup_id(alice)
    assert ledger.subject_keys.was_erased(alice)
    assert adversary.erasures() == {lookup: 1}
    stored = adversary.everything().replace(lookup.encode(), b"")
    assert alice.encode() not in stored
    for name in adversary.candidates(alice):
        assert name.encode() not in stored, name
    # Her events are there (others' proofs rest on them), signed, and every check passes.
    assert all(seq in adversary.bodies for seq in alice_seqs)
    assert check_log(ledger.ledger, load_keyring(settings), mentions=ledger.mentions_opened).ok
    bundle = tmp_path / "all"
    bundles.export(ledger, settings, {"kind": "all"}, bundle)
    verify_bundle(bundle, bundles.trusted(ledger, settings))


def test_the_history_of_an_erased_reference_is_that_of_a_stranger(
    ledger: LedgerApplication, models: ReadModels
) -> None:
    pol = facts.policy()
    alice = facts.ref("alice")
    ledger.append([pol, facts.consent(alice, pol["version"])])
    ledger.erase(subject_ref=alice)
    models.runner.catch_up()
    stranger = facts.ref("stranger")
    keys = ledger.subject_keys
    assert keys.current(alice) is None and keys.current(stranger) is None
    for reference in (alice, stranger):
        pseudonym = keys.pseudonym(reference)
        assert list(ledger.ledger.select_stream_records(pseudonym)) == []
        assert models.consent.facts(pseudonym, None).erasure is None
