"""Retention: a dry run lists, a real run erases only what is due, a legal hold is respected."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

import projections.retention_job
from api.http.app import ServerSettings, create_app
from ledger.application import LedgerApplication
from ledger.config import Settings, SettingsError
from ledger.errors import LedgerError
from ledger.verifier.consent_rules import Decision, Policy
from ledger.verifier.times import parse_utc
from projections.read_models import ReadModels, ReadModelSettings
from projections.retention import Retention, RetentionView
from projections.retention_job import run_retention
from projections.retention_rules import IncidentFacts, RequestFacts, holds_of, retention_of
from projections.runner import table_digest
from tests import facts
from tests.cli_runner import run_cli as run

NOW = datetime.now(UTC)
PURPOSES = [
    {"id": "marketing_email", "name": "Marketing", "legal_basis": "consent", "retention_days": 30},
    {"id": "surveys", "name": "Surveys", "legal_basis": "consent", "retention_days": 10},
    {"id": "service_provision", "name": "Service", "legal_basis": "contract", "retention_days": 90},
]


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def at(fact: dict[str, Any], days_ago: float) -> dict[str, Any]:
    """The fact, back-dated: the ledger flags it and records it."""
    return dict(fact, occurred_at=ago(days_ago))


@dataclass
class World:
    """Subjects by role, as the emitter knows them, and their pseudonyms."""

    version: str
    recipient: str
    refs: dict[str, str]
    pseudonyms: dict[str, str]
    incident: str
    withdrawal: str
    """The event id of the recent subject's withdrawal."""

    def of(self, *roles: str) -> set[str]:
        return {self.pseudonyms[role] for role in roles}


DUE = ("withdrawn_long_ago", "disclosed_only")
HELD = ("open_request", "refused_request", "named_by_incident", "selected_by_incident")
KEPT = ("valid", "withdrawn_recently")


def populate(app: LedgerApplication) -> World:
    """The subjects of :data:`DUE`, :data:`HELD` and :data:`KEPT`."""
    pol = facts.policy(effective_at="2020-01-01T00:00:00Z", purposes=PURPOSES)
    version, recipient, incident = pol["version"], facts.ref("rcpt"), facts.ref("inc")
    refs = {role: facts.ref(role.replace("_", "-")) for role in (*DUE, *HELD, *KEPT)}

    def given(role: str, days_ago: float) -> dict[str, Any]:
        return at(facts.consent(refs[role], version), days_ago)

    def withdrawn(role: str, days_ago: float) -> dict[str, Any]:
        return at(facts.consent(refs[role], version, "withdrawn"), days_ago)

    recent_withdrawal = withdrawn("withdrawn_recently", 5)
    refused_request = facts.ref("req")
    step = {"subject": refs["refused_request"], "request_id": refused_request}
    items: list[dict[str, Any]] = [
        at(pol, 600),
        at(facts.recipient(recipient), 600),
        # due: withdrawn 400 days ago (30-day period)
        given("withdrawn_long_ago", 500),
        withdrawn("withdrawn_long_ago", 400),
        # kept: consent valid; withdrawn 5 days ago
        given("valid", 500),
        given("withdrawn_recently", 500),
        recent_withdrawal,
        # held: each due, but for its hold
        given("open_request", 500),
        withdrawn("open_request", 400),
        at(facts.request(refs["open_request"]), 200),
        given("refused_request", 500),
        withdrawn("refused_request", 400),
        at(facts.request(refs["refused_request"], refused_request, kind="erasure"), 300),
        at(
            {
                "type": "request.refused",
                "event_id": facts.ref("evt"),
                "occurred_at": facts.now(),
                **step,
                "ground": "legal_claims",
                "explanation": "Needed for a pending claim",
            },
            299,
        ),
        given("named_by_incident", 500),
        withdrawn("named_by_incident", 400),
        given("selected_by_incident", 500),
        at(facts.disclosure(recipient, [refs["selected_by_incident"]], version), 450),
        withdrawn("selected_by_incident", 400),
        facts.incident(incident),
        {
            "type": "incident.assessed",
            "event_id": facts.ref("evt"),
            "occurred_at": facts.now(),
            "incident_id": incident,
            "risk": "risk",
            "data_categories": ["contact"],
            "likely_consequences": "Unwanted e-mail",
            "affected_subjects": [refs["named_by_incident"]],
            "affected_rule": {
                "recipient_id": recipient,
                "disclosed_from": ago(460),
                "disclosed_to": ago(440),
            },
        },
    ]
    # due: known from a disclosure only; the latest version's longest period (90 days)
    items.append(at(facts.disclosure(recipient, [refs["disclosed_only"]], version), 400))
    app.append(items)
    return World(
        version,
        recipient,
        refs,
        {role: app.subject_keys.pseudonym(ref) for role, ref in refs.items()},
        incident,
        recent_withdrawal["event_id"],
    )


def erased_events(app: LedgerApplication) -> list[Any]:
    return [e for e in (app.decode(r) for r in app.iter_records()) if e.type == "subject.erased"]


def test_a_dry_run_lists_the_due_and_the_held_and_changes_nothing(
    ledger: LedgerApplication, models: ReadModels
) -> None:
    world = populate(ledger)
    head = ledger.head()
    outcome = run_retention(ledger, models, datetime.now(UTC), dry_run=True)
    assert {s.subject for s in outcome.due} == world.of(*DUE)
    assert {s.subject for s in outcome.held} == world.of(*HELD)
    assert outcome.erased == [] and ledger.head() == head
    assert ledger.subject_keys.store.erased(world.pseudonyms.values()) == set()
    holds = {s.subject: [(h.kind, h.until is None) for h in s.holds] for s in outcome.held}
    assert holds == {
        world.pseudonyms["open_request"]: [("open_request", True)],
        world.pseudonyms["refused_request"]: [("refused_request", False)],
        world.pseudonyms["named_by_incident"]: [("incident", True)],
        world.pseudonyms["selected_by_incident"]: [("incident", True)],
    }
    [long_ago] = [s for s in outcome.due if s.subject == world.pseudonyms["withdrawn_long_ago"]]
    [purpose] = long_ago.purposes
    assert (purpose.purpose, purpose.status, purpose.retention_days) == (
        "marketing_email",
        "withdrawn",
        30,
    )
    assert long_ago.due_at == purpose.period_end  # the last event is the withdrawal
    [disclosed] = [s for s in outcome.due if s.subject == world.pseudonyms["disclosed_only"]]
    assert disclosed.purposes == () and disclosed.activity_days == 90


def test_a_real_run_erases_only_what_is_due_then_a_closed_incident_releases_its_hold(
    ledger: LedgerApplication, models: ReadModels
) -> None:
    world = populate(ledger)
    outcome = run_retention(ledger, models, datetime.now(UTC), dry_run=False)
    assert {e.subject for e in outcome.erased} == world.of(*DUE)
    assert {s.subject for s in outcome.held} == world.of(*HELD)
    assert outcome.skipped == [] and outcome.failed == []
    # Each erasure is recorded with its ground and why, in times and purposes only.
    events = {e.data["subject"]: e for e in erased_events(ledger)}
    assert set(events) == world.of(*DUE)
    long_ago = events[world.pseudonyms["withdrawn_long_ago"]]
    assert long_ago.data["ground"] == "retention_ended"
    details = long_ago.data["details"]
    assert set(details) == {"due_at", "purposes", "last_event_period_end"}
    assert set(details["purposes"]) == {"marketing_email"}
    assert details["due_at"] == details["purposes"]["marketing_email"]
    assert parse_utc(details["due_at"]) < ledger.clock()
    recorded = orjson.dumps([e.data for e in events.values()]).decode()
    assert not any(ref in recorded for ref in world.refs.values())  # no personal data
    everyone = world.pseudonyms.values()
    assert ledger.subject_keys.store.erased(everyone) == world.of(*DUE)

    # A second run finds nothing more to erase.
    again = run_retention(ledger, models, datetime.now(UTC), dry_run=False)
    assert again.erased == [] and again.due == []
    assert {s.subject for s in again.held} == world.of(*HELD)

    # The incident is closed: what it held is erased by the next run.
    ledger.append(
        [
            {
                "type": "incident.closed",
                "event_id": facts.ref("evt"),
                "occurred_at": facts.now(),
                "incident_id": world.incident,
                "resolution": "Bucket locked down; access logs show no download",
            }
        ]
    )
    released = run_retention(ledger, models, datetime.now(UTC), dry_run=False)
    assert {e.subject for e in released.erased} == world.of(
        "named_by_incident", "selected_by_incident"
    )
    assert {s.subject for s in released.held} == world.of("open_request", "refused_request")
    assert ledger.subject_keys.store.erased(everyone) == world.of(
        *DUE, "named_by_incident", "selected_by_incident"
    )


def test_the_clock_moves_with_at_and_the_hold_days_and_corrections_count(
    ledger: LedgerApplication, models: ReadModels, settings: Settings
) -> None:
    world = populate(ledger)
    models.runner.catch_up()
    recent = world.pseudonyms["withdrawn_recently"]
    later = models.retention.review(NOW + timedelta(days=40))
    assert recent in {s.subject for s in later.due}
    assert world.pseudonyms["valid"] not in {s.subject for s in later.due + later.held}
    # 400 days on, the refusal's hold (365 days) is over; with a 200-day hold it is over now.
    far = models.retention.review(NOW + timedelta(days=400))
    assert world.pseudonyms["refused_request"] in {s.subject for s in far.due}
    short = RetentionView(models.db, legal_hold_days=200).review(datetime.now(UTC))
    assert world.pseudonyms["refused_request"] in {s.subject for s in short.due}
    # A correction moves the withdrawal 395 days back: the subject is due now.
    ledger.append(
        [
            {
                "type": "correction.recorded",
                "event_id": facts.ref("evt"),
                "occurred_at": facts.now(),
                "corrects_event_id": world.withdrawal,
                "reason": "The unsubscribe was processed late",
                "corrected_fields": {"occurred_at": ago(400)},
            }
        ]
    )
    models.runner.catch_up()
    assert recent in {s.subject for s in models.retention.review(datetime.now(UTC)).due}
    # Rebuilt from the log, the read model holds the same rows.
    tables = list(Retention.tables)
    before = table_digest(models.db, tables)
    models.runner.rebuild([Retention.name])
    assert table_digest(models.db, tables) == before


def test_an_erasure_by_another_run_meanwhile_is_skipped_not_fatal(
    ledger: LedgerApplication, models: ReadModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = populate(ledger)
    models.runner.catch_up()
    target = world.pseudonyms["withdrawn_long_ago"]
    ledger.erase(pseudonym=target)  # another process, which this run's view has not seen yet
    monkeypatch.setattr(models.runner, "catch_up", lambda *args, **kwargs: 0)
    outcome = run_retention(ledger, models, datetime.now(UTC), dry_run=False)
    assert outcome.skipped == [(target, "erased already (by another run)")]
    assert {e.subject for e in outcome.erased} == world.of("disclosed_only")
    assert outcome.failed == []


def test_a_real_run_refuses_a_later_moment(ledger: LedgerApplication, models: ReadModels) -> None:
    populate(ledger)
    with pytest.raises(LedgerError, match="uses the present"):
        run_retention(ledger, models, NOW + timedelta(days=40), dry_run=False)
    assert erased_events(ledger) == []


def test_the_command_lists_then_erases(ledger: LedgerApplication, settings: Settings) -> None:
    world = populate(ledger)
    dry = run(settings, "retention", "run", "--dry-run")
    assert dry.exit_code == 0, dry.output
    for role in (*DUE, *HELD):
        assert world.pseudonyms[role] in dry.output
    for ref in world.refs.values():
        assert ref not in dry.output  # pseudonyms only
    assert "would erase 2 subject(s); 4 held" in dry.output
    assert "request" in dry.output and "is open" in dry.output
    assert world.pseudonyms["withdrawn_recently"] not in dry.output

    moment = (NOW + timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%S")
    later = orjson.loads(
        run(settings, "retention", "run", "--dry-run", "--json", "--at", moment).output
    )
    assert world.pseudonyms["withdrawn_recently"] in {s["subject"] for s in later["due"]}
    assert later["dry_run"] is True and later["erased"] == []
    early = run(settings, "retention", "run", "--at", "2099-01-01")
    assert early.exit_code == 2 and "needs --dry-run" in early.output

    real = run(settings, "retention", "run", "--json")
    assert real.exit_code == 0, real.output
    done = orjson.loads(real.output)
    assert {e["subject"] for e in done["erased"]} == world.of(*DUE)
    assert {s["subject"] for s in done["held"]} == world.of(*HELD)
    text = run(settings, "retention", "run")
    assert text.exit_code == 0 and "erased 0 subject(s); 4 held" in text.output


def test_settings_are_checked_naming_the_variable() -> None:
    assert ReadModelSettings.from_env({}).legal_hold_days == 365
    assert (
        ReadModelSettings.from_env({"CONSENT_LEDGER_LEGAL_HOLD_DAYS": "30"}).legal_hold_days == 30
    )
    with pytest.raises(SettingsError, match="CONSENT_LEDGER_LEGAL_HOLD_DAYS"):
        ReadModelSettings.from_env({"CONSENT_LEDGER_LEGAL_HOLD_DAYS": "a year"})
    assert ServerSettings.from_env({}).retention_interval_hours == 24
    off = ServerSettings.from_env({"CONSENT_LEDGER_RETENTION_INTERVAL_HOURS": "0"})
    assert off.retention_interval_hours == 0
    for bad in ("-1", "daily"):
        with pytest.raises(SettingsError, match="CONSENT_LEDGER_RETENTION_INTERVAL_HOURS"):
            ServerSettings.from_env({"CONSENT_LEDGER_RETENTION_INTERVAL_HOURS": bad})


def test_the_server_runs_retention_on_its_schedule(
    ledger: LedgerApplication, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = populate(ledger)
    monkeypatch.setattr(projections.retention_job, "RETENTION_FIRST_RUN", 0.0)
    due = world.of(*DUE)

    async def serve() -> set[str]:
        server = ServerSettings(projections=True, signer=False, retention_interval_hours=1)
        app = create_app(settings, server=server)
        async with app.router.lifespan_context(app):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if ledger.subject_keys.store.erased(due) == due:
                    break
                await asyncio.sleep(0.05)
        return ledger.subject_keys.store.erased(world.pseudonyms.values())

    assert asyncio.run(serve()) == due


# -- the rule, without storage -----------------------------------------------------------------

POLICIES = {"v1": Policy("v1", "2020-01-01T00:00:00.000000Z", False, None, 1)}
PERIODS = {("v1", "marketing_email"): 30, ("v1", "service_provision"): 90}


def decision(kind: str, when: str, seq: int) -> Decision:
    return Decision(seq, when, kind, "v1", None, False)


def test_the_rule_waits_for_every_purpose_and_the_last_event() -> None:
    decided = {"marketing_email": [decision("given", "2024-01-01T00:00:00.000000Z", 2)]}
    common: dict[str, Any] = {
        "policies": POLICIES,
        "periods": PERIODS,
        "age": None,
        "default_minimum_age": 18,
        "last_event_at": "2024-01-01T00:00:00.000000Z",
    }
    moment = "2026-01-01T00:00:00.000000Z"
    valid = retention_of("s", moment, decisions=decided, **common)
    assert valid.due_at is None and not valid.due and valid.purposes[0].valid
    withdrawn = {
        "marketing_email": [
            *decided["marketing_email"],
            decision("withdrawn", "2024-02-01T00:00:00.000000Z", 3),
        ]
    }
    ended = retention_of("s", moment, decisions=withdrawn, **common)
    assert ended.due_at == "2024-03-02T00:00:00.000000Z" and ended.erasable
    # A later disclosure for a longer purpose keeps the data for that purpose's period.
    kept = retention_of(
        "s",
        moment,
        decisions=withdrawn,
        **dict(common, last_event_at="2025-12-01T00:00:00.000000Z"),
        disclosed=[("v1", "service_provision")],
    )
    assert kept.due_at == "2026-03-01T00:00:00.000000Z" and not kept.due
    # The withdrawal cites a version that shortened the period: that version's period counts.
    shorter = {**PERIODS, ("v2", "marketing_email"): 10}
    v2 = Policy("v2", "2023-01-01T00:00:00.000000Z", False, None, 5)
    under_v2 = {
        "marketing_email": [
            *decided["marketing_email"],
            Decision(3, "2024-02-01T00:00:00.000000Z", "withdrawn", "v2", None, False),
        ]
    }
    quicker = retention_of(
        "s",
        moment,
        decisions=under_v2,
        **dict(common, periods=shorter, policies={**POLICIES, "v2": v2}),
    )
    assert quicker.purposes[0].period_end == "2024-02-11T00:00:00.000000Z"
    # Known from requests only: the longest period of the latest policy version.
    unknown = retention_of("s", moment, decisions={}, **common)
    assert unknown.activity_days == 90 and unknown.due


def test_holds_end_when_their_request_or_incident_does() -> None:
    def day(text: str) -> str:
        return f"{text}T00:00:00.000000Z"

    requests = [
        RequestFacts("r1", day("2025-01-01"), "request.fulfilled", day("2025-01-02")),
        RequestFacts("r2", day("2025-01-01"), "request.refused", day("2025-06-01")),
        RequestFacts("r3", day("2025-12-01"), None, None),
        RequestFacts("r4", day("2026-02-01"), None, None),  # after the moment asked about
    ]
    window = ("rc", day("2024-01-01"), day("2024-02-01"))
    incidents = [
        IncidentFacts("i1", day("2025-01-01"), day("2025-02-01"), frozenset({"s"}), ()),
        IncidentFacts("i2", day("2025-01-01"), None, frozenset(), (window,)),
        IncidentFacts("i3", day("2025-01-01"), None, frozenset({"other"}), ()),
    ]
    holds = holds_of(
        "s",
        day("2026-01-01"),
        requests=requests,
        incidents=incidents,
        disclosures=[("rc", day("2024-01-15"))],
        legal_hold_days=365,
    )
    assert [(h.kind, h.ref, h.until) for h in holds] == [
        ("refused_request", "r2", day("2026-06-01")),
        ("open_request", "r3", None),
        ("incident", "i2", None),
    ]
