"""A subject's bundle tells nothing about anyone else, and nobody can forge who a fact names.

Facts about many subjects (a disclosure, an incident assessment) list each subject's pseudonym
sealed under the ledger's mention key. A subject's bundle opens only their own; a bundle of a
recipient, an incident or a period opens every one it holds, and the verifier checks each
opened pseudonym against the signed entry's tags.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from demo.dataset import default_anchor, generate
from ledger.application import LedgerApplication
from ledger.config import Settings, open_ledger
from ledger.verifier.bundle import BundleError, file_digest, verify_bundle
from ledger.verifier.entry import parse_body
from ledger.verifier.mentions import WITHHELD, is_pseudonym
from ledger.verifier.note import Verifier
from ledger.verifier.scopes import subject_scope, tag_key
from tests import facts
from tests.cli_runner import run_cli
from tests.support import bundles
from tests.support.examples import EXAMPLES


@dataclass
class Shared:
    app: LedgerApplication
    settings: Settings
    alice: str
    others: list[str]
    recipient: str
    incident: str

    def trusted(self) -> list[Verifier]:
        return bundles.trusted(self.app, self.settings)

    def export(self, scope: dict[str, Any], target: Path) -> Path:
        bundles.export(self.app, self.settings, scope, target)
        return target


@pytest.fixture
def shared(ledger: LedgerApplication, settings: Settings) -> Iterator[Shared]:
    """Alice shares a disclosure, an incident assessment and a corrected disclosure with
    three others; two of them consented and also have facts of their own."""
    pol = facts.policy()
    recipient, incident = facts.ref("rcpt"), facts.ref("inc")
    alice, others = facts.ref("alice"), [facts.ref("other") for _ in range(3)]
    everyone = [alice, *others]
    disclosure = facts.disclosure(recipient, [others[0], alice, others[1]], pol["version"])
    ledger.append(
        [
            pol,
            facts.recipient(recipient),
            *(facts.consent(s, pol["version"], contact=f"{s}@example.org") for s in everyone[:3]),
            disclosure,
            facts.disclosure(recipient, everyone, pol["version"]),
            {**facts.incident(incident), "recipient_id": recipient},
            {
                "type": "incident.assessed",
                "event_id": facts.ref("evt"),
                "occurred_at": facts.now(),
                "incident_id": incident,
                "risk": "high_risk",
                "data_categories": ["contact"],
                "likely_consequences": "Phishing e-mails",
                "affected_subjects": [others[2], alice, others[0]],
            },
            {
                "type": "correction.recorded",
                "event_id": facts.ref("evt"),
                "occurred_at": facts.now(),
                "corrects_event_id": disclosure["event_id"],
                "reason": "the data categories were wrong",
                "corrected_fields": {"data_categories": ["contact", "usage"]},
            },
        ]
    )
    yield Shared(ledger, settings, alice, others, recipient, incident)


def _identifiers(world: Shared, ref: str) -> list[bytes]:
    """Every identifier of a subject that could link or test anything."""
    keys = world.app.subject_keys
    pseudonym = keys.pseudonym(ref)
    return [
        ref.encode(),
        pseudonym.encode(),
        pseudonym.replace("-", "").encode(),
        keys.lookup_id(ref).encode(),
        tag_key(subject_scope(pseudonym)),
        tag_key(subject_scope(pseudonym)).hex().encode(),
    ]


def _events(bundle: Path) -> list[list[bytes]]:
    return [line.split(b"\t") for line in (bundle / "events.tsv").read_bytes().splitlines()]


def test_a_subjects_bundle_holds_no_identifier_of_anyone_else(
    shared: Shared, tmp_path: Path
) -> None:
    mine = shared.app.subject_keys.pseudonym(shared.alice)
    bundle = shared.export({"kind": "subject", "subject": mine}, tmp_path / "alice")
    verify_bundle(bundle, shared.trusted())
    types = [parse_body(fields[3])["type"] for fields in _events(bundle)]
    assert types.count("disclosure.recorded") == 2
    assert {"incident.assessed", "correction.recorded"} <= set(types)
    files = [p for p in bundle.iterdir() if p.is_file()]
    assert len(files) >= 5
    for other in shared.others:
        for identifier in _identifiers(shared, other):
            for path in files:
                assert identifier not in path.read_bytes(), (other, identifier, path.name)
    # Her own place in each shared fact is opened, everyone else's withheld.
    for fields in _events(bundle):
        opened = json.loads(fields[2])
        if parse_body(fields[3])["type"] == "disclosure.recorded":
            assert mine in opened and WITHHELD in opened


def test_other_scopes_open_every_mention_they_hold(shared: Shared, tmp_path: Path) -> None:
    bundle = shared.export(
        {"kind": "recipient", "recipient_id": shared.recipient}, tmp_path / "rcpt"
    )
    verify_bundle(bundle, shared.trusted())
    keys = shared.app.subject_keys
    text = (bundle / "events.tsv").read_text()
    for subject in (shared.alice, *shared.others):
        assert keys.pseudonym(subject) in text
    for fields in _events(bundle):
        body = parse_body(fields[3])
        if body["type"] == "disclosure.recorded":  # every place opened (no reference)
            opened = json.loads(fields[2])
            assert sum(map(is_pseudonym, opened)) == len(body["data"]["subjects"])


def _rewrite_opened(bundle: Path, old: str, new: str) -> None:
    path = bundle / "events.tsv"
    lines = []
    changed = 0
    for fields in _events(bundle):
        opened = json.loads(fields[2])
        if parse_body(fields[3])["type"] == "disclosure.recorded" and old in opened:
            opened[opened.index(old)] = new
            fields[2] = json.dumps(opened, ensure_ascii=False, separators=(",", ":")).encode()
            changed += 1
        lines.append(b"\t".join(fields))
    assert changed
    path.write_bytes(b"\n".join(lines) + b"\n")
    manifest = json.loads((bundle / "manifest.json").read_text())
    with path.open("rb") as file:
        digest, size = file_digest(file)
    manifest["files"]["events.tsv"] = {"sha256": digest, "bytes": size}
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def test_an_opened_mention_is_checked_against_the_signed_tags(
    shared: Shared, tmp_path: Path
) -> None:
    keys = shared.app.subject_keys
    stranger = facts.ref("stranger")
    shared.app.append([facts.consent(stranger, _policy(shared))])
    cases = [
        # A recipient's bundle that names someone else in a subject's place.
        ({"kind": "recipient", "recipient_id": shared.recipient}, shared.alice, stranger, None),
        # ... or withholds a place that its scope opens.
        ({"kind": "recipient", "recipient_id": shared.recipient}, shared.alice, None, WITHHELD),
        # A subject's bundle that hides the subject's own place in a shared fact.
        (
            {"kind": "subject", "subject": keys.pseudonym(shared.alice)},
            shared.alice,
            None,
            WITHHELD,
        ),
    ]
    expected = [
        "not those of the scopes its body concerns",
        "which a bundle of its scope opens",
        "whose place in it is withheld",
    ]
    for number, ((scope, ref, replacement, literal), named) in enumerate(
        zip(cases, expected, strict=True)
    ):
        bundle = shared.export(scope, tmp_path / f"b{number}")
        verify_bundle(bundle, shared.trusted())
        new = literal if literal is not None else keys.pseudonym(str(replacement))
        _rewrite_opened(bundle, keys.pseudonym(ref), new)
        with pytest.raises(BundleError) as caught:
            verify_bundle(bundle, shared.trusted())
        assert named in str(caught.value), str(caught.value)


def _policy(shared: Shared) -> str:
    for record in shared.app.iter_records():
        body = parse_body(record.body)
        if body["type"] == "policy.version_published":
            return str(body["data"]["version"])
    raise AssertionError("no policy")


def test_on_the_demo_a_members_bundle_names_no_other_member(
    settings: Settings, tmp_path: Path
) -> None:
    """The issue's case: a member of the demo shares monthly disclosures and an incident
    with hundreds of others (40 here); their bundle holds none of them, byte for byte."""
    anchor = default_anchor() - timedelta(days=2)
    loaded = run_cli(settings, "demo", "--users", "40", "--anchor", anchor.isoformat())
    assert loaded.exit_code == 0, loaded.output
    data = generate(40, anchor=anchor)
    members = sorted({f["subject"] for f in data.facts if isinstance(f.get("subject"), str)})
    shared = [
        f["subjects"]
        for f in data.facts
        if f["type"] == "disclosure.recorded" and len(f["subjects"]) > 2
    ]
    member = next(s for s in shared[0] if s in members)
    app = open_ledger(settings)
    try:
        pseudonyms = {ref: app.subject_keys.pseudonym(ref) for ref in members}
        (tmp_path / "keys.txt").write_text(run_cli(settings, "keys").output)
        out = tmp_path / "member"
        exported = run_cli(settings, "export", "--subject", member, "--out", str(out))
        assert exported.exit_code == 0, exported.output
        verified = run_cli(settings, "verify", str(out), "--key", str(tmp_path / "keys.txt"))
        assert verified.exit_code == 0, verified.output
        blob = b"".join(p.read_bytes() for p in out.iterdir())
        assert pseudonyms[member].encode() in blob
        named = [
            ref
            for ref in members
            if ref != member and (ref.encode() in blob or pseudonyms[ref].encode() in blob)
        ]
        assert named == []
        assert sum(len(s) for s in shared if member in s) > len(shared)  # others were there
    finally:
        app.close()


def test_on_the_examples_no_subjects_bundle_names_another_subject(
    ledger: LedgerApplication, settings: Settings, tmp_path: Path
) -> None:
    examples = EXAMPLES
    recorded = [json.loads(line) for line in examples.read_text().splitlines() if line.strip()]
    ledger.append(recorded)
    refs = sorted({f["subject"] for f in recorded if isinstance(f.get("subject"), str)})
    keys = ledger.subject_keys
    live = {ref: keys.current(ref) for ref in refs}
    identifiers = {
        ref: [ref.encode(), *([] if live[ref] is None else [str(live[ref]).encode()])]
        for ref in refs
    }
    exported = 0
    for ref in refs:
        pseudonym = live[ref]
        if pseudonym is None:
            continue  # erased in the examples: nothing leads to it
        bundle = tmp_path / ref
        bundles.export(ledger, settings, {"kind": "subject", "subject": pseudonym}, bundle)
        verify_bundle(bundle, bundles.trusted(ledger, settings))
        blob = b"".join(p.read_bytes() for p in bundle.iterdir())
        others = [o for o in refs if o != ref and any(i in blob for i in identifiers[o])]
        assert others == [], (ref, others)
        exported += 1
    assert exported >= 5
