"""Recipients told (issue 19), on both backends, through a real webhook receiver on loopback:
who is owed a notice, delivery with retries, the signature, acknowledgement once, the trail
in the log, and exactly one notice however often the follower derives."""

from __future__ import annotations

import base64
import csv
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from nacl.public import PrivateKey, SealedBox
from nacl.signing import VerifyKey

from ledger.application import LedgerApplication, NoticeNotFoundError
from ledger.config import Settings
from ledger.domain import stream_id
from ledger.errors import ValidationError
from ledger.notices import Endpoint, notice_id, signatures_of, signed_content
from ledger.operations import LedgerOperations
from ledger.verifier.bundle import verify_bundle
from ledger.verifier.entry import parse_body
from projections.database import ProjectionDatabase
from projections.notices import ENDPOINTS_FILE
from projections.operations import ReadModelOperations
from projections.queries import Queries
from projections.read_models import ReadModels
from tests import facts
from tests.support import bundles
from tests.support.notice_story import notice_service as _service
from tests.support.notice_story import notice_story as _story
from tests.support.notice_story import notice_types as _types
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import Receiver, webhook_receiver


def _fulfilled(request_id: str, subject: str) -> dict[str, Any]:
    return {
        "type": "request.fulfilled",
        "event_id": facts.ref("evt"),
        "occurred_at": facts.now(),
        "request_id": request_id,
        "subject": subject,
    }


def _verify(receiver: Receiver, ledger: LedgerApplication) -> list[dict[str, Any]]:
    """Every webhook received, its Standard Webhooks signature checked with the ledger's
    public key; the bodies."""
    key = VerifyKey(ledger.ledger.signer.public_key)
    bodies = []
    for request in receiver.received:
        content = signed_content(
            request.headers["webhook-id"], int(request.headers["webhook-timestamp"]), request.body
        )
        (signature,) = signatures_of(request.headers["webhook-signature"])
        key.verify(content, signature)  # raises BadSignatureError on a forgery
        bodies.append(json.loads(request.body))
    return bodies


def test_a_withdrawal_tells_once_only_the_recipients_that_got_data_for_that_purpose(
    ledger: LedgerApplication, db: ProjectionDatabase
) -> None:
    story = _story(ledger)
    with webhook_receiver(fail_first=2) as receiver:
        endpoints = {story[k]: receiver.url for k in ("email", "analytics", "other")}
        service = _service(ledger, db, endpoints)
        (withdrawn,) = ledger.append(
            [facts.consent(story["subject"], story["version"], "withdrawn")]
        )
        for _ in range(4):  # the receiver fails twice, then answers 204
            service.step()
        bodies = _verify(receiver, ledger)

    expected = notice_id(withdrawn.seq, story["email"])
    assert receiver.ids() == [expected] * 3, "three attempts of the one notice, one webhook-id"
    data = bodies[-1]["data"]
    assert data["recipient_id"] == story["email"]
    assert data["reason"] == "consent_withdrawn"
    assert data["subject_ref"] == story["subject"], "the reference the recipient knows"
    assert data["purposes"] == ["marketing_email"]
    assert data["cause_seqs"] == [withdrawn.seq]

    due = _types(ledger, "recipient.notice_due")
    assert [(e["notice_id"], e["recipient_id"]) for e in due] == [(expected, story["email"])]
    (notified,) = _types(ledger, "recipient.notified")
    assert notified["notice_id"] == expected
    assert notified["attempts"] == 3
    assert notified["status"] == "delivered"
    assert notified["response_status"] == 204


def test_an_acknowledgement_is_recorded_once_and_only_by_the_recipient_told(
    ledger: LedgerApplication, db: ProjectionDatabase
) -> None:
    story = _story(ledger)
    service = _service(ledger, db, {})
    (withdrawn,) = ledger.append([facts.consent(story["subject"], story["version"], "withdrawn")])
    service.step()
    notice = notice_id(withdrawn.seq, story["email"])

    with pytest.raises(NoticeNotFoundError):
        ledger.acknowledge_notice(notice, story["analytics"], "analytics-client")
    with pytest.raises(NoticeNotFoundError):
        ledger.acknowledge_notice("not-a-notice", story["email"], "email-client")
    receipt = ledger.acknowledge_notice(notice, story["email"], "email-client")
    with pytest.raises(ValidationError) as refused:
        ledger.acknowledge_notice(notice, story["email"], "email-client")
    assert refused.value.problems[0].rule == "notice_acknowledged"

    (acknowledged,) = _types(ledger, "recipient.acknowledged")
    assert acknowledged["seq"] == receipt.seq
    assert acknowledged["client"] == "email-client"
    service.step()
    (row,) = service.register()
    assert row.acknowledged_seq == receipt.seq
    assert not row.overdue


def test_an_erasure_tells_every_recipient_without_the_reference_the_ledger_no_longer_has(
    ledger: LedgerApplication, db: ProjectionDatabase
) -> None:
    story = _story(ledger)
    request_id = facts.ref("req")
    ledger.append([facts.request(story["subject"], request_id, kind="erasure")])
    with webhook_receiver() as receiver:
        endpoints = {story[k]: receiver.url for k in ("email", "analytics", "other")}
        service = _service(ledger, db, endpoints)
        ledger.append(
            [
                {
                    "type": "request.fulfilled",
                    "event_id": facts.ref("evt"),
                    "occurred_at": facts.now(),
                    "request_id": request_id,
                    "subject": story["subject"],
                }
            ]
        )
        service.step()
        bodies = _verify(receiver, ledger)

    told = sorted((b["data"]["recipient_id"], b["data"]["reason"]) for b in bodies)
    assert told == sorted([(story["email"], "erasure"), (story["analytics"], "erasure")])
    assert all(b["data"]["subject_ref"] is None for b in bodies)
    assert len(_types(ledger, "recipient.notified")) == 2


def test_a_fulfilled_rectification_tells_every_recipient(
    ledger: LedgerApplication, db: ProjectionDatabase
) -> None:
    story = _story(ledger)
    request_id = facts.ref("req")
    service = _service(ledger, db, {})
    ledger.append(
        [
            facts.request(story["bystander"], request_id, kind="rectification"),
            {
                "type": "request.fulfilled",
                "event_id": facts.ref("evt"),
                "occurred_at": facts.now(),
                "request_id": request_id,
                "subject": story["bystander"],
            },
        ]
    )
    service.step()
    due = _types(ledger, "recipient.notice_due")
    assert sorted(e["recipient_id"] for e in due) == sorted([story["email"], story["other"]])
    assert {e["reason"] for e in due} == {"rectification"}


def test_deriving_again_from_the_start_records_no_second_notice(
    ledger: LedgerApplication, db: ProjectionDatabase
) -> None:
    story = _story(ledger)
    ledger.append([facts.consent(story["subject"], story["version"], "withdrawn")])
    _service(ledger, db, {}).step()
    with db.transaction() as sql:  # as if the follower lost its position and its outbox
        sql.execute("DELETE FROM notice_lease")  # and its lease ran out
        sql.execute("DELETE FROM notice_position")
        sql.execute("DELETE FROM notice_outbox")
    again = _service(ledger, db, {})
    again.step()
    again.step()
    assert len(_types(ledger, "recipient.notice_due")) == 1
    (row,) = again.register()
    assert row.due_seq is not None, "the follower found the notice recorded before"


def test_the_subjects_notices_are_tagged_for_them_and_name_nobody_in_clear(
    ledger: LedgerApplication, db: ProjectionDatabase
) -> None:
    story = _story(ledger)
    ledger.append([facts.consent(story["subject"], story["version"], "withdrawn")])
    _service(ledger, db, {}).step()
    (due,) = [r for r in ledger.iter_records() if b"recipient.notice_due" in r.body]
    body = json.loads(due.body)
    (mention,) = body["data"]["told_subjects"]
    assert mention.startswith("sealed:v1:"), "the subject is a sealed mention"
    pseudonym = ledger.subject_keys.current(story["subject"])
    assert pseudonym is not None and pseudonym.encode() not in due.body
    assert story["subject"].encode() not in due.body
    assert base64.b64decode(ledger.decode(due).signature)


def test_the_trail_is_in_the_subjects_and_the_recipients_bundles_and_verifies(
    ledger: LedgerApplication, db: ProjectionDatabase, settings: Settings, tmp_path: Path
) -> None:
    story = _story(ledger)
    (withdrawn,) = ledger.append([facts.consent(story["subject"], story["version"], "withdrawn")])
    with webhook_receiver() as receiver:
        service = _service(ledger, db, {story["email"]: receiver.url})
        service.step()
    notice = notice_id(withdrawn.seq, story["email"])
    ledger.acknowledge_notice(notice, story["email"], "email-client")
    assert LedgerOperations(ledger, settings).verify_log().ok

    def trail(scope: dict[str, str], name: str) -> list[str]:
        bundle = bundles.export(ledger, settings, scope, tmp_path / name)
        verify_bundle(bundle.path, bundles.trusted(ledger, settings))
        rows = [
            line.split(b"\t") for line in (bundle.path / "events.tsv").read_bytes().splitlines()
        ]
        return [
            parse_body(row[3])["type"]
            for row in rows
            if parse_body(row[3])["type"].startswith("recipient.n")
            or parse_body(row[3])["type"] == "recipient.acknowledged"
        ]

    told = ["recipient.notice_due", "recipient.notified", "recipient.acknowledged"]
    pseudonym = ledger.subject_keys.current(story["subject"])
    bystander = ledger.subject_keys.current(story["bystander"])
    assert pseudonym is not None and bystander is not None
    assert trail({"kind": "subject", "subject": pseudonym}, "subject") == told
    assert trail({"kind": "recipient", "recipient_id": story["email"]}, "recipient") == told
    assert trail({"kind": "subject", "subject": bystander}, "bystander") == []
    assert trail({"kind": "recipient", "recipient_id": story["other"]}, "other") == []

    # The report lists the notice (notices.csv, "Recipients told"): owed, told, acknowledged.
    with (tmp_path / "subject" / "notices.csv").open() as table:
        (row,) = list(csv.DictReader(table))
    assert (row["notice_id"], row["recipient_id"], row["subject"]) == (
        notice,
        story["email"],
        pseudonym,
    )
    assert (row["reason"], row["purposes"], row["cause_seqs"]) == (
        "consent_withdrawn",
        "marketing_email",
        str(withdrawn.seq),
    )
    assert row["notified_seq"] and row["acknowledged_seq"]
    assert (row["transport"], row["attempts"]) == ("webhook", "1")
    assert "<h2>Recipients told</h2>" in (tmp_path / "subject" / "report.html").read_text()
    with (tmp_path / "bystander" / "notices.csv").open() as table:
        assert list(csv.DictReader(table)) == []


def test_a_disclosure_to_a_recipient_after_it_was_told_is_its_own_violation(
    ledger: LedgerApplication,
    models: ReadModels,
    db: ProjectionDatabase,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """Before the recipient was told, sending it the data under the withdrawn consent is
    ``consent_missing``; once it was told (``recipient.notified``), ``disclosed_after_notice``:
    in the read model, recomputed when the delivery is recorded, and in the bundle's report."""
    story = _story(ledger)
    ledger.append([facts.consent(story["subject"], story["version"], "withdrawn")])
    email = story["email"]
    with webhook_receiver() as receiver:
        service = _service(ledger, db, {email: receiver.url})
        service.follow()
        service.record_due()  # owed, not delivered yet
        (before,) = ledger.append([facts.disclosure(email, [story["subject"]], story["version"])])
        models.runner.catch_up()
        service.step()  # delivered: told
    (after,) = ledger.append([facts.disclosure(email, [story["subject"]], story["version"])])
    (analytics,) = ledger.append(
        [facts.disclosure(story["analytics"], [story["subject"]], story["version"])]
    )
    models.runner.catch_up()
    pseudonym = ledger.subject_keys.current(story["subject"])
    assert pseudonym is not None
    verdicts = {
        row.seq: row.verdict
        for row in models.disclosures.find(subject=pseudonym)
        if row.seq in (before.seq, after.seq, analytics.seq)
    }
    assert verdicts == {
        before.seq: "consent_missing",
        after.seq: "disclosed_after_notice",
        analytics.seq: "consent_missing",  # that recipient was never told of this purpose
    }
    bundle = bundles.export(
        ledger, settings, {"kind": "subject", "subject": pseudonym}, tmp_path / "b"
    )
    verify_bundle(bundle.path, bundles.trusted(ledger, settings))
    with (bundle.path / "disclosures.csv").open() as table:
        reported = {
            int(row["seq"]): row["verdict"]
            for row in csv.DictReader(table)
            if int(row["seq"]) in verdicts
        }
    assert reported == verdicts


def test_an_erasure_tells_a_recipient_with_a_key_the_reference_sealed_to_it(
    ledger: LedgerApplication, db: ProjectionDatabase
) -> None:
    """Captured when the follower read the disclosure, sealed to the recipient's key: after the
    erasure the ledger holds the reference nowhere it can open, and the recipient still learns
    whom to erase."""
    mine = PrivateKey.generate()
    with webhook_receiver() as receiver:
        keyed = facts.ref("rcp-keyed")
        endpoints: dict[str, str | Endpoint] = {}
        service = _service(ledger, db, endpoints)
        endpoints[keyed] = Endpoint(receiver.url, bytes(mine.public_key))
        version, subject, request_id = facts.ref("policy"), facts.ref("user"), facts.ref("req")
        ledger.append(
            [
                facts.policy(version),
                facts.recipient(keyed),
                facts.consent(subject, version),
                facts.disclosure(keyed, [subject, facts.ref("user")], version),
                facts.request(subject, request_id, kind="erasure"),
            ]
        )
        service.step()  # reads the disclosure while the subject's key opens it
        ledger.append([_fulfilled(request_id, subject)])
        service.step()
        (body,) = _verify(receiver, ledger)
    data = body["data"]
    assert (data["reason"], data["subject_ref"]) == ("erasure", None)
    sealed = base64.b64decode(data["subject_ref_sealed"])
    assert SealedBox(mine).decrypt(sealed).decode() == subject
    assert subject.encode() not in sealed


def test_an_id_of_another_kind_of_stream_is_no_notice(ledger: LedgerApplication) -> None:
    """A recipient probing ids learns nothing: a recipient's or a subject's stream answers as
    a notice that never was."""
    story = _story(ledger)
    pseudonym = ledger.subject_keys.current(story["subject"])
    assert pseudonym is not None
    for stream in (str(stream_id("recipient", story["email"])), pseudonym):
        with pytest.raises(NoticeNotFoundError):
            ledger.acknowledge_notice(stream, story["email"], "email-client")


def test_notices_are_delivered_wherever_the_read_models_are_followed(
    ledger: LedgerApplication, models: ReadModels, settings: Settings
) -> None:
    """``consent-ledger projections run`` (the worker of docker compose) and ``serve`` with
    the read models both follow through ReadModelOperations.follow, which runs the notices."""
    story = _story(ledger)
    with webhook_receiver() as receiver:
        settings.data_dir.joinpath(ENDPOINTS_FILE).write_text(
            json.dumps({story["email"]: receiver.url})
        )
        stop = threading.Event()
        operations = ReadModelOperations(ledger, models)
        worker = threading.Thread(target=operations.follow, args=(stop, lambda _: None))
        worker.start()
        try:
            ledger.append([facts.consent(story["subject"], story["version"], "withdrawn")])
            wait_until(lambda: _types(ledger, "recipient.notified"), "the notice delivered")
        finally:
            stop.set()
            operations.wake()
            worker.join(timeout=30)
    assert not worker.is_alive()
    assert len(receiver.received) == 1
    (row,) = models.notices.register()
    assert row.recipient_id == story["email"]


def test_the_subjects_history_lists_the_recipients_told(
    ledger: LedgerApplication, models: ReadModels
) -> None:
    """GDPR 19, second sentence: the subject is told who was told, and when."""
    story = _story(ledger)
    ledger.append([facts.consent(story["subject"], story["version"], "withdrawn")])
    with webhook_receiver() as receiver:
        models.notices.endpoints = lambda: {story["email"]: receiver.url}
        models.notices.step()
    models.runner.catch_up()
    queries = Queries(ledger, models)
    _, events = queries.history_events(story["subject"])
    told = [(e.type, e.data["recipient_id"]) for e in events if e.type.startswith("recipient.n")]
    assert told == [
        ("recipient.notice_due", story["email"]),
        ("recipient.notified", story["email"]),
    ]
    _, theirs = queries.history_events(story["bystander"])
    assert not [e for e in theirs if e.type.startswith("recipient.n")]
