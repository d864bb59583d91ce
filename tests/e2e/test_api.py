"""The HTTP API end to end: a real ``consent-ledger serve`` process, httpx as the client."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from api.cli import cli
from tests import facts
from tests.e2e.conftest import Server
from tests.support.waiting import wait_until


def problem_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body


def test_append_then_read_your_writes(server: Server) -> None:
    pol = facts.policy()
    subject = facts.ref("user")
    with server.client() as http:
        assert http.post("/v1/events", json=pol).status_code == 201
        given = facts.consent(subject, pol["version"])
        receipt = http.post("/v1/events", json=given).json()
        assert receipt["seq"] == 3 and receipt["leaf_index"] == 2
        decision = http.get(
            "/v1/consent/decision",
            params={"subject": subject, "purpose": "marketing_email", "wait_for": receipt["seq"]},
        ).json()
        assert decision["allowed"] is True and decision["decided_by_seq"] == 3
        too_far = http.get(
            "/v1/consent/state", params={"subject": subject, "wait_for": receipt["seq"] + 100}
        )
        assert too_far.status_code == 422  # no receipt names an event after the head
        assert "no event" in problem_of(too_far)["detail"]
        state = http.get("/v1/consent/state", params={"subject": subject}).json()
        assert [p["status"] for p in state["purposes"]] == ["given"]
        event = http.get("/v1/events/3").json()
        assert (
            event["data"]["subject_ref"] == subject and event["signature"] == receipt["signature"]
        )


def test_a_batch_is_all_or_nothing_and_a_retry_returns_the_same_receipts(server: Server) -> None:
    pol = facts.policy()
    good = [facts.consent(facts.ref("user"), pol["version"]) for _ in range(3)]
    bad = facts.consent(facts.ref("user"), pol["version"], purposes=["telepathy"])
    with server.client() as http:
        http.post("/v1/events", json=pol)
        refused = http.post("/v1/events", json=[*good, bad])
        assert refused.status_code == 422
        [error] = problem_of(refused)["errors"]
        assert (error["index"], error["field"], error["rule"]) == (
            3,
            "purposes[0]",
            "purpose_unknown",
        )
        assert http.get("/v1/events/2").status_code == 404  # nothing stored
        first = http.post("/v1/events", json=good)
        again = http.post("/v1/events", json=good)
        assert (first.status_code, again.status_code) == (201, 200)
        strip = [{k: v for k, v in r.items() if k != "duplicate"} for r in first.json()["receipts"]]
        assert [
            {k: v for k, v in r.items() if k != "duplicate"} for r in again.json()["receipts"]
        ] == strip
        minimal = http.post("/v1/events", json=good, headers={"Prefer": "return=minimal"})
        assert minimal.json() == {"seqs": [r["seq"] for r in first.json()["receipts"]]}
        assert minimal.headers["preference-applied"] == "return=minimal"
        changed = dict(good[0], collection_method="paper")
        assert problem_of(http.post("/v1/events", json=changed))["title"] == "Event id already used"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"\xff\xfe\x00", 400),
        (b"42", 400),
        (orjson.dumps({"type": "consent.given"}), 422),
        (orjson.dumps([]), 422),
        (orjson.dumps([facts.policy() for _ in range(1001)]), 413),
    ],
)
def test_bad_bodies_get_a_clear_problem_and_store_nothing(
    server: Server, body: bytes, status: int
) -> None:
    with server.client() as http:
        response = http.post("/v1/events", content=body)
        assert response.status_code == status
        problem_of(response)
        assert http.get("/v1/events/1").status_code == 404


ROUTES = [
    ("POST", "/v1/events", "events:write"),
    ("GET", "/v1/events/1", "history:read"),
    ("GET", "/v1/disclosures", "history:read"),
    ("GET", "/v1/requests", "history:read"),
    ("GET", "/v1/incidents", "incidents:manage"),
    ("POST", "/v1/incidents", "incidents:manage"),
    ("GET", "/metrics", "admin"),
    ("GET", "/v1/subjects/history?subject=u", "history:read"),
    ("GET", "/v1/consent/state?subject=u", "state:read"),
    ("GET", "/v1/consent/decision?subject=u&purpose=p", "state:read"),
]


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
def test_every_route_checks_its_token_and_scope(
    server: Server, method: str, path: str, scope: str
) -> None:
    body = None
    if method == "POST":
        body = orjson.dumps(facts.incident() if "incidents" in path else facts.policy())
    for who, expected in ((None, 401), ("revoked", 401)):
        with server.client(who) as http:
            response = http.request(method, path, content=body)
            assert response.status_code == expected, (who, response.text)
            assert "token" in problem_of(response)["detail"]
    with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer cl_forged"}) as http:
        assert http.request(method, path, content=body).status_code == 401
    with server.client("reader") as http:
        response = http.request(method, path, content=body)
        if scope == "state:read":  # let in: answered (purpose p is in no policy: 404, named)
            assert response.status_code == 200 or (
                response.status_code == 404
                and problem_of(response)["errors"][0]["rule"] == "unknown_purpose"
            ), response.text
        else:
            assert response.status_code == 403 and scope in problem_of(response)["detail"]
    right = {"incidents:manage": "responder", "admin": "admin"}.get(scope, "writer")
    with server.client(right) as http:
        assert http.request(method, path, content=body).status_code in (200, 201, 404)


def test_the_public_routes_and_unknown_ones(server: Server) -> None:
    with server.client(None) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").status_code == 200
        assert problem_of(http.get("/no/such/route"))["status"] == 404
        assert http.get("/openapi.json").json()["info"]["title"] == "Consent Ledger"
    with server.client() as http:
        http.post("/v1/events", json=facts.policy())
    with server.client(None) as http:
        # The signer may sign the empty log first; the event is covered within a period.
        def covering() -> str:
            response = http.get("/v1/checkpoint")
            ok = response.status_code == 200 and response.text.splitlines()[1] != "0"
            return response.text if ok else ""

        note = wait_until(covering, "no checkpoint of the event was signed", 10, 0.2)
        keys = http.get("/v1/keys").text
    assert note.splitlines()[1] == "1" and keys.count("\n") == 1


def test_histories_and_registers(server: Server) -> None:
    pol = facts.policy()
    rcpt = facts.recipient(role="third_party", occurred_at="2026-01-01T00:00:00Z")
    subject = facts.ref("user")
    given = facts.consent(subject, pol["version"], occurred_at="2026-02-01T00:00:00Z")
    shared = [
        facts.disclosure(
            rcpt["recipient_id"], [subject], pol["version"], occurred_at=f"2026-03-0{day}T00:00:00Z"
        )
        for day in range(1, 6)
    ]
    with server.client() as http:
        last = http.post("/v1/events", json=[pol, rcpt, given, *shared, facts.request(subject)])
        seq = last.json()["receipts"][-1]["seq"]
        http.get("/v1/consent/state", params={"subject": subject, "wait_for": seq})
        wait_until(lambda: http.get("/v1/requests").json(), "no request in the register", 10, 0.1)
        page = http.get("/v1/disclosures", params={"subject": subject, "limit": 3}).json()
        assert [i["verdict"] for i in page["items"]] == ["consent_valid"] * 3
        rest = http.get(
            "/v1/disclosures", params={"subject": subject, "cursor": page["next_cursor"]}
        ).json()
        assert len(rest["items"]) == 2 and rest["next_cursor"] is None
        window = http.get(
            "/v1/disclosures", params={"from": "2026-03-02T00:00:00Z", "to": "2026-03-04T00:00:00Z"}
        )
        assert len(window.json()["items"]) == 2
        as_csv = http.get(
            "/v1/disclosures", params={"recipient": rcpt["recipient_id"], "format": "csv"}
        )
        assert as_csv.headers["content-type"].startswith("text/csv")
        assert len(as_csv.text.strip().splitlines()) == 6 and subject not in as_csv.text
        assert http.get("/v1/disclosures", params={"cursor": "nonsense"}).status_code == 400
        [request] = http.get("/v1/requests").json()
        assert request["status"] == "received" and not request["overdue"]
    with server.client("responder") as http:
        opened = facts.incident()
        assert http.post("/v1/incidents", json=opened).status_code == 201
        refused = http.post("/v1/incidents", json=facts.policy())
        assert refused.status_code == 422 and "incident" in problem_of(refused)["detail"]
        deadline = time.monotonic() + 10
        while (found := http.get(f"/v1/incidents/{opened['incident_id']}")).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert found.json()["authority_deadline"]
        assessed = {
            "type": "incident.assessed",
            "event_id": facts.ref("e"),
            "occurred_at": facts.now(),
            "incident_id": opened["incident_id"],
            "risk": "risk",
            "data_categories": ["contact"],
            "likely_consequences": "Spam",
            "affected_rule": {
                "recipient_id": rcpt["recipient_id"],
                "disclosed_from": "2026-03-01T00:00:00Z",
                "disclosed_to": "2026-03-03T00:00:00Z",
            },
        }
        assert http.post("/v1/incidents", json=assessed).status_code == 201
        deadline = time.monotonic() + 10
        while "subjects_by_rule" not in (
            got := http.get(f"/v1/incidents/{opened['incident_id']}").json()
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert len(got["subjects_by_rule"]) == 1 and subject not in got["subjects_by_rule"]
        [listed] = [
            i for i in http.get("/v1/incidents").json() if i["incident_id"] == opened["incident_id"]
        ]
        assert listed["subjects_by_rule"] == got["subjects_by_rule"]  # the list says it too
        assert http.get("/v1/incidents/never").status_code == 404
    result = CliRunner().invoke(
        cli,
        [
            "--data-dir",
            str(server.settings.data_dir),
            *(
                ["--database-url", server.settings.database_url]
                if server.settings.database_url
                else []
            ),
            "incidents",
        ],
        env={"CONSENT_LEDGER_DATABASE_SCHEMA": server.settings.database_schema},
    )
    assert result.exit_code == 0, result.output
    [in_cli] = [i for i in orjson.loads(result.output) if i["incident_id"] == opened["incident_id"]]
    assert in_cli["subjects_by_rule"] == got["subjects_by_rule"]  # and the command line


def test_metrics_count_appends_commits_and_lag(server: Server) -> None:
    with server.client() as http:
        http.post("/v1/events", json=[facts.policy() for _ in range(3)])
        http.post("/v1/events", json=facts.policy())
    with server.client("admin") as http:
        text = http.get("/metrics").text
    assert 'ledger_events_appended_total{outcome="new"} 4.0' in text
    assert "ledger_append_batch_size_count 2.0" in text
    assert "ledger_commit_events_count" in text and "ledger_head 4.0" in text
    assert 'ledger_projection_lag_events{projection="consent_state"}' in text
    assert "ledger_requests_overdue 0.0" in text
    assert "ledger_incidents_authority_overdue 0.0" in text


def test_metrics_say_what_to_alert_on(server: Server) -> None:
    long_ago = facts.now(timedelta(days=-40))
    with server.client() as http:
        request = dict(facts.request(facts.ref("user")), occurred_at=long_ago)
        incident = dict(facts.incident(), occurred_at=long_ago, detected_at=long_ago)
        for fact in (request, incident):
            assert http.post("/v1/events", json=fact).status_code == 201
    wanted = (
        "ledger_requests_overdue 1.0",
        "ledger_incidents_authority_overdue 1.0",
        "ledger_checkpoint_age_seconds",
    )
    deadline = time.monotonic() + 20
    with server.client("admin") as http:
        while not all(w in (text := http.get("/metrics").text) for w in wanted):
            assert time.monotonic() < deadline, [w for w in wanted if w not in text]
            time.sleep(0.2)


def test_the_python_client(server: Server) -> None:
    from api.client import LedgerAPIError, LedgerClient

    pol = facts.policy()
    rcpt = facts.recipient(occurred_at="2026-01-01T00:00:00Z")
    subject = facts.ref("user")
    with LedgerClient(server.url, server.tokens["writer"]) as ledger:
        [policy_receipt, _] = ledger.append_batch([pol, rcpt])
        receipt = ledger.append(facts.consent(subject, pol["version"]))
        assert receipt.seq > policy_receipt.seq and not receipt.duplicate
        answer = ledger.decision(subject, "marketing_email", wait_for=receipt.seq)
        assert answer.allowed and answer.decided_by_seq == receipt.seq
        shared = [
            facts.disclosure(rcpt["recipient_id"], [subject], pol["version"]) for _ in range(5)
        ]
        last = ledger.append_batch(shared)[-1]
        ledger.consent_state(subject, wait_for=last.seq)
        deadline = time.monotonic() + 10
        while len(list(ledger.iter_disclosures(subject=subject, page_size=2))) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert ledger.event(receipt.seq)["data"]["subject_ref"] == subject
        with pytest.raises(LedgerAPIError) as caught:
            ledger.append(facts.consent(subject, pol["version"], purposes=["telepathy"]))
        assert caught.value.status == 422 and caught.value.errors[0]["rule"] == "purpose_unknown"
    with LedgerClient(server.url, "cl_wrong") as stranger, pytest.raises(LedgerAPIError) as caught:
        stranger.event(1)
    assert caught.value.status == 401


def test_a_client_with_a_key_must_sign_and_its_signature_is_kept(server: Server) -> None:
    import base64
    import hashlib

    from nacl.signing import SigningKey

    key = SigningKey.generate()
    public = base64.b64encode(bytes(key.verify_key)).decode()
    args = ["--data-dir", str(server.settings.data_dir)]
    if server.settings.database_url:
        args += ["--database-url", server.settings.database_url]
    env = {"CONSENT_LEDGER_DATABASE_SCHEMA": server.settings.database_schema}
    runner = CliRunner()
    bad = runner.invoke(cli, [*args, "clients", "set-key", "writer", "not-a-key"], env=env)
    assert bad.exit_code == 1 and "base64" in bad.output
    done = runner.invoke(cli, [*args, "clients", "set-key", "writer", public], env=env)
    assert done.exit_code == 0, done.output

    body = orjson.dumps([facts.policy(), facts.policy()])
    signature = base64.b64encode(key.sign(body).signature).decode()
    with server.client() as http:
        unsigned = http.post("/v1/events", content=body)
        assert unsigned.status_code == 401 and "Content-Signature" in problem_of(unsigned)["detail"]
        forged = base64.b64encode(SigningKey.generate().sign(body).signature).decode()
        wrong = http.post(
            "/v1/events", content=body, headers={"Content-Signature": f"ed25519={forged}"}
        )
        assert wrong.status_code == 401
        assert http.get("/v1/events/1").status_code == 404  # nothing stored
        signed = http.post(
            "/v1/events", content=body, headers={"Content-Signature": f"ed25519={signature}"}
        )
        assert signed.status_code == 201
        event = http.get("/v1/events/2").json()
    kept = event["emitter"]
    assert kept["client"] == "writer" and kept["signature"] == signature
    assert kept["body_sha256"] == hashlib.sha256(body).hexdigest()
    key.verify_key.verify(body, base64.b64decode(kept["signature"]))  # provable by the sender


def test_a_subjects_history_shows_only_their_data(server: Server) -> None:
    pol = facts.policy()
    rcpt = facts.recipient(occurred_at="2026-01-01T00:00:00Z")
    me, other = facts.ref("user"), facts.ref("user")
    opened = facts.incident()
    assessed = {
        "type": "incident.assessed",
        "event_id": facts.ref("e"),
        "occurred_at": facts.now(),
        "incident_id": opened["incident_id"],
        "risk": "high_risk",
        "data_categories": ["contact"],
        "likely_consequences": "Phishing",
        "affected_subjects": [me, other],
    }
    with server.client() as http:
        receipts = http.post(
            "/v1/events",
            json=[
                pol,
                rcpt,
                facts.consent(me, pol["version"], contact="me@example.org"),
                facts.consent(other, pol["version"], contact="other@example.org"),
                facts.disclosure(rcpt["recipient_id"], [me, other], pol["version"]),
                facts.request(me, details="please show me everything"),
                opened,
                assessed,
            ],
        ).json()["receipts"]
        last = receipts[-1]["seq"]
        http.get("/v1/consent/state", params={"subject": me, "wait_for": last})
        deadline = time.monotonic() + 10
        while True:
            body = http.get("/v1/subjects/history", params={"subject": me}).json()
            types = [e["type"] for e in body["events"]]
            if "incident.assessed" in types and "request.received" in types:
                break
            assert time.monotonic() < deadline, types
            time.sleep(0.1)
    text = orjson.dumps(body).decode()
    assert "me@example.org" in text and "please show me everything" in text
    assert other not in text and "other@example.org" not in text
    assert "[another subject]" in text
    assert types == [
        "subject.registered",
        "consent.given",
        "disclosure.recorded",
        "request.received",
        "incident.opened",
        "incident.assessed",
    ]
