"""Who is told, for any disclosure history (hypothesis, both backends): after a withdrawal,
exactly the recipients that received the subject's data for the purpose withdrawn get one
notice each, naming the disclosures that carried it; nobody else, and nobody twice, however
often the follower runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application import LedgerApplication
from ledger.notices import notice_id
from projections.database import ProjectionDatabase
from projections.notices import NoticeService
from tests import facts

PURPOSES = ("service_provision", "marketing_email", "usage_analytics")
WITHDRAWABLE = ("marketing_email", "usage_analytics")

disclosure_plans = st.lists(
    st.tuples(
        st.integers(0, 2),  # recipient
        st.sampled_from(PURPOSES),
        st.sets(st.integers(0, 1), min_size=1),  # which of the two subjects
    ),
    max_size=6,
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(plan=disclosure_plans, withdrawn=st.sampled_from(WITHDRAWABLE))
def test_a_withdrawal_tells_exactly_the_recipients_of_that_purpose(
    ledger: LedgerApplication,
    db: ProjectionDatabase,
    plan: list[tuple[int, str, set[int]]],
    withdrawn: str,
) -> None:
    version = facts.ref("policy")
    recipients = [facts.ref("rcp") for _ in range(3)]
    subjects = [facts.ref("user"), facts.ref("user")]
    setup: list[dict[str, Any]] = [
        facts.policy(version),
        *(facts.recipient(r) for r in recipients),
        facts.consent(subjects[0], version, purposes=["marketing_email"]),
        facts.consent(subjects[0], version, purposes=["usage_analytics"]),
    ]
    ledger.append(setup)
    expected: dict[str, list[int]] = {}
    for recipient, purpose, who in plan:
        named = [subjects[i] for i in sorted(who)]
        (receipt,) = ledger.append(
            [facts.disclosure(recipients[recipient], named, version, purpose=purpose)]
        )
        if 0 in who and purpose == withdrawn:
            expected.setdefault(recipients[recipient], []).append(receipt.seq)
    (cause,) = ledger.append(
        [facts.consent(subjects[0], version, "withdrawn", purposes=[withdrawn])]
    )
    service = NoticeService(ledger, db, dict, retry_first=timedelta(0), lease=timedelta(0))
    service.step()
    service.step()

    told = {
        row.recipient_id: row
        for row in service.register()
        if row.cause_seq == cause.seq  # the outbox is shared by every example
    }
    assert set(told) == set(expected)
    for recipient_id, row in told.items():
        assert row.notice_id == notice_id(cause.seq, recipient_id)
        assert row.purposes == [withdrawn]
        assert row.disclosure_seqs == expected[recipient_id]
        assert row.due_seq is not None
    due = [
        event.data["notice_id"]
        for event in (ledger.decode(r) for r in ledger.iter_records(start=cause.seq))
        if event.type == "recipient.notice_due"
    ]
    assert sorted(due) == sorted(row.notice_id for row in told.values()), "each once"
