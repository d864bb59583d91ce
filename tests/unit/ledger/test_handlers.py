"""The command table covers the catalogue, and the rules the aggregates hold (no storage)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal
from uuid import uuid4

import pytest

from ledger import events as ev
from ledger import handlers
from ledger.aggregates import Incident, PolicyVersion, Recipient, RightsRequest, Subject
from ledger.domain import LedgerAggregate, LedgerCreated
from ledger.errors import LedgerError, ValidationError
from ledger.vocabulary import ErasureGround, RequestKind

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _problem(exc: pytest.ExceptionInfo[ValidationError]) -> tuple[str, str]:
    (problem,) = exc.value.problems
    return problem.field, problem.rule


def _created(cls: type[LedgerAggregate], created: type[LedgerCreated], data: dict[str, Any]) -> Any:
    return cls._create(
        created,
        id=uuid4(),
        data=data,
        event_id="e-1",
        occurred_at=T0,
        backdated=False,
        emitter=None,
    )


# -- the table --------------------------------------------------------------------------------


def test_every_fact_type_of_the_catalogue_has_exactly_one_handler() -> None:
    assert set(handlers.HANDLERS) == set(ev.FACT_TYPES.values())


def test_a_fact_type_without_a_handler_fails_the_check_run_at_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Contacted(ev.Fact):
        TYPE: ClassVar[str] = "subject.contacted"
        type: Literal["subject.contacted"]

    catalogue = dict(ev.FACT_TYPES, **{Contacted.TYPE: Contacted})
    monkeypatch.setattr(ev, "FACT_TYPES", catalogue)
    with pytest.raises(LedgerError, match=r"without a handler: \['subject.contacted'\]"):
        handlers._check_complete()
    fact = Contacted(type="subject.contacted", event_id="e-1", occurred_at=T0)
    with pytest.raises(LedgerError, match=r"no command handles subject\.contacted"):
        handlers.handler_for(fact)


def test_the_streams_of_a_fact_are_those_of_its_natural_id() -> None:
    fact = ev.parse_fact(
        {
            "type": "incident.closed",
            "event_id": "e-1",
            "occurred_at": "2026-01-01T00:00:00Z",
            "incident_id": "inc-7",
            "resolution": "closed",
        }
    )
    keys: Any = None  # only subject facts use the key manager (for a lock name)
    opened = ev.parse_fact(
        {
            "type": "incident.opened",
            "event_id": "e-2",
            "occurred_at": "2026-01-01T00:00:00Z",
            "incident_id": "inc-7",
            "detected_at": "2026-01-01T00:00:00Z",
            "summary": "a lost laptop",
        }
    )
    streams = handlers.handler_for(fact).streams(fact, keys)
    assert streams == handlers.handler_for(opened).streams(opened, keys)
    assert len(streams) == 1


# -- the rules in the aggregates --------------------------------------------------------------


def test_a_sub_processor_names_its_parent() -> None:
    with pytest.raises(ValidationError) as exc:
        Recipient.check_may_register("sub_processor", None)
    assert _problem(exc) == ("parent_recipient_id", "parent_required")
    Recipient.check_may_register("sub_processor", "proc-1")
    Recipient.check_may_register("processor", None)


def test_a_consent_expires_after_it_was_given_as_sent_and_as_corrected() -> None:
    Subject.check_expiry(T0, None)
    Subject.check_expiry(T0, T0 + timedelta(seconds=1))
    for expires in (T0, T0 - timedelta(days=1)):
        with pytest.raises(ValidationError) as exc:
            Subject.check_expiry(T0, expires)
        assert _problem(exc) == ("expires_at", "expires_before_occurred")
        with pytest.raises(ValidationError) as exc:
            Subject.check_expiry(T0, expires, corrected=True)
        assert _problem(exc) == ("corrected_fields.expires_at", "expires_before_occurred")


def test_an_affected_rule_selects_a_window_that_is_not_empty() -> None:
    Incident.check_window(T0, T0 + timedelta(microseconds=1))
    with pytest.raises(ValidationError) as exc:
        Incident.check_window(T0, T0)
    assert _problem(exc) == ("affected_rule.disclosed_to", "window_empty")
    with pytest.raises(ValidationError) as exc:
        Incident.check_window(T0, T0 - timedelta(days=1), corrected=True)
    assert _problem(exc) == ("corrected_fields.affected_rule", "window_empty")


def _policy(**extra: Any) -> PolicyVersion:
    data = {
        "version": "v1",
        "effective_at": T0.isoformat(),
        "purposes": [{"id": "mail", "legal_basis": "consent"}],
        **extra,
    }
    policy: PolicyVersion = _created(PolicyVersion, PolicyVersion.Published, data)
    return policy


def test_the_minimum_age_is_the_policy_versions_own_else_the_configured_one() -> None:
    assert _policy().minimum_age_or(18) == 18
    assert _policy(minimum_age=14).minimum_age_or(18) == 14
    assert _policy(minimum_age=0).minimum_age_or(18) == 0


def test_a_minor_consents_only_through_a_guardian() -> None:
    subject: Subject = _created(Subject, Subject.Registered, {"subject": str(uuid4())})
    subject.attested_age = 15
    minimum = _policy(minimum_age=16).minimum_age_or(18)
    with pytest.raises(ValidationError) as exc:
        subject.check_may_consent(minimum, has_guardian=False, guardian_allowed=True)
    assert _problem(exc) == ("subject", "subject_is_minor")
    subject.check_may_consent(minimum, has_guardian=True, guardian_allowed=True)
    subject.check_may_consent(_policy(minimum_age=14).minimum_age_or(18), False, False)


def test_fulfilling_an_erasure_or_a_cancellation_erases_the_subject_and_nothing_else_does() -> None:
    grounds = {
        kind: _created(
            RightsRequest, RightsRequest.Received, {"subject": "p", "kind": str(kind)}
        ).erasure_ground()
        for kind in RequestKind
    }
    assert grounds == {
        RequestKind.ACCESS: None,
        RequestKind.RECTIFICATION: None,
        RequestKind.ERASURE: ErasureGround.ERASURE_REQUEST,
        RequestKind.WITHDRAWAL: None,
        RequestKind.ACCOUNT_CANCELLATION: ErasureGround.ACCOUNT_CANCELLATION,
    }


# -- consent.renewal_requested ----------------------------------------------------------------


def _subject_who_gave(*given: tuple[datetime, list[str]]) -> Subject:
    """A subject with a consent.given event applied for each (occurred_at, purposes)."""
    subject: Subject = _created(Subject, Subject.Registered, {"subject": str(uuid4())})
    for occurred_at, purposes in given:
        subject.record(
            Subject.ConsentGiven,
            data={"purposes": purposes},
            event_id=f"e-{uuid4().hex}",
            occurred_at=occurred_at,
            backdated=False,
            emitter=None,
        )
    return subject


def test_a_renewal_is_asked_only_of_consent_given_before_to_every_purpose() -> None:
    subject = _subject_who_gave((T0, ["mail"]), (T0 + timedelta(days=30), ["sms"]))
    subject.check_given_before(["mail"], T0 + timedelta(seconds=1))
    subject.check_given_before(["mail", "sms"], T0 + timedelta(days=31))
    # sms was given later than the request; ads never: a first request is not a renewal.
    for purposes, asked_at, field in (
        (["mail", "sms"], T0 + timedelta(days=1), "purposes[1]"),
        (["ads"], T0 + timedelta(days=90), "purposes[0]"),
        (["mail"], T0, "purposes[0]"),
    ):
        with pytest.raises(ValidationError) as exc:
            subject.check_given_before(purposes, asked_at)
        assert _problem(exc) == (field, "renewal_without_prior_consent")


def test_consent_given_back_dated_counts_from_when_it_occurred() -> None:
    later_recorded_earlier_given = _subject_who_gave(
        (T0 + timedelta(days=10), ["mail"]), (T0, ["mail"])
    )
    later_recorded_earlier_given.check_given_before(["mail"], T0 + timedelta(days=1))


def test_a_renewal_is_due_after_it_was_asked_as_sent_and_as_corrected() -> None:
    Subject.check_respond_by(T0, None)
    Subject.check_respond_by(T0, T0 + timedelta(microseconds=1))
    for due in (T0, T0 - timedelta(days=1)):
        with pytest.raises(ValidationError) as exc:
            Subject.check_respond_by(T0, due)
        assert _problem(exc) == ("respond_by", "respond_by_before_occurred")
        with pytest.raises(ValidationError) as exc:
            handlers.check_corrected_fact(
                "consent.renewal_requested", T0.isoformat(), {"respond_by": due.isoformat()}
            )
        assert _problem(exc) == ("corrected_fields.respond_by", "respond_by_before_occurred")


def test_renewal_is_asked_for_consent_based_purposes_only() -> None:
    policy = _policy(
        purposes=[
            {"id": "mail", "legal_basis": "consent", "separate_consent": True},
            {"id": "billing", "legal_basis": "contract"},
            {"id": "sms", "legal_basis": "consent"},
        ]
    )
    policy.check_consent_based(["mail", "sms"])  # a request may name a separate purpose too
    with pytest.raises(ValidationError) as exc:
        policy.check_consent_based(["sms", "billing"])
    assert _problem(exc) == ("purposes[1]", "purpose_not_consent_based")


def _renewal(**fields: Any) -> dict[str, Any]:
    return {
        "type": "consent.renewal_requested",
        "event_id": "e-1",
        "occurred_at": "2026-12-01T10:00:00+09:00",
        "subject": "user-1",
        "purposes": ["mail"],
        "policy_version": "v2",
        "reason": "policy_changed",
        "channel": "email",
        **fields,
    }


def test_a_renewal_request_names_each_purpose_once_a_known_reason_and_a_channel() -> None:
    fact = ev.parse_fact(_renewal(respond_by="2026-12-31T23:59:59+09:00"))
    assert isinstance(fact, ev.ConsentRenewalRequested)
    assert fact.respond_by == datetime(2026, 12, 31, 14, 59, 59, tzinfo=UTC)
    assert ev.personal_data_paths(ev.ConsentRenewalRequested) == [("subject", "subject")]
    for fields, field, rule in (
        ({"purposes": ["mail", "sms", "mail"]}, "purposes", "purpose_repeated"),
        ({"purposes": []}, "purposes", "too_short"),
        ({"reason": "because"}, "reason", "enum"),
        ({"channel": "carrier_pigeon"}, "channel", "enum"),
        ({"respond_by": "2200-01-01T00:00:00Z"}, "respond_by", "time_out_of_range"),
    ):
        with pytest.raises(ValidationError) as caught:
            ev.parse_fact(_renewal(**fields))
        assert [(p.field, p.rule) for p in caught.value.problems] == [(field, rule)]
