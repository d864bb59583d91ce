"""Property: for random histories, the consent read model agrees with a naive reference model.

The reference replays the decisions in the order they occurred and asks, at a moment: is the
last decision before it a consent that has neither expired nor been superseded by a material
policy version in effect? It shares no code with the projection.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application import LedgerApplication
from ledger.config import Settings
from projections.consent_state import ConsentState, ConsentStateView
from projections.runner import ProjectionRunner
from tests import facts
from tests.integration.projection_fixtures import projection_database

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=200)
PURPOSES = ("marketing_email", "usage_analytics")


@dataclass(frozen=True)
class Step:
    subject: int
    purpose: int
    decision: str
    hour: int
    expires_after: int | None
    new_policy: bool


steps = st.lists(
    st.builds(
        Step,
        subject=st.integers(0, 1),
        purpose=st.integers(0, 1),
        decision=st.sampled_from(["given", "given", "refused", "withdrawn"]),
        hour=st.integers(0, 400),
        expires_after=st.one_of(st.none(), st.integers(1, 100)),
        new_policy=st.booleans(),
    ),
    min_size=1,
    max_size=12,
)


def moment(hour: float) -> datetime:
    return BASE + timedelta(hours=hour)


def reference_valid(
    history: list[tuple[int, Step]], material_at: int, subject: int, purpose: int, at: float
) -> bool:
    """Naive: the last decision at or before ``at`` decides, by occurred time then order."""
    mine = [(s.hour, seq, s) for seq, s in history if (s.subject, s.purpose) == (subject, purpose)]
    before = sorted(entry for entry in mine if entry[0] <= at)
    if not before:
        return False
    _, _, last = before[-1]
    if last.decision != "given":
        return False
    if last.expires_after is not None and at >= last.hour + last.expires_after:
        return False
    cited_old = not (last.new_policy and last.hour >= material_at)
    return not (cited_old and at >= material_at)


MATERIAL_AT = 200
"""The hour the material policy version takes effect."""


@pytest.fixture
def policies(ledger: LedgerApplication) -> tuple[dict[str, Any], dict[str, Any]]:
    purposes = [dict(p, separate_consent=False) for p in facts.PURPOSES]
    old = facts.policy(purposes=purposes, effective_at=BASE.isoformat())
    new = facts.policy(
        purposes=purposes, material=True, effective_at=moment(MATERIAL_AT).isoformat()
    )
    ledger.append([old, new])
    return old, new


@pytest.fixture
def runner(ledger: LedgerApplication, settings: Settings) -> Iterator[ProjectionRunner]:
    db = projection_database(settings)
    try:
        yield ProjectionRunner(ledger, db, [ConsentState()])
    finally:
        db.close()


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=steps)
def test_consent_state_equals_a_reference_model(
    ledger: LedgerApplication,
    runner: ProjectionRunner,
    policies: tuple[dict[str, Any], dict[str, Any]],
    history: list[Step],
) -> None:
    # One policy timeline per ledger; fresh subjects for every example (they share the ledger).
    old, new = policies
    material_at = MATERIAL_AT
    subjects = [facts.ref("user") for _ in range(2)]
    recorded: list[tuple[int, Step]] = []
    for step in history:
        version = new if step.new_policy and step.hour >= material_at else old
        fact = facts.consent(
            subjects[step.subject],
            version["version"],
            kind=step.decision,
            purposes=[PURPOSES[step.purpose]],
            occurred_at=moment(step.hour).isoformat(),
        )
        if step.decision == "given" and step.expires_after is not None:
            fact["expires_at"] = moment(step.hour + step.expires_after).isoformat()
        [receipt] = ledger.append([fact])
        recorded.append((receipt.seq, step))
    runner.catch_up()
    view = ConsentStateView(runner.db)
    probes = sorted(
        {s.hour for s in history} | {s.hour + 0.5 for s in history} | {material_at, 500}
    )
    for subject in range(2):
        pseudonym = ledger.subject_keys.pseudonym(subjects[subject])
        for purpose in range(2):
            for hour in probes:
                expected = reference_valid(recorded, material_at, subject, purpose, hour)
                verdict = view.decide(pseudonym, PURPOSES[purpose], moment(hour))
                assert verdict.valid == expected, (subject, purpose, hour, verdict)
