"""The demo's notices to recipients (issue 19: "the demo includes a recipient that acknowledges
and one that never does"), on both backends: ``consent-ledger demo`` records the notices its
withdrawals and rectification owe, to MailForge and AdBridge among others, once however often
it runs; with the demo's two recipients running (as ``demo --serve`` runs them), MailForge's
notices are acknowledged by its signed answers, AdBridge's are delivered and never
acknowledged, and go overdue; ``demo --serve`` names them in ``notice-endpoints.json`` and the
served register shows the same."""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from demo import recipients
from ledger.config import Settings, generate_keys, open_ledger
from ledger.operations import LedgerOperations
from projections.read_models import ReadModels
from tests.cli_runner import run_cli
from tests.support.notice_story import notice_types
from tests.support.processes import add_client, demo_serving, free_port
from tests.support.waiting import answers_healthz, wait_until

USERS = "20"


def test_the_demo_owes_notices_to_both_recipients_once_and_one_acknowledges(
    settings: Settings,
) -> None:
    first = run_cli(settings, "demo", "--users", USERS)
    assert first.exit_code == 0, first.output
    said = re.search(r"notices owed to recipients \(GDPR 19\): (\d+) \(([^)]*)\)", first.output)
    assert said is not None, first.output
    app = open_ledger(settings)
    models = ReadModels(app, settings)
    try:
        due = notice_types(app, "recipient.notice_due")
        owed = Counter(e["recipient_id"] for e in due)
        assert owed[recipients.ACKNOWLEDGING] >= 1 and owed[recipients.SILENT] >= 1
        assert int(said.group(1)) == len(due)
        assert f"{recipients.ACKNOWLEDGING} {owed[recipients.ACKNOWLEDGING]}" in said.group(2)
        reasons = {e["reason"] for e in due if e["recipient_id"] == recipients.SILENT}
        assert "consent_withdrawn" in reasons, "the demo's withdrawals tell AdBridge"

        again = run_cli(settings, "demo", "--users", USERS)
        assert again.exit_code == 0 and "(0 new," in again.output, again.output
        assert len(notice_types(app, "recipient.notice_due")) == len(due), "none twice"

        keys = LedgerOperations(app, settings).verifier_keys()
        service = models.notices  # reads notice-endpoints.json, as serve's does
        with recipients.running(settings.data_dir, keys) as running:
            service.step()
            service.step()
        taken = {r: sorted(ids) for r, ids in running.taken.items()}
        by_recipient: dict[str, list[str]] = {recipients.ACKNOWLEDGING: [], recipients.SILENT: []}
        for e in due:
            if e["recipient_id"] in by_recipient:
                by_recipient[e["recipient_id"]].append(e["notice_id"])
        assert taken == {r: sorted(ids) for r, ids in by_recipient.items()}

        rows = {row.notice_id: row for row in service.register()}
        for notice in by_recipient[recipients.ACKNOWLEDGING]:
            assert rows[notice].acknowledged_via == "webhook_reply"
        for notice in by_recipient[recipients.SILENT]:
            assert rows[notice].delivered_at is not None
            assert rows[notice].acknowledged_seq is None
        acknowledged = notice_types(app, "recipient.acknowledged")
        assert {e["recipient_id"] for e in acknowledged} == {recipients.ACKNOWLEDGING}

        service.clock = lambda: datetime.now(UTC) + timedelta(days=8)
        late: Counter[str] = Counter()
        for count in service.counts():  # by recipient and reason
            late[count.recipient_id] += count.overdue
        assert late[recipients.SILENT] == len(by_recipient[recipients.SILENT])
        assert late[recipients.ACKNOWLEDGING] == 0

        key_file = settings.data_dir / recipients.KEY_FILE
        assert key_file.stat().st_mode & 0o077 == 0
        named = json.loads(settings.data_dir.joinpath(recipients.ENDPOINTS_FILE).read_text())
        kept = recipients.ack_key(settings.data_dir).verify_key  # the same key, read again
        assert (
            named[recipients.ACKNOWLEDGING]["ack_public_key"]
            == base64.b64encode(bytes(kept)).decode()
        )
    finally:
        models.close()
        app.close()


def test_demo_serve_runs_the_two_recipients(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    generate_keys(settings)
    settings.data_dir.joinpath(recipients.ENDPOINTS_FILE).write_text(
        json.dumps({"rcp-operators-own": "https://hooks.example/notices"})
    )
    port = free_port()
    with demo_serving(settings, port, users=int(USERS)) as printed:
        printed.until(lambda line: line.startswith("demo recipients:"))
        endpoints = json.loads(settings.data_dir.joinpath(recipients.ENDPOINTS_FILE).read_text())
        assert endpoints["rcp-operators-own"] == "https://hooks.example/notices", "kept"
        assert endpoints[recipients.SILENT].startswith("http://127.0.0.1:")
        assert "ack_public_key" in endpoints[recipients.ACKNOWLEDGING]

        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers_healthz(base), "the server did not start", seconds=60)
        token = add_client(settings, "auditor", "history:read")

        def register() -> list[dict[str, object]]:
            answer = httpx.get(
                f"{base}/v1/notices", headers={"authorization": f"Bearer {token}"}, timeout=30
            )
            rows: list[dict[str, object]] = answer.json()["notices"]
            return rows

        def settled() -> bool:
            rows = register()
            mine = [
                r
                for r in rows
                if r["recipient_id"] in (recipients.ACKNOWLEDGING, recipients.SILENT)
            ]
            return bool(mine) and all(r["delivered_at"] is not None for r in mine)

        wait_until(settled, "the demo's recipients took their notices", seconds=90)
        wait_until(
            lambda: all(
                r["acknowledged_via"] == "webhook_reply"
                for r in register()
                if r["recipient_id"] == recipients.ACKNOWLEDGING
            ),
            "MailForge acknowledged each notice in its answer",
            seconds=60,
        )
        silent = [r for r in register() if r["recipient_id"] == recipients.SILENT]
        assert silent and all(r["acknowledged_seq"] is None for r in silent)
