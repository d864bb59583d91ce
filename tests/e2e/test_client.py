"""The Python client against a real server: every route, signed writes, resends that store
nothing twice, paged reads, and a receipt checked against a signed checkpoint by proof."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner
from nacl.signing import SigningKey

from api.cli import cli
from api.client import (
    LedgerAPIError,
    LedgerClient,
    NotYetCoveredError,
    Receipt,
    ReceiptCheck,
    ReceiptCheckError,
)
from ledger.verifier.note import format_verifier_key
from tests import facts
from tests.e2e.conftest import Server
from tests.support.processes import add_client
from tests.support.waiting import wait_until

OPERATIONS = {
    ("post", "/v1/events"): "append, append_batch",
    ("get", "/v1/events/{seq}"): "event",
    ("get", "/v1/consent/state"): "consent_state",
    ("get", "/v1/consent/decision"): "decision",
    ("get", "/v1/consent/receipts/{seq}"): "consent_receipt",
    ("get", "/v1/subjects/history"): "history",
    ("get", "/v1/disclosures"): "disclosures, disclosures_csv",
    ("get", "/v1/incidents"): "incidents",
    ("post", "/v1/incidents"): "record_incident",
    ("get", "/v1/incidents/{incident_id}"): "incident",
    ("get", "/v1/requests"): "requests",
    ("get", "/v1/checkpoint"): "checkpoint",
    ("get", "/v1/keys"): "verifier_keys",
    ("get", "/metrics"): "metrics",
    ("get", "/healthz"): "health",
    ("get", "/readyz"): "ready",
    ("get", "/v1/proofs/inclusion"): "inclusion_proof, check_receipt",
    ("get", "/v1/proofs/consistency"): "consistency_proof",
    ("get", "/v1/entries"): "entries",
    ("post", "/v1/exports"): "start_export",
    ("get", "/v1/exports/{job_id}"): "export_status",
    ("get", "/v1/exports/{job_id}/bundle"): "download_export",
}
"""Each operation of the OpenAPI document, and the client methods that call it."""


def test_the_client_covers_every_operation_of_the_openapi_document(server: Server) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    served = {(m, path) for path, ops in document["paths"].items() for m in ops}
    assert served == set(OPERATIONS), "a route without a client method, or one gone"
    for names in OPERATIONS.values():
        for name in names.split(", "):
            assert callable(getattr(LedgerClient, name)), name


class Flaky(httpx.BaseTransport):
    """The real server behind a connection that fails as told: ``busy`` answers of 503 before
    any request reaches the server, then ``lost`` answers lost after the server got them."""

    def __init__(self, busy: int = 0, lost: int = 0) -> None:
        self.real = httpx.HTTPTransport()
        self.busy, self.lost = busy, lost
        self.sent: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and self.busy:
            self.busy -= 1
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"title": "busy"})
        if request.method == "POST":
            self.sent.append(request.read())
        response = self.real.handle_request(request)
        if request.method == "POST" and self.lost:
            self.lost -= 1
            response.read()
            raise httpx.ReadError("the answer was lost on the way back")
        return response

    def close(self) -> None:
        self.real.close()


@pytest.fixture
def client(server: Server) -> Iterator[LedgerClient]:
    with LedgerClient(server.url, server.tokens["writer"], sleep=lambda _: None) as ledger:
        yield ledger


def test_a_resend_after_push_back_or_a_lost_answer_stores_nothing_twice(server: Server) -> None:
    pol = facts.policy()
    waits: list[float] = []
    flaky = Flaky(busy=2, lost=1)
    with LedgerClient(
        server.url, server.tokens["writer"], transport=flaky, sleep=waits.append
    ) as ledger:
        receipt = ledger.append(pol)  # two 503s, then stored, the answer lost, then resent
        assert receipt.duplicate  # the resend was answered with the original receipt
        assert len(flaky.sent) == 2 and flaky.sent[0] == flaky.sent[1]  # the same bytes
        assert waits[:2] == [0.0, 0.0]  # Retry-After honoured
        assert ledger.event(receipt.seq)["event_id"] == pol["event_id"]
        head = ledger.entries(receipt.leaf_index)
        assert [e.index for e in head] == [receipt.leaf_index]  # nothing after it: stored once
    with (
        LedgerClient(
            server.url, server.tokens["writer"], transport=Flaky(busy=5), retries=2
        ) as ledger,
        pytest.raises(LedgerAPIError) as caught,
    ):
        ledger.append(facts.policy())
    assert caught.value.status == 503
    with pytest.raises(ValueError, match="0 or more"):
        LedgerClient(server.url, server.tokens["writer"], retries=-1)


def test_a_client_with_a_registered_key_signs_every_write(server: Server) -> None:
    token = add_client(server.settings, "signer", "events:write", "history:read")
    key = SigningKey.generate()
    args = ["--data-dir", str(server.settings.data_dir)]
    if server.settings.database_url:
        args += ["--database-url", server.settings.database_url]
    public = base64.b64encode(bytes(key.verify_key)).decode()
    env = {"CONSENT_LEDGER_DATABASE_SCHEMA": server.settings.database_schema}
    done = CliRunner().invoke(cli, [*args, "clients", "set-key", "signer", public], env=env)
    assert done.exit_code == 0, done.output
    with LedgerClient(server.url, token) as unsigned, pytest.raises(LedgerAPIError) as caught:
        unsigned.append(facts.policy())
    assert caught.value.status == 401
    with LedgerClient(server.url, token, signing_key=bytes(key)) as signed:
        receipt = signed.append_batch([facts.policy(), facts.policy()])[-1]
        kept = signed.event(receipt.seq)["emitter"]
    assert kept["client"] == "signer"
    assert kept["key_id"] and kept["signature"]


def test_reads_of_every_register_and_csv_pages(server: Server, client: LedgerClient) -> None:
    pol = facts.policy()
    rcpt = facts.recipient(occurred_at="2026-01-01T00:00:00Z")
    subject = facts.ref("user")
    client.append_batch([pol, rcpt, facts.consent(subject, pol["version"])])
    shared = [facts.disclosure(rcpt["recipient_id"], [subject], pol["version"]) for _ in range(3)]
    last = client.append_batch([*shared, facts.request(subject)])[-1]
    pseudonym = client.consent_state(subject, wait_for=last.seq)["subject"]
    rows: list[str] = wait_until(
        lambda: list(client.disclosures_csv(subject=subject, page_size=1))[1:],
        "the disclosures in the register",
    )
    assert len(rows) == 3 and all(pseudonym in row for row in rows)  # three pages, one header
    assert len(list(client.disclosures(subject=subject, page_size=2))) == 3
    history = client.history(subject)
    assert len([e for e in history["events"] if e["type"] == "disclosure.recorded"]) == 3
    assert wait_until(lambda: client.requests(subject=subject), "the request in the register")
    assert client.health() and client.ready()["status"] in ("ready", "degraded")

    with LedgerClient(server.url, server.tokens["responder"]) as responder:
        incident = facts.incident()
        [opened] = responder.record_incident([incident])
        found = wait_until(
            lambda: [
                i for i in responder.incidents() if i["incident_id"] == incident["incident_id"]
            ],
            "the incident in the register",
        )
        assert found and responder.incident(incident["incident_id"])["opened_seq"] == opened.seq
    with LedgerClient(server.url, server.tokens["admin"]) as admin:
        assert "ledger_head" in admin.metrics()
    with pytest.raises(LedgerAPIError) as caught:
        client.metrics()  # a writer is no admin
    assert caught.value.status == 403


def test_a_receipt_checks_out_against_a_signed_checkpoint(
    server: Server, client: LedgerClient
) -> None:
    receipt = client.append(facts.policy())
    [key] = client.verifier_keys()  # in real use: the key the operator gave you out of band

    def covered() -> ReceiptCheck | None:
        try:
            return client.check_receipt(receipt, key)
        except NotYetCoveredError:
            return None

    checked = wait_until(covered, "a checkpoint covering the receipt", 10, 0.2)
    assert checked is not None
    assert checked.seq == receipt.seq and checked.checkpoint_size > receipt.leaf_index

    forged = dataclasses.replace(receipt, event_hash="00" * 32)
    with pytest.raises(ReceiptCheckError, match="not the one the receipt names"):
        client.check_receipt(forged, key)
    other = SigningKey.generate()
    name = key.split("+")[0]
    stranger = format_verifier_key(name, bytes(other.verify_key))
    with pytest.raises(ReceiptCheckError, match="no trusted key has the receipt's key id"):
        client.check_receipt(receipt, stranger)
    # After a rotation one trusts every key, old and new: the receipt names the one it needs.
    assert client.check_receipt(receipt, [stranger, key]).seq == receipt.seq
    beyond = Receipt(**{**dataclasses.asdict(receipt), "leaf_index": 10**6})
    with pytest.raises(ReceiptCheckError):
        client.check_receipt(beyond, key)
