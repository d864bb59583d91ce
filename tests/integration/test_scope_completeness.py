"""Every scope's bundle holds the events that decide what its report says, and its report's rows
are the live read models' rows for that scope: on the examples, and on random logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, note, seed, settings
from hypothesis import strategies as st

from demo.dataset import default_anchor
from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.domain import stream_id
from ledger.export import ScopeNotFoundError, missing_scope
from ledger.verifier.entry import parse_body
from projections.queries import Queries
from projections.read_models import ReadModels
from tests import facts
from tests.cli_runner import run_cli
from tests.integration.scope_check import Desk, bundle_bodies, csv_rows
from tests.support.examples import EXAMPLES

INCIDENT = "inc-2026-003"
NORTHWIND = "rcp-northwind-cloud"
STEPS = (
    "incident.opened",
    "incident.assessed",
    "incident.contained",
    "incident.authority_notified",
    "incident.subjects_notified",
    "incident.closed",
)


@pytest.fixture
def desk(ledger: LedgerApplication, settings: Settings, tmp_path: Path) -> Iterator[Desk]:
    models = ReadModels(ledger, settings)
    out = tmp_path / "bundles"
    out.mkdir()
    try:
        yield Desk(ledger, settings, models, out)
    finally:
        models.close()


def import_examples(desk: Desk, *extra: dict[str, Any]) -> None:
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()
    desk.app.append([json.loads(line) for line in lines if line.strip()])
    if extra:
        desk.app.append(list(extra))
    desk.models.runner.catch_up()


def incident_steps(bundle: Path, incident_id: str) -> list[str]:
    return [
        body["type"]
        for body in bundle_bodies(bundle)
        if body["type"].startswith("incident.") and body["data"]["incident_id"] == incident_id
    ]


def test_a_processors_bundle_lists_every_incident_at_it_with_all_its_events(desk: Desk) -> None:
    import_examples(desk)
    bundle = desk.check({"kind": "recipient", "recipient_id": NORTHWIND}, [])
    assert incident_steps(bundle, INCIDENT) == list(STEPS)
    # The correction of the opening (its detection time) is in scope too.
    corrections = [b for b in bundle_bodies(bundle) if b["type"] == "correction.recorded"]
    assert f"incident:{INCIDENT}" in {c for b in corrections for c in b["data"]["concerns"]}
    (row,) = csv_rows(bundle, "incidents.csv")
    assert row["incident_id"] == INCIDENT and row["status"] == "closed"
    assert row["authority_deadline_status"] == "met"
    assert row["detected_at"] == "2026-06-09T16:55:00.000000Z"  # as corrected
    page = (bundle / "report.html").read_text(encoding="utf-8")
    assert "or whose assessment&#x27;s rule names it): 1; authority deadline missed: 0." in page


def test_a_subject_selected_by_an_incidents_rule_sees_it_in_bundle_and_history(
    desk: Desk,
) -> None:
    # user-31255's support ticket went to Northwind inside the rule's window; the assessment
    # does not name them.
    ticket = {
        "type": "disclosure.recorded",
        "event_id": "evt-ticket-31255",
        "occurred_at": "2026-05-15T10:00:00+09:00",
        "disclosure_id": "dsc-ticket-31255",
        "recipient_id": NORTHWIND,
        "kind": "sharing",
        "subjects": ["user-31255"],
        "data_categories": ["support.tickets"],
        "purpose": "customer_support",
        "legal_basis": "contract",
        "de_identified": False,
        "destination_country": "IE",
        "policy_version": "2026-03",
    }
    import_examples(desk, ticket)
    pseudonym = desk.pseudonym("user-31255")
    record = desk.models.incidents.get(INCIDENT, datetime.now(UTC))
    assert record is not None and record.affected_rule is not None
    assert pseudonym not in record.affected_subjects
    assert pseudonym in desk.models.incidents.subjects_by_rule(
        record.affected_rule, desk.models.disclosures
    )

    bundle = desk.check({"kind": "subject", "subject": pseudonym}, [pseudonym])
    assert [r["incident_id"] for r in csv_rows(bundle, "incidents.csv")] == [INCIDENT]
    assert incident_steps(bundle, INCIDENT) == list(STEPS)

    answer = Queries(desk.app, desk.models).history("user-31255")
    steps = [e["type"] for e in answer["events"] if e["type"].startswith("incident.")]
    assert steps == list(STEPS)
    # A subject neither named nor selected sees no incident.
    other = desk.pseudonym("user-58830")
    assert not csv_rows(desk.check({"kind": "subject", "subject": other}, [other]), "incidents.csv")
    assert not [
        e
        for e in Queries(desk.app, desk.models).history("user-58830")["events"]
        if e["type"].startswith("incident.")
    ]


def test_every_scope_of_the_examples_reports_what_the_read_models_say(desk: Desk) -> None:
    import_examples(desk)
    users = ["user-10482", "user-20917", "user-31255", "user-44120", "user-58830"]
    subjects = [desk.pseudonym(u) for u in users]
    for subject in subjects:
        desk.check({"kind": "subject", "subject": subject}, subjects)
    for recipient in sorted(
        {b["data"]["recipient_id"] for b in all_bodies(desk) if b["type"] == "disclosure.recorded"}
    ):
        desk.check({"kind": "recipient", "recipient_id": recipient}, subjects)
    desk.check({"kind": "incident", "incident_id": INCIDENT}, subjects)
    desk.check(
        {"kind": "period", "from": "2026-04-01T00:00:00+09:00", "to": "2026-06-01T00:00:00+09:00"},
        subjects,
    )
    desk.check({"kind": "all"}, subjects)


def all_bodies(desk: Desk) -> list[dict[str, Any]]:
    return [parse_body(r.body) for r in desk.app.iter_records()]


# -- random logs ---------------------------------------------------------------------------------

BASE = datetime(2026, 1, 5, tzinfo=UTC)
PURPOSES = ("marketing_email", "usage_analytics", "service_provision")
BASIS = {
    "marketing_email": "consent",
    "usage_analytics": "consent",
    "service_provision": "contract",
}


def at(hour: int) -> str:
    return (BASE + timedelta(hours=hour)).isoformat()


@dataclass(frozen=True)
class Plan:
    consents: list[tuple[int, int, str, int]]
    """(subject, purpose, decision, hour)"""
    disclosures: list[tuple[int, frozenset[int], int, int, bool, bool]]
    """(recipient, subjects, purpose, hour, other basis, delegated)"""
    incidents: list[dict[str, Any]]
    requests: list[tuple[int, int, bool]]
    """(subject, hour, fulfilled)"""
    moved: list[tuple[int, int]]
    """(disclosure index, new hour): corrections of a disclosure's time"""
    period: tuple[int, int]


hours = st.integers(0, 600)
subject_sets = st.frozensets(st.integers(0, 3), min_size=1, max_size=3)
rules = st.one_of(
    st.none(),
    st.tuples(st.integers(0, 2), hours, st.integers(1, 400)),
)
incident_plans = st.fixed_dictionaries(
    {
        "recipient": st.one_of(st.none(), st.integers(0, 2)),
        "hour": hours,
        "named": st.frozensets(st.integers(0, 3), max_size=2),
        "rule": rules,
        "reassessed": rules,
        "corrected_rule": rules,
        "risk": st.sampled_from(["unlikely", "risk", "high_risk"]),
        "steps": st.lists(
            st.sampled_from(["contained", "authority_notified", "subjects_notified"]),
            max_size=3,
            unique=True,
        ),
        "notified_after": st.integers(1, 120),
        "closed": st.booleans(),
    }
)
plans = st.builds(
    Plan,
    consents=st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 1),  # the purposes that rest on consent
            st.sampled_from(["given", "given", "withdrawn", "refused"]),
            hours,
        ),
        max_size=8,
    ),
    disclosures=st.lists(
        st.tuples(
            st.integers(0, 2), subject_sets, st.integers(0, 2), hours, st.booleans(), st.booleans()
        ),
        min_size=1,
        max_size=6,
    ),
    incidents=st.lists(incident_plans, min_size=1, max_size=2),
    requests=st.lists(st.tuples(st.integers(0, 3), hours, st.booleans()), max_size=2),
    moved=st.lists(st.tuples(st.integers(0, 5), hours), max_size=2),
    period=st.tuples(hours, st.integers(1, 300)),
)


def build(desk: Desk, plan: Plan, version: str) -> tuple[list[str], list[str], list[str]]:
    """Record the plan through the application: (subject refs, recipient ids, incident ids)."""
    refs = [facts.ref("user") for _ in range(4)]
    recipients = [facts.ref("rcpt") for _ in range(3)]  # the third is never registered
    append = desk.app.append
    append([facts.recipient(recipients[0]), facts.recipient(recipients[1], role="third_party")])
    for subject, purpose, decision, hour in plan.consents:
        append(
            [
                facts.consent(
                    refs[subject],
                    version,
                    kind=decision,
                    purposes=[PURPOSES[purpose]],
                    occurred_at=at(hour),
                )
            ]
        )
    disclosures = []
    for recipient, subjects, purpose, hour, other_basis, delegated in plan.disclosures:
        name = PURPOSES[purpose]
        fact = facts.disclosure(
            recipients[recipient],
            [refs[s] for s in sorted(subjects)],
            version,
            occurred_at=at(hour),
            purpose=name,
            legal_basis="legitimate_interest" if other_basis else BASIS[name],
            kind="delegated_processing" if delegated else "sharing",
        )
        append([fact])
        disclosures.append(fact)
    for index, hour in plan.moved:
        moved = disclosures[index % len(disclosures)]
        append([correction(moved["event_id"], {"occurred_at": at(hour)})])
    incidents = []
    for spec in plan.incidents:
        incident_id = facts.ref("inc")
        incidents.append(incident_id)
        opened = facts.incident(incident_id)
        opened["occurred_at"] = opened["detected_at"] = at(spec["hour"])
        if spec["recipient"] is not None:
            opened["recipient_id"] = recipients[spec["recipient"]]
        append([opened])
        hour = spec["hour"] + 1
        assessments = []
        for rule in (spec["rule"], spec["reassessed"]):
            assessed = {
                "type": "incident.assessed",
                "event_id": facts.ref("evt"),
                "occurred_at": at(hour),
                "incident_id": incident_id,
                "risk": spec["risk"],
                "data_categories": ["contact"],
                "likely_consequences": "Phishing e-mails",
                "affected_subjects": [refs[s] for s in sorted(spec["named"])],
            }
            if rule is not None:
                recipient, start, length = rule
                assessed["affected_rule"] = {
                    "recipient_id": recipients[recipient],
                    "disclosed_from": at(start),
                    "disclosed_to": at(start + length),
                }
            append([assessed])
            assessments.append(assessed)
            hour += 1
            if spec["reassessed"] is None:
                break
        if spec["corrected_rule"] is not None:
            recipient, start, length = spec["corrected_rule"]
            rule_fields = {
                "recipient_id": recipients[recipient],
                "disclosed_from": at(start),
                "disclosed_to": at(start + length),
            }
            append([correction(assessments[-1]["event_id"], {"affected_rule": rule_fields})])
        for step in spec["steps"]:
            fields = STEP_FIELDS[step]
            append(
                [
                    {
                        "type": f"incident.{step}",
                        "event_id": facts.ref("evt"),
                        "occurred_at": at(spec["hour"] + spec["notified_after"]),
                        "incident_id": incident_id,
                        **fields,
                    }
                ]
            )
        if spec["closed"]:
            append(
                [
                    {
                        "type": "incident.closed",
                        "event_id": facts.ref("evt"),
                        "occurred_at": at(spec["hour"] + spec["notified_after"] + 1),
                        "incident_id": incident_id,
                        "resolution": "Fixed",
                    }
                ]
            )
    for subject, hour, fulfilled in plan.requests:
        received = facts.request(refs[subject], occurred_at=at(hour))
        append([received])
        if fulfilled:
            append(
                [
                    {
                        "type": "request.fulfilled",
                        "event_id": facts.ref("evt"),
                        "occurred_at": at(hour + 24),
                        "request_id": received["request_id"],
                        "subject": refs[subject],
                    }
                ]
            )
    return refs, recipients, incidents


STEP_FIELDS: dict[str, dict[str, Any]] = {
    "contained": {"measures": "Bucket closed"},
    "authority_notified": {"authority": "PIPC", "dpo_contact": "dpo@example.com"},
    "subjects_notified": {"channel": "email", "subject_count": 2},
}


def correction(event_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "correction.recorded",
        "event_id": facts.ref("evt"),
        "occurred_at": facts.now(),
        "corrects_event_id": event_id,
        "reason": "recorded wrongly",
        "corrected_fields": fields,
    }


@pytest.fixture
def policy_version(ledger: LedgerApplication) -> str:
    pol = facts.policy(effective_at=BASE.isoformat())
    ledger.append([pol])
    return str(pol["version"])


@seed(20261202)
@settings(
    max_examples=15,
    deadline=None,
    # No shrinking: each example exports and verifies some twenty bundles. The plan is noted.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=plans)
def test_every_scope_of_a_random_log_reports_what_the_read_models_say(
    desk: Desk, policy_version: str, plan: Plan
) -> None:
    # The examples share one ledger: each records its own subjects, recipients and incidents.
    note(repr(plan))
    refs, recipients, incidents = build(desk, plan, policy_version)
    desk.models.runner.catch_up()
    subjects = [desk.pseudonym(r) for r in refs]

    def check(scope: dict[str, Any], event_chunk: int = 1024) -> None:
        """A name drawn but never recorded (no fact named it) is refused, not exported."""
        if missing_scope(desk.app, scope) is not None:
            with pytest.raises(ScopeNotFoundError):
                desk.export(scope)
            return
        desk.check(scope, subjects, event_chunk=event_chunk)

    for subject in subjects:
        check({"kind": "subject", "subject": subject}, event_chunk=3)
    for recipient in recipients:
        check({"kind": "recipient", "recipient_id": recipient}, event_chunk=3)
    for incident_id in incidents:
        check({"kind": "incident", "incident_id": incident_id})
    start, length = plan.period
    desk.check({"kind": "period", "from": at(start), "to": at(start + length)}, subjects)
    desk.check({"kind": "all"}, subjects)


# -- the demo ------------------------------------------------------------------------------------


def test_the_demos_incident_is_in_its_processors_and_its_subjects_bundles(desk: Desk) -> None:
    anchor = default_anchor() - timedelta(days=2)
    loaded = run_cli(desk.settings, "demo", "--users", "40", "--anchor", anchor.isoformat())
    assert loaded.exit_code == 0, loaded.output
    desk.models.runner.catch_up()
    (record,) = desk.models.incidents.list(datetime.now(UTC))
    assert record.recipient_id is not None and record.affected_subjects
    bundle = desk.check({"kind": "recipient", "recipient_id": record.recipient_id}, [])
    steps = incident_steps(bundle, record.incident_id)
    assert steps[0] == "incident.opened" and len(steps) == len(
        desk.app.ledger.select_stream_records(str(stream_id("incident", record.incident_id)))
    )
    subject = record.affected_subjects[0]
    bundle = desk.check({"kind": "subject", "subject": subject}, [subject])
    assert [r["incident_id"] for r in csv_rows(bundle, "incidents.csv")] == [record.incident_id]
    assert incident_steps(bundle, record.incident_id) == steps
