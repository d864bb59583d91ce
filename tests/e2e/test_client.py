"""The Python clients against a real server: every route on both the sync and the async client,
signed writes, resends that store nothing twice, paged reads followed to the end, and receipts
checked against a signed checkpoint by proof."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import inspect
import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from click.testing import CliRunner
from nacl.signing import SigningKey

from api.cli import cli
from api.client import (
    AsyncLedgerClient,
    Awaited,
    AwaitedPages,
    Blocking,
    BlockingPages,
    LedgerAPIError,
    LedgerCalls,
    LedgerClient,
    NotYetCoveredError,
    Receipt,
    ReceiptCheck,
    ReceiptCheckError,
)
from ledger.verifier.note import format_verifier_key
from ledger.verifier.receipt import ReceiptError
from tests import facts
from tests.e2e.conftest import Server
from tests.support.processes import add_client
from tests.support.waiting import wait_until

T = TypeVar("T")

OPERATIONS = {
    ("post", "/v1/events"): "append, append_batch",
    ("get", "/v1/events/{seq}"): "event",
    ("get", "/v1/consent/state"): "consent_state",
    ("get", "/v1/consent/decision"): "decision",
    ("get", "/v1/consent/receipts/{seq}"): "consent_receipt",
    ("get", "/v1/subjects/history"): "history",
    ("get", "/v1/disclosures"): "iter_disclosures, disclosures_csv",
    ("get", "/v1/incidents"): "incidents",
    ("post", "/v1/incidents"): "record_incident",
    ("get", "/v1/incidents/{incident_id}"): "incident",
    ("get", "/v1/incidents/{incident_id}/affected"): "iter_affected",
    ("get", "/v1/requests"): "requests",
    ("get", "/v1/checkpoint"): "checkpoint, check_receipt",
    ("get", "/v1/keys"): "verifier_keys",
    ("get", "/metrics"): "metrics",
    ("get", "/healthz"): "health",
    ("get", "/readyz"): "ready",
    ("get", "/v1/proofs/inclusion"): "inclusion_proof, check_receipt",
    ("get", "/v1/proofs/consistency"): "consistency_proof, check_consent_receipt",
    ("get", "/v1/entries"): "iter_entries, check_receipt",
    ("get", "/v1/notices"): "notices",
    ("post", "/v1/notices/{notice_id}/ack"): "acknowledge_notice",
    ("post", "/v1/exports"): "start_export",
    ("get", "/v1/exports/{job_id}"): "export_status",
    ("get", "/v1/exports/{job_id}/bundle"): "download_export",
}
"""Each operation of the OpenAPI document, and the client methods that call it."""


def methods(kind: type[Any]) -> dict[str, tuple[type[Any], Any]]:
    """The client's methods made of ``LedgerCalls`` operations: name -> (kind, operation)."""
    return {
        name: (type(value), value.operation)
        for name, value in vars(kind).items()
        if getattr(value, "operation", None) is not None
    }


def test_both_clients_cover_every_operation_of_the_openapi_document(server: Server) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    served = {(m, path) for path, ops in document["paths"].items() for m in ops}
    assert served == set(OPERATIONS), "a route without a client method, or one gone"
    named = {name for names in OPERATIONS.values() for name in names.split(", ")}
    sync, asynchronous = methods(LedgerClient), methods(AsyncLedgerClient)
    assert named <= set(sync)
    public = {n for n, f in vars(LedgerCalls).items() if inspect.isfunction(f) and n[0] != "_"}
    assert set(sync) == set(asynchronous) == public
    # The same methods, each running the same operation: the two cannot drift apart.
    awaited = {Blocking: Awaited, BlockingPages: AwaitedPages}
    for name, (kind, operation) in sync.items():
        assert asynchronous[name] == (awaited[kind], operation), name
        paged = str(inspect.signature(operation).return_annotation).startswith("Pages[")
        assert (kind is BlockingPages) == paged, name  # rows as they come, or one result
        assert getattr(LedgerClient, name).__doc__ == operation.__doc__


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


class AsyncFlaky(httpx.AsyncBaseTransport):
    """:class:`Flaky` for the async client."""

    def __init__(self, busy: int = 0, lost: int = 0) -> None:
        self.real = httpx.AsyncHTTPTransport()
        self.busy, self.lost = busy, lost
        self.sent: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and self.busy:
            self.busy -= 1
            return httpx.Response(503, headers={"Retry-After": "0.5"}, json={"title": "busy"})
        if request.method == "POST":
            self.sent.append(await request.aread())
        response = await self.real.handle_async_request(request)
        if request.method == "POST" and self.lost:
            self.lost -= 1
            await response.aread()
            raise httpx.ReadError("the answer was lost on the way back")
        return response

    async def aclose(self) -> None:
        await self.real.aclose()


async def collect(rows: AsyncIterator[T]) -> list[T]:
    return [row async for row in rows]


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
        head = ledger.iter_entries(receipt.leaf_index)
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
    with pytest.raises(ValueError, match="0 or more"):
        AsyncLedgerClient(server.url, server.tokens["writer"], retries=-1)

    async def the_same_from_asyncio() -> None:
        waited: list[float] = []

        async def wait(seconds: float) -> None:
            waited.append(seconds)

        again = AsyncFlaky(busy=1, lost=2)
        batch = [facts.policy(), facts.policy()]
        async with AsyncLedgerClient(
            server.url, server.tokens["writer"], transport=again, sleep=wait
        ) as ledger:
            receipts = await ledger.append_batch(batch)
            assert all(r.duplicate for r in receipts)
            assert len(again.sent) == 3 and len(set(again.sent)) == 1
            assert waited[0] == 0.5 and len(waited) == 3
            entries = await collect(ledger.iter_entries(receipts[0].leaf_index))
            assert [e.index for e in entries] == [r.leaf_index for r in receipts]
        async with AsyncLedgerClient(
            server.url, server.tokens["writer"], transport=AsyncFlaky(lost=9), retries=1, sleep=wait
        ) as ledger:
            with pytest.raises(httpx.ReadError):  # the last failure is the caller's
                await ledger.append(facts.policy())

    asyncio.run(the_same_from_asyncio())


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

    async def signed_from_asyncio() -> dict[str, Any]:
        async with AsyncLedgerClient(server.url, token, signing_key=bytes(key)) as ledger:
            receipt = await ledger.append(facts.policy())
            emitter: dict[str, Any] = (await ledger.event(receipt.seq))["emitter"]
            return emitter

    assert asyncio.run(signed_from_asyncio())["client"] == "signer"


def test_reads_of_every_register_and_every_page(server: Server, client: LedgerClient) -> None:
    pol = facts.policy()
    rcpt = facts.recipient(occurred_at="2026-01-01T00:00:00Z")
    subject = facts.ref("user")
    client.append_batch([pol, rcpt, facts.consent(subject, pol["version"])])
    shared = [facts.disclosure(rcpt["recipient_id"], [subject], pol["version"]) for _ in range(3)]
    last = client.append_batch([*shared, facts.request(subject)])[-1]
    pseudonym = client.consent_state(subject, wait_for=last.seq)["subject"]

    def csv_lines() -> list[str]:
        found = list(client.disclosures_csv(subject=subject))
        return found if len(found) == 4 else []

    lines = wait_until(csv_lines, "the disclosures in the register")
    assert "seq" in lines[0].split(",")  # one header, then the three rows
    assert all(pseudonym in row for row in lines[1:])
    rows = list(client.iter_disclosures(subject=subject, page_size=2))  # two pages
    assert len(rows) == 3 and len({r["seq"] for r in rows}) == 3
    other = facts.recipient()
    client.append_batch([other, facts.disclosure(other["recipient_id"], [subject], pol["version"])])
    wait_until(
        lambda: len(list(client.iter_disclosures(subject=subject))) == 4, "the fourth disclosure"
    )
    # Page after page, the filter holds: no other recipient's row comes in.
    only = list(client.iter_disclosures(recipient=rcpt["recipient_id"], page_size=1))
    assert [r["seq"] for r in only] == [r["seq"] for r in rows]
    history = client.history(subject)
    assert len([e for e in history["events"] if e["type"] == "disclosure.recorded"]) == 4
    assert wait_until(lambda: client.requests(subject=subject), "the request in the register")
    assert client.health() and client.ready()["status"] in ("ready", "degraded")
    assert isinstance(client.notices(overdue=False)["notices"], list)
    recipient = add_client(server.settings, rcpt["recipient_id"], "notices:ack")
    with LedgerClient(server.url, recipient) as acknowledger, pytest.raises(LedgerAPIError) as none:
        acknowledger.acknowledge_notice("00000000-0000-4000-8000-000000000000")
    assert none.value.status == 404  # no such notice owed to this recipient

    async def the_same_from_asyncio() -> None:
        async with AsyncLedgerClient(server.url, server.tokens["writer"]) as ledger:
            assert await collect(ledger.iter_disclosures(subject=subject, page_size=2)) == list(
                client.iter_disclosures(subject=subject)
            )
            assert await collect(ledger.disclosures_csv(subject=subject)) == list(
                client.disclosures_csv(subject=subject)
            )
            assert (await ledger.history(subject)) == client.history(subject)
            assert await ledger.health()

    asyncio.run(the_same_from_asyncio())

    with LedgerClient(server.url, server.tokens["admin"]) as admin:
        assert "ledger_head" in admin.metrics()
    with pytest.raises(LedgerAPIError) as caught:
        client.metrics()  # a writer is no admin
    assert caught.value.status == 403


def reads(ledger: LedgerClient) -> int:
    """How many reads of personal data the log holds."""
    types = (json.loads(e.body)["type"] for e in ledger.iter_entries(0))
    return sum(t == "personal_data.accessed" for t in types)


def test_the_people_an_incident_affects_every_page_on_the_record(
    server: Server, client: LedgerClient
) -> None:
    pol = facts.policy()
    processor = facts.recipient()
    people = [facts.ref("user") for _ in range(3)]
    client.append_batch(
        [
            pol,
            processor,
            *[facts.consent(p, pol["version"], contact=f"{p}@example.org") for p in people],
            facts.disclosure(processor["recipient_id"], people[:2], pol["version"]),
        ]
    )
    incident = facts.ref("inc")
    with LedgerClient(server.url, server.tokens["responder"]) as responder:
        responder.record_incident(
            [
                {**facts.incident(incident), "recipient_id": processor["recipient_id"]},
                {
                    "type": "incident.assessed",
                    "event_id": facts.ref("evt"),
                    "occurred_at": facts.now(),
                    "incident_id": incident,
                    "risk": "high_risk",
                    "data_categories": ["contact"],
                    "likely_consequences": "Phishing e-mails",
                    "affected_subjects": [people[2]],
                    "affected_rule": {
                        "recipient_id": processor["recipient_id"],
                        "disclosed_from": facts.now(timedelta(hours=-1)),
                        "disclosed_to": facts.now(timedelta(hours=1)),
                    },
                },
            ]
        )
        found = wait_until(
            lambda: [i for i in responder.incidents() if i["incident_id"] == incident],
            "the incident in the register",
        )
        assert found and responder.incident(incident)["incident_id"] == incident
    token = add_client(server.settings, "notifier", "incidents:identify", "history:read")
    purpose = "notify the people of the hosting breach"
    with LedgerClient(server.url, token) as notifier:
        wait_until(
            lambda: len(list(notifier.iter_affected(incident, purpose))) == 3,
            "the three people in the incident's read model",
        )
        before = reads(notifier)
        opened = list(notifier.iter_affected(incident, purpose, page_size=1))
        assert sorted(p["subject_ref"] for p in opened) == sorted(people)
        assert {p["contact"] for p in opened} == {f"{p}@example.org" for p in people}
        assert reads(notifier) - before >= 3  # every page of one was recorded as a read

        async def the_same_from_asyncio() -> list[dict[str, Any]]:
            async with AsyncLedgerClient(server.url, token) as ledger:
                return await collect(ledger.iter_affected(incident, purpose, page_size=2))

        assert sorted(p["subject_ref"] for p in asyncio.run(the_same_from_asyncio())) == sorted(
            people
        )
        with pytest.raises(LedgerAPIError) as caught:
            list(notifier.iter_affected("inc-never-opened", purpose))
        assert caught.value.status == 404
    with pytest.raises(LedgerAPIError) as refused:
        list(client.iter_affected(incident, purpose))  # a writer may not open them
    assert refused.value.status == 403


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
    renumbered = dataclasses.replace(receipt, seq=receipt.seq + 1)
    with pytest.raises(ReceiptCheckError, match="the entry says seq"):
        client.check_receipt(renumbered, key)
    other = SigningKey.generate()
    name = key.split("+")[0]
    stranger = format_verifier_key(name, bytes(other.verify_key))
    with pytest.raises(ReceiptCheckError, match="no trusted key has the receipt's key id"):
        client.check_receipt(receipt, stranger)
    with pytest.raises(ReceiptCheckError, match="no verifier key"):
        client.check_receipt(receipt, [])
    # After a rotation one trusts every key, old and new: the receipt names the one it needs.
    assert client.check_receipt(receipt, [stranger, key]).seq == receipt.seq
    beyond = Receipt(**{**dataclasses.asdict(receipt), "leaf_index": 10**6})
    with pytest.raises(ReceiptCheckError, match="no entry at leaf"):
        client.check_receipt(beyond, key)

    async def checked_from_asyncio() -> ReceiptCheck:
        async with AsyncLedgerClient(server.url, server.tokens["writer"]) as ledger:
            return await ledger.check_receipt(receipt, key)

    assert asyncio.run(checked_from_asyncio()).seq == receipt.seq


def test_a_consent_receipt_checks_out_and_is_still_in_the_log(server: Server) -> None:
    subject = facts.ref("user")
    pol = facts.policy()
    with LedgerClient(server.url, server.tokens["writer"]) as writer:
        _, given = writer.append_batch(
            [pol, facts.consent(subject, pol["version"], contact="kim@example.org")]
        )
        [key] = writer.verifier_keys()
    with LedgerClient(server.url, server.tokens["admin"]) as admin:
        document = admin.consent_receipt(given.seq, purpose="a copy for the person")
        with LedgerClient(server.url, server.tokens["writer"]) as writer:
            writer.append(facts.policy())  # the log grows past the receipt's checkpoint
        report = admin.check_consent_receipt(document, key)
        assert report.seq == given.seq
        assert report.checked[-1].startswith("consistency: the tree of")
        edited = {**document, "record": {**document["record"], "record_id": "00" * 32}}
        with pytest.raises(ReceiptError) as caught:
            admin.check_consent_receipt(edited, key)
        assert caught.value.check == "record"


def test_an_export_streams_to_a_file_from_either_client(server: Server, tmp_path: Path) -> None:
    token = add_client(server.settings, "auditor", "exports:create")
    with LedgerClient(server.url, server.tokens["writer"]) as writer:
        writer.append(facts.policy())
    with LedgerClient(server.url, token) as ledger:
        job = ledger.start_export({"kind": "all"}, "a copy for the auditor")
        done = wait_until(
            lambda: ledger.export_status(job["id"])["state"] in ("done", "failed"),
            "the export job to end",
            60,
            0.2,
        )
        assert done and ledger.export_status(job["id"])["state"] == "done"
        digest = ledger.download_export(job["id"], tmp_path / "sync.zip")

    async def downloaded_from_asyncio() -> str:
        async with AsyncLedgerClient(server.url, token) as ledger:
            with pytest.raises(LedgerAPIError) as caught:
                await ledger.download_export("00000000-0000-4000-8000-000000000000", tmp_path / "x")
            assert caught.value.status == 404 and not (tmp_path / "x.partial").exists()
            return await ledger.download_export(job["id"], tmp_path / "async.zip")

    assert asyncio.run(downloaded_from_asyncio()) == digest
    assert (tmp_path / "async.zip").read_bytes() == (tmp_path / "sync.zip").read_bytes()
