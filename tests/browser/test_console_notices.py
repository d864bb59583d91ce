"""The console's notices to recipients in headless chromium on the demo data, the network cut to
loopback: the demo's two recipients run (as ``demo --serve`` runs them), MailForge acknowledges
in its signed answers, AdBridge never does; an auditor (history:read) follows the nav to the
Notices page, finds the rows and counts the API gives, filters by recipient, and opens one
notice's trail. Screenshots: docs/console/notices.png and notice.png."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from demo import recipients
from ledger.config import Settings, generate_keys, open_ledger
from ledger.operations import LedgerOperations
from tests.cli_runner import run_cli
from tests.support.browser import OfflinePage, keep_screenshot
from tests.support.processes import add_client, free_port
from tests.support.serve import serve
from tests.support.waiting import wait_until


@dataclass(frozen=True)
class Served:
    url: str
    token: str

    def register(self, **params: Any) -> list[dict[str, Any]]:
        answer = httpx.get(
            f"{self.url}/v1/notices",
            params=params,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        rows: list[dict[str, Any]] = answer.json()["notices"]
        return rows


def _settled(rows: list[dict[str, Any]]) -> bool:
    mine = [r for r in rows if r["recipient_id"] in (recipients.ACKNOWLEDGING, recipients.SILENT)]
    return bool(mine) and all(
        r["delivered_at"] is not None
        and (r["recipient_id"] == recipients.SILENT or r["acknowledged_via"] == "webhook_reply")
        for r in mine
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The demo (120 members) served on SQLite with its two recipients on loopback, once each
    of their notices was delivered (and MailForge's acknowledged)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("notices") / "data")
    generate_keys(settings)
    loaded = run_cli(settings, "demo", "--users", "120")
    assert loaded.exit_code == 0, loaded.output
    token = add_client(settings, "auditor", "history:read")
    app = open_ledger(settings)
    try:
        keys = LedgerOperations(app, settings).verifier_keys()
    finally:
        app.close()
    with (
        recipients.running(settings.data_dir, keys),
        serve(settings, free_port(), {"CONSENT_LEDGER_NOTICE_RETRY_SECONDS": "1"}) as up,
    ):
        found = Served(up.url, token)
        wait_until(lambda: _settled(found.register()), "the demo's notices told", seconds=90)
        yield found


@pytest.fixture
def page(offline_page: OfflinePage, served: Served) -> Iterator[Page]:
    opened = offline_page.page
    opened.goto(f"{served.url}/console")
    opened.get_by_label("API token").fill(served.token)
    opened.get_by_role("button", name="Sign in").click()
    expect(opened.get_by_role("heading", name="Overview")).to_be_visible()
    yield opened
    assert offline_page.outside.urls == []
    assert offline_page.csp_violations() == []


def test_the_notices_page_lists_what_the_register_holds(page: Page, served: Served) -> None:
    rows = served.register()
    unacknowledged = sum(r["acknowledged_seq"] is None for r in rows)
    expect(page.locator("#notices-unacknowledged")).to_have_text(str(unacknowledged))
    page.get_by_role("navigation").get_by_role("link", name="Notices").click()
    expect(page.get_by_role("heading", name="Notices to recipients")).to_be_visible()
    expect(page.locator("#row-count")).to_have_text(str(len(rows)))
    expect(page.locator("#notice-rows tbody tr")).to_have_count(len(rows))

    owed = Counter(r["recipient_id"] for r in rows)
    for recipient in (recipients.ACKNOWLEDGING, recipients.SILENT):
        counts = page.locator(f'#notice-counts tr[data-recipient="{recipient}"]')
        total = sum(int(t) for t in counts.locator("td:nth-child(3)").all_inner_texts())
        assert total == owed[recipient]
    for row in rows:
        shown = page.locator(f'#notice-rows tr[data-notice="{row["notice_id"]}"]')
        if row["recipient_id"] == recipients.ACKNOWLEDGING:
            expect(shown).to_contain_text("signed reply")
            expect(shown.locator(".badge")).to_have_text("acknowledged")
        elif row["recipient_id"] == recipients.SILENT:
            expect(shown.locator(".badge")).to_have_text("awaiting acknowledgement")
        elif row["delivered_at"] is None:
            expect(shown.locator(".badge")).to_have_text("not delivered yet")
    keep_screenshot(page, "notices")

    page.get_by_label("Recipient id").fill(recipients.SILENT)
    page.get_by_role("button", name="Show").click()
    theirs = served.register(recipient_id=recipients.SILENT)
    expect(page.locator("#notice-rows tbody tr")).to_have_count(len(theirs))


def test_a_notices_trail_says_how_it_was_delivered_and_acknowledged(
    page: Page, served: Served
) -> None:
    (row, *_) = served.register(recipient_id=recipients.ACKNOWLEDGING)
    page.goto(f"{served.url}/console/notices")
    page.locator(f'tr[data-notice="{row["notice_id"]}"] a').click()
    trail = page.locator("#notice-trail")
    expect(trail.locator("li")).to_have_count(4)
    expect(trail.locator('li[data-step="delivered"]')).to_contain_text("by webhook")
    expect(trail.locator('li[data-step="acknowledged"]')).to_contain_text(
        "in its signed answer to the webhook"
    )
    expect(page.locator("#notice-state")).to_have_text("acknowledged")
    keep_screenshot(page, "notice")
    trail.locator('li[data-step="acknowledged"] a').click()
    expect(page).to_have_url(f"{served.url}/console/evidence/entries/{row['acknowledged_seq']}")
