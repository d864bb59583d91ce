"""Export a scope, verify its bundle offline, and compare its report with the live read models.

The expected rows come from the read models alone (the disclosure history's own window query,
the incident register, the request register, the consent state), never from the code that
chooses a bundle's events, so a bundle that leaves out what its report should cover fails.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.application import LedgerApplication
from ledger.config import Settings, load_keyring
from ledger.export import export_bundle
from ledger.verifier.bundle import verify_bundle
from ledger.verifier.entry import parse_body
from ledger.verifier.note import format_verifier_key, parse_verifier_key
from ledger.verifier.spreadsheet import csv_text
from ledger.verifier.times import parse_utc
from projections.disclosures import DisclosureRow
from projections.incidents import IncidentRecord
from projections.read_models import ReadModels


def report_settings(settings: Settings) -> dict[str, Any]:
    return {
        "default_minimum_age": settings.limits.minimum_age,
        "authority_deadline_hours": 72,
        "request_due_days": 15,
        "request_due_days_by_jurisdiction": {},
    }


def csv_rows(bundle: Path, name: str) -> list[dict[str, str]]:
    path = bundle / name
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def bundle_bodies(bundle: Path) -> Iterator[dict[str, Any]]:
    with (bundle / "events.tsv").open("rb") as file:
        for line in file:
            yield parse_body(line.rstrip(b"\n").split(b"\t", 3)[3])


def text(value: Any) -> str:
    """A value as the report's CSV writes it (a formula neutralised)."""
    return csv_text(_plain(value))


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ";".join(_plain(v) for v in value)
    return str(value)


@dataclass
class Desk:
    """A ledger, its read models (caught up), and a place for bundles."""

    app: LedgerApplication
    settings: Settings
    models: ReadModels
    out: Path

    def pseudonym(self, ref: str) -> str:
        return self.app.subject_keys.pseudonym(ref)

    def export(self, scope: dict[str, Any], *, event_chunk: int = 1024) -> Path:
        """The bundle of ``scope``, verified offline (every check, the report re-rendered)."""
        assert self.app.checkpointer is not None
        origin = self.app.checkpointer.origin
        keys = [
            format_verifier_key(origin, key)
            for key in load_keyring(self.settings).public_keys.values()
        ]
        target = self.out / f"bundle-{len(list(self.out.iterdir()))}"
        export_bundle(
            self.app,
            scope,
            target,
            verifier_keys=keys,
            report_settings=report_settings(self.settings),
        )
        verify_bundle(
            target, [parse_verifier_key(k) for k in keys], jobs=1, event_chunk=event_chunk
        )
        return target

    # -- what the live read models say for a scope ---------------------------------------------

    def disclosures(self, scope: dict[str, Any], as_of: str) -> list[DisclosureRow]:
        view = self.models.disclosures
        kind = scope["kind"]
        if kind == "subject":
            return view.find(subject=scope["subject"], limit=100_000)
        if kind == "recipient":
            return view.find(recipient_id=scope["recipient_id"], limit=100_000)
        if kind == "period":
            start, end = parse_utc(scope["from"]), parse_utc(scope["to"])
            return view.find(start=start, end=end, limit=100_000)
        if kind == "incident":
            record = self.models.incidents.get(scope["incident_id"], parse_utc(as_of))
            rule = None if record is None else record.affected_rule
            if rule is None:
                return []
            return view.find(
                recipient_id=rule["recipient_id"],
                start=parse_utc(rule["disclosed_from"]),
                end=parse_utc(rule["disclosed_to"]),
                limit=100_000,
            )
        return view.find(limit=100_000)

    def subjects_by_rule(self, record: IncidentRecord) -> list[str]:
        """The subjects the incident's rule selects, as the register's answer gives them."""
        if record.affected_rule is None:
            return []
        return self.models.incidents.subjects_by_rule(record.affected_rule, self.models.disclosures)

    def incidents(self, scope: dict[str, Any], as_of: str) -> list[IncidentRecord]:
        records = self.models.incidents.list(parse_utc(as_of))
        kind = scope["kind"]
        if kind == "subject":
            subject = scope["subject"]
            return [r for r in records if subject in r.affected_subjects or self._ruled(r, subject)]
        if kind == "recipient":
            recipient = scope["recipient_id"]
            return [
                r
                for r in records
                if r.recipient_id == recipient
                or (r.affected_rule is not None and r.affected_rule["recipient_id"] == recipient)
            ]
        if kind == "incident":
            return [r for r in records if r.incident_id == scope["incident_id"]]
        if kind == "all":
            return records
        return []

    def _ruled(self, record: IncidentRecord, subject: str) -> bool:
        rule = record.affected_rule
        return rule is not None and subject in self.models.disclosures.subjects_disclosed_to(
            rule["recipient_id"], rule["disclosed_from"], rule["disclosed_to"]
        )

    # -- the comparison --------------------------------------------------------------------------

    def check(self, scope: dict[str, Any], subjects: list[str], **export: Any) -> Path:
        """Export and verify ``scope``; its report's rows equal the read models' rows: the
        disclosures with their verdicts, the consent status of each of ``subjects`` the scope
        reports, the incidents with their deadlines, the requests."""
        bundle = self.export(scope, **export)
        as_of = max(body["recorded_at"] for body in bundle_bodies(bundle))
        kind = scope["kind"]
        name = json.dumps(scope)

        got = sorted(
            (
                int(r["seq"]),
                r["subject"],
                r["occurred_at"],
                r["recipient_id"],
                r["purpose"],
                r["legal_basis"],
                r["verdict"],
                r["consent_seq"],
            )
            for r in csv_rows(bundle, "disclosures.csv")
        )
        want = sorted(
            (
                r.seq,
                r.subject,
                r.occurred_at,
                r.recipient_id,
                r.purpose,
                r.legal_basis,
                r.verdict,
                text(r.consent_seq),
            )
            for r in self.disclosures(scope, as_of)
        )
        assert got == want, name

        if kind in ("subject", "all"):
            status = csv_rows(bundle, "consent_status.csv")
            reported = [scope["subject"]] if kind == "subject" else subjects
            for subject in reported:
                mine = [
                    {k: r[k] for k in COMPARED_CONSENT} for r in status if r["subject"] == subject
                ]
                expected = [
                    {k: text(state.as_dict()[k]) for k in COMPARED_CONSENT}
                    for state in self.models.consent.state(subject, parse_utc(as_of))
                ]
                assert mine == expected, (name, subject)
            assert {r["as_of"] for r in status} <= {as_of}
        else:
            assert not (bundle / "consent_status.csv").exists()

        incidents = csv_rows(bundle, "incidents.csv")
        if kind == "period":
            assert not (bundle / "incidents.csv").exists()
        else:
            got_incidents = [{k: r[k] for k in COMPARED_INCIDENT} for r in incidents]
            want_incidents = [
                incident_row(r, scope, self.subjects_by_rule(r))
                for r in self.incidents(scope, as_of)
            ]
            assert got_incidents == want_incidents, (name, got_incidents, want_incidents)
            page = (bundle / "report.html").read_text(encoding="utf-8")
            assert f"): {len(incidents)}; authority deadline missed: " in page

        if kind in ("subject", "all"):
            requests = self.models.requests.list(parse_utc(as_of), subject=scope.get("subject"))
            got_requests = [
                {k: r[k] for k in COMPARED_REQUEST} for r in csv_rows(bundle, "requests.csv")
            ]
            want_requests = [
                {k: text(v) for k, v in r.as_dict().items() if k in COMPARED_REQUEST}
                for r in requests
            ]
            key = lambda row: row["request_id"]  # noqa: E731
            assert sorted(got_requests, key=key) == sorted(want_requests, key=key), (
                name,
                got_requests,
                want_requests,
            )
        return bundle


COMPARED_CONSENT = (
    # The state's columns the report's status has (a pending renewal is on its timeline).
    "purpose",
    "status",
    "dpv_status",
    "valid",
    "policy_version",
    "since",
    "decided_by_seq",
)
COMPARED_INCIDENT = (
    "incident_id",
    "status",
    "detected_at",
    "recipient_id",
    "risk",
    "data_categories",
    "approximate_subject_count",
    "affected_subject_count",
    "assessed_at",
    "contained_at",
    "authority_deadline",
    "authority_notified_at",
    "authority",
    "authority_deadline_status",
    "subjects_notified_at",
    "subjects_notification_due",
    "closed_at",
    "article_33_3_missing",
    "opened_seq",
    "last_seq",
)
COMPARED_REQUEST = (
    "request_id",
    "subject",
    "kind",
    "received_at",
    "identity_verified_at",
    "extension_days",
    "due_at",
    "status",
    "closed_at",
    "refusal_ground",
    "overdue",
    "answered_late",
    "days_left",
    "received_seq",
    "last_seq",
)


def incident_row(
    record: IncidentRecord, scope: dict[str, Any], by_rule: list[str]
) -> dict[str, str]:
    """What the report's incidents.csv should say of an incident of the register: the subjects
    it affects counted as the register counts them, named or selected by its rule; none where
    the bundle cannot count them (a subject's; a recipient's, when the rule names another)."""
    rule = record.affected_rule
    counted = scope["kind"] in ("incident", "all") or (
        scope["kind"] == "recipient"
        and (rule is None or rule["recipient_id"] == scope["recipient_id"])
    )
    plain = record.with_rule_selected(by_rule).as_dict()
    if record.authority_notified_at is not None:
        status = "missed" if record.authority_notified_late else "met"
    elif record.risk == "unlikely":
        status = "not_required"
    elif record.authority_overdue:
        status = "overdue"
    else:
        status = "pending"
    row = {
        **{k: plain[k] for k in COMPARED_INCIDENT if k in plain},
        "affected_subject_count": record.affected_count(by_rule) if counted else None,
        "authority_deadline_status": status,
        "article_33_3_missing": plain["article_33_3"]["missing"],
    }
    return {k: text(row[k]) for k in COMPARED_INCIDENT}
