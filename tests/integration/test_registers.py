"""The incident register and the request register: their clocks, contents and corrections."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.errors import ValidationError
from projections.database import ProjectionDatabase
from projections.incidents import IncidentRecord, IncidentRegister, IncidentRegisterView
from projections.postgres import PostgresProjectionDatabase
from projections.requests import RequestRecord, RequestRegister, RequestRegisterView
from projections.runner import ProjectionRunner, table_digest
from projections.sqlite import SQLiteProjectionDatabase
from tests import facts

NOW = datetime.now(UTC).replace(microsecond=0)
DETECTED = NOW - timedelta(days=30)
TOKYO = timezone(timedelta(hours=9))


@pytest.fixture
def projection_db(settings: Settings, ledger: LedgerApplication) -> Iterator[ProjectionDatabase]:
    """Read models beside the ledger under test (which has made the PostgreSQL schema)."""
    db: ProjectionDatabase
    if settings.database_url is None:
        db = SQLiteProjectionDatabase(settings.data_dir / "projections.sqlite3")
    else:
        db = PostgresProjectionDatabase(settings.database_url, settings.database_schema)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def runner(ledger: LedgerApplication, projection_db: ProjectionDatabase) -> ProjectionRunner:
    return ProjectionRunner(
        ledger, projection_db, [IncidentRegister(), RequestRegister()], batch_size=3
    )


class Desk:
    """An incident responder's and a privacy officer's desk: record facts, read the registers."""

    def __init__(self, ledger: LedgerApplication, runner: ProjectionRunner) -> None:
        self.ledger = ledger
        self.runner = runner
        self.incidents = IncidentRegisterView(runner.db)
        self.requests = RequestRegisterView(runner.db)

    def record(self, *items: dict[str, Any]) -> None:
        self.ledger.append(list(items))
        self.runner.catch_up()

    def open_incident(self, detected: datetime = DETECTED, **fields: Any) -> dict[str, Any]:
        opened = {
            **facts.incident(),
            "occurred_at": detected.isoformat(),
            "detected_at": detected.isoformat(),
            **fields,
        }
        self.record(opened)
        return opened

    def incident(self, incident_id: str, now: datetime) -> IncidentRecord:
        record = self.incidents.get(incident_id, now)
        assert record is not None
        return record

    def request(self, request_id: str, now: datetime = NOW) -> RequestRecord:
        record = self.requests.get(request_id, now)
        assert record is not None
        return record


@pytest.fixture
def desk(ledger: LedgerApplication, runner: ProjectionRunner) -> Desk:
    return Desk(ledger, runner)


def step(kind: str, incident_id: str, occurred: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "type": f"incident.{kind}",
        "event_id": facts.ref("evt"),
        "occurred_at": occurred.isoformat(),
        "incident_id": incident_id,
        **fields,
    }


def assessed(incident_id: str, occurred: datetime, **fields: Any) -> dict[str, Any]:
    return step(
        "assessed",
        incident_id,
        occurred,
        **{
            "risk": "risk",
            "data_categories": ["contact"],
            "likely_consequences": "Phishing e-mail to the people whose addresses leaked",
            **fields,
        },
    )


def notified(incident_id: str, occurred: datetime, **fields: Any) -> dict[str, Any]:
    return step(
        "authority_notified",
        incident_id,
        occurred,
        **{"authority": "Data Protection Commission", "dpo_contact": "dpo@example.com", **fields},
    )


def request_step(
    kind: str, received: dict[str, Any], occurred: datetime, **fields: Any
) -> dict[str, Any]:
    return {
        "type": f"request.{kind}",
        "event_id": facts.ref("evt"),
        "occurred_at": occurred.isoformat(),
        "request_id": received["request_id"],
        "subject": received["subject"],
        **fields,
    }


def correction(corrected: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "type": "correction.recorded",
        "event_id": facts.ref("evt"),
        "occurred_at": NOW.isoformat(),
        "corrects_event_id": corrected["event_id"],
        "reason": "The first report had it wrong",
        "corrected_fields": fields,
    }


# -- incidents ---------------------------------------------------------------------------------


def test_a_notification_after_72_hours_is_late(desk: Desk) -> None:
    detected = DETECTED.astimezone(TOKYO)  # stored and computed in UTC, whatever the offset
    opened = desk.open_incident(detected)
    incident_id = opened["incident_id"]
    desk.record(
        assessed(incident_id, DETECTED + timedelta(hours=10)),
        notified(
            incident_id,
            DETECTED + timedelta(hours=80),
            delay_reason="The processor told us on day 3",
            reference="DPC-2026-118",
        ),
    )

    record = desk.incident(incident_id, NOW)

    assert record.detected_at == DETECTED
    assert record.authority_deadline == DETECTED + timedelta(hours=72)
    assert record.authority_notified_at == DETECTED + timedelta(hours=80)
    assert record.authority_notified_late
    assert not record.authority_overdue
    assert record.authority_reference == "DPC-2026-118"
    assert record.delay_reason == "The processor told us on day 3"
    as_dict = record.as_dict()
    assert as_dict["authority_deadline"] == (DETECTED + timedelta(hours=72)).strftime(
        "%Y-%m-%dT%H:%M:%S.000000Z"
    )
    assert orjson.loads(orjson.dumps(as_dict)) == as_dict


def test_a_notification_within_72_hours_is_not_late_and_a_follow_up_does_not_change_it(
    desk: Desk,
) -> None:
    incident_id = desk.open_incident()["incident_id"]
    desk.record(
        notified(incident_id, DETECTED + timedelta(hours=50), reference="first"),
        notified(incident_id, DETECTED + timedelta(hours=100), reference="follow-up"),
    )

    record = desk.incident(incident_id, NOW)

    assert record.authority_notified_at == DETECTED + timedelta(hours=50)
    assert record.authority_reference == "first"
    assert not record.authority_notified_late
    assert not record.authority_overdue


def test_an_open_incident_is_overdue_after_72_hours_unless_the_risk_is_unlikely(
    desk: Desk,
) -> None:
    incident_id = desk.open_incident()["incident_id"]

    assert not desk.incident(incident_id, DETECTED + timedelta(hours=71)).authority_overdue
    assert desk.incident(incident_id, DETECTED + timedelta(hours=73)).authority_overdue

    desk.record(assessed(incident_id, DETECTED + timedelta(hours=5), risk="risk"))
    assert desk.incident(incident_id, DETECTED + timedelta(hours=73)).authority_overdue

    desk.record(assessed(incident_id, DETECTED + timedelta(hours=6), risk="unlikely"))
    assert not desk.incident(incident_id, DETECTED + timedelta(hours=73)).authority_overdue
    [listed] = [r for r in desk.incidents.list(NOW) if r.incident_id == incident_id]
    assert listed.risk == "unlikely"


def test_article_33_3_contents_fill_in_as_the_incident_is_handled(desk: Desk) -> None:
    incident_id = desk.open_incident()["incident_id"]
    all_four = ["nature", "dpo_contact", "likely_consequences", "measures"]
    assert desk.incident(incident_id, NOW).article_33_3["missing"] == all_four
    assert desk.incident(incident_id, NOW).status == "open"

    desk.record(
        assessed(
            incident_id,
            DETECTED + timedelta(hours=2),
            risk="high_risk",
            data_categories=["contact", "identifiers"],
            approximate_subject_count=1200,
        )
    )
    record = desk.incident(incident_id, NOW)
    assert record.status == "assessed"
    assert record.article_33_3["missing"] == ["dpo_contact", "measures"]
    assert record.article_33_3["nature"] == {
        "summary": "Misconfigured storage bucket at the hosting processor",
        "data_categories": ["contact", "identifiers"],
        "approximate_subject_count": 1200,
        "affected_subject_count": 0,
    }
    assert record.subjects_notification_due

    desk.record(
        step("contained", incident_id, DETECTED + timedelta(hours=3), measures="Bucket closed")
    )
    record = desk.incident(incident_id, NOW)
    assert record.status == "contained"
    assert record.article_33_3["missing"] == ["dpo_contact"]
    assert record.article_33_3["measures"] == "Bucket closed"

    desk.record(
        notified(incident_id, DETECTED + timedelta(hours=20)),
        step(
            "subjects_notified",
            incident_id,
            DETECTED + timedelta(hours=30),
            channel="email",
            subject_count=1180,
        ),
        step("closed", incident_id, DETECTED + timedelta(days=5), resolution="Keys rotated"),
    )
    record = desk.incident(incident_id, NOW)
    assert record.article_33_3["missing"] == []
    assert record.article_33_3["dpo_contact"] == "dpo@example.com"
    assert not record.subjects_notification_due
    assert (record.subjects_notified_channel, record.subjects_notified_count) == ("email", 1180)
    assert (record.status, record.resolution) == ("closed", "Keys rotated")
    assert record.closed_at == DETECTED + timedelta(days=5)


def test_affected_subjects_are_pseudonyms_and_no_reference_is_stored(
    desk: Desk, ledger: LedgerApplication
) -> None:
    refs = [facts.ref("zq-person") for _ in range(3)]
    incident_id = desk.open_incident()["incident_id"]
    desk.record(
        assessed(incident_id, DETECTED + timedelta(hours=1), affected_subjects=refs[:2]),
        assessed(incident_id, DETECTED + timedelta(hours=2), affected_subjects=refs[1:]),
    )

    record = desk.incident(incident_id, NOW)

    pseudonyms = {ledger.subject_keys.pseudonym(ref) for ref in refs}
    assert set(record.affected_subjects) == pseudonyms
    assert len(record.affected_subjects) == 3
    assert record.article_33_3["nature"]["affected_subject_count"] == 3
    assert "nature" not in record.article_33_3["missing"]
    stored = [
        str(value)
        for table in desk.runner.db.table_names()
        for row in desk.runner.db.query(f"SELECT * FROM {table}")
        for value in row
    ]
    assert pseudonyms <= set(stored)
    assert not [value for value in stored for ref in refs if ref in value]


def test_a_corrected_detection_time_moves_the_deadline(desk: Desk) -> None:
    opened = desk.open_incident()
    incident_id = opened["incident_id"]
    first = assessed(incident_id, DETECTED + timedelta(hours=1), likely_consequences="Unclear")
    desk.record(first)
    assert not desk.incident(incident_id, DETECTED + timedelta(hours=1)).authority_overdue

    earlier = DETECTED - timedelta(days=3)
    desk.record(
        correction(opened, detected_at=earlier.astimezone(TOKYO).isoformat()),
        correction(first, likely_consequences="Phishing"),
    )

    record = desk.incident(incident_id, DETECTED + timedelta(hours=1))
    assert record.detected_at == earlier
    assert record.authority_deadline == earlier + timedelta(hours=72)
    assert record.authority_overdue
    assert record.likely_consequences == "Phishing"


def test_a_correction_of_a_replaced_assessment_changes_nothing_shown(desk: Desk) -> None:
    incident_id = desk.open_incident()["incident_id"]
    first = assessed(incident_id, DETECTED + timedelta(hours=1), likely_consequences="First")
    second = assessed(incident_id, DETECTED + timedelta(hours=2), likely_consequences="Second")
    desk.record(first, second)

    desk.record(correction(first, likely_consequences="First, corrected", risk="high_risk"))

    record = desk.incident(incident_id, NOW)
    assert (record.likely_consequences, record.risk) == ("Second", "risk")
    assert record.assessed_at == DETECTED + timedelta(hours=2)


def test_a_correction_with_values_the_catalogue_refuses_is_refused(desk: Desk) -> None:
    opened = desk.open_incident()
    incident_id = opened["incident_id"]
    bad = correction(
        opened,
        detected_at="yesterday",
        summary="",
        data_categories=["Not A Category"],
        incident_id="inc-another",
    )
    with pytest.raises(ValidationError) as caught:
        desk.record(bad)
    assert {(p.field, p.rule) for p in caught.value.problems} == {
        ("corrected_fields.detected_at", "datetime_parsing"),
        ("corrected_fields.summary", "string_too_short"),
        ("corrected_fields.data_categories[0]", "string_pattern_mismatch"),
        ("corrected_fields.incident_id", "field_not_correctable"),
    }
    record = desk.incident(incident_id, NOW)
    assert record.detected_at == DETECTED
    assert record.summary == opened["summary"]


def received(days_ago: float, **fields: Any) -> dict[str, Any]:
    return facts.request(
        facts.ref("zq-requester"),
        occurred_at=(NOW - timedelta(days=days_ago)).isoformat(),
        **fields,
    )


def test_a_request_fulfilled_after_15_days_was_answered_late(desk: Desk) -> None:
    request = received(20)
    desk.record(
        request,
        request_step("identity_verified", request, NOW - timedelta(days=19), method="login"),
        request_step("fulfilled", request, NOW),
    )

    record = desk.request(request["request_id"])

    assert record.status == "fulfilled"
    assert record.due_at == NOW - timedelta(days=5)
    assert record.answered_late
    assert not record.overdue
    assert record.days_left is None
    assert record.closed_at == NOW
    assert record.identity_verified_at == NOW - timedelta(days=19)
    assert orjson.loads(orjson.dumps(record.as_dict())) == record.as_dict()


def test_an_extension_moves_the_due_date(desk: Desk) -> None:
    request = received(20)
    extension = request_step(
        "extended", request, NOW - timedelta(days=6), extension_days=10, reason="Many records"
    )
    desk.record(request, extension)

    record = desk.request(request["request_id"])
    assert record.due_at == NOW + timedelta(days=5)
    assert (record.extension_days, record.extensions) == (10, 1)
    assert not record.overdue
    assert record.days_left == 5

    desk.record(correction(extension, extension_days=3))
    record = desk.request(request["request_id"])
    assert record.due_at == NOW - timedelta(days=2)
    assert (record.extension_days, record.extensions) == (3, 1)
    assert record.overdue

    # A second correction of the same event corrects the first, not the original.
    desk.record(correction(extension, extension_days=7))
    record = desk.request(request["request_id"])
    assert (record.extension_days, record.extensions) == (7, 1)
    assert record.due_at == NOW + timedelta(days=2)


def test_an_open_request_is_overdue_after_15_days(desk: Desk) -> None:
    request = received(30)
    other = received(1)
    desk.record(request, other)
    received_at = NOW - timedelta(days=30)
    request_id = request["request_id"]

    at_14 = desk.request(request_id, received_at + timedelta(days=14))
    at_16 = desk.request(request_id, received_at + timedelta(days=16))
    assert (at_14.overdue, at_14.days_left) == (False, 1)
    assert (at_16.overdue, at_16.days_left) == (True, -1)

    overdue = desk.requests.list(NOW, overdue_only=True)
    assert [r.request_id for r in overdue] == [request_id]
    pseudonym = desk.ledger.subject_keys.pseudonym(other["subject"])
    [mine] = desk.requests.list(NOW, subject=pseudonym)
    assert (mine.request_id, mine.subject, mine.status) == (
        other["request_id"],
        pseudonym,
        "received",
    )


def test_a_refusal_keeps_its_ground_and_a_correction_replaces_it(desk: Desk) -> None:
    request = received(3, kind="erasure")
    refusal = request_step(
        "refused",
        request,
        NOW - timedelta(days=1),
        ground="legal_obligation_to_retain",
        explanation="Invoices are kept for 10 years by law",
    )
    desk.record(request, refusal)

    record = desk.request(request["request_id"])
    assert (record.status, record.kind) == ("refused", "erasure")
    assert record.refusal_ground == "legal_obligation_to_retain"
    assert not record.answered_late and not record.overdue

    desk.record(
        correction(
            refusal, ground="legal_claims", occurred_at=(NOW - timedelta(days=2)).isoformat()
        )
    )
    record = desk.request(request["request_id"])
    assert record.refusal_ground == "legal_claims"
    assert record.closed_at == NOW - timedelta(days=2)


def test_a_jurisdiction_sets_its_own_number_of_days(desk: Desk) -> None:
    eu = received(20, jurisdiction="EU")
    elsewhere = received(20)
    desk.record(eu, elsewhere)
    view = RequestRegisterView(desk.runner.db, due_days_by_jurisdiction={"EU": 30})

    eu_record = view.get(eu["request_id"], NOW)
    other_record = view.get(elsewhere["request_id"], NOW)

    assert eu_record is not None and other_record is not None
    assert eu_record.jurisdiction == "EU"
    assert (eu_record.due_at, eu_record.overdue) == (NOW + timedelta(days=10), False)
    assert (other_record.due_at, other_record.overdue) == (NOW - timedelta(days=5), True)


def test_a_corrected_receipt_time_moves_the_due_date(desk: Desk) -> None:
    request = received(10)
    desk.record(request)

    desk.record(correction(request, occurred_at=(NOW - timedelta(days=12)).isoformat()))

    record = desk.request(request["request_id"])
    assert record.received_at == NOW - timedelta(days=12)
    assert record.due_at == NOW + timedelta(days=3)


# -- rebuilding --------------------------------------------------------------------------------


def test_rebuilding_gives_the_rows_that_following_the_log_gave(desk: Desk) -> None:
    opened = desk.open_incident()
    incident_id = opened["incident_id"]
    first = assessed(incident_id, DETECTED + timedelta(hours=1), affected_subjects=["zq-a"])
    request = received(20)
    extension = request_step(
        "extended", request, NOW - timedelta(days=2), extension_days=10, reason="Many records"
    )
    desk.record(first, request, extension)

    desk.record(
        assessed(incident_id, DETECTED + timedelta(hours=2), affected_subjects=["zq-b", "zq-a"]),
        step("contained", incident_id, DETECTED + timedelta(hours=3), measures="Bucket closed"),
        notified(incident_id, DETECTED + timedelta(hours=90), delay_reason="Late report"),
        correction(opened, detected_at=(DETECTED - timedelta(hours=5)).isoformat()),
        correction(first, likely_consequences="Replaced already"),
        correction(extension, extension_days=4),
        request_step("fulfilled", request, NOW - timedelta(days=1)),
    )
    live = table_digest(desk.runner.db)

    assert desk.runner.rebuild() > 0
    assert table_digest(desk.runner.db) == live
    record = desk.incident(incident_id, NOW)
    assert record.detected_at == DETECTED - timedelta(hours=5)
    assert len(record.affected_subjects) == 2
    assert desk.request(request["request_id"]).extension_days == 4


def test_a_late_notification_without_its_reasons_is_missing_them(desk: Desk) -> None:
    """GDPR 33(1): a notification after 72 hours comes with the reasons for the delay; without
    them, ``delay_reason`` is in the ``missing`` list (never for one in time)."""
    late, explained, in_time = (desk.open_incident()["incident_id"] for _ in range(3))
    desk.record(
        notified(late, DETECTED + timedelta(hours=80)),
        notified(explained, DETECTED + timedelta(hours=80), delay_reason="Told on day 3"),
        notified(in_time, DETECTED + timedelta(hours=20)),
    )
    assert "delay_reason" in desk.incident(late, NOW).article_33_3["missing"]
    assert "delay_reason" not in desk.incident(explained, NOW).article_33_3["missing"]
    assert "delay_reason" not in desk.incident(in_time, NOW).article_33_3["missing"]
