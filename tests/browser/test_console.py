"""The console (/console) in headless chromium on the demo data, the network cut to loopback: a
person signs in, opens each page, finds the numbers the API gives, records an incident step
through its form and sees the clock change, opens people only with a purpose (the read on the
record), and is refused a page their token's scopes do not cover, or a form sent without its
CSRF token. Each page's screenshot is kept under docs/console/."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from ledger.config import Settings, generate_keys
from tests.cli_runner import run_cli
from tests.support.browser import OfflinePage, keep_screenshot
from tests.support.processes import add_client, free_port
from tests.support.serve import serve

INCIDENT = "inc-helpline-01"
"""The demo's incident (docs/demo.md)."""


@dataclass(frozen=True)
class Console:
    url: str
    tokens: dict[str, str]

    def api(self, path: str, who: str = "admin", **params: Any) -> Any:
        response = httpx.get(
            f"{self.url}{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """The demo (120 members) served on SQLite, with a responder (admin and
    incidents:identify), an auditor (history:read only) and an emitter (events:write)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("console") / "data")
    generate_keys(settings)
    loaded = run_cli(settings, "demo", "--users", "120")
    assert loaded.exit_code == 0, loaded.output
    tokens = {
        "admin": add_client(settings, "responder", "admin", "incidents:identify"),
        "auditor": add_client(settings, "auditor", "history:read"),
        "emitter": add_client(settings, "emitter", "events:write"),
    }
    with serve(settings, free_port()) as up:
        yield Console(up.url, tokens)


def sign_in(page: Page, console: Console, who: str = "admin", then: str = "") -> None:
    page.goto(f"{console.url}/console{then}")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("API token").fill(console.tokens[who])
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def signed_in(offline_page: OfflinePage, console: Console) -> Iterator[Page]:
    sign_in(offline_page.page, console)
    expect(offline_page.page.get_by_role("heading", name="Overview")).to_be_visible()
    yield offline_page.page
    assert offline_page.outside.urls == []
    assert offline_page.csp_violations() == []


def number(page: Page, selector: str) -> int:
    return int(page.locator(selector).inner_text().strip())


def test_the_overview_shows_the_numbers_the_api_gives(signed_in: Page, console: Console) -> None:
    page = signed_in
    now = datetime.now(UTC)
    overdue = console.api("/v1/requests", overdue="true")
    assert number(page, "#overdue-count") == len(overdue) == 1
    since = (now - timedelta(days=30)).isoformat().replace("+00:00", "Z")
    violations = console.api("/v1/disclosures", violations="true", limit=1000, **{"from": since})
    assert number(page, "#violation-count") == len(violations["items"])
    registered = console.api("/v1/incidents")
    open_incidents = [i["incident_id"] for i in registered if i["status"] != "closed"]
    listed = page.locator("#open-incidents tbody tr td:first-child").all_inner_texts()
    assert listed == open_incidents and INCIDENT in listed
    head = number(page, "#log-head")
    assert number(page, "#checkpoint-size") <= head <= console.api("/readyz")["head"]
    expect(page.locator("svg.spark").first).to_be_visible()
    expect(page.locator("#chart-h")).to_contain_text("Consent given and withdrawn")
    keep_screenshot(page, "overview")
    page.set_viewport_size({"width": 390, "height": 844})
    keep_screenshot(page, "overview-phone")


def test_the_incident_page_gives_the_registers_numbers_and_prints_cleanly(
    signed_in: Page, console: Console
) -> None:
    page = signed_in
    page.get_by_role("link", name="Incidents", exact=True).click()
    expect(page.locator("#incident-register")).to_contain_text(INCIDENT)
    keep_screenshot(page, "incidents")
    page.get_by_role("link", name=INCIDENT).click()
    answer = console.api(f"/v1/incidents/{INCIDENT}")
    assert number(page, "#affected-count") == answer["affected_subject_count"]
    expect(page.locator("#incident-status")).to_have_text(answer["status"])
    expect(page.locator("#incident-clock")).to_contain_text("authority notified in time")
    expect(page.locator("#timeline li")).to_have_count(5)  # detected ... subjects notified
    for missing in answer["article_33_3"]["missing"]:
        expect(page.locator("#checklist")).to_contain_text(missing)
    keep_screenshot(page, "incident")
    page.emulate_media(media="print")
    expect(page.get_by_role("heading", name="Record the next step")).to_be_hidden()
    expect(page.locator("header.top")).to_be_hidden()
    keep_screenshot(page, "incident-print")


def test_a_step_recorded_through_the_form_changes_the_clock(
    signed_in: Page, console: Console
) -> None:
    page = signed_in
    incident_id = f"inc-console-{datetime.now(UTC):%H%M%S%f}"
    detected = (datetime.now(UTC) - timedelta(hours=80)).strftime("%Y-%m-%dT%H:%M")
    page.goto(f"{console.url}/console/incidents")
    page.get_by_label("Incident id").fill(incident_id)
    page.get_by_label("Detected at (UTC)").fill(detected)
    page.get_by_label("Summary").fill("A laptop with an unencrypted export was stolen.")
    page.get_by_role("button", name="Open the incident").click()
    expect(page.get_by_role("heading", name=f"Incident {incident_id}")).to_be_visible()
    clock = page.locator("#incident-clock .clock")
    expect(clock).to_contain_text("overdue by")
    expect(clock).to_have_class("clock overdue")
    assert console.api(f"/v1/incidents/{incident_id}")["authority_overdue"] is True
    expect(page.locator("#checklist")).to_contain_text("needed: the deadline passed")

    # A step the ledger refuses shows its problems next to the fields, and records nothing.
    step = page.locator("#step-assessed")
    step.get_by_label("Risk").select_option("risk")
    step.get_by_role("button", name="Record: assessed").click()
    expect(page.locator("#assessed-data_categories-error")).to_be_visible()
    expect(page.locator("#step-assessed")).to_have_attribute("open", "")
    assert console.api(f"/v1/incidents/{incident_id}")["status"] == "open"
    keep_screenshot(page, "incident-form-problems")

    notify = page.locator("#step-authority_notified")
    notify.locator("summary").click()
    notify.get_by_label("Authority").fill("Data Protection Commission (IE)")
    notify.get_by_label("DPO contact (GDPR 33(3)(b))").fill("dpo@example.com")
    notify.get_by_label("Reason for the delay").fill("The theft was reported to us late.")
    notify.get_by_role("button", name="Record: authority notified").click()
    expect(page.locator("#incident-clock")).to_contain_text("authority notified late")
    answer = console.api(f"/v1/incidents/{incident_id}")
    assert answer["authority_notified_at"] is not None
    assert answer["authority_overdue"] is False and answer["authority_notified_late"] is True


def test_the_people_of_an_incident_open_only_with_a_purpose_and_on_the_record(
    signed_in: Page, console: Console
) -> None:
    page = signed_in
    page.goto(f"{console.url}/console/incidents/{INCIDENT}")
    page.get_by_role("link", name="Open the people to notify them").click()
    expect(page.get_by_role("button", name="Open the people (recorded)")).to_be_visible()
    keep_screenshot(page, "people-purpose")
    page.get_by_label("Purpose").fill("notify the people of the helpline breach (GDPR 34)")
    page.get_by_role("button", name="Open the people (recorded)").click()
    seq = number(page, "#access-seq")
    recorded = console.api(f"/v1/events/{seq}")
    assert recorded["type"] == "personal_data.accessed"
    data = recorded["data"]
    assert data["client"] == "responder" and data["action"] == "console_incident_people"
    assert data["purpose"] == "notify the people of the helpline breach (GDPR 34)"
    assert data["details"] == {"incident_id": INCIDENT}
    total = console.api(f"/v1/incidents/{INCIDENT}")["affected_subject_count"]
    assert number(page, "#people-total") == total
    expect(page.locator("#people tbody tr")).to_have_count(min(total, 100))


def test_a_subject_lookup_is_recorded_and_shows_what_the_api_shows(
    signed_in: Page, console: Console
) -> None:
    page = signed_in
    person = console.api(
        f"/v1/incidents/{INCIDENT}/affected", purpose="pick a subject for the test", limit=1
    )["items"][0]
    reference = person["subject_ref"]
    page.get_by_role("link", name="Subject lookup").click()
    page.get_by_label("Reference").fill(reference)
    page.get_by_label("Purpose").fill("answer their access request")
    page.get_by_role("button", name="Look up (recorded)").click()
    seq = number(page, "#access-seq")
    data = console.api(f"/v1/events/{seq}")["data"]
    assert data["action"] == "console_subject_lookup" and data["client"] == "responder"
    assert data["purpose"] == "answer their access request"
    disclosures = console.api("/v1/disclosures", subject=reference, limit=1000)["items"]
    assert number(page, "#disclosure-count") == len(disclosures) > 0
    state = console.api("/v1/consent/state", subject=reference)
    assert page.locator("#consent-now tbody tr").count() == len(state["purposes"])
    expect(page.get_by_role("link", name=INCIDENT)).to_be_visible()
    keep_screenshot(page, "subject")


def test_the_request_register_lists_what_the_api_lists(signed_in: Page, console: Console) -> None:
    page = signed_in
    page.get_by_role("link", name="Requests").first.click()
    rows = page.locator("#request-register tbody tr")
    expect(rows).to_have_count(len(console.api("/v1/requests")))
    overdue = console.api("/v1/requests", overdue="true")
    expect(page.locator("#request-register .badge.bad")).to_have_count(len(overdue))
    keep_screenshot(page, "requests")


def test_a_page_beyond_the_tokens_scopes_is_refused(
    offline_page: OfflinePage, console: Console
) -> None:
    page = offline_page.page
    sign_in(page, console, "auditor", "/incidents")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.locator("main")).to_contain_text("incidents:manage")
    keep_screenshot(page, "refused")
    response = page.goto(f"{console.url}/console/incidents/{INCIDENT}/people")
    assert response is not None and response.status == 403
    # The overview it may see says what it cannot.
    page.goto(f"{console.url}/console")
    expect(page.locator("#inc-h + p")).to_contain_text("incidents:manage")


def test_a_token_without_any_page_signs_in_to_refusals_only(
    offline_page: OfflinePage, console: Console
) -> None:
    page = offline_page.page
    sign_in(page, console, "emitter")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()


def test_a_wrong_token_is_refused_at_sign_in(offline_page: OfflinePage, console: Console) -> None:
    page = offline_page.page
    page.goto(f"{console.url}/console")
    page.get_by_label("API token").fill("cl_" + "x" * 43)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    keep_screenshot(page, "sign-in")


def test_a_form_sent_without_its_csrf_token_is_refused(
    offline_page: OfflinePage, console: Console
) -> None:
    page = offline_page.page
    sign_in(page, console)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    head = number(page, "#log-head")
    response = page.request.post(
        f"{console.url}/console/subjects",
        form={"subject": "member-00008", "purpose": "no token"},
        max_redirects=0,
    )
    assert response.status == 403
    assert "CSRF" in response.text()
    page.reload()
    assert number(page, "#log-head") == head  # nothing was recorded


def test_a_checkpoint_kept_from_the_evidence_page_checks_out_later(
    signed_in: Page, console: Console
) -> None:
    page = signed_in
    page.get_by_role("link", name="Evidence").click()
    note = page.locator("#checkpoint-note").inner_text()
    size = number(page, "#checkpoint-size")
    assert note.splitlines()[1] == str(size)
    # Later (a lookup appends a record, and a checkpoint follows), the kept one still checks out.
    page.get_by_role("link", name="Subject lookup").click()
    page.get_by_label("Reference").fill("member-00008")
    page.get_by_label("Purpose").fill("audit sample")
    page.get_by_role("button", name="Look up (recorded)").click()
    page.get_by_role("link", name="Evidence").click()
    page.get_by_role("textbox", name="Signed checkpoint").fill(note)
    page.get_by_role("button", name="Check consistency").click()
    expect(page.locator("#consistency-result")).to_contain_text("Consistent")
    keep_screenshot(page, "evidence")
    # One changed digit in the root hash, and the signature no longer holds.
    lines = note.splitlines()
    root = lines[2]
    lines[2] = ("B" if root[0] != "B" else "C") + root[1:]
    page.get_by_role("textbox", name="Signed checkpoint").fill("\n".join(lines))
    page.get_by_role("button", name="Check consistency").click()
    expect(page.locator("#consistency-result")).to_contain_text("not a checkpoint of this log")


def test_each_step_of_the_timeline_links_to_its_proven_entry(
    signed_in: Page, console: Console
) -> None:
    page = signed_in
    page.goto(f"{console.url}/console/incidents/{INCIDENT}")
    first = page.locator("#timeline a").first
    seq = int(first.inner_text().split()[-1])
    first.click()
    expect(page.get_by_role("heading", name=f"Event {seq}: incident.opened")).to_be_visible()
    expect(page.locator("#inclusion-result")).to_contain_text("Verified")
    proof = console.api("/v1/proofs/inclusion", index=seq - 1)
    expect(page.locator("#leaf-hash")).to_have_text(proof["leaf_hash"])
    keep_screenshot(page, "entry")


def test_the_disclosure_filter_gives_the_apis_rows(signed_in: Page, console: Console) -> None:
    page = signed_in
    page.get_by_role("link", name="Disclosures", exact=True).click()
    page.get_by_label("Recipient id").fill("rcp-helpline-desk")
    page.get_by_role("button", name="Show").click()
    rows = console.api("/v1/disclosures", recipient="rcp-helpline-desk", limit=1000)["items"]
    assert number(page, "#row-count") == len(rows) > 0
    page.get_by_label("Recipient id").fill("")
    page.get_by_label("Verdict").select_option("violations")
    page.get_by_role("button", name="Show").click()
    violations = console.api("/v1/disclosures", violations="true", limit=1000)["items"]
    assert number(page, "#row-count") == len(violations) > 0
    expect(page.locator("#disclosure-rows .badge.bad")).to_have_count(len(violations))
    keep_screenshot(page, "disclosures")


def test_an_overdue_request_shows_its_days_late(signed_in: Page, console: Console) -> None:
    page = signed_in
    (overdue, *_) = console.api("/v1/requests", overdue="true")
    page.goto(f"{console.url}/console/requests")
    page.get_by_role("link", name=overdue["request_id"]).click()
    expect(page.locator("#request-due")).to_have_text(f"overdue by {-overdue['days_left']} days")
    expect(page.locator("#request-status")).to_have_text(overdue["status"])
    expect(page.get_by_role("heading", name="Record the next step")).to_be_visible()
    keep_screenshot(page, "request")


def test_an_incidents_bundle_is_exported_and_downloaded(signed_in: Page, console: Console) -> None:
    page = signed_in
    page.get_by_role("link", name="Export").click()
    page.get_by_label("What it covers").select_option("incident")
    page.get_by_label("Incident id (for an incident)").fill(INCIDENT)
    page.get_by_label("Purpose").fill("the authority's file for the helpline breach")
    page.get_by_role("button", name="Start the export").click()
    expect(page.locator("#export-state")).to_have_text("done", timeout=60_000)
    with page.expect_download() as download:
        page.locator("#download").click()
    assert download.value.suggested_filename.endswith(".zip")
    keep_screenshot(page, "export")
