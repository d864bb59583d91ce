"""Issue 14's reproductions, on both backends: each hostile fact or parameter is refused with
the field and the rule (leaving the log as it was), or accepted and then fully processed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from ledger import events as ev
from ledger.config import Settings
from tests import facts
from tests.integration.full_stack import Stack, first_problem, full_stack

Fact = dict[str, Any]


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    with full_stack(settings, tmp_path) as running:
        yield running


@pytest.fixture
def world(stack: Stack) -> dict[str, str]:
    """A policy, a recipient, an open incident and a subject with consent: what facts cite."""
    pol = facts.policy(effective_at="2020-01-01T00:00:00Z")
    recipient, incident, subject = facts.ref("rcpt"), facts.ref("inc"), facts.ref("user")
    response = stack.record(
        [
            pol,
            facts.recipient(recipient),
            facts.incident(incident),
            facts.consent(subject, pol["version"]),
        ]
    )
    assert response.status_code == 201, response.text
    return {
        "version": pol["version"],
        "recipient": recipient,
        "incident": incident,
        "subject": subject,
    }


def refused(stack: Stack, fact: Fact, field: str, rule: str, path: str = "/v1/events") -> None:
    """The fact is refused naming ``field`` and ``rule``, and the log did not grow."""
    head = stack.ledger.head()
    response = stack.post(path, fact)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert first_problem(response) == (field, rule), response.text
    assert stack.ledger.head() == head


def accepted(stack: Stack, *items: Fact) -> None:
    """The facts are recorded, and then everything processes them and answers."""
    response = stack.record(list(items))
    assert response.status_code == 201, response.text
    stack.check_processable()


def assessed(incident: str, **fields: Any) -> Fact:
    return {
        "type": "incident.assessed",
        "event_id": facts.ref("evt"),
        "occurred_at": facts.now(),
        "incident_id": incident,
        "risk": "high_risk",
        "data_categories": ["contact"],
        "likely_consequences": "Phishing",
        **fields,
    }


def correction(corrects: str, **fields: Any) -> Fact:
    return {
        "type": "correction.recorded",
        "event_id": facts.ref("evt"),
        "occurred_at": facts.now(),
        "corrects_event_id": corrects,
        "reason": "wrong value",
        "corrected_fields": fields,
    }


# -- times beyond what the stack computes with --------------------------------------------------

OUT_OF_RANGE = [
    ("9999-12-31T23:59:59-12:00", "time_out_of_range"),
    ("9999-12-31T23:59:59-23:59", "offset_out_of_range"),
    ("0001-01-01T00:00:00+23:59", "offset_out_of_range"),
    ("0001-01-01T00:00:00+14:00", "time_out_of_range"),
    ("1969-12-31T23:59:59Z", "time_out_of_range"),
    ("1970-01-01T00:00:00+00:01", "time_out_of_range"),  # 1969-12-31T23:59 in UTC
    ("2100-01-01T00:00:00Z", "time_out_of_range"),
    ("2099-12-31T23:00:00-01:00", "time_out_of_range"),  # 2100-01-01 in UTC
    ("2026-03-01T00:00:00+14:01", "offset_out_of_range"),
]


def test_a_consent_expiry_out_of_range_is_refused(stack: Stack, world: dict[str, str]) -> None:
    for moment, rule in OUT_OF_RANGE:
        given = facts.consent(facts.ref("user"), world["version"], expires_at=moment)
        refused(stack, given, "expires_at", rule)


def test_expiries_at_the_edges_are_recorded_and_processed(
    stack: Stack, world: dict[str, str]
) -> None:
    version = world["version"]
    accepted(
        stack,
        facts.consent(facts.ref("user"), version, expires_at="2099-12-31T23:59:59.999999Z"),
        facts.consent(facts.ref("user"), version, expires_at="2100-01-01T13:59:00+14:00"),
        facts.consent(facts.ref("user"), version, expires_at="2096-02-29T12:00:00-12:00"),
    )


def test_a_policy_effective_out_of_range_is_refused(stack: Stack) -> None:
    for moment, rule in OUT_OF_RANGE:
        refused(stack, facts.policy(effective_at=moment), "effective_at", rule)


def test_a_policy_effective_at_the_latest_moment_is_processed(stack: Stack) -> None:
    pol = facts.policy(effective_at="2099-12-31T23:59:59Z")
    accepted(stack, pol, facts.recipient())
    early = facts.policy(effective_at="1970-01-01T00:00:00Z")
    subject = facts.ref("user")
    accepted(stack, early, facts.consent(subject, early["version"]))


def test_a_detection_out_of_range_is_refused_on_both_routes(stack: Stack) -> None:
    for moment in ["9999-12-31T23:00:00Z", "9999-12-31T23:59:59-12:00", "1969-12-31T23:59:59Z"]:
        opened = dict(facts.incident(), detected_at=moment)
        refused(stack, opened, "detected_at", "time_out_of_range")
        refused(stack, opened, "detected_at", "time_out_of_range", path="/v1/incidents")


def test_a_detection_in_the_future_is_refused(stack: Stack) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    refused(stack, dict(facts.incident(), detected_at=later), "detected_at", "detected_in_future")
    # Within the clock tolerance (five minutes), as occurred_at.
    soon = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    accepted(stack, dict(facts.incident(), detected_at=soon))


def test_an_affected_rule_window_out_of_range_is_refused(
    stack: Stack, world: dict[str, str]
) -> None:
    for moment, rule in OUT_OF_RANGE[:4]:
        window = {
            "recipient_id": world["recipient"],
            "disclosed_from": "2026-01-01T00:00:00Z",
            "disclosed_to": moment,
        }
        refused(
            stack,
            assessed(world["incident"], affected_rule=window),
            "affected_rule.disclosed_to",
            rule,
        )
        window = {**window, "disclosed_from": moment, "disclosed_to": "2026-01-01T00:00:00Z"}
        refused(
            stack,
            assessed(world["incident"], affected_rule=window),
            "affected_rule.disclosed_from",
            rule,
        )


def test_the_widest_affected_rule_window_is_processed(stack: Stack, world: dict[str, str]) -> None:
    window = {
        "recipient_id": world["recipient"],
        "disclosed_from": "1970-01-01T00:00:00Z",
        "disclosed_to": "2099-12-31T23:59:59.999999Z",
    }
    accepted(stack, assessed(world["incident"], affected_rule=window))
    body = stack.ok(f"/v1/incidents/{world['incident']}")
    assert body["subjects_by_rule"] == []


def test_a_correction_is_held_to_the_bounds_of_the_field_it_corrects(stack: Stack) -> None:
    opened = facts.incident()
    accepted(stack, opened)
    for moment, rule in OUT_OF_RANGE[:4]:
        refused(
            stack,
            correction(opened["event_id"], detected_at=moment),
            "corrected_fields.detected_at",
            rule,
        )
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    refused(
        stack,
        correction(opened["event_id"], detected_at=later),
        "corrected_fields.detected_at",
        "detected_in_future",
    )
    refused(
        stack,
        correction(opened["event_id"], occurred_at=later),
        "corrected_fields.occurred_at",
        "occurred_in_future",
    )
    refused(
        stack,
        correction(opened["event_id"], summary="a\x00b"),
        "corrected_fields.summary",
        "control_character",
    )
    accepted(stack, correction(opened["event_id"], detected_at="1970-01-01T00:00:00Z"))
    assert stack.ok(f"/v1/incidents/{opened['incident_id']}")["detected_at"].startswith("1970")


def test_a_correction_keeps_the_rules_between_fields(stack: Stack, world: dict[str, str]) -> None:
    """A consent corrected to expire before it was given, or a rule corrected to an empty
    window, is refused as the fact itself would have been."""
    given = facts.consent(facts.ref("user"), world["version"], occurred_at="2026-06-01T00:00:00Z")
    opened = facts.incident()
    rule = {
        "recipient_id": world["recipient"],
        "disclosed_from": "2026-01-01T00:00:00Z",
        "disclosed_to": "2026-02-01T00:00:00Z",
    }
    assessment = assessed(opened["incident_id"], affected_rule=rule)
    accepted(stack, given, opened, assessment)
    for fields, field, name in (
        (
            {"expires_at": "2026-05-31T23:59:59Z"},
            "corrected_fields.expires_at",
            "expires_before_occurred",
        ),
        (
            {"expires_at": "2026-06-01T09:00:00+09:00"},
            "corrected_fields.expires_at",
            "expires_before_occurred",
        ),
        (
            {"affected_rule": {**rule, "disclosed_to": rule["disclosed_from"]}},
            "corrected_fields.affected_rule",
            "window_empty",
        ),
    ):
        corrects = given if "expires_at" in fields else assessment
        refused(stack, correction(corrects["event_id"], **fields), field, name)
    accepted(stack, correction(given["event_id"], expires_at="2026-06-01T00:00:01Z"))


# -- text, counts and periods --------------------------------------------------------------------


CONTROL_CASES: list[tuple[Callable[[dict[str, str]], Fact], str]] = [
    (lambda w: facts.recipient(name="Evil\x00Corp"), "name"),
    (lambda w: facts.recipient(agreement_ref="DPA\x00-1"), "agreement_ref"),
    (lambda w: dict(facts.incident(), summary="Leak\x00"), "summary"),
    (lambda w: facts.recipient(name="Two\nlines"), "name"),
    (lambda w: facts.consent("user\x00", w["version"]), "subject"),
    (lambda w: facts.consent(facts.ref("u"), w["version"], contact="a\x1bb"), "contact"),
    (lambda w: facts.request(facts.ref("u"), channel="web\x7f"), "channel"),
]


def test_control_characters_are_refused(stack: Stack, world: dict[str, str]) -> None:
    for make, field in CONTROL_CASES:
        refused(stack, make(world), field, "control_character")


def test_free_text_keeps_its_lines_and_any_unicode(stack: Stack, world: dict[str, str]) -> None:
    summary = "Line one\n\tLine two\r\n\u202eRTL \U0001f600 \u0301 " + "x" * 3960
    opened = dict(facts.incident(), summary=summary)
    accepted(
        stack,
        opened,
        facts.recipient(name="\u05e9\u05dc\u05d5\u05dd \U0001d54f" + "y" * 190),
        facts.consent("\U0001f600-" + "z" * 254, world["version"]),
    )
    assert stack.ok(f"/v1/incidents/{opened['incident_id']}")["summary"] == summary


CAPPED_CASES: list[tuple[Callable[[dict[str, str]], Fact], str, str]] = [
    (
        lambda w: assessed(w["incident"], approximate_subject_count=2**31),
        "approximate_subject_count",
        "less_than_equal",
    ),
    (
        lambda w: {
            "type": "incident.subjects_notified",
            "event_id": facts.ref("evt"),
            "occurred_at": facts.now(),
            "incident_id": w["incident"],
            "channel": "email",
            "subject_count": 2**40,
        },
        "subject_count",
        "less_than_equal",
    ),
    (
        lambda w: facts.policy(
            purposes=[dict(facts.PURPOSES[0], retention_days=ev.MAX_PERIOD_DAYS + 1)]
        ),
        "purposes[0].retention_days",
        "less_than_equal",
    ),
    (lambda w: facts.policy(url="x" * 2001), "url", "string_too_long"),
    (
        lambda w: dict(facts.incident(), data_categories=["contact"] * 101),
        "data_categories",
        "too_long",
    ),
    (
        lambda w: correction(
            "x", data_categories={"a": {"b": {"c": {"d": {"e": {"f": {"g": [1]}}}}}}}
        ),
        "",
        "max_depth",
    ),
]


def test_counts_sizes_and_nesting_are_capped(stack: Stack, world: dict[str, str]) -> None:
    for make, field, rule in CAPPED_CASES:
        refused(stack, make(world), field, rule)


def test_the_largest_counts_and_periods_are_processed(stack: Stack, world: dict[str, str]) -> None:
    longest = facts.policy(
        effective_at="2099-12-31T00:00:00Z",
        purposes=[dict(facts.PURPOSES[1], retention_days=ev.MAX_PERIOD_DAYS)],
    )
    accepted(stack, longest, assessed(world["incident"], approximate_subject_count=ev.MAX_COUNT))


def test_extensions_of_a_request_add_up_to_a_maximum(stack: Stack) -> None:
    received = facts.request(facts.ref("user"))
    step = {
        "type": "request.extended",
        "event_id": "",
        "occurred_at": facts.now(),
        "request_id": received["request_id"],
        "subject": received["subject"],
        "reason": "complex",
    }
    days = [ev.MAX_EXTENSION_DAYS] * (ev.MAX_TOTAL_EXTENSION_DAYS // ev.MAX_EXTENSION_DAYS)
    days.append(ev.MAX_TOTAL_EXTENSION_DAYS - sum(days))
    accepted(
        stack,
        received,
        *[dict(step, event_id=facts.ref("evt"), extension_days=d) for d in days],
    )
    refused(
        stack,
        dict(step, event_id=facts.ref("evt"), extension_days=1),
        "extension_days",
        "extensions_exceed_maximum",
    )
    refused(
        stack,
        dict(step, event_id=facts.ref("evt"), extension_days=ev.MAX_EXTENSION_DAYS + 1),
        "extension_days",
        "less_than_equal",
    )


# -- bodies and parameters -----------------------------------------------------------------------


def test_an_incident_body_that_is_not_an_object_is_a_problem(stack: Stack) -> None:
    for body in [b"[1]", b"[null]", b'["x"]', b"1", b'"x"', b"null", b"[[]]"]:
        incident_body_is_a_problem(stack, body)


def test_an_events_body_item_that_is_not_an_object_is_a_problem(stack: Stack) -> None:
    for body in [b"[1]", b"[null]", b'["x"]', b"[[]]"]:
        response = stack.post("/v1/events", body)
        assert response.status_code == 422, response.text
        assert first_problem(response) == ("", "object_required")
    assert stack.ledger.head() == 0


def incident_body_is_a_problem(stack: Stack, body: bytes) -> None:
    response = stack.post("/v1/incidents", body, who="incidents")
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert stack.ledger.head() == 0


def problem_of(stack: Stack, path: str, **params: Any) -> tuple[int, str, str]:
    response = stack.get(path, **params)
    assert response.headers["content-type"] == "application/problem+json", response.text
    field, rule = first_problem(response)
    return response.status_code, field, rule


BAD_PARAMETERS: list[tuple[str, dict[str, str], str, str]] = [
    (
        "/v1/consent/decision",
        {"at": "0001-01-01T00:00:00+14:00"},
        "query.at",
        "time_out_of_range",
    ),
    (
        "/v1/consent/decision",
        {"at": "9999-12-31T23:59:59-12:00"},
        "query.at",
        "time_out_of_range",
    ),
    (
        "/v1/consent/decision",
        {"at": "2026-01-01T00:00:00+23:00"},
        "query.at",
        "offset_out_of_range",
    ),
    ("/v1/consent/state", {"at": "1969-12-31T23:59:59Z"}, "query.at", "time_out_of_range"),
    ("/v1/consent/decision", {"at": "yesterday"}, "query.at", "not_a_time"),
    ("/v1/consent/decision", {"at": "2026-03-01T12:00:00"}, "query.at", "time_without_offset"),
    ("/v1/disclosures", {"from": "2026-03-01"}, "query.from", "time_without_offset"),
    (
        "/v1/consent/decision",
        {"purpose": "mark\x00eting"},
        "query.purpose",
        "control_character",
    ),
    ("/v1/consent/decision", {"subject": "u\x00"}, "query.subject", "control_character"),
    ("/v1/consent/decision", {"wait_for": "-1"}, "query.wait_for", "out_of_range"),
    ("/v1/consent/decision", {"wait_for": str(2**64)}, "query.wait_for", "out_of_range"),
    (
        "/v1/disclosures",
        {"from": "0001-01-01T00:00:00+14:00"},
        "query.from",
        "time_out_of_range",
    ),
    ("/v1/disclosures", {"to": "9999-12-31T23:59:59-12:00"}, "query.to", "time_out_of_range"),
    ("/v1/disclosures", {"recipient": "r\x00"}, "query.recipient", "control_character"),
    ("/v1/disclosures", {"subject": "\x00"}, "query.subject", "control_character"),
    ("/v1/disclosures", {"limit": "0"}, "query.limit", "out_of_range"),
    ("/v1/disclosures", {"limit": "1" * 40}, "query.limit", "out_of_range"),
    ("/v1/disclosures", {"limit": "ten"}, "query.limit", "not_an_integer"),
    ("/v1/disclosures", {"format": "xml"}, "query.format", "not_one_of"),
    ("/v1/disclosures", {"violations": "maybe"}, "query.violations", "not_a_boolean"),
    ("/v1/disclosures", {"cursor": "!!!"}, "query.cursor", "cursor_invalid"),
    ("/v1/disclosures", {"cursor": "W10="}, "query.cursor", "cursor_invalid"),
    (
        "/v1/disclosures",
        {"cursor": "WyJhIiwgOTk5OTk5OTk5OTk5OTk5OTk5OTk5LCAiYiJd"},
        "query.cursor",
        "cursor_invalid",
    ),
    ("/v1/disclosures", {"cursor": "WyJhAGIiLCAxLCAiYiJd"}, "query.cursor", "cursor_invalid"),
    ("/v1/disclosures", {"cursor": "x" * 600}, "query.cursor", "too_long"),
    ("/v1/requests", {"subject": "a\x00"}, "query.subject", "control_character"),
    ("/v1/requests", {"overdue": "2"}, "query.overdue", "not_a_boolean"),
    ("/v1/subjects/history", {"subject": "a\x00"}, "query.subject", "control_character"),
    ("/v1/entries", {"start": "-1"}, "query.start", "out_of_range"),
]


def test_a_bad_parameter_is_a_clear_problem(stack: Stack) -> None:
    wrong = []
    for path, params, field, rule in BAD_PARAMETERS:
        if path.startswith("/v1/consent"):
            params = {"subject": "user-1", "purpose": "marketing_email", **params}
        status, named, broken = problem_of(stack, path, **params)
        # One status for every parameter problem (docs/api.md, "Conventions").
        if status != 400 or (named, broken) != (field, rule):
            wrong.append((path, params, status, named, broken))
    assert not wrong, wrong


def test_a_repeated_parameter_is_refused(stack: Stack) -> None:
    for path in [
        "/v1/consent/decision?subject=a&purpose=b&at=2026-01-01T00:00:00Z&at=2026-01-02T00:00:00Z",
        "/v1/disclosures?limit=1&limit=2",
        "/v1/entries?start=0&start=1",
        "/v1/requests?overdue=true&overdue=false",
    ]:
        headers = {"Authorization": f"Bearer {stack.tokens['admin']}"}
        response = stack.http.get(path, headers=headers)
        assert response.status_code == 400, (path, response.text)
        assert first_problem(response) == (
            f"query.{path.rpartition('&')[2].split('=')[0]}",
            "repeated",
        )


def test_an_odd_incident_id_in_the_path_is_a_problem(stack: Stack) -> None:
    for incident_id in ["inc\x00x", "\x00", "a\x1f", "x" * 129]:
        response = stack.get(f"/v1/incidents/{quote(incident_id, safe='')}")
        assert response.status_code == 400, (incident_id, response.text)
        assert first_problem(response)[0] == "path.incident_id"


def test_times_at_the_edges_of_the_query_window_answer(stack: Stack, world: dict[str, str]) -> None:
    subject = world["subject"]
    stack.process()  # the policy in the consent read model: marketing_email is a known purpose
    for moment in (
        "1970-01-01T00:00:00Z",
        "2200-01-01T00:00:00Z",
        "2200-01-01T13:59:59+14:00",
        "2026-03-01T12:00:00+00:00",
        "2024-02-29T23:59:59.999999+14:00",
    ):
        stack.ok("/v1/consent/decision", subject=subject, purpose="marketing_email", at=moment)
        stack.ok("/v1/consent/state", subject=subject, at=moment)
        stack.ok("/v1/disclosures", **{"from": moment, "to": moment})
