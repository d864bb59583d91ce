"""The offline check of a consent receipt (ledger/verifier/receipt.py): every receipt the ledger
makes checks out, in both forms, under the ledger's key only; a receipt edited by one byte
anywhere fails, and the check that fails is named."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.application import LedgerApplication
from ledger.config import Settings, generate_keys, open_ledger
from ledger.consent_receipts import NotAConsentFactError, consent_receipt
from ledger.verifier.__main__ import main
from ledger.verifier.note import Verifier, parse_verifier_key
from ledger.verifier.receipt import ReceiptError, canonical, check_receipt, load_receipt
from tests import facts


@dataclass
class Made:
    receipts: dict[str, dict[str, Any]]
    """By fact type."""
    dpv: dict[str, Any]
    key: str
    stranger: str
    policy_seq: int
    app: LedgerApplication

    @property
    def trusted(self) -> list[Verifier]:
        return [parse_verifier_key(self.key)]


def _open(base: Path) -> LedgerApplication:
    settings = Settings(data_dir=base)
    generate_keys(settings)
    return open_ledger(settings)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    base = tmp_path_factory.mktemp("receipts")
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith("CONSENT_LEDGER_")]:
            env.delenv(name)
        app, other = _open(base / "ledger"), _open(base / "other")
        try:
            pol = facts.policy()
            given_fact = facts.consent(
                "minor-ref",
                pol["version"],
                contact="parent@example.org",
                guardian={"name": "A. Parent", "relationship": "parent", "contact": "+1 555"},
                evidence={"notice_id": "n-1", "user_agent": "Browser/1.0"},
                expires_at="2031-06-01T00:00:00+02:00",
            )
            renewal = {
                "type": "consent.renewal_requested",
                "event_id": facts.ref("evt"),
                "occurred_at": facts.now(),
                "subject": "minor-ref",
                "purposes": ["marketing_email"],
                "policy_version": pol["version"],
                "reason": "policy_changed",
                "channel": "email",
            }
            seqs = [
                r.seq
                for r in app.append(
                    [
                        pol,
                        given_fact,
                        renewal,
                        facts.consent("minor-ref", pol["version"], kind="withdrawn"),
                        facts.consent("adult-ref", pol["version"], kind="refused"),
                    ]
                )
            ]
            receipts = {}
            for seq in seqs[1:]:
                found = consent_receipt(app, seq)
                receipts[found.receipt["record"]["event"]["type"]] = found.receipt
            dpv = consent_receipt(app, seqs[1]).as_dpv()
            assert app.checkpointer is not None and other.checkpointer is not None
            yield Made(
                receipts,
                dpv,
                app.checkpointer.verifier_key,
                other.checkpointer.verifier_key,
                seqs[0],
                app,
            )
        finally:
            app.close()
            other.close()


def _fails(raw: bytes, trusted: list[Verifier]) -> str:
    with pytest.raises(ReceiptError) as failed:
        check_receipt(load_receipt(raw), trusted)
    return failed.value.check


def test_every_consent_fact_has_a_receipt_that_checks_out(made: Made) -> None:
    assert set(made.receipts) == {
        "consent.given",
        "consent.refused",
        "consent.withdrawn",
        "consent.renewal_requested",
    }
    for kind, receipt in made.receipts.items():
        report = check_receipt(load_receipt(canonical(receipt)), made.trusted)
        assert report.type == kind
    given_record = made.receipts["consent.given"]["record"]
    assert given_record["event"]["by"] == "guardian"
    assert given_record["personal_data"]["guardian.name"] == "A. Parent"
    assert made.receipts["consent.renewal_requested"]["record"]["consent_status"] == (
        "dpv:ConsentRequested"
    )
    assert check_receipt(load_receipt(canonical(made.dpv)), made.trusted).type == "consent.given"


def test_an_event_other_than_a_consent_fact_has_no_receipt(made: Made) -> None:
    with pytest.raises(NotAConsentFactError, match=r"policy\.version_published"):
        consent_receipt(made.app, made.policy_seq)


def test_only_the_ledgers_key_is_trusted(made: Made) -> None:
    raw = canonical(made.receipts["consent.given"])
    assert _fails(raw, [parse_verifier_key(made.stranger)]) == "checkpoint"


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_one_byte_edited_anywhere_fails(made: Made, data: st.DataObject) -> None:
    raw = canonical(made.receipts["consent.given"])
    position = data.draw(st.integers(0, len(raw) - 1), label="position")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != raw[position]), label="byte")
    edited = raw[:position] + bytes([byte]) + raw[position + 1 :]
    _fails(edited, made.trusted)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_one_byte_edited_in_the_json_ld_form_fails(made: Made, data: st.DataObject) -> None:
    raw = canonical(made.dpv)
    position = data.draw(st.integers(0, len(raw) - 1), label="position")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != raw[position]), label="byte")
    _fails(raw[:position] + bytes([byte]) + raw[position + 1 :], made.trusted)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
PLACES = [
    ("format",),
    ("record",),
    ("proof",),
    ("statement",),
    ("proof", "seq"),
    ("proof", "entry"),
    ("proof", "inclusion_proof"),
    ("proof", "checkpoint"),
    ("proof", "tree_size"),
    ("record", "personal_data"),
    ("record", "event"),
    ("record", "processing", "purposes"),
    ("kantara", "services"),
]


@settings(max_examples=200, deadline=None)
@given(place=st.sampled_from(PLACES), value=JSON, json_ld=st.booleans())
def test_any_value_anywhere_is_refused_by_a_named_check_never_a_crash(
    made: Made, place: tuple[str, ...], value: Any, json_ld: bool
) -> None:
    receipt = json.loads(canonical(made.receipts["consent.given"]))
    node = receipt
    for key in place[:-1]:
        node = node[key]
    if node[place[-1]] == value:
        return
    node[place[-1]] = value
    document = json.loads(canonical(made.dpv)) if json_ld else receipt
    if json_ld:
        document["ledger:receipt"]["@value"] = receipt
    _fails(canonical(document), made.trusted)


def test_deep_nesting_is_refused_as_a_format_problem(made: Made) -> None:
    assert _fails(b"[" * 100_000 + b"]" * 100_000, made.trusted) == "format"


def _flip_b64(text: str, index: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(receipt: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = receipt
        for part in parents:
            node = node[part]
        node[leaf] = value(node[leaf]) if callable(value) else value

    return edit


EDITS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "the body": (_set("proof.body", lambda b: _flip_b64(b, 40)), "body"),
    "an entry's tag": (_set("proof.entry", lambda e: _flip_b64(e, 60)), "signature"),
    "the entry's seq": (_set("proof.entry", lambda e: _flip_b64(e, 8)), "entry"),
    "the signature": (_set("proof.signature", lambda s: _flip_b64(s, 5)), "signature"),
    "the leaf index": (_set("proof.leaf_index", lambda i: i + 1), "proof.leaf_index"),
    "the leaf hash": (_set("proof.leaf_hash", lambda h: _flip_b64(h, 0)), "leaf hash"),
    "the checkpoint": (_set("proof.checkpoint", lambda c: c.replace("\n", "\n1", 1)), "checkpoint"),
    "the tree size": (_set("proof.tree_size", lambda n: n + 1), "inclusion proof"),
    "a purpose": (_set("record.processing.purposes", ["usage_analytics"]), "record"),
    "the time": (_set("record.event.time", "2020-01-01T00:00:00.000000Z"), "record"),
    "the status": (_set("record.consent_status", "dpv:ConsentRefused"), "record"),
    "the policy version": (_set("record.notice.policy_version", "other"), "record"),
    "kantara's timestamp": (_set("kantara.consentTimestamp", lambda t: t - 1), "kantara"),
    "a gap": (_set("gaps.language", "recorded"), "gaps"),
    "the principal": (_set("record.personal_data.subject_ref", "someone-else"), "record"),
    "an opened value": (_set("record.personal_data.contact", "x@example.org"), "statement"),
    "the statement": (_set("statement", lambda s: s.replace("\n", "\n2", 1)), "statement"),
    "a missing value": (
        lambda r: r["record"]["personal_data"].pop("contact"),
        "personal data",
    ),
    "the format": (_set("format", "consent-ledger-consent-receipt/0"), "format"),
}


@pytest.mark.parametrize("what", sorted(EDITS))
def test_an_edit_is_named_by_the_check_it_fails(made: Made, what: str) -> None:
    edit, check = EDITS[what]
    receipt = json.loads(canonical(made.receipts["consent.given"]))
    edit(receipt)
    assert _fails(canonical(receipt), made.trusted) == check


def test_the_command_line_verifies_and_names_a_failure_in_one_line(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, keys = tmp_path / "receipt.json", tmp_path / "keys.txt"
    keys.write_text(made.key + "\n", encoding="utf-8")
    path.write_bytes(canonical(made.receipts["consent.withdrawn"]))
    assert main(["receipt", str(path), "--key", str(keys)]) == 0
    out = capsys.readouterr().out
    assert "ok  statement" in out and out.strip().endswith(made.key.split("+")[0])
    receipt = json.loads(path.read_bytes())
    receipt["record"]["event"]["type"] = "consent.given"
    path.write_bytes(canonical(receipt))
    assert main(["receipt", str(path), "--key", made.key]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("FAILED record: record.event.type"), err
