"""A recipient acknowledges in its answer to the webhook (issue 19, part 3), on both backends,
through a real receiver on loopback: a 2xx whose body names the notice, signed by the
recipient's own Ed25519 key (given in ``notice-endpoints.json`` as ``ack_public_key``), is
recorded as ``recipient.acknowledged`` (``via: webhook_reply``) once; a forged one, one signed
by another recipient's key, one for another notice, a stale one or an unsigned one is a
delivery without acknowledgement; the once-only rule holds whichever way came first."""

from __future__ import annotations

import base64
import csv
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from nacl.signing import SigningKey, VerifyKey

from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.errors import ValidationError
from ledger.notices import (
    Endpoint,
    notice_id,
    reply_body,
    signatures_of,
    signed_content,
    webhook_headers,
)
from ledger.operations import LedgerOperations
from ledger.verifier.bundle import verify_bundle
from projections.database import ProjectionDatabase
from tests import facts
from tests.support import bundles
from tests.support.notice_story import notice_service as _service
from tests.support.notice_story import notice_story as _story
from tests.support.notice_story import notice_types as _types
from tests.support.webhook_receiver import Received, webhook_receiver

Reply = Callable[[Received], tuple[Mapping[str, str], bytes]]


def _signed(key: SigningKey, *, notice: str | None = None, recipient: str, skew: int = 0) -> Reply:
    """A receiver's answer acknowledging the notice it got (or ``notice``), signed by ``key``
    at its clock plus ``skew`` seconds."""

    def reply(request: Received) -> tuple[Mapping[str, str], bytes]:
        named = notice or request.headers["webhook-id"]
        body = reply_body(named, recipient)
        stamp = int(time.time()) + skew
        return webhook_headers(named, stamp, body, lambda m: key.sign(m).signature), body

    return reply


def _withdraw(ledger: LedgerApplication, story: dict[str, str]) -> str:
    (withdrawn,) = ledger.append([facts.consent(story["subject"], story["version"], "withdrawn")])
    return notice_id(withdrawn.seq, story["email"])


def _endpoint(url: str, key: SigningKey) -> Endpoint:
    return Endpoint(url, ack_key=bytes(key.verify_key))


def test_a_signed_reply_is_recorded_as_the_acknowledgement_once(
    ledger: LedgerApplication, db: ProjectionDatabase, settings: Settings, tmp_path: Path
) -> None:
    story = _story(ledger)
    key = SigningKey.generate()
    notice = _withdraw(ledger, story)
    with webhook_receiver(reply=_signed(key, recipient=story["email"])) as receiver:
        service = _service(ledger, db, {story["email"]: _endpoint(receiver.url, key)})
        for _ in range(3):
            service.step()
        with db.transaction() as sql:  # as if the mark were lost: the notice is sent again
            sql.execute(
                "UPDATE notice_outbox SET delivered_at = NULL, next_attempt_at = NULL "
                "WHERE notice_id = ?",
                (notice,),
            )
        for _ in range(2):
            service.step()
    assert len(receiver.received) == 2, "sent again, answered with a signed reply again"

    (acknowledged,) = _types(ledger, "recipient.acknowledged")
    assert acknowledged["notice_id"] == notice
    assert acknowledged["via"] == "webhook_reply"
    assert "client" not in acknowledged
    (notified,) = _types(ledger, "recipient.notified")
    assert notified["seq"] < acknowledged["seq"], "delivered, then acknowledged"
    # What the log keeps checks again with the recipient's public key, by anyone.
    content = signed_content(
        notice, acknowledged["reply_timestamp"], acknowledged["reply_body"].encode()
    )
    (signature,) = signatures_of(acknowledged["reply_signature"])
    VerifyKey(bytes(key.verify_key)).verify(content, signature)
    assert json.loads(acknowledged["reply_body"]) == {
        "type": "recipient.acknowledged",
        "notice_id": notice,
        "recipient_id": story["email"],
    }

    with pytest.raises(ValidationError) as refused:  # the API answers this with 409
        ledger.acknowledge_notice(notice, story["email"], "email-client")
    assert refused.value.problems[0].rule == "notice_acknowledged"
    service.step()
    (row,) = service.register()
    assert row.acknowledged_seq == acknowledged["seq"]
    assert not row.overdue
    assert row.acknowledged_via == "webhook_reply"

    # The recipient's bundle holds the acknowledgement, verifies, and its report lists it.
    assert LedgerOperations(ledger, settings).verify_log().ok
    bundle = bundles.export(
        ledger, settings, {"kind": "recipient", "recipient_id": story["email"]}, tmp_path / "b"
    )
    verify_bundle(bundle.path, bundles.trusted(ledger, settings))
    with (bundle.path / "notices.csv").open() as table:
        (listed,) = list(csv.DictReader(table))
    assert (listed["notice_id"], listed["acknowledged_seq"]) == (notice, str(acknowledged["seq"]))


@pytest.mark.parametrize(
    "answer",
    ["forged", "other_recipients_key", "other_notice", "body_names_other_notice", "stale", "bare"],
)
def test_a_reply_that_is_not_the_recipients_signature_for_this_notice_acknowledges_nothing(
    ledger: LedgerApplication, db: ProjectionDatabase, answer: str
) -> None:
    story = _story(ledger)
    key, other = SigningKey.generate(), SigningKey.generate()
    notice = _withdraw(ledger, story)
    recipient = story["email"]
    elsewhere = notice_id(10**9, recipient)
    replies: dict[str, Reply] = {
        "forged": _signed(other, recipient=recipient),  # a key the operator did not give
        # signed by another recipient, with its own key, for a notice it was not owed
        "other_recipients_key": _signed(other, recipient=story["analytics"]),
        "other_notice": _signed(key, notice=elsewhere, recipient=recipient),
        "body_names_other_notice": _body_names(key, elsewhere, recipient),
        "stale": _signed(key, recipient=recipient, skew=-3600),
        "bare": lambda _: ({"content-type": "application/json"}, reply_body(notice, recipient)),
    }
    with webhook_receiver(reply=replies[answer]) as receiver:
        service = _service(ledger, db, {recipient: _endpoint(receiver.url, key)})
        service.step()
        service.step()
    assert len(receiver.received) == 1
    (notified,) = _types(ledger, "recipient.notified")
    assert notified["notice_id"] == notice and notified["response_status"] == 200
    assert not _types(ledger, "recipient.acknowledged"), "delivered, not acknowledged"
    (row,) = service.register()
    assert row.delivered_at is not None and row.acknowledged_seq is None
    assert row.last_error is None, "a reply that acknowledges nothing is no error"

    receipt = ledger.acknowledge_notice(notice, recipient, "email-client")  # the API: 201
    (acknowledged,) = _types(ledger, "recipient.acknowledged")
    assert acknowledged["seq"] == receipt.seq
    assert acknowledged["via"] == "api" and acknowledged["client"] == "email-client"


def _body_names(key: SigningKey, other: str, recipient: str) -> Reply:
    """Signed under the notice's own id, but the body acknowledges another notice."""

    def reply(request: Received) -> tuple[Mapping[str, str], bytes]:
        body = reply_body(other, recipient)
        stamp = int(time.time())
        sign = lambda m: key.sign(m).signature  # noqa: E731
        return webhook_headers(request.headers["webhook-id"], stamp, body, sign), body

    return reply


def test_a_signed_reply_after_an_acknowledgement_through_the_api_is_not_a_second_one(
    ledger: LedgerApplication, db: ProjectionDatabase
) -> None:
    story = _story(ledger)
    key = SigningKey.generate()
    notice = _withdraw(ledger, story)
    service = _service(ledger, db, {})
    service.step()  # owed, not sent yet: no endpoint
    by_api = ledger.acknowledge_notice(notice, story["email"], "email-client")
    with webhook_receiver(reply=_signed(key, recipient=story["email"])) as receiver:
        endpoint = _endpoint(receiver.url, key)
        service.endpoints = lambda: {story["email"]: endpoint}
        service.step()
        service.step()
    assert len(receiver.received) == 1
    (acknowledged,) = _types(ledger, "recipient.acknowledged")
    assert acknowledged["seq"] == by_api.seq and acknowledged["via"] == "api"
    (row,) = service.register()
    assert row.acknowledged_seq == by_api.seq


def test_a_recipient_without_an_ack_key_is_not_acknowledged_by_its_answer(
    ledger: LedgerApplication, db: ProjectionDatabase
) -> None:
    """Signed replies count only for a recipient whose key the operator configured."""
    story = _story(ledger)
    key = SigningKey.generate()
    _withdraw(ledger, story)
    with webhook_receiver(reply=_signed(key, recipient=story["email"])) as receiver:
        service = _service(ledger, db, {story["email"]: receiver.url})
        service.step()
        service.step()
    assert len(_types(ledger, "recipient.notified")) == 1
    assert not _types(ledger, "recipient.acknowledged")


def test_the_endpoints_file_takes_an_ack_key_of_32_bytes_only() -> None:
    from ledger.notices import endpoints_from

    key = base64.b64encode(bytes(SigningKey.generate().verify_key)).decode()
    found = endpoints_from(
        {
            "good": {"url": "https://a.example/", "ack_public_key": key},
            "short": {"url": "https://b.example/", "ack_public_key": key[:20]},
            "junk": {"url": "https://c.example/", "ack_public_key": "not base64!"},
        }
    )
    assert set(found) == {"good"}
    assert found["good"].ack_key == base64.b64decode(key)
