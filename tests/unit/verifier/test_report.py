"""The report from hand-made events: selection by scope, CSV quoting, and what it may import."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ledger.verifier.report import ReportEvent, write_report

ROOT = Path(__file__).resolve().parents[3]
CHECKPOINT = (
    "example.org/log\n7\nq6uGKu/qOY7WVYpDGJfV1g3ZzMm4SU71aDNm43GSQWM=\n\n— example.org/log abc\n"
)
ALICE, BOB = "aaaaaaaa-0000-0000-0000-000000000001", "bbbbbbbb-0000-0000-0000-000000000002"
NAME = 'Ads, "Quoted"\nand Co'


def event(seq: int, type_name: str, at: str, data: dict[str, Any], **shown: Any) -> ReportEvent:
    return ReportEvent(
        seq=seq,
        type=type_name,
        occurred_at=at,
        recorded_at="2026-12-01T00:00:00.000000Z",
        event_id=f"evt-{seq}",
        backdated=True,
        data=data,
        shown={**data, **shown},
    )


def log() -> Iterator[ReportEvent]:
    yield event(
        1,
        "policy.version_published",
        "2026-01-01T00:00:00.000000Z",
        {
            "version": "p1",
            "effective_at": "2026-01-01T00:00:00Z",
            "material": False,
            "purposes": [{"id": "ads", "name": "Ads", "legal_basis": "consent"}],
        },
    )
    yield event(
        2,
        "recipient.registered",
        "2026-01-02T00:00:00.000000Z",
        {"recipient_id": "r1", "name": NAME, "role": "third_party", "country": "US"},
    )
    yield event(
        3,
        "consent.given",
        "2026-01-03T00:00:00.000000Z",
        {
            "subject": ALICE,
            "subject_ref": "sealed:v1:AAAA",
            "purposes": ["ads"],
            "policy_version": "p1",
        },
        subject_ref="alice",
    )
    yield event(
        4,
        "disclosure.recorded",
        "2026-02-01T00:00:00.000000Z",
        {
            "disclosure_id": "d1",
            "recipient_id": "r1",
            "kind": "sharing",
            "subjects": [
                {"subject": BOB, "ref": "sealed:v1:BBBB"},
                {"subject": ALICE, "ref": "sealed:v1:CCCC"},
            ],
            "data_categories": ["online.cookie_id"],
            "purpose": "ads",
            "legal_basis": "consent",
            "de_identified": False,
            "destination_country": "US",
            "policy_version": "p1",
        },
        subjects=[{"subject": BOB, "ref": "[erased]"}, {"subject": ALICE, "ref": "alice"}],
    )


def render(tmp_path: Path, scope: dict[str, Any]) -> Path:
    directory = tmp_path / str(len(list(tmp_path.iterdir())))
    directory.mkdir()
    write_report(scope, CHECKPOINT, log, directory, default_minimum_age=18)
    return directory


def disclosure_rows(directory: Path) -> list[dict[str, str]]:
    with (directory / "disclosures.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_a_subjects_report_shows_only_that_subjects_row_of_a_shared_disclosure(
    tmp_path: Path,
) -> None:
    alice = disclosure_rows(render(tmp_path, {"kind": "subject", "subject": ALICE}))
    assert [(r["subject_ref"], r["verdict"]) for r in alice] == [("alice", "consent_valid")]
    bob = disclosure_rows(render(tmp_path, {"kind": "subject", "subject": BOB}))
    assert [(r["subject_ref"], r["verdict"]) for r in bob] == [("[erased]", "consent_missing")]
    everyone = disclosure_rows(render(tmp_path, {"kind": "recipient", "recipient_id": "r1"}))
    assert [r["subject"] for r in everyone] == [ALICE, BOB]


def test_the_csv_quotes_as_rfc_4180_says(tmp_path: Path) -> None:
    directory = render(tmp_path, {"kind": "all"})
    raw = (directory / "disclosures.csv").read_text(encoding="utf-8")
    assert '"Ads, ""Quoted""\nand Co"' in raw
    assert "\r" not in raw
    assert {r["recipient_name"] for r in disclosure_rows(directory)} == {NAME}
    assert (directory / "report.html").read_text(encoding="utf-8").count(
        "Ads, &quot;Quoted&quot;\nand Co"
    ) == 2


def test_the_report_loads_nothing_beyond_the_standard_library_and_the_verifier(
    tmp_path: Path,
) -> None:
    """What a regulator's machine has: the verifier package, the standard library, PyNaCl."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_report as case
        case.render(Path({str(tmp_path)!r}), {{"kind": "all"}})
        ours = {{"ledger", "projections", "api", "demo", "tests"}}
        loaded = sorted(
            name for name in sys.modules
            if name.split(".")[0] in ours | {{"orjson", "pydantic", "eventsourcing", "jinja2"}}
            and name != "ledger" and not name.startswith("ledger.verifier")
            and name != "test_report"
        )
        print(loaded)
        """
    )
    # ``test_report`` imports only the verifier's report and the standard library itself.
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert result.stdout.strip() == "[]", result.stderr
