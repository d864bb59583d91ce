"""The lean append route (``POST /v1/events`` served without FastAPI's dependency solving, in a
thread pool of its own, receipts encoded once): what a client and an operator rely on.

The route must answer exactly as the documented FastAPI route did: the same receipts, statuses
and headers, the same problem documents for a missing token, a missing scope and a repeated
query parameter, the same counters in ``/metrics``; and its pool is the size the operator set.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.http.app import ServerSettings, create_app, open_client_database
from api.token_store import Scope, SqlTokenStore
from ledger.config import Settings, SettingsError
from tests import facts
from tests.support.in_process import InProcess

APPEND_THREADS = 3


@dataclass
class Served:
    http: InProcess
    tokens: dict[str, str]
    threads: list[str]
    """The name of the thread each append ran in."""
    app: Any

    def post(self, body: Any, who: str = "writer", **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}", **kwargs.pop("headers", {})}
        return self.http.post("/v1/events", content=orjson.dumps(body), headers=headers, **kwargs)


@pytest.fixture
def served(settings: Settings) -> Iterator[Served]:
    store = SqlTokenStore(open_client_database(settings))
    tokens = {
        "writer": store.add("writer", [Scope.WRITE_EVENTS])[1],
        "reader": store.add("reader", [Scope.READ_STATE])[1],
        "admin": store.add("admin", [Scope.ADMIN])[1],
    }
    store.db.close()
    server = ServerSettings(projections=False, signer=False, append_threads=APPEND_THREADS)
    app = create_app(settings, server=server)
    http = InProcess(app)
    threads: list[str] = []
    ledger = app.state.ledger
    append = ledger.append

    def recording(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return append(*args, **kwargs)

    ledger.append = recording
    try:
        yield Served(http, tokens, threads, app)
    finally:
        http.close()


def _policy_and_consent() -> tuple[dict[str, Any], dict[str, Any]]:
    policy = facts.policy()
    return policy, facts.consent(facts.ref("user"), policy["version"])


RECEIPT_KEYS = [
    "seq",
    "leaf_index",
    "event_id",
    "event_hash",
    "signature",
    "key_id",
    "recorded_at",
    "duplicate",
]


def test_receipts_statuses_and_minimal_answers(served: Served) -> None:
    policy, consent = _policy_and_consent()
    first = served.post(policy)
    assert first.status_code == 201, first.text
    assert first.headers["content-type"] == "application/json"
    receipt = first.json()
    assert list(receipt) == RECEIPT_KEYS
    assert receipt["leaf_index"] == receipt["seq"] - 1 and receipt["duplicate"] is False

    again = served.post(policy)  # the same event again: its original receipt, marked
    assert again.status_code == 200
    assert again.json() == dict(receipt, duplicate=True)

    batch = served.post([consent])
    assert batch.status_code == 201
    (recorded,) = batch.json()["receipts"]
    assert recorded["seq"] > receipt["seq"] and recorded["event_id"] == consent["event_id"]

    minimal = {"Prefer": "return=minimal"}
    one = served.post(consent, headers=minimal)
    assert one.status_code == 200 and one.json() == {"seq": recorded["seq"]}
    assert one.headers["preference-applied"] == "return=minimal"
    many = served.post([policy, consent], headers=minimal)
    assert many.status_code == 200 and many.json() == {"seqs": [receipt["seq"], recorded["seq"]]}


def test_appends_run_in_the_pool_the_settings_size(served: Served) -> None:
    assert served.app.state.append_executor._max_workers == APPEND_THREADS
    policy, _ = _policy_and_consent()
    assert served.post(policy).status_code == 201
    assert served.threads and all(name.startswith("append") for name in served.threads)


def test_refusals_are_the_same_problem_documents(served: Served) -> None:
    policy, _ = _policy_and_consent()
    anonymous = served.http.post("/v1/events", content=orjson.dumps(policy))
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="consent-ledger"'
    assert anonymous.json()["title"] == "Unauthorized"

    forged = served.http.post(
        "/v1/events", content=orjson.dumps(policy), headers={"Authorization": "Bearer cl_x"}
    )
    assert forged.status_code == 401 and forged.json()["detail"] == "the token is not valid"

    reader = served.post(policy, who="reader")
    assert reader.status_code == 403
    assert reader.json()["detail"] == "this route needs the scope events:write"

    repeated = served.post(policy, params=[("a", "1"), ("a", "2")])
    assert repeated.status_code == 400
    assert repeated.json()["errors"] == [
        {"field": "query.a", "rule": "repeated", "detail": "a is given 2 times; give it once"}
    ]

    malformed = served.http.post(
        "/v1/events",
        content=b"{",
        headers={"Authorization": f"Bearer {served.tokens['writer']}"},
    )
    assert malformed.status_code == 400 and malformed.json()["title"] == "Malformed JSON"
    assert served.threads == []  # refused before the ledger was asked

    invalid = served.post({"type": "consent.given"})  # refused by the ledger's validation
    assert invalid.status_code == 422 and invalid.json()["title"] == "Invalid event"
    assert invalid.json()["errors"]


def test_metrics_count_what_the_lean_route_appended(served: Served) -> None:
    policy, consent = _policy_and_consent()
    served.post([policy, consent])
    served.post(policy)
    headers = {"Authorization": f"Bearer {served.tokens['admin']}"}
    text = served.http.get("/metrics", headers=headers).text
    assert 'ledger_events_appended_total{outcome="new"} 2.0' in text
    assert 'ledger_events_appended_total{outcome="repeated"} 1.0' in text
    assert "ledger_append_batch_size_count 2.0" in text


def test_the_openapi_document_still_describes_the_append(served: Served) -> None:
    operation = served.http.get("/openapi.json").json()["paths"]["/v1/events"]["post"]
    assert operation["requestBody"]["required"] is True
    assert {"200", "201", "401", "403", "409", "413", "422", "503"} <= set(operation["responses"])


@given(st.integers(min_value=1, max_value=1024))
def test_append_threads_is_read_from_the_environment(threads: int) -> None:
    read = ServerSettings.from_env({"CONSENT_LEDGER_APPEND_THREADS": str(threads)})
    assert read.append_threads == threads
    assert ServerSettings.from_env({}).append_threads == 64


@pytest.mark.parametrize("value", ["0", "1025", "-1", "many"])
def test_append_threads_out_of_range_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="CONSENT_LEDGER_APPEND_THREADS"):
        ServerSettings.from_env({"CONSENT_LEDGER_APPEND_THREADS": value})
