"""The console over plain HTTP, on both backends: signing in keeps the token out of the cookie,
every page asks the API's scope, every POST its CSRF token and this origin, a read of someone's
data is on the record before the page is answered (and not at all without a purpose), and
incident steps go through the ledger's validation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.http.app import ServerSettings, create_app, open_client_database
from api.token_store import Scope, SqlTokenStore
from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.verifier.entry import parse_body
from tests import facts
from tests.support.in_process import InProcess
from tests.support.waiting import wait_until

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class Deployment:
    http: InProcess
    ledger: LedgerApplication
    store: SqlTokenStore
    """The app's own token store (a revocation there takes effect at once)."""
    tokens: dict[str, str] = field(default_factory=dict)

    def last_event(self) -> dict[str, Any]:
        record = self.ledger.ledger.get_record(self.ledger.head())
        assert record is not None
        return parse_body(record.body)

    def sign_in(self, who: str) -> httpx.Response:
        """Sign in as ``who`` (the client's cookies then carry the session); the answer."""
        self.http.client.cookies.clear()
        page = self.http.get("/console/login")
        return self.http.post(
            "/console/login",
            data={"csrf": csrf_of(page), "token": self.tokens[who], "next": "/console"},
        )

    def csrf(self, path: str = "/console/subjects") -> str:
        page = self.http.get(path)
        assert page.status_code == 200, page.text
        return csrf_of(page)


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


@pytest.fixture
def deployment(settings: Settings) -> Iterator[Deployment]:
    cli = SqlTokenStore(open_client_database(settings))
    tokens = {
        "responder": cli.add("responder", [Scope.ADMIN, Scope.IDENTIFY_SUBJECTS])[1],
        "auditor": cli.add("auditor", [Scope.READ_HISTORY])[1],
        "emitter": cli.add("emitter", [Scope.WRITE_EVENTS])[1],
    }
    app = create_app(settings, server=ServerSettings(projections=True, signer=False))
    http = InProcess(app)
    try:
        yield Deployment(http, app.state.ledger, app.state.clients, tokens)
    finally:
        http.close()
        cli.db.close()


def _alice(ledger: LedgerApplication) -> None:
    policy = facts.policy()
    alice = facts.consent("alice-ref-1", policy["version"], contact="alice@example.org")
    ledger.append([policy, alice])


def test_signing_in_keeps_the_token_on_the_server(deployment: Deployment) -> None:
    answer = deployment.sign_in("auditor")
    assert answer.status_code == 303 and answer.headers["location"] == "/console"
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith("console_session=")
    )
    parts = {p.strip().split("=")[0].lower() for p in cookie.split(";")}
    assert {"httponly", "samesite", "path"} <= parts
    assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()
    assert "secure" not in parts  # plain HTTP here; over HTTPS the cookie is Secure
    session_id = cookie.split(";")[0].partition("=")[2]
    token = deployment.tokens["auditor"]
    assert token not in cookie and session_id != token and len(session_id) >= 40
    overview = deployment.http.get("/console")
    assert overview.status_code == 200
    assert "signed in as auditor" in overview.text
    assert overview.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in overview.headers["content-security-policy"]
    # The session id is not a token the API takes.
    api = deployment.http.get("/v1/requests", headers={"Authorization": f"Bearer {session_id}"})
    assert api.status_code == 401


def test_a_wrong_token_or_a_stale_sign_in_form_is_refused(deployment: Deployment) -> None:
    page = deployment.http.get("/console/login")
    wrong = deployment.http.post(
        "/console/login", data={"csrf": csrf_of(page), "token": "cl_" + "x" * 43}
    )
    assert wrong.status_code == 401 and "not valid" in wrong.text
    assert "console_session" not in wrong.headers.get("set-cookie", "")
    deployment.http.client.cookies.clear()
    stale = deployment.http.post(
        "/console/login", data={"csrf": "made-up", "token": deployment.tokens["auditor"]}
    )
    assert stale.status_code == 403
    assert "console_session" not in stale.headers.get("set-cookie", "")


def test_a_page_without_a_session_sends_to_the_sign_in_form(deployment: Deployment) -> None:
    answer = deployment.http.get("/console/incidents")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login?next=/console/incidents"


def test_sign_in_goes_back_only_to_a_console_page(deployment: Deployment) -> None:
    for target in ("https://elsewhere.example/", "//elsewhere.example/console", "/v1/keys"):
        page = deployment.http.get("/console/login")
        answer = deployment.http.post(
            "/console/login",
            data={"csrf": csrf_of(page), "token": deployment.tokens["auditor"], "next": target},
        )
        assert answer.headers["location"] == "/console", target


def test_each_page_asks_the_scope_its_api_route_asks(deployment: Deployment) -> None:
    deployment.sign_in("auditor")  # history:read only
    assert deployment.http.get("/console").status_code == 200
    assert deployment.http.get("/console/requests").status_code == 200
    assert deployment.http.get("/console/subjects").status_code == 200
    refused = deployment.http.get("/console/incidents")
    assert refused.status_code == 403 and "incidents:manage" in refused.text
    assert "text/html" in refused.headers["content-type"]
    assert deployment.http.get("/console/incidents/inc-1/people").status_code == 403
    deployment.sign_in("emitter")  # no page at all
    assert deployment.http.get("/console").status_code == 403
    deployment.sign_in("responder")  # admin does not imply incidents:identify, given here
    assert deployment.http.get("/console/incidents").status_code == 200


def test_a_revoked_token_ends_its_session(deployment: Deployment) -> None:
    deployment.sign_in("auditor")
    assert deployment.http.get("/console").status_code == 200
    deployment.store.revoke("auditor")
    answer = deployment.http.get("/console")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login")


def test_signing_in_again_ends_the_session_before(deployment: Deployment) -> None:
    deployment.sign_in("auditor")
    before = deployment.http.client.cookies.get("console_session") or ""
    page = deployment.http.get("/console/login")
    again = deployment.http.post(
        "/console/login", data={"csrf": csrf_of(page), "token": deployment.tokens["responder"]}
    )
    assert again.status_code == 303
    assert deployment.http.get("/console").text.count("signed in as responder") == 1
    deployment.http.client.cookies.clear()
    deployment.http.client.cookies.set("console_session", before, path="/console")
    assert deployment.http.get("/console").status_code == 303


def test_signing_out_ends_the_session(deployment: Deployment) -> None:
    deployment.sign_in("auditor")
    session = deployment.http.client.cookies.get("console_session")
    out = deployment.http.post("/console/logout", data={"csrf": deployment.csrf("/console")})
    assert out.status_code == 303
    deployment.http.client.cookies.clear()
    deployment.http.client.cookies.set("console_session", session or "", path="/console")
    assert deployment.http.get("/console").status_code == 303


def test_a_post_without_its_csrf_token_or_from_elsewhere_changes_nothing(
    deployment: Deployment,
) -> None:
    _alice(deployment.ledger)
    deployment.sign_in("responder")
    token = deployment.csrf()
    head = deployment.ledger.head()
    lookup = {"subject": "alice-ref-1", "purpose": "answer her access request"}
    for data, headers in (
        (lookup, {}),
        ({**lookup, "csrf": "x" * 43}, {}),
        ({**lookup, "csrf": token}, {"Origin": "https://elsewhere.example"}),
    ):
        answer = deployment.http.post("/console/subjects", data=data, headers=headers)
        assert answer.status_code == 403, data
        assert "alice@example.org" not in answer.text
    step = {"csrf": "", "step": "closed", "resolution": "done"}
    assert deployment.http.post("/console/incidents/inc-1/steps", data=step).status_code == 403
    assert deployment.http.post("/console/logout", data={"csrf": ""}).status_code == 403
    assert deployment.ledger.head() == head
    assert deployment.http.get("/console").status_code == 200  # still signed in


def test_a_lookup_is_on_the_record_before_it_is_shown(deployment: Deployment) -> None:
    _alice(deployment.ledger)
    deployment.sign_in("auditor")
    head = deployment.ledger.head()
    data = {"subject": "alice-ref-1", "purpose": "answer her access request"}
    answer = deployment.http.post("/console/subjects", data={**data, "csrf": deployment.csrf()})
    assert answer.status_code == 200, answer.text
    assert "alice-ref-1" in answer.text
    assert deployment.ledger.head() == head + 1
    assert f'id="access-seq">{head + 1}<' in answer.text
    record = deployment.last_event()
    assert record["type"] == "personal_data.accessed"
    assert record["data"]["client"] == "auditor"
    assert record["data"]["action"] == "console_subject_lookup"
    assert record["data"]["scope"] == "history:read"
    assert record["data"]["purpose"] == "answer her access request"
    assert record["data"]["count"] == 1
    assert "alice-ref-1" not in str(record)  # the subject is a sealed mention


def test_no_purpose_no_lookup_and_nothing_of_nobody(deployment: Deployment) -> None:
    _alice(deployment.ledger)
    deployment.sign_in("auditor")
    head = deployment.ledger.head()
    for purpose in ("", "   "):
        answer = deployment.http.post(
            "/console/subjects",
            data={"subject": "alice-ref-1", "purpose": purpose, "csrf": deployment.csrf()},
        )
        assert answer.status_code == 422 and "purpose" in answer.text
        assert "alice@example.org" not in answer.text
    unknown = deployment.http.post(
        "/console/subjects",
        data={"subject": "nobody-ref", "purpose": "check", "csrf": deployment.csrf()},
    )
    assert unknown.status_code == 200 and 'id="nothing-found"' in unknown.text
    for subject, purpose in (("alice-ref-1", "two\nlines"), ("alice\x00ref", "check")):
        bad = deployment.http.post(
            "/console/subjects",
            data={"subject": subject, "purpose": purpose, "csrf": deployment.csrf()},
        )
        assert bad.status_code == 422 and "alice@example.org" not in bad.text
    assert deployment.ledger.head() == head


def test_an_incident_step_goes_through_the_ledgers_validation(deployment: Deployment) -> None:
    deployment.sign_in("responder")
    token = deployment.csrf("/console/incidents")
    opened = deployment.http.post(
        "/console/incidents",
        data={"csrf": token, "incident_id": "inc-7", "summary": "A lost laptop."},
    )
    assert opened.status_code == 303 and opened.headers["location"] == "/console/incidents/inc-7"
    head = deployment.ledger.head()
    refused = deployment.http.post(
        "/console/incidents/inc-7/steps",
        data={
            "csrf": token,
            "step": "subjects_notified",
            "channel": "pigeon",
            "subject_count": "x",
        },
    )
    assert refused.status_code == 422
    assert 'id="subjects_notified-channel-error"' in refused.text
    assert 'id="subjects_notified-subject_count-error"' in refused.text
    assert deployment.ledger.head() == head
    form = {"csrf": token, "step": "contained", "measures": "Remote wipe.", "event_id": ""}
    form["event_id"] = "console-" + "a" * 32 + "-contained"
    for _ in range(2):  # sent twice (a reload): recorded once
        sent = deployment.http.post("/console/incidents/inc-7/steps", data=form)
        assert sent.status_code == 303, re.findall(r"(?:alert|field-error)[^<]*", sent.text)
    assert deployment.ledger.head() == head + 1
    page = deployment.http.get("/console/incidents/inc-7")
    assert "Remote wipe." in page.text and 'id="incident-status">contained<' in page.text
    assert deployment.http.get("/console/incidents/inc-8").status_code == 404
    for odd in ("inc%00-1", "x" * 200, "inc%0A1"):
        assert deployment.http.get(f"/console/incidents/{odd}").status_code == 404, odd
        assert deployment.http.get(f"/console/incidents/{odd}/people").status_code == 404, odd


def test_a_client_that_signs_its_appends_appends_nothing_from_a_form(
    deployment: Deployment,
) -> None:
    deployment.sign_in("responder")
    token = deployment.csrf("/console/incidents")
    deployment.store.set_key("responder", "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
    head = deployment.ledger.head()
    answer = deployment.http.post(
        "/console/incidents", data={"csrf": token, "incident_id": "inc-9", "summary": "x"}
    )
    assert answer.status_code == 403 and "signed" in answer.text
    assert deployment.ledger.head() == head


def test_the_console_is_not_in_the_openapi_document(deployment: Deployment) -> None:
    paths = deployment.http.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/console")]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(
        [
            "/console/subjects",
            "/console/incidents",
            "/console/incidents/inc-1/steps",
            "/console/incidents/inc-1/people",
            "/console/login",
            "/console/logout",
        ]
    ),
    body=st.binary(max_size=300),
    with_csrf=st.booleans(),
)
def test_no_form_body_gets_a_500(
    deployment: Deployment, path: str, body: bytes, with_csrf: bool
) -> None:
    if not deployment.http.client.cookies.get("console_session"):
        deployment.sign_in("responder")
    if with_csrf:
        body = b"csrf=" + deployment.csrf().encode() + b"&" + body
    answer = deployment.http.post(path, content=body, headers=FORM)
    assert answer.status_code < 500, answer.text


def test_the_people_of_an_incident_open_only_on_the_record(deployment: Deployment) -> None:
    _alice(deployment.ledger)
    opened = facts.incident("inc-3")
    assessed = {
        "type": "incident.assessed",
        "event_id": "evt-inc-3-assessed",
        "occurred_at": facts.now(),
        "incident_id": "inc-3",
        "risk": "high_risk",
        "data_categories": ["contact.email"],
        "likely_consequences": "Phishing.",
        "affected_subjects": ["alice-ref-1"],
    }
    deployment.ledger.append([opened, assessed])
    deployment.sign_in("responder")
    wait_until(
        lambda: deployment.http.get("/console/incidents/inc-3").status_code == 200,
        "the incident register did not catch up",
    )
    form = deployment.http.get("/console/incidents/inc-3/people")
    assert form.status_code == 200 and "alice" not in form.text
    head = deployment.ledger.head()
    for purpose in ("", "  "):
        blank = deployment.http.post(
            "/console/incidents/inc-3/people", data={"csrf": csrf_of(form), "purpose": purpose}
        )
        assert blank.status_code == 422 and "alice" not in blank.text
    odd = deployment.http.post(
        "/console/incidents/inc-3/people",
        data={"csrf": csrf_of(form), "purpose": "notify", "after": "not-a-cursor"},
    )
    assert odd.status_code == 400 and "alice" not in odd.text
    assert deployment.ledger.head() == head
    shown = deployment.http.post(
        "/console/incidents/inc-3/people",
        data={"csrf": csrf_of(form), "purpose": "notify them of the breach (GDPR 34)"},
    )
    assert shown.status_code == 200
    assert "alice-ref-1" in shown.text and "alice@example.org" in shown.text
    assert deployment.ledger.head() == head + 1
    record = deployment.last_event()["data"]
    assert record["action"] == "console_incident_people" and record["client"] == "responder"
    assert record["scope"] == "incidents:identify" and record["count"] == 1
    assert record["details"] == {"incident_id": "inc-3"}
    assert record["purpose"] == "notify them of the breach (GDPR 34)"


def test_a_lookup_shows_the_decision_at_a_chosen_moment(deployment: Deployment) -> None:
    """Given at 2 h ago, withdrawn 1 h ago: as at 90 minutes ago the purpose was usable."""
    policy = facts.policy()
    now = datetime.now(UTC)
    given = facts.consent("alice-ref-1", policy["version"], occurred_at=_at(now, 120))
    withdrawn = facts.consent(
        "alice-ref-1", policy["version"], kind="withdrawn", occurred_at=_at(now, 60)
    )
    deployment.ledger.append([policy, given, withdrawn])
    deployment.sign_in("auditor")
    then = (now - timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M")  # datetime-local: UTC
    data = {"subject": "alice-ref-1", "purpose": "audit", "at": then}

    def table(html: str, name: str) -> str:
        return html.split(f'id="{name}"', 1)[1].split("</table>", 1)[0]

    answer = wait_until(
        lambda: _answered(deployment, data), "the lookup did not show the withdrawal"
    )
    assert answer is not None
    then_table = table(answer, "consent-at")
    assert "badge ok" in then_table and "withdrawn" not in then_table
    assert "badge bad" in table(answer, "consent-now")
    head = deployment.ledger.head()
    bad = deployment.http.post(
        "/console/subjects", data={**data, "at": "yesterday", "csrf": deployment.csrf()}
    )
    assert bad.status_code == 422 and "not a time" in bad.text
    for odd in ("0001-01-01T00:00", "9999-12-31T23:59", "2026-01-01T00:00+14:01", "x" * 10_000):
        refused = deployment.http.post(
            "/console/subjects", data={**data, "at": odd, "csrf": deployment.csrf()}
        )
        assert refused.status_code == 422 and "not a time" in refused.text, odd
        assert "x" * 100 not in refused.text  # not echoed whole
    assert deployment.ledger.head() == head  # refused before anything was opened


def _at(now: datetime, minutes_ago: int) -> str:
    return (now - timedelta(minutes=minutes_ago)).isoformat()


def _answered(deployment: Deployment, data: dict[str, str]) -> str | None:
    answer = deployment.http.post("/console/subjects", data={**data, "csrf": deployment.csrf()})
    assert answer.status_code == 200, answer.text
    now = answer.text.split('id="consent-now"', 1)[-1].split("</table>", 1)[0]
    return answer.text if 'id="consent-at"' in answer.text and "withdrawn" in now else None
