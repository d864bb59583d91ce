"""The regulator's report on recipients told (issue 19), on both backends: a section per
recipient with its counts, and how each notice was told and acknowledged (``notices.csv``'s
``acknowledged_via`` and ``acknowledged_by``); a recipient's bundle shows only its own section,
and a subject's bundle lists the recipients told about them and names no other subject."""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.notices import Endpoint, reply_body, webhook_headers
from ledger.verifier.bundle import (
    BundleError,
    BundleEvents,
    BundleFiles,
    file_digest,
    verify_bundle,
)
from ledger.verifier.report import write_report
from projections.database import ProjectionDatabase
from tests import facts
from tests.support import bundles
from tests.support.notice_story import notice_service as _service
from tests.support.notice_story import notice_story as _story
from tests.support.notice_story import notice_types as _types
from tests.support.webhook_receiver import Received, webhook_receiver

_SECTION = re.compile(
    r"<h3>Recipient ([^<]*)</h3>\n<p>Owed: (\d+); told: (\d+); acknowledged: (\d+); "
    r"not yet told: (\d+); told but not acknowledged: (\d+)\.</p>\n"
)


def _sections(report: str) -> dict[str, tuple[int, ...]]:
    """Each recipient's section of "Recipients told": its counts, in the order written."""
    told = report[report.index("<h2>Recipients told</h2>") :]
    found = _SECTION.findall(told)
    assert [f[0] for f in found] == sorted(f[0] for f in found), "by recipient id"
    return {f[0]: tuple(int(n) for n in f[1:]) for f in found}


def _rows(path: Path) -> list[dict[str, str]]:
    with (path / "notices.csv").open() as table:
        return list(csv.DictReader(table))


def _story_told_both_ways(
    ledger: LedgerApplication, db: ProjectionDatabase
) -> tuple[dict[str, str], dict[str, Any]]:
    """The subject's data are rectified (notices to ``email`` and ``analytics``), and the
    bystander's (to ``email`` and ``other``). ``email`` answers its webhooks with a signed
    acknowledgement; ``analytics`` is told and never acknowledges; ``other`` has no endpoint,
    so it is not told, and acknowledges through the API."""
    story = _story(ledger)
    first, second = facts.ref("req"), facts.ref("req")
    ledger.append(
        [
            facts.request(story["subject"], first, kind="rectification"),
            facts.request(story["bystander"], second, kind="rectification"),
        ]
    )
    key = SigningKey.generate()

    def signed(request: Received) -> tuple[Mapping[str, str], bytes]:
        notice = request.headers["webhook-id"]
        body = reply_body(notice, story["email"])
        sign = lambda m: key.sign(m).signature  # noqa: E731
        return webhook_headers(notice, int(time.time()), body, sign), body

    with (
        webhook_receiver(reply=signed) as email,
        webhook_receiver() as analytics,
    ):
        endpoints: dict[str, str | Endpoint] = {
            story["email"]: Endpoint(email.url, ack_key=bytes(key.verify_key)),
            story["analytics"]: analytics.url,
        }
        service = _service(ledger, db, endpoints)
        for request_id, subject in ((first, "subject"), (second, "bystander")):
            ledger.append([_fulfilled(request_id, story[subject])])
        for _ in range(3):
            service.step()
    assert len(email.received) == 2 and len(analytics.received) == 1
    (to_other,) = [
        n for n in _types(ledger, "recipient.notice_due") if n["recipient_id"] == story["other"]
    ]
    ledger.acknowledge_notice(to_other["notice_id"], story["other"], "other-client")
    by_id = {n["notice_id"]: n for n in _types(ledger, "recipient.notice_due")}
    return story, by_id


def _fulfilled(request_id: str, subject: str) -> dict[str, Any]:
    return {
        "type": "request.fulfilled",
        "event_id": facts.ref("evt"),
        "occurred_at": facts.now(),
        "request_id": request_id,
        "subject": subject,
    }


def test_the_report_has_a_section_per_recipient_and_says_how_each_was_acknowledged(
    ledger: LedgerApplication, db: ProjectionDatabase, settings: Settings, tmp_path: Path
) -> None:
    story, due = _story_told_both_ways(ledger, db)
    bundle = bundles.export(ledger, settings, {"kind": "all"}, tmp_path / "all")
    verify_bundle(bundle.path, bundles.trusted(ledger, settings))

    report = (bundle.path / "report.html").read_text()
    assert _sections(report) == {
        # owed, told, acknowledged, not yet told, told but not acknowledged
        story["analytics"]: (1, 1, 0, 0, 1),
        story["email"]: (2, 2, 2, 0, 0),
        story["other"]: (1, 0, 1, 1, 0),
    }
    assert "webhook_reply (signed answer to the webhook)" in report
    assert "api by other-client" in report

    rows = _rows(bundle.path)
    assert {r["notice_id"] for r in rows} == set(due)
    assert {r["reason"] for r in rows} == {"rectification"}
    subject = ledger.subject_keys.current(story["subject"])
    bystander = ledger.subject_keys.current(story["bystander"])
    how = {
        (r["recipient_id"], r["subject"]): (r["acknowledged_via"], r["acknowledged_by"])
        for r in rows
    }
    assert how == {
        (story["email"], subject): ("webhook_reply", ""),
        (story["email"], bystander): ("webhook_reply", ""),
        (story["analytics"], subject): ("", ""),
        (story["other"], bystander): ("api", "other-client"),
    }
    acknowledged = {e["notice_id"]: e["seq"] for e in _types(ledger, "recipient.acknowledged")}
    for r in rows:
        assert r["acknowledged_seq"] == str(acknowledged.get(r["notice_id"], ""))
        assert bool(r["notified_at"]) == (r["recipient_id"] != story["other"])
        assert r["transport"] == ("" if r["recipient_id"] == story["other"] else "webhook")


def test_a_recipients_bundle_shows_only_its_own_section(
    ledger: LedgerApplication, db: ProjectionDatabase, settings: Settings, tmp_path: Path
) -> None:
    story, _ = _story_told_both_ways(ledger, db)
    scope = {"kind": "recipient", "recipient_id": story["email"]}
    bundle = bundles.export(ledger, settings, scope, tmp_path / "email")
    verify_bundle(bundle.path, bundles.trusted(ledger, settings))

    report = (bundle.path / "report.html").read_text()
    assert _sections(report) == {story["email"]: (2, 2, 2, 0, 0)}
    assert "the notices it was owed" in report
    rows = _rows(bundle.path)
    assert {r["recipient_id"] for r in rows} == {story["email"]}
    assert {r["acknowledged_via"] for r in rows} == {"webhook_reply"}


def test_a_subjects_bundle_lists_the_recipients_told_about_them_and_no_other_subject(
    ledger: LedgerApplication, db: ProjectionDatabase, settings: Settings, tmp_path: Path
) -> None:
    story, _ = _story_told_both_ways(ledger, db)
    pseudonym = ledger.subject_keys.current(story["subject"])
    bystander = ledger.subject_keys.current(story["bystander"])
    assert pseudonym is not None and bystander is not None
    scope = {"kind": "subject", "subject": pseudonym}
    bundle = bundles.export(ledger, settings, scope, tmp_path / "subject")
    verify_bundle(bundle.path, bundles.trusted(ledger, settings))

    report = (bundle.path / "report.html").read_text()
    assert _sections(report) == {
        story["analytics"]: (1, 1, 0, 0, 1),
        story["email"]: (1, 1, 1, 0, 0),
    }
    assert "the recipients below are those told about this person" in report
    rows = _rows(bundle.path)
    assert {r["subject"] for r in rows} == {pseudonym}
    assert {r["reason"] for r in rows} == {"rectification"}
    for name in ("notices.csv", "report.html"):
        assert bystander not in (bundle.path / name).read_text(), name

    # And the bystander's: the recipients told of their rectification, nobody else's notices.
    scope = {"kind": "subject", "subject": bystander}
    other = bundles.export(ledger, settings, scope, tmp_path / "bystander")
    verify_bundle(other.path, bundles.trusted(ledger, settings))
    assert _sections((other.path / "report.html").read_text()) == {
        story["email"]: (1, 1, 1, 0, 0),
        story["other"]: (1, 0, 1, 1, 0),
    }
    assert pseudonym not in (other.path / "notices.csv").read_text()


def test_the_sections_are_the_same_bytes_in_parts_and_a_changed_count_is_caught(
    ledger: LedgerApplication, db: ProjectionDatabase, settings: Settings, tmp_path: Path
) -> None:
    """Rendered by 1, 2 or 3 worker processes (every event its own part), the report's files
    are the bundle's byte for byte; a section's count edited in report.html fails
    verification."""
    story, _ = _story_told_both_ways(ledger, db)
    bundle = bundles.export(ledger, settings, {"kind": "all"}, tmp_path / "all").path
    manifest = json.loads((bundle / "manifest.json").read_text())
    held = {name: (bundle / name).read_bytes() for name in manifest["report_files"]}
    assert b"<h3>Recipient " in held["report.html"]
    for jobs in (1, 2, 3):
        target = tmp_path / f"jobs{jobs}"
        target.mkdir()
        names = write_report(
            manifest["scope"],
            (bundle / "checkpoint").read_text(),
            BundleEvents(BundleFiles(bundle), min_part_bytes=1),
            target,
            jobs=jobs,
            **bundles.REPORT_SETTINGS,
        )
        assert {name: (target / name).read_bytes() for name in names} == held, f"jobs={jobs}"

    report = held["report.html"].decode()
    counts = "Owed: 1; told: 1; acknowledged: 0; not yet told: 0; told but not acknowledged: 1."
    assert f"<h3>Recipient {story['analytics']}</h3>\n<p>{counts}</p>" in report
    (bundle / "report.html").write_text(
        report.replace(counts, counts.replace("acknowledged: 0", "acknowledged: 1", 1))
    )
    _refresh_manifest(bundle)
    with pytest.raises(BundleError, match=r"report\.html: does not follow from the events"):
        verify_bundle(bundle, bundles.trusted(ledger, settings))


def _refresh_manifest(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in manifest["files"]:
        with (bundle / name).open("rb") as file:
            digest, size = file_digest(file)
        manifest["files"][name] = {"sha256": digest, "bytes": size}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
