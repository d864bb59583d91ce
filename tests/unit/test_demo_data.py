"""The demo generator: deterministic, valid facts, and the promises it makes about them."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from demo import dataset as demo
from ledger.events import parse_fact

ANCHOR = date(2026, 3, 1)


@pytest.fixture(scope="module")
def data() -> demo.DemoDataSet:
    return demo.generate(users=120, seed=7, anchor=ANCHOR)


def test_the_same_options_give_the_same_facts_and_another_seed_others(
    data: demo.DemoDataSet,
) -> None:
    assert demo.generate(users=120, seed=7, anchor=ANCHOR).facts == data.facts
    assert demo.generate(users=120, seed=8, anchor=ANCHOR).facts != data.facts


def test_every_fact_validates(data: demo.DemoDataSet) -> None:
    for fact in data.facts:
        parse_fact(fact)


def test_event_ids_count_up_in_append_order(data: demo.DemoDataSet) -> None:
    ids = [fact["event_id"] for fact in data.facts]
    assert ids == [f"demo-{n:06d}" for n in range(1, len(ids) + 1)]
    assert ids[0] == demo.FIRST_EVENT_ID


def test_the_first_fact_gives_the_anchor_back(data: demo.DemoDataSet) -> None:
    assert demo.anchor_of(data.facts[0]) == ANCHOR


def test_facts_lie_in_the_year_before_the_anchor_in_time_order_but_the_late_ones(
    data: demo.DemoDataSet,
) -> None:
    midnight = datetime(2026, 3, 1, tzinfo=UTC)
    times = [datetime.fromisoformat(f["occurred_at"]) for f in data.facts]
    assert all(midnight - timedelta(days=371) < t < midnight for t in times)
    late = len(data.late_event_ids)
    assert late >= 1
    in_order = times[:-late]
    assert in_order == sorted(in_order)
    assert data.late_event_ids == [f["event_id"] for f in data.facts[-late:]]
    assert all(t < in_order[-1] - timedelta(days=7) for t in times[-late:])


def test_the_planted_violations_are_the_only_ones_and_each_kind_is_there(
    data: demo.DemoDataSet,
) -> None:
    planted = Counter(p.verdict for p in data.planted)
    assert dict(planted) == {k: v for k, v in data.violations.items() if v}
    assert set(planted) == set(demo.VIOLATIONS)
    assert data.verdicts["consent_valid"] > 10 * len(data.planted)
    assert data.verdicts["lawful_exception"] > 0


def test_the_story_has_a_material_change_minors_an_incident_and_an_overdue_request(
    data: demo.DemoDataSet,
) -> None:
    by_type = Counter(f["type"] for f in data.facts)
    policies = [f for f in data.facts if f["type"] == "policy.version_published"]
    assert [p["material"] for p in policies] == [False, False, True]
    assert data.renewal_required and data.renewed
    assert data.minors
    minors = set(data.minors)
    for fact in data.facts:
        if fact["type"] == "consent.given" and fact["subject"] in minors:
            assert "guardian" in fact
    assert by_type["recipient.terminated"] == 1 and by_type["correction.recorded"] == 1
    assert by_type["incident.authority_notified"] == 1 and by_type["request.refused"] == 2
    received = {
        f["request_id"]: datetime.fromisoformat(f["occurred_at"])
        for f in data.facts
        if f["type"] == "request.received"
    }
    closed = {
        f["request_id"] for f in data.facts if f["type"] in ("request.fulfilled", "request.refused")
    }
    assert set(received) - closed == set(data.open_request_ids)
    overdue = received[data.overdue_request_id]
    assert overdue < datetime(2026, 3, 1, tzinfo=UTC) - timedelta(days=31)  # even at 30 days


def test_the_seed_policys_rules_are_broken_where_an_app_would_break_them(
    data: demo.DemoDataSet,
) -> None:
    policies = {
        f["version"]: f["guardian_consent_allowed"]
        for f in data.facts
        if f["type"] == "policy.version_published"
    }
    assert policies == {"v1.0": False, "v1.1": False, "v2.0": True}
    disclosures = {f["disclosure_id"]: f for f in data.facts if f["type"] == "disclosure.recorded"}
    why = {p.verdict: p.disclosure_id for p in data.planted}
    winback = disclosures[why["legal_basis_not_permitted"]]
    assert (winback["purpose"], winback["legal_basis"]) == (
        "marketing_email",
        "legitimate_interest",
    )
    raw = disclosures[why["not_de_identified"]]
    assert (raw["kind"], raw["de_identified"]) == ("delegated_processing", False)
    # Every other delegated processing is de-identified, as the policy promises.
    delegated = [f for f in disclosures.values() if f["kind"] == "delegated_processing"]
    assert [f["disclosure_id"] for f in delegated if not f["de_identified"]] == [
        raw["disclosure_id"]
    ]
    refused = [f["ground"] for f in data.facts if f["type"] == "request.refused"]
    assert sorted(refused) == ["legal_obligation_to_retain", "unnecessarily_repetitive"]


def test_the_default_demo_tells_the_counts_docs_demo_md_gives() -> None:
    """The rules' violations draw their members from a generator of their own, so adding them
    left the members and their decisions where docs/demo.md counts them."""
    big = demo.generate(users=2000, seed=1, anchor=ANCHOR)
    assert (len(big.renewed), len(big.renewal_required)) == (874, 418)
    assert len(big.facts) == 14348
    assert big.violations == {
        "consent_missing": 12,
        "legal_basis_not_permitted": 3,
        "not_de_identified": 3,
        "recipient_terminated": 4,
        "recipient_unregistered": 3,
    }


def test_users_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="users"):
        demo.generate(users=5, anchor=ANCHOR)
