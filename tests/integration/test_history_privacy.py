"""A subject's history names nobody else: not their references, not their pseudonyms."""

from __future__ import annotations

import orjson

from ledger.application import LedgerApplication
from ledger.sealing import WITHHELD
from projections.queries import Queries
from projections.read_models import ReadModels
from tests import facts


def test_a_subjects_history_withholds_every_other_subjects_pseudonym(
    ledger: LedgerApplication, models: ReadModels
) -> None:
    pol = facts.policy()
    alice, bob, carol, recipient = (facts.ref(n) for n in ("alice", "bob", "carol", "rcpt"))
    incident = facts.incident()
    disclosure = facts.disclosure(recipient, [alice, bob, carol], pol["version"])
    ledger.append(
        [
            pol,
            facts.recipient(recipient),
            *(facts.consent(s, pol["version"]) for s in (alice, bob, carol)),
            disclosure,
            incident,
            {
                "type": "incident.assessed",
                "event_id": facts.ref("evt"),
                "occurred_at": facts.now(),
                "incident_id": incident["incident_id"],
                "risk": "high_risk",
                "data_categories": ["contact"],
                "likely_consequences": "Phishing e-mails",
                "affected_subjects": [bob, alice, carol],
            },
        ]
    )
    ledger.append(
        [
            {
                "type": "correction.recorded",
                "event_id": facts.ref("evt"),
                "occurred_at": facts.now(),
                "corrects_event_id": disclosure["event_id"],
                "corrected_fields": {"purpose": "usage_analytics"},
                "reason": "the purpose was mistyped",
            }
        ]
    )
    models.runner.catch_up()
    keys = ledger.subject_keys
    mine, others = keys.pseudonym(alice), {keys.pseudonym(bob), keys.pseudonym(carol)}
    answer = Queries(ledger, models).history(alice)
    text = orjson.dumps(answer).decode()
    types = [e["type"] for e in answer["events"]]
    assert {"disclosure.recorded", "incident.assessed"} <= set(types)
    assert mine in text
    for other in others | {bob, carol}:
        assert other not in text
    [shared] = [e for e in answer["events"] if e["type"] == "disclosure.recorded"]
    assert [s["subject"] for s in shared["data"]["subjects"]] == [mine, WITHHELD, WITHHELD]
    assert [s["ref"] for s in shared["data"]["subjects"]] == [alice, WITHHELD, WITHHELD]
