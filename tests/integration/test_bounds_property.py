"""Processable by construction (issue 14): facts generated from the catalogue's own models
(tests/strategies.py), biased to the extremes, drive the real application on both backends.

Whatever the API accepts is processed by every read model and answers every register,
decision and history query; the whole log exports and verifies offline (report included) at
the end. Whatever it refuses leaves the log as it was. No answer is ever a 5xx.

Fixed seed and bounded examples in CI. For a longer run by hand:

    LEDGER_PROPERTY_EXAMPLES=2000 .venv/bin/pytest tests/integration/test_bounds_property.py
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.config import Settings
from tests import facts
from tests.integration.full_stack import Stack, full_stack
from tests.strategies import FactBuilder, Pools

EXAMPLES = int(os.environ.get("LEDGER_PROPERTY_EXAMPLES", "60"))
NOW = datetime.now(UTC)


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    with full_stack(settings, tmp_path) as running:
        yield running


@pytest.fixture
def pools(stack: Stack) -> Pools:
    """A world the generated facts can refer to: a policy in effect since 1970 whose purposes
    are consent-based, a processor, an open incident, a received request."""
    found = Pools()
    consentable = [
        {"id": p, "name": p, "legal_basis": "consent", "retention_days": 30}
        for p in ("marketing_email", "newsletter")
    ]
    world = [
        facts.policy(effective_at="1970-01-01T00:00:00Z", purposes=consentable),
        facts.recipient(),
        facts.incident(),
        facts.request(facts.ref("user")),
    ]
    response = stack.record(world)
    assert response.status_code == 201, response.text
    for fact in world:
        found.learn(fact)
    return found


def test_whatever_is_accepted_is_processed_and_whatever_is_refused_leaves_nothing(
    stack: Stack, pools: Pools
) -> None:
    builders = [FactBuilder(pools, NOW, hostile=h) for h in (False, False, False, True)]
    outcomes: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        builder = builders[data.draw(st.integers(0, len(builders) - 1), label="builder")]
        batch = data.draw(st.lists(builder.any_fact(), min_size=1, max_size=3), label="batch")
        head = stack.ledger.head()
        response = stack.record(batch)
        outcomes[response.status_code] = outcomes.get(response.status_code, 0) + 1
        if os.environ.get("DEBUGA"):
            print(
                response.status_code,
                [f.get("type") for f in batch],
                response.text[:300] if response.status_code >= 300 else "",
            )
        assert response.status_code < 500, response.text
        if response.status_code in (200, 201):
            for fact in batch:
                pools.learn(fact)
            stack.check_processable(export=False)
        else:
            assert response.headers["content-type"] == "application/problem+json"
            assert stack.ledger.head() == head, response.text

    run()
    # The run must exercise both sides: facts accepted and facts refused.
    accepted = outcomes.get(201, 0) + outcomes.get(200, 0)
    assert accepted and sum(outcomes.values()) > accepted, outcomes
    stack.check_processable(export=True)
