"""The demo's data set exports and verifies offline: the whole log, a member, a recipient."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from demo.dataset import default_anchor, generate
from ledger.config import Settings
from tests.cli_runner import run_cli as run

USERS = 40
ANCHOR = default_anchor() - timedelta(days=2)


def test_the_demo_exports_and_verifies(settings: Settings, tmp_path: Path) -> None:
    loaded = run(settings, "demo", "--users", str(USERS), "--anchor", ANCHOR.isoformat())
    assert loaded.exit_code == 0, loaded.output
    data = generate(USERS, anchor=ANCHOR)
    member = next(f["subject"] for f in data.facts if f["type"] == "consent.given")
    recipient = next(f["recipient_id"] for f in data.facts if f["type"] == "disclosure.recorded")
    keys = tmp_path / "keys.txt"
    keys.write_text(run(settings, "keys").output)
    for name, scope in (
        ("all", ["--all"]),
        ("member.zip", ["--subject", member]),
        ("recipient", ["--recipient", recipient]),
    ):
        out = tmp_path / name
        exported = run(settings, "export", *scope, "--out", str(out))
        assert exported.exit_code == 0, exported.output
        verified = run(settings, "verify", str(out), "--key", str(keys))
        assert verified.exit_code == 0, verified.output
        assert "ok  completeness" in verified.output and "ok  report" in verified.output
    # The whole log's report shows the violations the demo planted.
    report = (tmp_path / "all" / "disclosures.csv").read_text()
    assert "consent_missing" in report and "recipient_terminated" in report
