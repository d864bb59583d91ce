"""Notices through RabbitMQ (the broker at 127.0.0.1:5672, guest/guest), on both ledger
backends: the message carries the webhook's body and signed headers, is persistent and
confirmed; a queue that does not exist yet is a failed attempt, tried again, never a lost
notice. Skipped outside CI when no broker answers; under CI (``CI`` set) that fails."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pika
import pika.exceptions
import pytest
from nacl.signing import SigningKey, VerifyKey

from ledger.application import LedgerApplication
from ledger.notices import Endpoint, notice_id, signatures_of, signed_content
from projections.database import ProjectionDatabase
from projections.notices import NoticeService
from tests import facts

BROKER = os.environ.get("CONSENT_LEDGER_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F")


@pytest.fixture
def channel() -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    try:
        connection = pika.BlockingConnection(pika.URLParameters(BROKER))
    except pika.exceptions.AMQPError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"RabbitMQ at {BROKER} does not answer ({exc!r}): CI needs it")
        pytest.skip(f"RabbitMQ at {BROKER} does not answer")
    try:
        yield connection.channel()
    finally:
        connection.close()


def test_a_withdrawal_reaches_the_recipients_queue_signed_and_confirmed(
    ledger: LedgerApplication,
    db: ProjectionDatabase,
    channel: pika.adapters.blocking_connection.BlockingChannel,
) -> None:
    version, subject = facts.ref("policy"), facts.ref("user")
    bus, other = facts.ref("rcp-bus"), facts.ref("rcp-other")
    queue = f"consent-notices-{uuid.uuid4().hex[:12]}"
    ledger.append(
        [
            facts.policy(version),
            facts.recipient(bus),
            facts.recipient(other),
            facts.consent(subject, version),
            facts.disclosure(bus, [subject], version),
            facts.disclosure(other, [subject], version, purpose="usage_analytics"),
        ]
    )
    # A key for acknowledgements in answers does nothing on a queue: a message has no answer.
    endpoints = {
        bus: Endpoint(f"{BROKER}#{queue}", ack_key=bytes(SigningKey.generate().verify_key))
    }
    service = NoticeService(ledger, db, lambda: endpoints, retry_first=timedelta(0))
    (withdrawn,) = ledger.append([facts.consent(subject, version, "withdrawn")])
    try:
        service.step()  # the queue does not exist yet: unroutable, not confirmed, not delivered
        (row,) = service.register()
        assert row.delivered_at is None
        assert row.attempts == 1
        assert row.last_error is not None and "unroutable" in row.last_error

        channel.queue_declare(queue=queue, durable=True)
        service.step()
        method, properties, body = channel.basic_get(queue=queue, auto_ack=True)
        assert method is not None, "the notice is on the queue"
        assert properties is not None and body is not None
        assert channel.basic_get(queue=queue, auto_ack=True)[0] is None, "once"
    finally:
        channel.queue_delete(queue=queue)

    expected = notice_id(withdrawn.seq, bus)
    assert properties.message_id == expected
    assert properties.delivery_mode == 2, "persistent"
    headers = {str(k): str(v) for k, v in (properties.headers or {}).items()}
    assert headers["webhook-id"] == expected
    content = signed_content(expected, int(headers["webhook-timestamp"]), body)
    (signature,) = signatures_of(headers["webhook-signature"])
    VerifyKey(ledger.ledger.signer.public_key).verify(content, signature)
    data = json.loads(body)["data"]
    assert (data["recipient_id"], data["subject_ref"]) == (bus, subject)

    (row,) = service.register()
    assert row.attempts == 2
    notified = [
        e.data
        for e in (ledger.decode(r) for r in ledger.iter_records())
        if e.type == "recipient.notified"
    ]
    assert [(n["notice_id"], n["transport"], n["attempts"]) for n in notified] == [
        (expected, "amqp", 2)
    ]
    assert row.transport == "amqp" and row.acknowledged_seq is None
    assert not [r for r in ledger.iter_records() if b"recipient.acknowledged" in r.body]
