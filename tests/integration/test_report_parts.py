"""The report rendered in parts by worker processes is the report rendered in one, byte for
byte, and a tampered bundle fails alike on both paths."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.verifier.bundle import (
    BundleError,
    BundleEvents,
    BundleFiles,
    file_digest,
    verify_bundle,
)
from ledger.verifier.note import Verifier
from ledger.verifier.report import write_report
from tests import facts
from tests.support import bundles


@dataclass
class World:
    app: LedgerApplication
    settings: Settings
    alice: str
    processor: str
    incident: str

    def pseudonym(self, ref: str) -> str:
        return self.app.subject_keys.pseudonym(ref)

    def trusted(self) -> list[Verifier]:
        return bundles.trusted(self.app, self.settings)

    def export(self, scope: dict[str, Any], target: Path) -> Path:
        bundles.export(self.app, self.settings, scope, target)
        return target


@pytest.fixture
def world(ledger: LedgerApplication, settings: Settings) -> World:
    """Consents, withdrawals, disclosures (one without consent: a violation), a request, an
    incident at a recipient and a correction, of some forty subjects."""
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
            facts.disclosure(processor, others[5:15], version),
            facts.request(alice),
            {**facts.incident(incident), "recipient_id": processor},
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
    return World(ledger, settings, alice, processor, incident)


# -- tampering, as a forger would do it (the manifest's digests made to match again) -----------


def _edit_lines(bundle: Path, edit: Callable[[list[list[bytes]]], None]) -> None:
    lines = [raw.split(b"\t", 3) for raw in (bundle / "events.tsv").read_bytes().splitlines()]
    edit(lines)
    (bundle / "events.tsv").write_bytes(b"".join(b"\t".join(f) + b"\n" for f in lines))


def alter_signature(bundle: Path) -> None:
    def edit(lines: list[list[bytes]]) -> None:
        raw = bytearray(base64.b64decode(lines[3][1]))
        raw[-1] ^= 1
        lines[3][1] = base64.b64encode(bytes(raw))

    _edit_lines(bundle, edit)


def open_one_value_too_many(bundle: Path) -> None:
    def edit(lines: list[list[bytes]]) -> None:
        at = next(i for i, f in enumerate(lines) if b"disclosure.recorded" in f[3])
        opened = json.loads(lines[at][2])
        lines[at][2] = json.dumps([*opened, "x"], separators=(",", ":")).encode()

    _edit_lines(bundle, edit)


def swap_entries(bundle: Path) -> None:
    def edit(lines: list[list[bytes]]) -> None:
        lines[1], lines[2] = lines[2], lines[1]

    _edit_lines(bundle, edit)


def hide_violation(bundle: Path) -> None:
    html = (bundle / "report.html").read_text()
    assert "consent_missing" in html
    (bundle / "report.html").write_text(html.replace("consent_missing", "consent_valid"))


TAMPERING: list[tuple[Callable[[Path], None], str]] = [
    (alter_signature, "its signature does not verify"),
    (open_one_value_too_many, "decoded event differs from the signed body"),
    (swap_entries, "out of order"),
    (hide_violation, "report.html: does not follow from the events"),
]


def _refresh_manifest(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in manifest["files"]:
        with (bundle / name).open("rb") as file:
            digest, size = file_digest(file)
        manifest["files"][name] = {"sha256": digest, "bytes": size}
    (bundle / "manifest.json").write_text(json.dumps(manifest))


REPORT_FILES = (
    "consent.csv",
    "consent_status.csv",
    "disclosures.csv",
    "incidents.csv",
    "notices.csv",
    "reads.csv",
    "report.html",
    "requests.csv",
)


def _scopes(world: World) -> dict[str, dict[str, Any]]:
    return {
        "all": {"kind": "all"},
        "recipient": {"kind": "recipient", "recipient_id": world.processor},
        "subject": {"kind": "subject", "subject": world.pseudonym(world.alice)},
        "incident": {"kind": "incident", "incident_id": world.incident},
    }


def _render(bundle: Path, target: Path, jobs: int) -> tuple[str, dict[str, bytes]]:
    """The report of ``bundle`` rendered by ``jobs`` processes, every part as small as it can
    be (so that every event and every subject starts a part): its files, or the failure."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    settings = manifest["settings"]
    target.mkdir()
    try:
        names = write_report(
            manifest["scope"],
            (bundle / "checkpoint").read_text(),
            BundleEvents(BundleFiles(bundle), min_part_bytes=1),
            target,
            default_minimum_age=int(settings.get("default_minimum_age", 18)),
            authority_deadline_hours=int(settings.get("authority_deadline_hours", 72)),
            request_due_days=int(settings.get("request_due_days", 15)),
            request_due_days_by_jurisdiction=settings.get("request_due_days_by_jurisdiction"),
            jobs=jobs,
        )
    except Exception as exc:  # the failure is compared, whatever it is
        return f"{type(exc).__name__}: {exc}", {}
    return "rendered", {name: (target / name).read_bytes() for name in names}


@pytest.mark.parametrize("kind", ["all", "recipient", "subject", "incident"])
def test_the_report_rendered_in_parts_is_the_bundles_byte_for_byte(
    world: World, tmp_path: Path, kind: str
) -> None:
    bundle = world.export(_scopes(world)[kind], tmp_path / "b")
    held = {
        name: (bundle / name).read_bytes()
        for name in json.loads((bundle / "manifest.json").read_text())["report_files"]
    }
    for jobs in (1, 2, 3):
        outcome, files = _render(bundle, tmp_path / f"jobs{jobs}", jobs)
        assert outcome == "rendered"
        assert files == held, f"jobs={jobs}"
    if kind == "all":
        assert set(held) == set(REPORT_FILES)
        assert b"consent_missing" in held["disclosures.csv"]  # bob's row: a verdict was drawn


def test_the_parts_of_the_events_are_every_event_once_in_order(
    world: World, tmp_path: Path
) -> None:
    bundle = world.export({"kind": "all"}, tmp_path / "b")
    whole = BundleEvents(BundleFiles(bundle), min_part_bytes=1)
    every = [event.seq for event in whole()]
    for parts in (2, 3, 5, len(every), 10 * len(every)):
        split = whole.split(parts)
        assert split is not None and 2 <= len(split) <= parts
        assert [event.seq for part in split for event in part()] == every
    assert BundleEvents(BundleFiles(bundle)).split(4) is None  # too small to be worth a process


def test_a_line_is_skipped_by_its_bytes_only_when_of_another_type(
    world: World, tmp_path: Path
) -> None:
    """The report's passes skip a line whose body's type, read from its bytes, is not one
    asked for: never a line of a type asked for, and a line with a backslash never."""
    from ledger.verifier.bundle import _not_of
    from ledger.verifier.entry import parse_body

    bundle = world.export({"kind": "all"}, tmp_path / "b")
    lines = (bundle / "events.tsv").read_bytes().splitlines(keepends=True)
    kinds = {parse_body(raw.split(b"\t", 3)[3].rstrip(b"\n"))["type"] for raw in lines}
    assert len(kinds) >= 5
    for raw in lines:
        kind = parse_body(raw.split(b"\t", 3)[3].rstrip(b"\n"))["type"].encode()
        assert not _not_of(raw, frozenset({kind, b"policy.version_published"}))
        assert _not_of(raw, frozenset({b"some.other_type"}))
        assert _not_of(raw, frozenset(k.encode() for k in kinds) - {kind})
        escaped = raw.replace(b'"data":{', b'"data":{"note":"a \\"quoted\\" word",', 1)
        assert not _not_of(escaped, frozenset({b"some.other_type"}))


@pytest.mark.parametrize(("tamper", "named"), TAMPERING, ids=[t.__name__ for t, _ in TAMPERING])
def test_a_tampered_bundle_fails_alike_in_parts_and_in_one_process(
    world: World, tmp_path: Path, tamper: Callable[[Path], None], named: str
) -> None:
    bundle = world.export(_scopes(world)["recipient"], tmp_path / "b")
    tamper(bundle)
    _refresh_manifest(bundle)
    serial = _render(bundle, tmp_path / "serial", 1)
    assert _render(bundle, tmp_path / "parts", 2) == serial
    verdicts = set()
    for jobs in (1, 2):
        with pytest.raises(BundleError) as caught:
            verify_bundle(bundle, world.trusted(), jobs=jobs)
        verdicts.add(str(caught.value))
    assert len(verdicts) == 1 and named in verdicts.pop()


@pytest.mark.parametrize("kind", ["all", "recipient", "incident"])
def test_the_lines_built_by_worker_processes_are_those_built_in_one(
    world: World, tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every bundle large enough for the pool, the export's events.tsv is the same from
    1, 2 or 3 processes, and verifies."""
    from ledger import export

    monkeypatch.setattr(export, "LINES_IN_POOL", 1)
    monkeypatch.setattr(export, "PAGE", 3)  # pages of 3 events: many, joined in order
    scope = _scopes(world)[kind]
    written = {}
    for jobs in (1, 2, 3):
        target = tmp_path / f"jobs{jobs}"
        export.export_bundle(
            world.app,
            scope,
            target,
            verifier_keys=bundles.verifier_keys(world.app, world.settings),
            report_settings=bundles.REPORT_SETTINGS,
            jobs=jobs,
        )
        verify_bundle(target, world.trusted(), jobs=jobs)
        written[jobs] = (target / "events.tsv").read_bytes()
    assert written[1].count(b"\n") >= 2
    assert written[2] == written[1] and written[3] == written[1]


def test_the_export_shows_each_events_sealed_values_as_open_data_does(world: World) -> None:
    """The exporter works out the values shown for an event that mentions no one once per
    shape: for every event, in a bundle that opens no one's data and in a subject's, they are
    what opening the event gives."""
    from uuid import UUID

    from ledger import export
    from ledger.sealing import open_data
    from ledger.verifier.entry import parse_body
    from ledger.verifier.events import opened_values

    head = world.app.head()
    records = world.app.ledger.select_records(1, head)
    assert len(records) == head
    keys = world.app.subject_keys
    for only in ("", world.pseudonym(world.alice)):
        page_keys = export._PageKeys(keys, keys.keys_for([only], create=False) if only else {})
        export._SHAPES.clear()
        for _ in range(2):  # the second time from the shapes seen the first
            for record in records:
                body = parse_body(record.body)
                shown = open_data(
                    body["type"],
                    body["data"],
                    UUID(body["stream"]),
                    body["stream_version"],
                    page_keys,
                    only=only,
                )
                expected = (
                    opened_values(body["data"], shown) if b"sealed:v1:" in record.body else []
                )
                assert export._opened(record.body, only, page_keys) == expected, record.seq
        # Shapes are kept only where no one's data is opened.
        assert bool(export._SHAPES) == (only == "")
