"""Export bundles: each scope verifies offline, is complete, and every tampering is named."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypedDict, Unpack

import pytest
from click.testing import CliRunner
from nacl.signing import SigningKey

from api.cli import cli
from ledger.application import LedgerApplication
from ledger.config import Settings, load_keyring
from ledger.export import ExportError, export_bundle
from ledger.verifier.bundle import BundleError, file_digest, verify_bundle
from ledger.verifier.checkpoint import Checkpoint
from ledger.verifier.entry import parse_body
from ledger.verifier.note import Verifier, format_verifier_key, parse_verifier_key, sign_note
from ledger.verifier.scopes import scopes_of
from tests import facts
from tests.support.bundles import REPORT_SETTINGS


@dataclass
class World:
    app: LedgerApplication
    settings: Settings
    alice: str
    bob: str
    carol: str
    processor: str
    ads: str
    incident: str

    def pseudonym(self, ref: str) -> str:
        return self.app.subject_keys.pseudonym(ref)

    def verifier_keys(self) -> list[str]:
        assert self.app.checkpointer is not None
        origin = self.app.checkpointer.origin
        return [
            format_verifier_key(origin, k) for k in load_keyring(self.settings).public_keys.values()
        ]

    def trusted(self) -> list[Verifier]:
        return [parse_verifier_key(key) for key in self.verifier_keys()]

    def export(self, scope: dict[str, Any], target: Path) -> Path:
        export_bundle(
            self.app,
            scope,
            target,
            verifier_keys=self.verifier_keys(),
            report_settings=REPORT_SETTINGS,
        )
        return target


@pytest.fixture
def world(ledger: LedgerApplication, settings: Settings) -> World:
    pol = facts.policy()
    version = pol["version"]
    processor, ads = facts.ref("rcpt"), facts.ref("rcpt")
    alice, bob, carol = facts.ref("alice"), facts.ref("bob"), facts.ref("carol")
    incident = facts.ref("inc")
    others = [facts.ref("user") for _ in range(40)]
    ledger.append(
        [
            pol,
            facts.recipient(processor),
            facts.recipient(ads, role="third_party", country="US"),
            facts.consent(alice, version, contact="alice@example.org"),
            facts.consent(carol, version),
            *[facts.consent(o, version) for o in others],
        ]
    )
    shared = facts.disclosure(processor, [alice, bob], version)  # bob never consented
    ledger.append(
        [
            shared,
            facts.disclosure(ads, [carol], version),
            facts.disclosure(ads, others[:10], version),
            facts.request(alice),
            {
                **facts.incident(incident),
                "recipient_id": processor,
            },
            {
                "type": "correction.recorded",
                "event_id": facts.ref("evt"),
                "occurred_at": facts.now(),
                "corrects_event_id": shared["event_id"],
                "reason": "the data categories were wrong",
                "corrected_fields": {"data_categories": ["contact", "usage"]},
            },
            facts.consent(alice, version, kind="withdrawn"),
            *[facts.consent(o, version, kind="withdrawn") for o in others[20:30]],
        ]
    )
    return World(ledger, settings, alice, bob, carol, processor, ads, incident)


def events_concerning(app: LedgerApplication, scope_name: str) -> set[int]:
    """Leaf indexes whose body concerns ``scope_name``, read from the bodies (not the tags)."""
    found = set()
    for record in app.iter_records():
        body = parse_body(record.body)
        data = app.mentions_opened(body["data"], body["stream"], body["stream_version"])
        if scope_name in scopes_of(body["type"], data, body["occurred_at"]):
            found.add(record.seq - 1)
    return found


def bundle_indexes(bundle: Path) -> list[int]:
    with (bundle / "events.tsv").open("rb") as file:
        return [int(line.split(b"\t", 1)[0]) for line in file]


def test_a_subjects_bundle_verifies_and_holds_all_their_events(
    world: World, tmp_path: Path
) -> None:
    bundle = world.export(
        {"kind": "subject", "subject": world.pseudonym(world.alice)}, tmp_path / "b"
    )
    report = verify_bundle(bundle, world.trusted())
    alice = events_concerning(world.app, f"subject:{world.pseudonym(world.alice)}")
    held = set(bundle_indexes(bundle))
    assert alice <= held  # every event of hers, the correction of the shared disclosure too
    assert report.entries == len(held) and report.size == world.app.head()
    assert [line.split(":")[0] for line in report.checked] == [
        "manifest",
        "checkpoint",
        "leaves",
        "entries",
        "completeness",
        "report",
    ]
    # Her data is shown; the other subject of the shared disclosure is withheld.
    text = b"".join(p.read_bytes() for p in bundle.iterdir())
    assert b"alice@example.org" in text and world.alice.encode() in text
    assert world.bob.encode() not in text and world.carol.encode() not in text
    assert b"[another subject]" in text
    # The report shows her rows only, and none of the other people's.
    rows = (bundle / "disclosures.csv").read_text().splitlines()[1:]
    assert len(rows) == 1 and world.pseudonym(world.alice) in rows[0]


@pytest.mark.parametrize("kind", ["recipient", "incident", "period", "all"])
def test_every_scope_verifies_and_is_complete(world: World, tmp_path: Path, kind: str) -> None:
    records = list(world.app.iter_records())
    first, last = parse_body(records[0].body), parse_body(records[-1].body)
    scope: dict[str, Any] = {
        "recipient": {"kind": "recipient", "recipient_id": world.processor},
        "incident": {"kind": "incident", "incident_id": world.incident},
        "period": {"kind": "period", "from": first["occurred_at"], "to": last["recorded_at"]},
        "all": {"kind": "all"},
    }[kind]
    bundle = world.export(scope, tmp_path / "b")
    verify_bundle(bundle, world.trusted())
    held = set(bundle_indexes(bundle))
    own = {
        "recipient": f"disclosed-to:{world.processor}",
        "incident": f"incident:{world.incident}",
        "period": f"day:{first['occurred_at'][:10]}",
        "all": None,
    }[kind]
    wanted = set(range(len(records))) if own is None else events_concerning(world.app, own)
    assert wanted <= held
    if kind == "recipient":  # bob's violation is reported, with his consent history as context
        rows = (bundle / "disclosures.csv").read_text()
        assert "consent_missing" in rows and world.pseudonym(world.bob) in rows


def test_a_zipped_bundle_verifies(world: World, tmp_path: Path) -> None:
    target = world.export(
        {"kind": "subject", "subject": world.pseudonym(world.carol)}, tmp_path / "carol.zip"
    )
    assert zipfile.is_zipfile(target)
    assert verify_bundle(target, world.trusted()).entries >= 2


# -- the offline verifier ------------------------------------------------------------------------


def test_the_verifier_runs_on_the_standard_library_and_pynacl_alone(
    world: World, tmp_path: Path
) -> None:
    bundle = world.export(
        {"kind": "subject", "subject": world.pseudonym(world.alice)}, tmp_path / "b"
    )
    keys = tmp_path / "keys.txt"
    keys.write_text("\n".join(world.verifier_keys()) + "\n")
    probe = (
        "import runpy, sys\n"
        "before = {name.split('.')[0] for name in sys.modules}\n"
        f"sys.argv = ['ledger.verifier', {str(bundle)!r}, '--key', {str(keys)!r}]\n"
        "try:\n"
        "    runpy.run_module('ledger.verifier', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "tops = {name.split('.')[0] for name in sys.modules}\n"
        "print(sorted(tops - before - set(sys.stdlib_module_names)))\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert done.returncode == 0, done.stderr
    assert "VERIFIED" in done.stdout
    loaded = eval(done.stdout.strip().splitlines()[-1])
    # __mp_main__ is multiprocessing's name for the main module (its worker processes).
    assert set(loaded) <= {"ledger", "nacl", "_cffi_backend", "_sodium", "__mp_main__"}, loaded


def test_the_cli_exports_and_verifies(world: World, tmp_path: Path) -> None:
    env = {"CONSENT_LEDGER_DATA_DIR": str(world.settings.data_dir)}
    if world.settings.database_url is not None:
        env["CONSENT_LEDGER_DATABASE_URL"] = world.settings.database_url
        env["CONSENT_LEDGER_DATABASE_SCHEMA"] = world.settings.database_schema
    runner = CliRunner()
    out = tmp_path / "alice"
    result = runner.invoke(cli, ["export", "--subject", world.alice, "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    keys = runner.invoke(cli, ["keys"], env=env).output.strip()
    result = runner.invoke(cli, ["verify", str(out), "--key", keys], env=env)
    assert result.exit_code == 0, result.output
    assert "ok  completeness" in result.output and "VERIFIED" in result.output
    # Bad input: two scopes, no scope, a half period, a path that exists.
    for args, message in (
        (["--subject", "a", "--all"], "choose one scope"),
        ([], "choose one scope"),
        (["--from", "2026-01-01"], "needs both --from and --to"),
        (["--from", "2026-01-01", "--to", "2025-01-01"], "ends"),
        (["--all"], "exists already"),
    ):
        result = runner.invoke(cli, ["export", *args, "--out", str(out)], env=env)
        assert result.exit_code != 0 and message in result.output, (args, result.output)


# -- tampering -----------------------------------------------------------------------------------


@dataclass
class Line:
    """One line of events.tsv, its fields as they are written."""

    index: int
    signature: str
    opened: list[str]
    body: bytes

    def encode(self) -> bytes:
        opened = json.dumps(self.opened, ensure_ascii=False, separators=(",", ":"))
        return b"%d\t%s\t%s\t%s\n" % (
            self.index,
            self.signature.encode(),
            opened.encode(),
            self.body,
        )


def _lines(bundle: Path) -> list[Line]:
    lines = []
    for raw in (bundle / "events.tsv").read_bytes().splitlines():
        index, signature, opened, body = raw.split(b"\t", 3)
        lines.append(Line(int(index), signature.decode(), json.loads(opened), body))
    return lines


def _write_lines(bundle: Path, lines: list[Line]) -> None:
    (bundle / "events.tsv").write_bytes(b"".join(line.encode() for line in lines))


def _flip(b64: str, at: int = -1) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[at] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _refresh_manifest(bundle: Path) -> None:
    """What a careful forger does after editing: make the manifest's digests match again."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in manifest["files"]:
        with (bundle / name).open("rb") as file:
            digest, size = file_digest(file)
        manifest["files"][name] = {"sha256": digest, "bytes": size}
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def move_event_to_another_leaf(bundle: Path, world: World) -> None:
    """An event's line names the index of a leaf that is not its entry."""
    lines = _lines(bundle)
    held = {line.index for line in lines}
    at = next(i for i in range(1, len(lines)) if lines[i].index + 1 not in held)
    lines[at].index += 1
    _write_lines(bundle, lines)


def change_body_byte(bundle: Path, world: World) -> None:
    lines = _lines(bundle)
    at = next(i for i, line in enumerate(lines) if b"web_form" in line.body)
    lines[at].body = lines[at].body.replace(b"web_form", b"web_forn")
    _write_lines(bundle, lines)


def change_decoded_event(bundle: Path, world: World) -> None:
    """One value too many shown for the sealed ones of an event's body."""
    lines = _lines(bundle)
    lines[1].opened.append("2020-01-01T00:00:00.000000Z")
    _write_lines(bundle, lines)


def remove_entry(bundle: Path, world: World) -> None:
    lines = _lines(bundle)
    del lines[2]
    _write_lines(bundle, lines)


def swap_entries(bundle: Path, world: World) -> None:
    lines = _lines(bundle)
    lines[1], lines[2] = lines[2], lines[1]
    _write_lines(bundle, lines)


def add_entry(bundle: Path, world: World) -> None:
    """An authentic event of someone else, its entry in the leaves, slipped in."""
    other = world.export(
        {"kind": "subject", "subject": world.pseudonym(world.carol)}, bundle.parent / "other"
    )
    lines = _lines(bundle)
    held = {line.index for line in lines}
    extra = next(line for line in _lines(other) if line.index not in held)
    _write_lines(bundle, sorted([*lines, extra], key=lambda line: line.index))


def alter_signature(bundle: Path, world: World) -> None:
    lines = _lines(bundle)
    lines[0].signature = _flip(lines[0].signature)
    _write_lines(bundle, lines)


def change_leaf(bundle: Path, world: World) -> None:
    leaves = bytearray((bundle / "leaves.bin").read_bytes())
    leaves[60] ^= 1
    (bundle / "leaves.bin").write_bytes(bytes(leaves))


def resign_checkpoint(bundle: Path, world: World) -> None:
    text = (bundle / "checkpoint").read_text().split("\n\n")[0] + "\n"
    origin = text.splitlines()[0]
    (bundle / "checkpoint").write_text(sign_note(text, origin, SigningKey.generate()))


def hide_violation(bundle: Path, world: World) -> None:
    html = (bundle / "report.html").read_text()
    edited = html.replace("consent_missing", "consent_valid")
    assert edited != html
    (bundle / "report.html").write_text(edited)


TAMPERING: list[tuple[Callable[[Path, World], None], str, str]] = [
    (move_event_to_another_leaf, "events.tsv", "its signature does not verify"),
    (change_body_byte, "events.tsv", "its body is not the one its entry commits to"),
    (change_decoded_event, "events.tsv", "decoded event differs from the signed body"),
    (remove_entry, "events.tsv", "is tagged for the bundle's scope but is not in it"),
    (swap_entries, "events.tsv", "out of order"),
    (add_entry, "events.tsv", "is in the bundle but not in its scope"),
    (alter_signature, "events.tsv", "its signature does not verify"),
    (change_leaf, "leaves.bin", "leaves.bin"),
    (resign_checkpoint, "checkpoint", "not signed by a trusted key"),
    (hide_violation, "report.html", "report.html: does not follow from the events"),
]


@pytest.fixture
def recipient_bundle(world: World, tmp_path: Path) -> Iterator[Path]:
    # The processor's bundle holds bob's violation (consent_missing).
    yield world.export({"kind": "recipient", "recipient_id": world.processor}, tmp_path / "b")


@pytest.mark.parametrize(
    ("tamper", "file", "named"), TAMPERING, ids=[t[0].__name__ for t in TAMPERING]
)
def test_tampering_is_caught_and_named(
    world: World,
    recipient_bundle: Path,
    tamper: Callable[[Path, World], None],
    file: str,
    named: str,
) -> None:
    verify_bundle(recipient_bundle, world.trusted())
    tamper(recipient_bundle, world)
    # As is: the manifest's digest names the changed file.
    with pytest.raises(BundleError) as caught:
        verify_bundle(recipient_bundle, world.trusted())
    assert file in str(caught.value)
    # With the manifest's digests forged to match, the check that fails says what is wrong.
    _refresh_manifest(recipient_bundle)
    with pytest.raises(BundleError) as caught:
        verify_bundle(recipient_bundle, world.trusted())
    assert named in str(caught.value), str(caught.value)


def test_a_lying_manifest_scope_is_caught(world: World, recipient_bundle: Path) -> None:
    manifest = json.loads((recipient_bundle / "manifest.json").read_text())
    manifest["scope"] = {"kind": "recipient", "recipient_id": world.ads}
    (recipient_bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="completeness"):
        verify_bundle(recipient_bundle, world.trusted())


def test_a_recipients_bundle_cannot_leave_out_an_incident_at_it(
    world: World, recipient_bundle: Path
) -> None:
    # The incident was opened against the processor: its bundle reports it, opening and all.
    incidents = (recipient_bundle / "incidents.csv").read_text().splitlines()
    assert len(incidents) == 2 and incidents[1].startswith(f"{world.incident},open,")
    lines = _lines(recipient_bundle)
    (opening,) = [line for line in lines if b'"type":"incident.opened"' in line.body]
    # An exporter that leaves the opening out (and the report with it) is caught.
    _write_lines(recipient_bundle, [line for line in lines if line is not opening])
    _refresh_manifest(recipient_bundle)
    with pytest.raises(BundleError) as caught:
        verify_bundle(recipient_bundle, world.trusted())
    assert str(caught.value) == (
        f"completeness: entry {opening.index} is tagged for the bundle's scope but is not in it "
        "(1 missing)"
    )


# -- a checkpoint the regulator holds ------------------------------------------------------------


def test_a_previous_checkpoint_must_be_a_prefix(world: World, tmp_path: Path) -> None:
    older = world.app.sign_checkpoint()
    world.app.append([facts.policy()])
    bundle = world.export({"kind": "all"}, tmp_path / "b")
    report = verify_bundle(bundle, world.trusted(), previous=older.note)
    assert any(line.startswith("consistency") for line in report.checked)
    # A checkpoint of another history, signed by the same key: a fork is named.
    assert world.app.checkpointer is not None
    forked = Checkpoint(world.app.checkpointer.origin, older.size, b"\x07" * 32)
    key = world.app.ledger.signer
    note = sign_note(forked.text(), forked.origin, key.signing_key)
    with pytest.raises(BundleError, match="another history"):
        verify_bundle(bundle, world.trusted(), previous=note)
    # A checkpoint larger than the bundle's: the log was cut.
    larger = Checkpoint(world.app.checkpointer.origin, older.size + 100, b"\x07" * 32)
    note = sign_note(larger.text(), larger.origin, key.signing_key)
    with pytest.raises(BundleError, match="cut or forked"):
        verify_bundle(bundle, world.trusted(), previous=note)


def test_bad_bundles_and_keys_are_named(world: World, tmp_path: Path) -> None:
    bundle = world.export(
        {"kind": "subject", "subject": world.pseudonym(world.bob)}, tmp_path / "b"
    )
    stranger = parse_verifier_key(
        format_verifier_key(
            world.verifier_keys()[0].split("+")[0], bytes(SigningKey.generate().verify_key)
        )
    )
    with pytest.raises(BundleError, match="checkpoint: not signed by a trusted key"):
        verify_bundle(bundle, [stranger])
    with pytest.raises(BundleError, match="does not exist"):
        verify_bundle(tmp_path / "nowhere", world.trusted())
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match=r"manifest\.json"):
        verify_bundle(tmp_path / "empty", world.trusted())
    with pytest.raises(ExportError, match="exists already"):
        world.export({"kind": "all"}, bundle)
    with pytest.raises(ExportError, match="scope kind"):
        world.export({"kind": "everyone"}, tmp_path / "c")


# -- bundle format 2: parallel checks, chunk boundaries, formats ---------------------------------


class Chunks(TypedDict, total=False):
    jobs: int
    event_chunk: int
    leaf_chunk_level: int


SETTINGS: list[Chunks] = [
    {"jobs": 1},
    {"jobs": 2, "event_chunk": 1, "leaf_chunk_level": 0},
    {"jobs": 2, "event_chunk": 3, "leaf_chunk_level": 2},
    {"jobs": 3, "event_chunk": 2, "leaf_chunk_level": 1},
]
"""One process, and several with chunks of every small size (so every boundary is crossed)."""


def _outcome(bundle: Path, world: World, **settings: Unpack[Chunks]) -> tuple[str, list[str], int]:
    try:
        report = verify_bundle(bundle, world.trusted(), **settings)
    except BundleError as exc:
        return str(exc), [], 0
    return "VERIFIED", report.checked, report.entries


@pytest.mark.parametrize("kind", ["all", "recipient"])
def test_the_number_of_jobs_and_the_chunks_change_nothing(
    world: World, tmp_path: Path, kind: str
) -> None:
    scope = {
        "all": {"kind": "all"},
        "recipient": {"kind": "recipient", "recipient_id": world.processor},
    }
    bundle = world.export(scope[kind], tmp_path / "b")
    outcomes = [_outcome(bundle, world, **settings) for settings in SETTINGS]
    assert outcomes[0][0] == "VERIFIED" and outcomes[0][2] == len(_lines(bundle))
    assert all(outcome == outcomes[0] for outcome in outcomes), outcomes


@pytest.mark.parametrize("where", [0, 1, 2, 3, -1])
def test_a_failure_is_named_alike_whatever_the_chunks(
    world: World, tmp_path: Path, where: int
) -> None:
    """A bad signature at the first, second ... or last line: on either side of each chunk
    boundary, the first failure in log order is named, the same with one process or several."""
    bundle = world.export({"kind": "all"}, tmp_path / "b")
    lines = _lines(bundle)
    lines[where].signature = _flip(lines[where].signature)
    if where != -1:  # a later failure, never the one named
        lines[-2].body = lines[-2].body.replace(b'"', b"'", 1)
    _write_lines(bundle, lines)
    _refresh_manifest(bundle)
    outcomes = {_outcome(bundle, world, **settings)[0] for settings in SETTINGS}
    assert outcomes == {f"entry {lines[where].index}: its signature does not verify"}, outcomes


@pytest.mark.parametrize("where", [1, 2, -1])
def test_an_event_out_of_order_is_named_alike_whatever_the_ranges(
    world: World, tmp_path: Path, where: int
) -> None:
    """A line repeated, or two lines swapped, at the second, third or last line: the range
    that holds it may start with it (the order across ranges is the main process's check),
    and a bad signature after it is never the failure named."""
    bundle = world.export({"kind": "all"}, tmp_path / "b")
    lines = _lines(bundle)
    at = where % len(lines)
    first = lines[at].index
    repeated = [*lines[: at + 1], lines[at], *lines[at + 1 :]]
    swapped = [*lines[: at - 1], lines[at], lines[at - 1], *lines[at + 1 :]]
    for changed, named in (
        (repeated, f"entry {first}: comes after entry {first}"),
        (swapped, f"entry {lines[at - 1].index}: comes after entry {first}"),
    ):
        if at + 2 < len(changed):
            changed[at + 2] = replace(changed[at + 2], signature=_flip(changed[at + 2].signature))
        _write_lines(bundle, changed)
        _refresh_manifest(bundle)
        outcomes = {_outcome(bundle, world, **settings)[0] for settings in SETTINGS}
        assert outcomes == {f"{named}: entries are out of order or repeated"}, outcomes


def test_an_index_outside_the_tree_is_named(world: World, recipient_bundle: Path) -> None:
    lines = _lines(recipient_bundle)
    size = json.loads((recipient_bundle / "manifest.json").read_text())["checkpoint"]["size"]
    _write_lines(recipient_bundle, [*lines, replace(lines[-1], index=size)])
    _refresh_manifest(recipient_bundle)
    for settings in SETTINGS:
        with pytest.raises(BundleError) as caught:
            verify_bundle(recipient_bundle, world.trusted(), **settings)
        assert str(caught.value) == (
            f"entry {size}: is outside the checkpoint's tree of size {size}"
        )


def test_an_event_whose_leaf_differs_from_leaves_bin_is_named(
    world: World, recipient_bundle: Path
) -> None:
    """The event's entry is leaf `index` of leaves.bin; change that leaf (its body hash, to
    match an edited body) and the leaves no longer make the root, which is checked first."""
    lines = _lines(recipient_bundle)
    index = lines[1].index
    leaves = bytearray((recipient_bundle / "leaves.bin").read_bytes())
    offset = 0
    for _ in range(index):
        offset += 51 + 16 * int.from_bytes(leaves[offset + 49 : offset + 51], "big")
    leaves[offset + 20] ^= 1  # inside the entry's body hash
    (recipient_bundle / "leaves.bin").write_bytes(bytes(leaves))
    _refresh_manifest(recipient_bundle)
    for settings in SETTINGS:
        with pytest.raises(BundleError) as caught:
            verify_bundle(recipient_bundle, world.trusted(), **settings)
        assert str(caught.value) == "leaves.bin: the leaves do not make the checkpoint's root"


def test_a_line_that_is_not_an_event_is_named(world: World, recipient_bundle: Path) -> None:
    raw = (recipient_bundle / "events.tsv").read_bytes().splitlines(keepends=True)
    for bad, named in (
        (b"0" + raw[1], "line 2 is not a bundle event: it does not start with an index"),
        (raw[1].replace(b"\t", b" ", 1), "line 2 is not a bundle event"),
        (raw[1].split(b"\t")[0] + b"\tnot base64!\t[]\t{}\n", "its signature is not base64"),
    ):
        (recipient_bundle / "events.tsv").write_bytes(b"".join([raw[0], bad, *raw[2:]]))
        _refresh_manifest(recipient_bundle)
        for settings in SETTINGS[:2]:
            with pytest.raises(BundleError, match=r"events\.tsv") as caught:
                verify_bundle(recipient_bundle, world.trusted(), **settings)
            assert named in str(caught.value)


def test_a_bundle_of_another_format_is_refused_with_its_name(
    world: World, recipient_bundle: Path
) -> None:
    manifest = json.loads((recipient_bundle / "manifest.json").read_text())
    manifest["format"] = "consent-ledger-bundle/1"
    (recipient_bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError) as caught:
        verify_bundle(recipient_bundle, world.trusted())
    assert "'consent-ledger-bundle/1'" in str(caught.value)
    assert "reads 'consent-ledger-bundle/7' only" in str(caught.value)


def test_a_previous_checkpoint_of_any_size_is_checked_across_chunks(
    world: World, tmp_path: Path
) -> None:
    """Checkpoints held at sizes inside a chunk, at its end and at the bundle's own size."""
    held = [world.app.sign_checkpoint()]
    for _ in range(3):
        world.app.append([facts.policy()])
        held.append(world.app.sign_checkpoint())
    bundle = world.export({"kind": "all"}, tmp_path / "b")
    assert world.app.checkpointer is not None
    key = world.app.ledger.signer
    for older in held:
        for settings in SETTINGS:
            report = verify_bundle(bundle, world.trusted(), previous=older.note, **settings)
            assert f"consistency: the checkpoint of size {older.size} you hold is a prefix" in (
                report.checked
            )
        forged = Checkpoint(world.app.checkpointer.origin, older.size, b"\x07" * 32)
        note = sign_note(forged.text(), forged.origin, key.signing_key)
        for settings in SETTINGS:
            with pytest.raises(BundleError, match="another history"):
                verify_bundle(bundle, world.trusted(), previous=note, **settings)


def test_the_verifier_command_takes_jobs(world: World, tmp_path: Path) -> None:
    from ledger.verifier.__main__ import main

    bundle = world.export({"kind": "all"}, tmp_path / "b")
    keys = tmp_path / "keys.txt"
    keys.write_text("\n".join(world.verifier_keys()) + "\n")
    runner = CliRunner()
    env = {"CONSENT_LEDGER_DATA_DIR": str(world.settings.data_dir)}
    outputs = []
    for jobs in ("1", "2"):
        result = runner.invoke(
            cli, ["verify", str(bundle), "--key", str(keys), "--jobs", jobs], env=env
        )
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
        assert main([str(bundle), "--key", str(keys), "--jobs", jobs]) == 0
    assert outputs[0] == outputs[1]
    result = runner.invoke(cli, ["verify", str(bundle), "--key", str(keys), "--jobs", "0"], env=env)
    assert result.exit_code != 0


def test_the_verifier_runs_where_processes_are_spawned(world: World, tmp_path: Path) -> None:
    """macOS and Windows start worker processes afresh (spawn), not by fork."""
    bundle = world.export({"kind": "recipient", "recipient_id": world.processor}, tmp_path / "b")
    keys = tmp_path / "keys.txt"
    keys.write_text("\n".join(world.verifier_keys()) + "\n")
    probe = (
        "import multiprocessing, sys\n"
        "from ledger.verifier.__main__ import main\n"
        "if __name__ == '__main__':\n"
        "    multiprocessing.set_start_method('spawn')\n"
        f"    sys.exit(main([{str(bundle)!r}, '--key', {str(keys)!r}, '--jobs', '2']))\n"
    )
    script = tmp_path / "probe.py"
    script.write_text(probe)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert done.returncode == 0, done.stderr
    assert "ok  report" in done.stdout and "VERIFIED" in done.stdout
