"""Every read that opens a person's data is on the record before it is answered (invariant
11), on both backends: a responder's list of the people an incident affects
(``GET /v1/incidents/{id}/affected``), one event (``GET /v1/events/{seq}``) and a subject's
history (``GET /v1/subjects/history``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from api.http.app import ServerSettings, create_app, open_client_database
from api.token_store import Scope, SqlTokenStore
from ledger.application import LedgerApplication
from ledger.config import Settings, open_ledger
from projections.read_models import ReadModels
from tests import facts
from tests.support.in_process import InProcess

PURPOSE = "notify the people of the hosting breach"


@dataclass
class Desk:
    http: InProcess
    worker: ReadModels
    ledger: LedgerApplication
    tokens: dict[str, str]
    incident: str
    people: dict[str, str]
    """Who -> reference."""

    def get(self, path: str, who: str = "responder", **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.http.get(path, params=params, headers=headers)

    def affected(self, who: str = "responder", **params: Any) -> httpx.Response:
        return self.get(f"/v1/incidents/{self.incident}/affected", who, **params)

    def pseudonym(self, who: str) -> str:
        return self.ledger.subject_keys.pseudonym(self.people[who])

    def reads(self) -> list[dict[str, Any]]:
        """Every ``personal_data.accessed`` in the log, its subjects opened."""
        found = []
        for record in self.ledger.iter_records():
            event = self.ledger.decode(record)
            if event.type == "personal_data.accessed":
                found.append({"seq": event.seq, **event.data})
        return found


@pytest.fixture
def desk(settings: Settings) -> Iterator[Desk]:
    """Alice and Bea consented (with contact data) and their data went to the processor in the
    window of the incident's rule; Dan's too (he is known only from the disclosure); Cem is
    named by the assessment. Bea was erased since."""
    cli = SqlTokenStore(open_client_database(settings))
    tokens = {
        "responder": cli.add("responder", [Scope.IDENTIFY_SUBJECTS])[1],
        "manager": cli.add("manager", [Scope.MANAGE_INCIDENTS])[1],
        "admin": cli.add("root", [Scope.ADMIN])[1],
        "historian": cli.add("historian", [Scope.READ_HISTORY])[1],
    }
    app = create_app(settings, server=ServerSettings(projections=False, signer=False))
    http = InProcess(app)
    ledger = open_ledger(settings)
    worker = ReadModels(ledger, settings)
    people = {name: facts.ref(name) for name in ("alice", "bea", "cem", "dan")}
    pol = facts.policy()
    processor, incident = facts.ref("rcpt"), facts.ref("inc")
    ledger.append(
        [
            pol,
            facts.recipient(processor),
            facts.consent(people["alice"], pol["version"], contact="alice@example.org"),
            facts.consent(people["bea"], pol["version"], contact="=HYPERLINK(1)"),
            facts.consent(people["cem"], pol["version"]),
            facts.disclosure(processor, [people["alice"], people["bea"]], pol["version"]),
            facts.disclosure(processor, [people["dan"]], pol["version"]),
            {**facts.incident(incident), "recipient_id": processor},
            {
                "type": "incident.assessed",
                "event_id": facts.ref("evt"),
                "occurred_at": facts.now(),
                "incident_id": incident,
                "risk": "high_risk",
                "data_categories": ["contact"],
                "likely_consequences": "Phishing e-mails",
                "affected_subjects": [people["cem"]],
                "affected_rule": {
                    "recipient_id": processor,
                    "disclosed_from": facts.now(timedelta(hours=-1)),
                    "disclosed_to": facts.now(timedelta(hours=1)),
                },
            },
        ]
    )
    desk = Desk(http, worker, ledger, tokens, incident, people)
    bea = desk.pseudonym("bea")
    ledger.erase(subject_ref=people["bea"])
    worker.runner.catch_up()
    desk.people["bea_pseudonym"] = bea
    try:
        yield desk
    finally:
        worker.close()
        ledger.close()
        http.close()
        cli.db.close()


def test_a_responder_gets_the_people_and_the_read_is_recorded(desk: Desk) -> None:
    head = desk.ledger.head()
    response = desk.affected(purpose=PURPOSE)
    assert response.status_code == 200, response.text
    body = response.json()
    rows = {row["subject"]: row for row in body["items"]}
    alice, cem, dan = (desk.pseudonym(n) for n in ("alice", "cem", "dan"))
    bea = desk.people["bea_pseudonym"]
    assert body["total"] == 4 and set(rows) == {alice, bea, cem, dan}
    assert rows[alice] | {} == {
        "subject": alice,
        "named": False,
        "by_rule": True,
        "subject_ref": desk.people["alice"],
        "contact": "alice@example.org",
        "erased": False,
    }
    assert (rows[cem]["named"], rows[cem]["by_rule"]) == (True, False)
    assert rows[cem]["subject_ref"] == desk.people["cem"] and rows[cem]["contact"] is None
    assert rows[dan]["subject_ref"] == desk.people["dan"]  # from the disclosure's list
    assert rows[bea] | {"subject": None} == {
        "subject": None,
        "named": False,
        "by_rule": True,
        "subject_ref": "[erased]",
        "contact": None,
        "erased": True,
    }
    # The read was appended before the answer, and names exactly whom it opened.
    (read,) = desk.reads()
    assert read["seq"] == body["access_seq"] == head + 1
    assert read["client"] == "responder" and read["scope"] == "incidents:identify"
    assert read["action"] == "incident_affected" and read["purpose"] == PURPOSE
    assert read["details"] == {"incident_id": desk.incident}
    assert read["count"] == 3 and sorted(read["opened_subjects"]) == sorted([alice, cem, dan])
    # The register, the single incident and the count agree.
    incident = desk.get(f"/v1/incidents/{desk.incident}", "manager").json()
    assert incident["affected_subject_count"] == 4
    assert incident["article_33_3"]["nature"]["affected_subject_count"] == 4


def test_pages_follow_their_link_and_each_is_recorded(desk: Desk) -> None:
    seen: list[str] = []
    response = desk.affected(purpose=PURPOSE, limit=1, format="csv")
    while True:
        assert response.status_code == 200, response.text
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert len(rows) == 1
        seen.append(rows[0]["subject"])
        link = response.headers.get("link")
        if link is None:
            break
        target = urlsplit(link.split(";")[0].strip("<>"))
        query = {k: v[0] for k, v in parse_qs(target.query).items()}
        assert query["purpose"] == PURPOSE and query["format"] == "csv"  # the whole query kept
        response = desk.get(target.path, **query)
    assert seen == sorted(seen) and len(seen) == 4
    assert len(desk.reads()) == 4  # one record per page


def test_csv_cells_are_not_formulas(desk: Desk) -> None:
    desk.ledger.append([facts.consent(desk.people["alice"], _policy(desk), contact="@SUM(1)")])
    desk.worker.runner.catch_up()
    response = desk.affected(purpose=PURPOSE, format="csv")
    assert "'@SUM(1)" in response.text and ",@SUM" not in response.text


def _policy(desk: Desk) -> str:
    for record in desk.ledger.iter_records():
        event = desk.ledger.decode(record)
        if event.type == "policy.version_published":
            return str(event.data["version"])
    raise AssertionError("no policy")


@pytest.mark.parametrize(
    ("who", "params", "status"),
    [
        ("admin", {"purpose": PURPOSE}, 403),  # admin does not imply incidents:identify
        ("manager", {"purpose": PURPOSE}, 403),
        ("responder", {}, 400),  # no purpose: a bad parameter (docs/api.md, "Conventions")
        ("responder", {"purpose": "   "}, 400),  # blank
        ("responder", {"purpose": "a\x00b"}, 400),
        ("responder", {"purpose": "x" * 501}, 400),
        ("responder", {"purpose": PURPOSE, "cursor": "not-a-pseudonym"}, 400),
        ("responder", {"purpose": PURPOSE, "limit": "0"}, 400),
        ("responder", {"purpose": PURPOSE, "limit": "1001"}, 400),
        ("responder", {"purpose": [PURPOSE, PURPOSE]}, 400),  # given twice
    ],
)
def test_a_refused_read_opens_nothing_and_records_nothing(
    desk: Desk, who: str, params: dict[str, Any], status: int
) -> None:
    head = desk.ledger.head()
    response = desk.affected(who, **params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert desk.people["alice"] not in response.text
    assert desk.ledger.head() == head


def test_an_unknown_incident_is_404_and_records_nothing(desk: Desk) -> None:
    head = desk.ledger.head()
    response = desk.get("/v1/incidents/inc-nope/affected", purpose=PURPOSE)
    assert response.status_code == 404
    assert desk.ledger.head() == head


def test_a_page_after_the_last_is_empty_and_still_recorded(desk: Desk) -> None:
    last = "ffffffff-ffff-4fff-bfff-ffffffffffff"
    response = desk.affected(purpose=PURPOSE, cursor=last)
    assert response.status_code == 200 and response.json()["items"] == []
    (read,) = desk.reads()
    assert read["count"] == 0 and "opened_subjects" not in read


def test_an_event_is_recorded_when_it_shows_someones_data(desk: Desk) -> None:
    events = [desk.ledger.decode(r) for r in desk.ledger.iter_records()]
    consent = next(e for e in events if e.data.get("subject_ref") == desk.people["alice"])
    policy = next(e for e in events if e.type == "policy.version_published")
    head = desk.ledger.head()
    shown = desk.get(f"/v1/events/{policy.seq}", "historian")
    assert shown.status_code == 200 and desk.ledger.head() == head  # nobody's data: no record
    shown = desk.get(f"/v1/events/{consent.seq}", "historian", purpose="audit of consent")
    assert shown.status_code == 200 and shown.json()["data"]["subject_ref"] == desk.people["alice"]
    (read,) = desk.reads()
    assert read["seq"] == head + 1
    assert (read["client"], read["action"], read["scope"]) == ("historian", "event", "history:read")
    assert read["purpose"] == "audit of consent" and read["details"] == {"seq": consent.seq}
    assert read["opened_subjects"] == [desk.pseudonym("alice")]
    # Showing the record itself opens nobody's data (its subjects are pseudonyms).
    desk.get(f"/v1/events/{read['seq']}", "historian")
    assert len(desk.reads()) == 1


def test_a_history_is_recorded_once_and_an_unknown_one_not_at_all(desk: Desk) -> None:
    head = desk.ledger.head()
    answer = desk.get("/v1/subjects/history", "historian", subject=desk.people["alice"])
    assert answer.status_code == 200 and len(answer.json()["events"]) >= 2
    (read,) = desk.reads()
    assert read["seq"] == head + 1 and read["action"] == "subject_history"
    assert read["count"] == 1 and read["opened_subjects"] == [desk.pseudonym("alice")]
    assert "purpose" not in read
    for nobody in ("user-never-seen", desk.people["bea"]):  # unknown, erased
        answer = desk.get("/v1/subjects/history", "historian", subject=nobody)
        assert answer.status_code == 200 and answer.json()["events"] == []
    assert len(desk.reads()) == 1
