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
    class RenewalRequested(ev.Fact):
        TYPE: ClassVar[str] = "consent.renewal_requested"
        type: Literal["consent.renewal_requested"]

    catalogue = dict(ev.FACT_TYPES, **{RenewalRequested.TYPE: RenewalRequested})
    monkeypatch.setattr(ev, "FACT_TYPES", catalogue)
    with pytest.raises(LedgerError, match=r"without a handler: \['consent.renewal_requested'\]"):
        handlers._check_complete()
    fact = RenewalRequested(type="consent.renewal_requested", event_id="e-1", occurred_at=T0)
    with pytest.raises(LedgerError, match=r"no command handles consent\.renewal_requested"):
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
