"""The seed policy's own rules, on both backends: the read models, the "may I?" answer and the
offline verifier's report give the same verdicts (docs/events.md, "The seed policy's rules").

- "If you are a minor under the age of 18, we will not provide you with the Services";
- "We will not share your personal information with third parties unless we obtain your
  authorized consent or such information falls under an exception";
- "We will employ the technical means to de-sensitize personal information subject to delegate
  processing";
- a request "that is unnecessarily repetitive, requires excessive technical means ... or is very
  unrealistic" may be refused.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.errors import ValidationError
from ledger.recorder import LogRecord
from ledger.verifier.report import ReportEvent, write_report
from ledger.verifier.verdicts import CONSENT_EXCEPTIONS, basis_permitted
from ledger.vocabulary import LegalBasis, RefusalGround
from projections.consent_state import ConsentState, ConsentStateView
from projections.disclosures import DisclosureHistory, DisclosureHistoryView
from projections.requests import RequestRegister, RequestRegisterView
from projections.runner import ProjectionRunner
from tests import facts
from tests.integration.projection_fixtures import projection_database

NOW = datetime.now(UTC).replace(microsecond=0)
GUARDIAN = {"name": "A Parent", "relationship": "mother"}
SEED_GROUNDS = ("unnecessarily_repetitive", "excessive_technical_means", "unrealistic")


def at(days: float) -> str:
    return (NOW + timedelta(days=days)).isoformat()


@dataclass
class Ledger:
    """A ledger with the seed policy's shape (guardian consent left at its default), a third
    party and a processor, 100 days in the past; read models caught up after each append."""

    app: LedgerApplication
    runner: ProjectionRunner
    tmp: Path

    def __post_init__(self) -> None:
        self.policy = facts.policy(effective_at=at(-100), occurred_at=at(-100))
        self.third_party = facts.recipient(role="third_party", occurred_at=at(-100))
        self.processor = facts.recipient(role="processor", occurred_at=at(-100))
        self.record(self.policy, self.third_party, self.processor)

    def record(self, *items: dict[str, Any]) -> list[int]:
        receipts = self.app.append(list(items))
        self.runner.catch_up()
        return [r.seq for r in receipts]

    def pseudonym(self, subject: str) -> str:
        return self.app.subject_keys.pseudonym(subject)

    def disclose(self, subject: str, days: float, **fields: Any) -> dict[str, Any]:
        fields.setdefault("recipient_id", self.third_party["recipient_id"])
        recipient_id = fields.pop("recipient_id")
        return facts.disclosure(
            recipient_id, [subject], self.policy["version"], occurred_at=at(days), **fields
        )

    def report(self) -> Path:
        """The offline verifier's report of the whole log, rendered from its events."""

        def events() -> Iterator[ReportEvent]:
            for record in self.app.iter_records():
                decoded = self.app.decode(record)
                yield ReportEvent(
                    seq=decoded.seq,
                    type=decoded.type,
                    occurred_at=decoded.occurred_at,
                    recorded_at=decoded.recorded_at,
                    event_id=decoded.event_id,
                    backdated=decoded.backdated,
                    data=self.app.mentions_opened(
                        signed_data(record), decoded.stream, decoded.stream_version
                    ),
                    shown=decoded.data,
                )

        directory = self.tmp / f"report-{len(list(self.tmp.iterdir()))}"
        directory.mkdir()
        note = self.app.sign_checkpoint().note
        write_report({"kind": "all"}, note, events, directory, default_minimum_age=18)
        return directory

    def verdicts(self, subject: str) -> list[tuple[str, bool]]:
        """The disclosure history's verdicts of ``subject``, checked against the report's."""
        pseudonym = self.pseudonym(subject)
        view = DisclosureHistoryView(self.runner.db)
        found = [(r.seq, r.verdict, r.violation) for r in view.find(subject=pseudonym)]
        reported = [
            (int(r["seq"]), r["verdict"], r["violation"] == "true")
            for r in rows(self.report(), "disclosures.csv")
            if r["subject"] == pseudonym
        ]
        assert sorted(reported) == sorted(found)
        return [(verdict, violation) for _, verdict, violation in found]


def signed_data(record: LogRecord) -> dict[str, Any]:
    """The data as signed (pseudonyms, sealed values), as the bundle verifier reads it; the
    stored body's format is changing, so both are read."""
    body = getattr(record, "body", None)
    data: dict[str, Any] = (
        orjson.loads(body)["data"] if body else orjson.loads(record.entry)["body"]["data"]
    )
    return data


def rows(directory: Path, name: str) -> list[dict[str, str]]:
    with (directory / name).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def ledger_(ledger: LedgerApplication, settings: Settings, tmp_path: Path) -> Iterator[Ledger]:
    db = projection_database(settings)
    runner = ProjectionRunner(
        ledger, db, [ConsentState(), DisclosureHistory(), RequestRegister()], batch_size=5
    )
    try:
        yield Ledger(ledger, runner, tmp_path)
    finally:
        db.close()


def test_a_minor_with_a_guardians_consent_is_not_served_unless_the_version_accepts_it(
    ledger_: Ledger,
) -> None:
    minor, accepted = facts.ref("user"), facts.ref("user")
    accepting = facts.policy(
        guardian_consent_allowed=True, effective_at=at(-100), occurred_at=at(-100)
    )
    [_, age_seq, _] = ledger_.record(accepting, facts.age(minor, 15), facts.age(accepted, 15))
    ledger_.record(
        facts.consent(minor, ledger_.policy["version"], occurred_at=at(-10), guardian=GUARDIAN),
        facts.consent(accepted, accepting["version"], occurred_at=at(-10), guardian=GUARDIAN),
        ledger_.disclose(minor, -5),
        facts.disclosure(
            ledger_.third_party["recipient_id"],
            [accepted],
            accepting["version"],
            occurred_at=at(-5),
        ),
    )
    view = ConsentStateView(ledger_.runner.db)
    refused = view.decide(ledger_.pseudonym(minor), "marketing_email", NOW)
    answer = refused.answer("x", "marketing_email")
    assert (answer["allowed"], answer["status"], answer["dpv_status"]) == (
        False,
        "guardian_not_allowed",
        "dpv:ConsentInvalidated",
    )
    assert answer["decided_by_seq"] == age_seq
    assert view.decide(ledger_.pseudonym(accepted), "marketing_email", NOW).valid
    assert ledger_.verdicts(minor) == [("consent_missing", True)]
    # Without a guardian, the door refuses a minor's consent, and says a guardian would not do.
    with pytest.raises(ValidationError) as refused_:
        ledger_.record(facts.consent(minor, ledger_.policy["version"], occurred_at=at(-1)))
    assert refused_.value.problems[0].rule == "subject_is_minor"
    assert "guardian_consent_allowed is false" in refused_.value.problems[0].message
    assert ledger_.verdicts(accepted) == [("consent_valid", False)]
    # The report's consent status says the same, and why.
    status = {
        r["subject"]: (r["status"], r["valid"])
        for r in rows(ledger_.report(), "consent_status.csv")
    }
    assert status[ledger_.pseudonym(minor)] == ("guardian_not_allowed", "false")
    assert status[ledger_.pseudonym(accepted)] == ("given", "true")


def test_sharing_after_a_withdrawal_under_legitimate_interest_is_not_permitted(
    ledger_: Ledger,
) -> None:
    subject = facts.ref("user")
    ledger_.record(
        facts.consent(subject, ledger_.policy["version"], occurred_at=at(-50)),
        facts.consent(subject, ledger_.policy["version"], "withdrawn", occurred_at=at(-30)),
    )
    ledger_.record(
        ledger_.disclose(subject, -20, legal_basis="legitimate_interest"),
        ledger_.disclose(subject, -19, legal_basis="consent"),
        ledger_.disclose(subject, -18, legal_basis="legal_obligation"),
        ledger_.disclose(
            subject, -17, purpose="service_provision", legal_basis="legitimate_interest"
        ),
    )
    assert ledger_.verdicts(subject) == [
        ("legal_basis_not_permitted", True),
        ("consent_missing", True),
        ("lawful_exception", False),
        ("legal_basis_not_permitted", True),
    ]


def test_delegated_processing_must_be_de_identified(ledger_: Ledger) -> None:
    subject = facts.ref("user")
    processor = ledger_.processor["recipient_id"]
    ledger_.record(facts.consent(subject, ledger_.policy["version"], occurred_at=at(-50)))
    ledger_.record(
        ledger_.disclose(
            subject, -20, recipient_id=processor, kind="delegated_processing", de_identified=False
        ),
        ledger_.disclose(
            subject, -19, recipient_id=processor, kind="delegated_processing", de_identified=True
        ),
        ledger_.disclose(
            subject,
            -18,
            recipient_id=processor,
            kind="delegated_processing",
            de_identified=False,
            purpose="service_provision",
            legal_basis="contract",
        ),
    )
    assert ledger_.verdicts(subject) == [
        ("not_de_identified", True),
        ("consent_valid", False),
        ("not_de_identified", True),
    ]
    # A correction that says the data was de-identified after all clears the row.
    [first] = DisclosureHistoryView(ledger_.runner.db).find(
        subject=ledger_.pseudonym(subject), limit=1
    )
    corrected = next(
        r for r in ledger_.app.iter_records() if ledger_.app.decode(r).seq == first.seq
    )
    ledger_.record(
        {
            "type": "correction.recorded",
            "event_id": facts.ref("e"),
            "occurred_at": at(0),
            "corrects_event_id": ledger_.app.decode(corrected).event_id,
            "reason": "the export job pseudonymised the member ids; the flag was set wrong",
            "corrected_fields": {"de_identified": True},
        }
    )
    assert ledger_.verdicts(subject)[0] == ("consent_valid", False)


def test_the_seed_policys_refusal_grounds_are_recorded_and_registered(ledger_: Ledger) -> None:
    subject = facts.ref("user")
    for ground in SEED_GROUNDS:
        request_id = facts.ref("req")
        ledger_.record(
            facts.request(subject, request_id, occurred_at=at(-3)),
            {
                "type": "request.refused",
                "event_id": facts.ref("e"),
                "occurred_at": at(-2),
                "request_id": request_id,
                "subject": subject,
                "ground": ground,
                "explanation": "as the policy states it",
            },
        )
    register = RequestRegisterView(ledger_.runner.db).list(NOW)
    assert sorted(r.refusal_ground or "" for r in register) == sorted(SEED_GROUNDS)
    reported = rows(ledger_.report(), "requests.csv")
    assert sorted(r["refusal_ground"] for r in reported) == sorted(SEED_GROUNDS)
    with pytest.raises(ValidationError) as refused:
        ledger_.record(
            {
                "type": "request.refused",
                "event_id": facts.ref("e"),
                "occurred_at": at(-1),
                "request_id": facts.ref("req"),
                "subject": subject,
                "ground": "because",
                "explanation": "no such ground",
            }
        )
    assert refused.value.problems[0].rule == "enum"


def test_the_permitted_bases_are_consent_the_declared_basis_and_the_policys_exceptions() -> None:
    assert set(CONSENT_EXCEPTIONS) < {b.value for b in LegalBasis}
    for basis in LegalBasis:
        listed = basis.value in CONSENT_EXCEPTIONS or basis is LegalBasis.CONSENT
        assert basis_permitted(basis.value, "consent") == listed, basis
        assert basis_permitted(basis.value, basis.value), basis
    assert not basis_permitted("legitimate_interest", None)
    assert {g.value for g in RefusalGround} >= set(SEED_GROUNDS)
