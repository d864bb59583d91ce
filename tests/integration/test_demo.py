"""`consent-ledger demo` on both backends: the read models show what the generator promised."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from demo.dataset import VIOLATIONS, DemoDataSet, default_anchor, generate
from ledger.application import LedgerApplication
from ledger.config import Settings, open_ledger
from projections.disclosures import DisclosureRow
from projections.read_models import ReadModels
from tests import facts
from tests.cli_runner import run_cli as run

USERS = 60
ANCHOR = default_anchor() - timedelta(days=2)
"""Two days ago: the CLI must take an anchor, and "now" is a little after it."""


@pytest.fixture
def loaded(settings: Settings) -> Iterator[tuple[DemoDataSet, LedgerApplication, ReadModels]]:
    result = run(settings, "demo", "--users", str(USERS), "--anchor", ANCHOR.isoformat())
    assert result.exit_code == 0, result.output
    data = generate(USERS, anchor=ANCHOR)
    assert f"{len(data.facts)} new, 0 recorded before" in result.output
    assert "(as planted)" in result.output
    app = open_ledger(settings)
    models = ReadModels(app, settings)
    try:
        yield data, app, models
    finally:
        models.close()
        app.close()


def all_rows(models: ReadModels) -> list[DisclosureRow]:
    rows: list[DisclosureRow] = []
    after = None
    while True:
        page = models.disclosures.find(after=after)
        rows += page
        if len(page) < 1000:
            return rows
        after = (page[-1].occurred_at, page[-1].seq, page[-1].subject)


def test_the_disclosure_history_finds_exactly_the_planted_violations(
    loaded: tuple[DemoDataSet, LedgerApplication, ReadModels],
) -> None:
    data, app, models = loaded
    rows = all_rows(models)
    assert dict(Counter(row.verdict for row in rows)) == data.verdicts
    pseudonym = app.subject_keys.pseudonym
    violations = {(r.disclosure_id, r.subject, r.verdict) for r in rows if r.violation}
    planted = {(p.disclosure_id, pseudonym(p.subject), p.verdict) for p in data.planted}
    assert violations == planted
    assert {p.verdict for p in data.planted} == set(VIOLATIONS)


def test_the_overdue_request_is_overdue_and_the_others_are_not(
    loaded: tuple[DemoDataSet, LedgerApplication, ReadModels],
) -> None:
    data, _, models = loaded
    now = datetime.now(UTC)
    assert [r.request_id for r in models.requests.list(now, overdue_only=True)] == [
        data.overdue_request_id
    ]
    open_ids = [r.request_id for r in models.requests.list(now) if r.is_open]
    assert sorted(open_ids) == sorted(data.open_request_ids)
    refused = [r for r in models.requests.list(now) if r.status == "refused"]
    assert sorted(r.refusal_ground or "" for r in refused) == [
        "legal_obligation_to_retain",
        "unnecessarily_repetitive",
    ]


def test_the_incident_has_its_corrected_clock_and_was_notified_in_time(
    loaded: tuple[DemoDataSet, LedgerApplication, ReadModels],
) -> None:
    data, _, models = loaded
    incident = models.incidents.get(data.incident_id, datetime.now(UTC))
    assert incident is not None
    assert incident.detected_at == data.incident_detected_at
    assert incident.authority_deadline == data.incident_detected_at + timedelta(hours=72)
    assert incident.authority_notified_at is not None
    assert not incident.authority_notified_late and not incident.authority_overdue
    assert incident.risk == "high_risk" and incident.contained_at is not None
    assert incident.article_33_3["missing"] == []
    assert incident.affected_subjects


def test_the_material_change_left_some_consent_awaiting_renewal(
    loaded: tuple[DemoDataSet, LedgerApplication, ReadModels],
) -> None:
    data, app, models = loaded
    now = datetime.now(UTC)
    pending = models.consent.state(app.subject_keys.pseudonym(data.renewal_required[0]), now)
    assert "renewal_required" in {s.verdict.status for s in pending}
    renewed = models.consent.state(app.subject_keys.pseudonym(data.renewed[0]), now)
    assert any(s.verdict.valid and s.verdict.policy_version == "v2.0" for s in renewed)
    minor = models.consent.state(app.subject_keys.pseudonym(data.minors[0]), now)
    assert any(s.verdict.valid for s in minor)  # given by a parent


def test_a_rerun_adds_nothing_and_finds_the_anchor_it_was_loaded_with(
    settings: Settings, loaded: tuple[DemoDataSet, LedgerApplication, ReadModels]
) -> None:
    data, app, _ = loaded
    head = app.head()
    again = run(settings, "demo", "--users", str(USERS))
    assert again.exit_code == 0, again.output
    assert f"0 new, {len(data.facts)} recorded before" in again.output
    assert app.head() == head
    other = run(settings, "demo", "--users", str(USERS), "--anchor", default_anchor().isoformat())
    assert other.exit_code != 0 and f"anchored at {ANCHOR}" in other.output


def test_the_demo_refuses_a_ledger_that_holds_other_events(settings: Settings) -> None:
    app = open_ledger(settings)
    try:
        app.append([facts.policy()])
    finally:
        app.close()
    result = run(settings, "demo", "--users", str(USERS))
    assert result.exit_code != 0 and "needs an empty ledger" in result.output
