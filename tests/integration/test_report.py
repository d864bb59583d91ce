"""The bundle's human report says what the read models say, for every scope, and nothing else.

The ledger holds examples/events.jsonl and a few planted facts: a disclosure to a terminated
recipient, one to a recipient never registered, one to a recipient whose name is hostile
markup, a back-dated withdrawal, and a correction that moves a disclosure before its recipient
was registered. The report is rendered from the log's events as the bundle verifier would
give them (signed data, and data as shown) and compared with the read models.
"""

from __future__ import annotations

import csv
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.recorder import LogRecord
from ledger.verifier.report import ReportError, ReportEvent, write_report
from ledger.verifier.times import parse_utc
from projections.consent_state import ConsentState, ConsentStateView
from projections.disclosures import DisclosureHistory, DisclosureHistoryView, DisclosureRow
from projections.incidents import IncidentRegister, IncidentRegisterView
from projections.requests import RequestRegister, RequestRegisterView
from projections.runner import ProjectionRunner
from tests.integration.projection_fixtures import projection_database
from tests.support.examples import example_lines

HOSTILE = '<script>alert("x")</script> & Co'
USERS = ("user-10482", "user-20917", "user-31255", "user-44120", "user-58830")
RECIPIENTS = (
    "rcp-northwind-cloud",
    "rcp-brightline-ads",
    "rcp-tellus-sms",
    "rcp-knpa-cyber",
    "rcp-example-japan",
    "rcp-hostile",
    "rcp-never-registered",
)


def planted() -> list[dict[str, Any]]:
    def disclosure(event_id: str, recipient_id: str, at: str, **fields: Any) -> dict[str, Any]:
        return {
            "type": "disclosure.recorded",
            "event_id": event_id,
            "occurred_at": at,
            "disclosure_id": f"dsc-{event_id}",
            "recipient_id": recipient_id,
            "kind": "sharing",
            "subjects": ["user-20917"],
            "data_categories": ["contact.phone"],
            "purpose": "marketing_sms",
            "legal_basis": "consent",
            "de_identified": False,
            "destination_country": "KR",
            "policy_version": "2026-03",
            **fields,
        }

    return [
        # The SMS processor was terminated on 2026-08-31.
        disclosure("plant-1", "rcp-tellus-sms", "2026-09-05T10:00:00+09:00"),
        disclosure("plant-2", "rcp-never-registered", "2026-04-05T10:00:00+09:00"),
        {
            "type": "recipient.registered",
            "event_id": "plant-3",
            "occurred_at": "2026-04-01T10:00:00+09:00",
            "recipient_id": "rcp-hostile",
            "name": HOSTILE,
            "role": "third_party",
            "country": "US",
        },
        # user-10482 withdrew marketing e-mail on 2026-04-02: a violation.
        disclosure(
            "plant-4",
            "rcp-hostile",
            "2026-04-20T10:00:00+09:00",
            subjects=["user-10482", "user-44120"],
            purpose="marketing_email",
            data_categories=["contact.email"],
        ),
        # Recorded after the April disclosure to Northwind, it happened before it.
        {
            "type": "consent.withdrawn",
            "event_id": "plant-5",
            "occurred_at": "2026-04-15T10:00:00+09:00",
            "subject": "user-20917",
            "purposes": ["usage_analytics"],
            "policy_version": "2026-03",
            "collection_method": "mobile_app",
        },
        # Within the window of the incident's rule: user-31255 is affected, though not named.
        disclosure(
            "plant-7",
            "rcp-northwind-cloud",
            "2026-05-15T10:00:00+09:00",
            subjects=["user-31255"],
            purpose="customer_support",
            legal_basis="contract",
            data_categories=["support.tickets"],
            destination_country="IE",
        ),
        # A correction of a registration after the termination keeps the termination.
        {
            "type": "correction.recorded",
            "event_id": "plant-8",
            "occurred_at": "2026-10-01T11:00:00+09:00",
            "corrects_event_id": "evt-0007",
            "reason": "The registered name lacked the country.",
            "corrected_fields": {"name": "Tellus Messaging Co., Ltd. (KR)"},
        },
        # The advertising partner's disclosure happened before its registration.
        {
            "type": "correction.recorded",
            "event_id": "plant-6",
            "occurred_at": "2026-10-01T10:00:00+09:00",
            "corrects_event_id": "evt-0018",
            "reason": "The export job ran on the day of the test campaign, not on 1 May.",
            "corrected_fields": {"occurred_at": "2026-03-01T12:00:00+09:00"},
        },
    ]


def signed_data(record: LogRecord) -> dict[str, Any]:
    """The data as signed: the stored body (its storage format is changing, both read)."""
    body = getattr(record, "body", None)
    if body:
        data: dict[str, Any] = orjson.loads(body)["data"]
        return data
    stored: dict[str, Any] = orjson.loads(record.entry)["body"]["data"]
    return stored


class Events:
    """``events()`` for the report: reads the log on every call, counts calls and the
    events alive at once (a report that kept the events would keep them alive)."""

    def __init__(self, ledger: LedgerApplication) -> None:
        self.ledger = ledger
        self.calls = 0
        self.alive = 0
        self.peak = 0

    def _gone(self) -> None:
        self.alive -= 1

    def __call__(self) -> Iterator[ReportEvent]:
        self.calls += 1
        for record in self.ledger.iter_records(page=5):
            decoded = self.ledger.decode(record)
            event = ReportEvent(
                seq=decoded.seq,
                type=decoded.type,
                occurred_at=decoded.occurred_at,
                recorded_at=decoded.recorded_at,
                event_id=decoded.event_id,
                backdated=decoded.backdated,
                data=self.ledger.mentions_opened(
                    signed_data(record), decoded.stream, decoded.stream_version
                ),
                shown=decoded.data,
            )
            self.alive += 1
            weakref.finalize(event, self._gone)
            self.peak = max(self.peak, self.alive)
            yield event


@dataclass
class Desk:
    ledger: LedgerApplication
    runner: ProjectionRunner
    tmp: Path

    def pseudonym(self, user: str) -> str:
        return self.ledger.subject_keys.pseudonym(user)

    def render(self, scope: dict[str, Any], name: str = "report") -> Path:
        directory = self.tmp / f"{name}-{len(list(self.tmp.iterdir()))}"
        directory.mkdir()
        written = write_report(
            scope,
            self.ledger.sign_checkpoint().note,
            Events(self.ledger),
            directory,
            default_minimum_age=18,
        )
        assert written == sorted(p.name for p in directory.iterdir())
        return directory

    @property
    def as_of(self) -> datetime:
        last = self.ledger.decode(next(iter(self.ledger.ledger.select_records(self.head, 1))))
        return parse_utc(last.recorded_at)

    @property
    def head(self) -> int:
        return max(r.seq for r in self.ledger.iter_records())


@pytest.fixture
def desk(ledger: LedgerApplication, settings: Settings, tmp_path: Path) -> Iterator[Desk]:
    facts = example_lines()
    ledger.append(facts)
    ledger.append(planted())
    db = projection_database(settings)
    runner = ProjectionRunner(
        ledger,
        db,
        [ConsentState(), DisclosureHistory(), IncidentRegister(), RequestRegister()],
        batch_size=11,
    )
    runner.catch_up()
    out = tmp_path / "reports"
    out.mkdir()
    try:
        yield Desk(ledger, runner, out)
    finally:
        db.close()


def rows(directory: Path, name: str) -> list[dict[str, str]]:
    with (directory / name).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def verdicts_of_report(directory: Path) -> list[tuple[int, str, str, str, str]]:
    return sorted(
        (int(r["seq"]), r["subject"], r["verdict"], r["consent_seq"], r["recipient_name"])
        for r in rows(directory, "disclosures.csv")
    )


def verdicts_of_view(found: list[DisclosureRow]) -> list[tuple[int, str, str, str, str]]:
    return sorted(
        (
            r.seq,
            r.subject,
            r.verdict,
            "" if r.consent_seq is None else str(r.consent_seq),
            r.recipient_name or "",
        )
        for r in found
    )


def test_disclosure_verdicts_agree_with_the_read_model_for_every_scope(desk: Desk) -> None:
    view = DisclosureHistoryView(desk.runner.db)
    everything = view.find(limit=10_000)
    assert {r.verdict for r in everything} == {
        "consent_valid",
        "consent_missing",
        "lawful_exception",
        "recipient_unregistered",
        "recipient_terminated",
        "legal_basis_not_permitted",  # evt-0045: legitimate interest after an unsubscribe
        "not_de_identified",  # evt-0019: support tickets entrusted as they were
    }
    assert verdicts_of_report(desk.render({"kind": "all"})) == verdicts_of_view(everything)
    for user in USERS:
        pseudonym = desk.pseudonym(user)
        report = desk.render({"kind": "subject", "subject": pseudonym})
        assert verdicts_of_report(report) == verdicts_of_view(
            view.find(subject=pseudonym, limit=10_000)
        ), user
        assert {r["subject_ref"] for r in rows(report, "disclosures.csv")} <= {user}
    for recipient_id in RECIPIENTS:
        report = desk.render({"kind": "recipient", "recipient_id": recipient_id})
        found = view.find(recipient_id=recipient_id, limit=10_000)
        assert found, recipient_id
        assert verdicts_of_report(report) == verdicts_of_view(found), recipient_id
    start, end = "2026-04-01T00:00:00+09:00", "2026-06-01T00:00:00+09:00"
    report = desk.render({"kind": "period", "from": start, "to": end})
    found = view.find(
        start=datetime.fromisoformat(start), end=datetime.fromisoformat(end), limit=10_000
    )
    assert len(found) > 3
    assert verdicts_of_report(report) == verdicts_of_view(found)
    # The incident's assessment selects Northwind's disclosures from 1 May to 10 June.
    report = desk.render({"kind": "incident", "incident_id": "inc-2026-003"})
    found = view.find(
        recipient_id="rcp-northwind-cloud",
        start=datetime.fromisoformat("2026-05-01T00:00:00+09:00"),
        end=datetime.fromisoformat("2026-06-10T06:10:00+09:00"),
        limit=10_000,
    )
    assert found
    assert verdicts_of_report(report) == verdicts_of_view(found)


def test_the_planted_violations_appear_in_the_html_and_the_csv(desk: Desk) -> None:
    report = desk.render({"kind": "all"})
    by_disclosure = {
        (r["disclosure_id"], r["subject_ref"]): r for r in rows(report, "disclosures.csv")
    }
    expected = {
        ("dsc-plant-1", "user-20917"): "recipient_terminated",
        ("dsc-plant-2", "user-20917"): "recipient_unregistered",
        ("dsc-plant-4", "user-10482"): "consent_missing",
        ("dsc-2026-05-brightline", "user-10482"): "recipient_unregistered",  # the correction
        ("dsc-2026-04-northwind", "user-20917"): "consent_missing",  # the back-dated withdrawal
        ("dsc-2026-11-example-japan-newsletter", "user-10482"): "legal_basis_not_permitted",
        ("dsc-2026-05-northwind-support", "user-10482"): "not_de_identified",
    }
    for key, verdict in expected.items():
        assert by_disclosure[key]["verdict"] == verdict, key
        assert by_disclosure[key]["violation"] == "true"
    assert by_disclosure[("dsc-plant-1", "user-20917")]["recipient_name"] == (
        "Tellus Messaging Co., Ltd. (KR)"
    )
    assert by_disclosure[("dsc-2026-05-brightline", "user-10482")]["occurred_at"] == (
        "2026-03-01T03:00:00.000000Z"
    )
    page = (report / "report.html").read_text(encoding="utf-8")
    lines = page.splitlines()
    for (disclosure_id, user), verdict in expected.items():
        (line,) = [x for x in lines if f"<td>{disclosure_id}</td>" in x and f"({user})" in x]
        assert line.startswith('<tr class="violation">'), line
        assert f"<td>{verdict}</td>" in line
    (valid,) = [x for x in lines if "<td>dsc-plant-4</td>" in x and "(user-44120)" in x]
    assert valid.startswith("<tr>") and "<td>consent_valid</td>" in valid
    violations = sum(r["violation"] == "true" for r in rows(report, "disclosures.csv"))
    assert f"Disclosure rows with a violation: {violations} of " in page
    assert '<tr class="violation"><td>recipient_terminated</td><td>true</td><td>1</td>' in page


def test_the_consent_timeline_agrees_with_the_consent_state(desk: Desk) -> None:
    view = ConsentStateView(desk.runner.db)
    as_of = desk.as_of
    report = desk.render({"kind": "all"})
    status = rows(report, "consent_status.csv")
    timeline = rows(report, "consent.csv")
    for user in USERS[:4]:
        pseudonym = desk.pseudonym(user)
        expected = [
            {
                k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in state.as_dict().items()
                if k != "pending_renewal"  # the report shows it on the timeline
            }
            for state in view.state(pseudonym, as_of)
        ]
        got = [
            {
                "purpose": r["purpose"],
                "status": r["status"],
                "dpv_status": r["dpv_status"],
                "valid": r["valid"],
                "policy_version": r["policy_version"],
                "since": r["since"],
                "decided_by_seq": r["decided_by_seq"],
            }
            for r in status
            if r["subject"] == pseudonym
        ]
        assert got == expected, user
        assert {r["subject_ref"] for r in status if r["subject"] == pseudonym} == {user}
        for purpose in {r["purpose"] for r in got}:
            given = [
                r["at"]
                for r in timeline
                if r["subject"] == pseudonym and r["purpose"] == purpose and r["change"] == "given"
            ]
            assert given == [span.valid_from for span in view.intervals(pseudonym, purpose)]
            for entry in timeline:
                if entry["subject"] == pseudonym and entry["purpose"] == purpose:
                    decided = view.decide(pseudonym, purpose, parse_utc(entry["at"]))
                    assert entry["status"] == decided.status, entry
    # A subject's report shows that subject's timeline only.
    alone = desk.render({"kind": "subject", "subject": desk.pseudonym("user-20917")})
    assert {r["subject_ref"] for r in rows(alone, "consent.csv")} == {"user-20917"}
    withdrawn = [r for r in rows(alone, "consent.csv") if r["change"] == "withdrawn"]
    assert [(r["purpose"], r["at"]) for r in withdrawn] == [
        ("usage_analytics", "2026-04-15T01:00:00.000000Z")
    ]


def test_incidents_and_requests_agree_with_their_registers(desk: Desk) -> None:
    as_of = desk.as_of
    report = desk.render({"kind": "all"})
    (incident,) = rows(report, "incidents.csv")
    record = IncidentRegisterView(desk.runner.db).get("inc-2026-003", as_of)
    assert record is not None
    plain = record.as_dict()
    # The correction moved the detection 45 minutes earlier, and the deadline with it.
    assert incident["detected_at"] == plain["detected_at"] == "2026-06-09T16:55:00.000000Z"
    assert incident["authority_deadline"] == plain["authority_deadline"]
    assert incident["authority_notified_at"] == plain["authority_notified_at"]
    assert incident["status"] == plain["status"] == "closed"
    assert incident["authority_deadline_status"] == "met"
    assert not plain["authority_notified_late"] and not plain["authority_overdue"]
    by_rule = (
        []
        if record.affected_rule is None
        else IncidentRegisterView(desk.runner.db).subjects_by_rule(
            record.affected_rule, DisclosureHistoryView(desk.runner.db)
        )
    )
    counted = record.with_rule_selected(by_rule).as_dict()
    assert incident["article_33_3_missing"] == ";".join(counted["article_33_3"]["missing"])
    # Named by an assessment or selected by its rule, each once, as the register counts.
    assert int(incident["affected_subject_count"]) == record.affected_count(by_rule)
    assert record.affected_count(by_rule) == len(set(plain["affected_subjects"]) | set(by_rule))
    page = (report / "report.html").read_text(encoding="utf-8")
    assert "corrects_event_id: evt-0020" in page
    # A subject's report shows the incidents that name the subject or whose rule selects the
    # subject's disclosures, and names nobody else.
    for user, shown in (("user-10482", True), ("user-31255", True), ("user-44120", False)):
        alone = desk.render({"kind": "subject", "subject": desk.pseudonym(user)})
        assert [r["incident_id"] for r in rows(alone, "incidents.csv")] == (
            ["inc-2026-003"] if shown else []
        ), user
        assert "Subjects named" not in (alone / "report.html").read_text(encoding="utf-8")
    incident_page = (
        desk.render({"kind": "incident", "incident_id": "inc-2026-003"}) / "report.html"
    ).read_text(encoding="utf-8")
    named = next(line for line in incident_page.splitlines() if "Subjects named" in line)
    assert "(user-10482)" in named and "(user-20917)" in named and "user-31255" not in named
    requests = {r["request_id"]: r for r in rows(report, "requests.csv")}
    for record_ in RequestRegisterView(desk.runner.db).list(as_of):
        plain = record_.as_dict()
        got = requests[plain["request_id"]]
        for name in ("due_at", "status", "closed_at", "received_at", "extension_days"):
            assert got[name] == ("" if plain[name] is None else str(plain[name])), name
        for name in ("overdue", "answered_late"):
            assert got[name] == str(plain[name]).lower(), name
        assert got["days_left"] == ("" if plain["days_left"] is None else str(plain["days_left"]))


def test_two_renders_give_the_same_bytes(desk: Desk) -> None:
    for scope in (
        {"kind": "all"},
        {"kind": "subject", "subject": desk.pseudonym("user-10482")},
        {"kind": "incident", "incident_id": "inc-2026-003"},
    ):
        first, second = desk.render(scope), desk.render(scope)
        names = sorted(p.name for p in first.iterdir())
        assert names == sorted(p.name for p in second.iterdir())
        for name in names:
            assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_hostile_text_is_escaped(desk: Desk) -> None:
    report = desk.render({"kind": "recipient", "recipient_id": "rcp-hostile"})
    page = (report / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in page
    assert {r["recipient_name"] for r in rows(report, "disclosures.csv")} == {HOSTILE}


def test_the_events_are_read_in_passes_never_kept(desk: Desk) -> None:
    events = Events(desk.ledger)
    write_report(
        {"kind": "all"},
        desk.ledger.sign_checkpoint().note,
        events,
        desk.tmp,
        default_minimum_age=18,
    )
    assert events.calls == 3  # corrections; context; disclosure rows (CSV and HTML at once)
    assert desk.head > 40
    assert events.peak <= 6  # a page of records at most, never the whole log


def test_a_scope_that_names_nothing_is_refused(desk: Desk) -> None:
    for scope in ({"kind": "subject"}, {"kind": "everything"}, {"kind": "period", "from": "x"}):
        with pytest.raises(ReportError):
            desk.render(scope)


def test_events_out_of_order_are_refused(desk: Desk) -> None:
    events = list(Events(desk.ledger)())
    swapped = [events[1], replace(events[0]), *events[2:]]
    with pytest.raises(ReportError, match="out of order"):
        write_report(
            {"kind": "all"},
            desk.ledger.sign_checkpoint().note,
            lambda: iter(swapped),
            desk.tmp,
            default_minimum_age=18,
        )
