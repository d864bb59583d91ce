"""Projection rebuild benchmark: events per second the read models rebuild from zero.

Run by hand from the repository root::

    .venv/bin/python bench/read_model_rebuild.py [--backend sqlite|postgres|both] [--events N]
                                          [--json OUT]

For each backend it fills a new ledger with a realistic mix of ``N`` log events (20,000 by
default): a policy version, recipients, consents for many subjects, withdrawals, disclosures
naming 1-5 subjects, age attestations, incidents and data-subject requests with their steps, a
material policy change half-way and a few corrections, spread over the past 300 days. It then
measures, one after the other, on that same log:

* **raw read**: ``app.ledger.select_notifications`` in pages of the runner's size over the whole
  log, each entry decoded with ``LoggedEvent.from_entry``. No projection can be faster than this
  floor.
* **all four**: ``ProjectionRunner.rebuild()`` of every read model as ``ReadModels`` wires them
  (consent_state, disclosures, incidents, requests, and retention since it was added; the row
  keeps its name so results compare). They start together at position 0, so the runner reads
  and decodes each page of the log once for all of them and applies it to all of them in one
  transaction.
* **each group alone**: ``runner.rebuild([name])`` for each group of read models (since
  round three, consent_facts, consent_state, disclosures and retention are one group that is
  rebuilt together: a rebuild of any of them is a rebuild of the four; incidents and requests
  are each alone). A row is named for its group's members, joined by ``+``.

Every figure is the log's events divided by the wall time. Results go to stdout as a table and
to a JSON file. See ``bench/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from harness import (
    RESULTS_DIR,
    announce,
    machine_facts,
    markdown_table,
    temporary_directory,
    temporary_schema,
)

from ledger.application import LedgerApplication
from ledger.config import Settings, generate_keys, open_ledger
from projections.base import LoggedEvent
from projections.read_models import ReadModels
from projections.runner import PAGE as RUNNER_PAGE
from projections.runner import ProjectionRunner, table_digest

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_EVENTS = 20_000
MIN_EVENTS = 100
PAGE = RUNNER_PAGE
"""Raw read page size: the runner's own (``projections.runner.PAGE``), so the baseline reads
the log as the rebuild does."""
APPEND_BATCH = 500
"""Facts per ``app.append`` while filling."""
SPAN = timedelta(days=300)
CORRECTIONS = 10
SEED = 20261129


# -- the log: a realistic mix of facts --------------------------------------------------------

PURPOSES: list[dict[str, Any]] = [
    {
        "id": "service_provision",
        "name": "Providing the service",
        "legal_basis": "contract",
        "retention_days": 1825,
    },
    {
        "id": "marketing_email",
        "name": "Marketing e-mail",
        "legal_basis": "consent",
        "retention_days": 730,
    },
    {
        "id": "personalised_offers",
        "name": "Personalised offers",
        "legal_basis": "consent",
        "retention_days": 730,
    },
    {
        "id": "usage_analytics",
        "name": "Usage analytics",
        "legal_basis": "consent",
        "retention_days": 365,
        "separate_consent": True,
    },
]
RESEARCH = {
    "id": "product_research",
    "name": "Product research interviews",
    "legal_basis": "consent",
    "retention_days": 365,
}
CONSENT_SETS_V1 = (
    ["marketing_email"],
    ["marketing_email", "personalised_offers"],
    ["personalised_offers"],
    ["usage_analytics"],  # separate consent: always alone
)
CONSENT_SETS_V2 = (*CONSENT_SETS_V1, ["product_research", "marketing_email"])
RECIPIENTS: list[dict[str, Any]] = [
    {"recipient_id": "mailer", "name": "Mailer Ltd", "role": "processor", "country": "IE"},
    {"recipient_id": "cloud", "name": "Example Cloud Ltd", "role": "processor", "country": "DE"},
    {"recipient_id": "crm", "name": "CRM Inc", "role": "processor", "country": "US"},
    {
        "recipient_id": "cloud-backup",
        "name": "Backup GmbH",
        "role": "sub_processor",
        "country": "DE",
        "parent_recipient_id": "cloud",
    },
    {"recipient_id": "partner", "name": "Partner Shop SA", "role": "third_party", "country": "FR"},
    {"recipient_id": "ads", "name": "Ad Network Inc", "role": "third_party", "country": "US"},
]
PROCESSORS = ("mailer", "cloud", "crm", "cloud-backup")
THIRD_PARTIES = ("partner", "ads")
FACT_WEIGHTS = {
    "consent": 40,
    "withdrawal": 10,
    "disclosure": 25,
    "age": 5,
    "incident": 5,
    "request": 10,
}
"""Shares of the facts sent; the ledger adds a ``subject.registered`` per new subject."""
NEW_SUBJECT_SHARE = 0.35
"""A consent names a subject never seen with this probability (else a known one)."""
CORRECTED_FIELDS: dict[str, dict[str, Any]] = {
    "consent.given": {"collection_method": "paper"},
    "disclosure.recorded": {"data_categories": ["contact", "purchase_history"]},
    "incident.opened": {"summary": "Misconfigured bucket at the backup sub-processor"},
    "request.received": {"channel": "email"},
}
"""What the corrections change, by the type of the event corrected."""
INCIDENT_STEPS = ("assessed", "contained", "authority_notified", "subjects_notified", "closed")


@dataclass
class _Incident:
    incident_id: str
    steps: list[str]


@dataclass
class _Request:
    request_id: str
    subject: str
    steps: list[str]
    kind: str = "access"


class Workload:
    """Builds facts in time order, tracking what the ledger will accept next.

    Times advance with the number of log events so far: the ``N`` events are spread evenly over
    ``SPAN`` and the last one is an hour old. A consent or age attestation for a new subject
    makes two log events (``subject.registered`` first), everything else one, so the log ends
    with exactly ``events`` events.
    """

    def __init__(self, events: int, run_id: str, now: datetime, seed: int = SEED) -> None:
        self.target = events
        self.run_id = run_id
        self.rng = random.Random(seed)
        self.end = now - timedelta(hours=1)
        self.start = self.end - SPAN
        self.step = SPAN / events
        self.log_events = 0
        self.facts = 0
        self.sent: Counter[str] = Counter()
        self.subjects: list[str] = []
        self.subjects_made = 0
        self.minors: set[str] = set()
        self.active: list[tuple[str, str]] = []
        """(subject, purpose) pairs whose consent was given and not withdrawn since."""
        self.incidents: list[_Incident] = []
        self.requests: list[_Request] = []
        self.policy = "v1"
        self.consent_sets: tuple[list[str], ...] = CONSENT_SETS_V1
        self.switched = False
        self.correctable: dict[str, dict[str, Any]] = {}
        self.corrections_done = 0
        self.numbers = 0

    # -- helpers -------------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        self.numbers += 1
        return f"{prefix}-{self.run_id}-{self.numbers}"

    def _time(self) -> datetime:
        return self.start + self.step * (self.log_events + self.rng.random())

    def _fact(self, type_name: str, at: datetime, **fields: Any) -> dict[str, Any]:
        return {
            "type": type_name,
            "event_id": self._id("evt"),
            "occurred_at": at.isoformat(),
            **fields,
        }

    def _emit(self, fact: dict[str, Any], log_events: int = 1) -> dict[str, Any]:
        self.log_events += log_events
        self.facts += 1
        self.sent[fact["type"]] += 1
        return fact

    def _new_subject(self) -> str:
        # Numbered by subjects ever made: an erased subject's name is never reused.
        subject = f"user-{self.run_id}-{self.subjects_made}"
        self.subjects_made += 1
        self.subjects.append(subject)
        return subject

    # -- the facts -----------------------------------------------------------------------------

    def facts_in_order(self) -> Iterator[dict[str, Any]]:
        yield self._emit(self._policy_fact("v1", PURPOSES, self.start, material=True))
        for recipient in RECIPIENTS:
            yield self._emit(self._fact("recipient.registered", self._time(), **recipient))
        kinds = list(FACT_WEIGHTS)
        weights = list(FACT_WEIGHTS.values())
        while self.log_events < self.target:
            left = self.target - self.log_events
            if not self.switched and self.log_events >= self.target // 2:
                self.switched = True
                self.policy, self.consent_sets = "v2", CONSENT_SETS_V2
                yield self._emit(
                    self._policy_fact("v2", [*PURPOSES, RESEARCH], self._time(), material=True)
                )
                continue
            due = (self.corrections_done + 1) * self.target // (CORRECTIONS + 1)
            if self.log_events >= due and self.corrections_done < CORRECTIONS:
                self.corrections_done += 1
                correction = self._correction()
                if correction is not None:
                    yield correction
                    continue
            kind = self.rng.choices(kinds, weights)[0]
            fact = getattr(self, f"_{kind}")(allow_new=left >= 2)
            if fact is not None:
                yield fact

    def _policy_fact(
        self, version: str, purposes: list[dict[str, Any]], at: datetime, *, material: bool
    ) -> dict[str, Any]:
        return self._fact(
            "policy.version_published",
            at,
            version=f"{version}-{self.run_id}",
            effective_at=at.isoformat(),
            material=material,
            purposes=purposes,
            text_digest="sha256:" + secrets.token_hex(32),
        )

    def _policy_version(self) -> str:
        return f"{self.policy}-{self.run_id}"

    def _consent(self, *, allow_new: bool) -> dict[str, Any] | None:
        new = allow_new and (not self.subjects or self.rng.random() < NEW_SUBJECT_SHARE)
        subject = self._new_subject() if new else self.rng.choice(self.subjects)
        purposes = list(self.rng.choice(self.consent_sets))
        fields: dict[str, Any] = {
            "subject": subject,
            "purposes": purposes,
            "policy_version": self._policy_version(),
            "collection_method": self.rng.choice(("web_form", "mobile_app", "cookie_banner")),
            "evidence": {
                "notice_id": f"notice-{self.policy}",
                "ip_address": f"203.0.113.{self.rng.randrange(1, 255)}",
            },
        }
        if "marketing_email" in purposes:
            fields["contact"] = f"{subject}@example.org"
        if subject in self.minors:
            fields["guardian"] = {"name": f"Parent of {subject}", "relationship": "parent"}
        fact = self._fact("consent.given", self._time(), **fields)
        self.active.extend((subject, purpose) for purpose in purposes)
        self.correctable["consent.given"] = fact
        return self._emit(fact, 2 if new else 1)

    def _withdrawal(self, *, allow_new: bool) -> dict[str, Any] | None:
        if not self.active:
            return self._consent(allow_new=allow_new)
        index = self.rng.randrange(len(self.active))
        subject, purpose = self.active[index]
        self.active[index] = self.active[-1]
        self.active.pop()
        return self._emit(
            self._fact(
                "consent.withdrawn",
                self._time(),
                subject=subject,
                purposes=[purpose],
                policy_version=self._policy_version(),
                collection_method="web_form",
            )
        )

    def _disclosure(self, *, allow_new: bool) -> dict[str, Any] | None:
        if not self.subjects:
            return self._consent(allow_new=allow_new)
        count = min(len(self.subjects), self.rng.randint(1, 5))
        subjects: list[str] = []
        if self.rng.random() < 0.55:
            recipient = self.rng.choice((*THIRD_PARTIES, "mailer"))
            purpose, basis = "marketing_email", "consent"
            kind = "sharing" if recipient in THIRD_PARTIES else "delegated_processing"
            # Mostly subjects who consented (and have not withdrawn); the rest are violations.
            for subject, given in self.rng.sample(self.active, min(len(self.active), 20)):
                if given == purpose and subject not in subjects and len(subjects) < count:
                    subjects.append(subject)
        else:
            recipient = self.rng.choice(PROCESSORS)
            purpose, basis, kind = "service_provision", "contract", "delegated_processing"
        while len(subjects) < count:
            subject = self.rng.choice(self.subjects)
            if subject not in subjects:
                subjects.append(subject)
        fact = self._fact(
            "disclosure.recorded",
            self._time(),
            disclosure_id=self._id("disc"),
            recipient_id=recipient,
            kind=kind,
            subjects=subjects,
            data_categories=self.rng.choice((["contact"], ["contact", "usage"])),
            purpose=purpose,
            legal_basis=basis,
            de_identified=False,
            destination_country=self.rng.choice(("IE", "DE", "US", "FR")),
            policy_version=self._policy_version(),
        )
        self.correctable["disclosure.recorded"] = fact
        return self._emit(fact)

    def _age(self, *, allow_new: bool) -> dict[str, Any] | None:
        new = allow_new and (not self.subjects or self.rng.random() < 0.4)
        if not new and not self.subjects:
            return self._request(allow_new=allow_new)
        subject = self._new_subject() if new else self.rng.choice(self.subjects)
        minor = self.rng.random() < 0.08
        if minor:
            self.minors.add(subject)
        fact = self._fact(
            "subject.age_attested",
            self._time(),
            subject=subject,
            age=self.rng.randint(13, 17) if minor else self.rng.randint(18, 85),
            method=self.rng.choice(("self_declared", "document_checked")),
        )
        return self._emit(fact, 2 if new else 1)

    def _incident(self, *, allow_new: bool) -> dict[str, Any] | None:
        at = self._time()
        if self.incidents and (self.rng.random() < 0.8 or len(self.incidents) >= 4):
            incident = self.rng.choice(self.incidents)
            step = incident.steps.pop(0)
            if not incident.steps:
                self.incidents.remove(incident)
            return self._emit(self._incident_step(incident.incident_id, step, at))
        steps = list(INCIDENT_STEPS)
        if self.rng.random() < 0.6:
            steps.remove("subjects_notified")  # not a high risk
        incident_id = self._id("inc")
        self.incidents.append(_Incident(incident_id, steps))
        fact = self._fact(
            "incident.opened",
            at,
            incident_id=incident_id,
            detected_at=(at - timedelta(hours=self.rng.randint(1, 48))).isoformat(),
            summary="Misconfigured storage bucket at the hosting processor",
            recipient_id="cloud",
            data_categories=["contact"],
        )
        self.correctable["incident.opened"] = fact
        return self._emit(fact)

    def _incident_step(self, incident_id: str, step: str, at: datetime) -> dict[str, Any]:
        fields: dict[str, Any]
        if step == "assessed":
            fields = {
                "risk": self.rng.choice(("unlikely", "risk", "high_risk")),
                "data_categories": ["contact"],
                "likely_consequences": "Phishing e-mail to the people whose addresses leaked",
                "affected_subjects": self.rng.sample(
                    self.subjects, min(len(self.subjects), self.rng.randint(0, 3))
                ),
                "affected_rule": {
                    "recipient_id": "cloud",
                    "disclosed_from": (at - timedelta(days=30)).isoformat(),
                    "disclosed_to": at.isoformat(),
                },
            }
        elif step == "contained":
            fields = {"measures": "Bucket made private; access keys rotated"}
        elif step == "authority_notified":
            fields = {"authority": "Data Protection Commission", "dpo_contact": "dpo@example.com"}
        elif step == "subjects_notified":
            fields = {"channel": "email", "subject_count": self.rng.randint(1, 500)}
        else:
            fields = {"resolution": "Root cause fixed; processor audited"}
        return self._fact(f"incident.{step}", at, incident_id=incident_id, **fields)

    def _request(self, *, allow_new: bool) -> dict[str, Any] | None:
        at = self._time()
        if self.requests and (self.rng.random() < 0.65 or len(self.requests) >= 10):
            request = self.rng.choice(self.requests)
            erases = request.kind == "erasure" and request.steps[0] == "fulfilled"
            if erases and not allow_new:
                # Fulfilling an erasure records subject.erased too: 2 log events, 1 left.
                return self._consent(allow_new=False)
            step = request.steps.pop(0)
            if not request.steps:
                self.requests.remove(request)
            fact = self._request_step(request, step, at)
            if erases:
                self._forget(request.subject)
                return self._emit(fact, 2)
            return self._emit(fact)
        if not self.subjects:
            return self._consent(allow_new=allow_new)
        steps = ["identity_verified"]
        if self.rng.random() < 0.15:
            steps.append("extended")
        steps.append("refused" if self.rng.random() < 0.1 else "fulfilled")
        kind = self.rng.choice(("access", "erasure", "rectification", "withdrawal"))
        if kind == "erasure" and len(self.subjects) < 50:
            steps[-1] = "refused"  # keep enough subjects for the other facts
        request = _Request(self._id("req"), self.rng.choice(self.subjects), steps, kind)
        self.requests.append(request)
        fact = self._fact(
            "request.received",
            at,
            request_id=request.request_id,
            subject=request.subject,
            kind=kind,
            channel="web_form",
            jurisdiction=self.rng.choice(("EU", "CN", "DE", "FR")),
        )
        self.correctable["request.received"] = fact
        return self._emit(fact)

    def _forget(self, subject: str) -> None:
        """A fulfilled erasure request erases the subject: the ledger refuses any later fact
        about them, so no later fact names them (nor corrects a fact that did)."""
        self.subjects.remove(subject)
        self.minors.discard(subject)
        self.active = [pair for pair in self.active if pair[0] != subject]
        self.requests = [r for r in self.requests if r.subject != subject]
        self.correctable = {
            kind: fact
            for kind, fact in self.correctable.items()
            if fact.get("subject") != subject and subject not in fact.get("subjects", ())
        }

    def _request_step(self, request: _Request, step: str, at: datetime) -> dict[str, Any]:
        fields: dict[str, Any]
        if step == "identity_verified":
            fields = {"method": "email_link"}
        elif step == "extended":
            fields = {"extension_days": 15, "reason": "Records held by two processors"}
        elif step == "refused":
            fields = {"ground": "manifestly_unfounded", "explanation": "Same request last week"}
        else:
            fields = {"note": "Export sent by e-mail"}
        return self._fact(
            f"request.{step}",
            at,
            request_id=request.request_id,
            subject=request.subject,
            **fields,
        )

    def _correction(self) -> dict[str, Any] | None:
        """Correct a correctable field of a recent fact, in turn across four kinds."""
        kinds = sorted(self.correctable)
        if not kinds:
            return None
        type_name = kinds[self.corrections_done % len(kinds)]
        original = self.correctable[type_name]
        corrected_fields = CORRECTED_FIELDS[type_name]
        return self._emit(
            self._fact(
                "correction.recorded",
                self._time(),
                corrects_event_id=original["event_id"],
                reason="The first report had it wrong",
                corrected_fields=corrected_fields,
            )
        )


@dataclass
class Fill:
    facts: int
    events: int
    seconds: float
    appends: int

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def fill_ledger(app: LedgerApplication, events: int, run_id: str) -> tuple[Fill, Workload]:
    """Append the workload in batches of up to ``APPEND_BATCH`` facts; the fill's figures."""
    workload = Workload(events, run_id, app.clock())
    batch: list[dict[str, Any]] = []
    appends = 0
    t0 = time.perf_counter()
    for fact in workload.facts_in_order():
        batch.append(fact)
        if len(batch) == APPEND_BATCH:
            app.append(batch)
            appends += 1
            batch = []
            print(".", end="", flush=True)
    if batch:
        app.append(batch)
        appends += 1
    seconds = time.perf_counter() - t0
    print(flush=True)
    head = app.head()
    if head != events:
        raise AssertionError(f"the log holds {head} events, not the {events} planned")
    return Fill(workload.facts, head, seconds, appends), workload


# -- measurements -----------------------------------------------------------------------------


@dataclass
class Row:
    backend: str
    what: str
    events: int
    """Events in the log (the figure's numerator)."""
    applied: int
    """Events of the types it reads (each projection skips the others)."""
    seconds: float
    per_s: float
    applied_per_s: float
    ratio: float | None = None
    """``per_s`` / raw read ``per_s``."""
    cpu_seconds: float = 0.0
    """This process's CPU time (user + system) for it: on a loaded machine it moves less than
    the wall time (on PostgreSQL the server's CPU is not in it)."""


def read_raw(app: LedgerApplication) -> Counter[str]:
    """The floor: every entry, read in pages and decoded; the count of each event type."""
    head = app.head()
    topics: Counter[str] = Counter()
    position = 0
    while position < head:
        page = app.ledger.select_notifications(
            start=position, limit=PAGE, stop=head, inclusive_of_start=False
        )
        if not page:
            break
        for notification in page:
            topics[LoggedEvent.from_body(notification.id, notification.state).type] += 1
        position = page[-1].id
    return topics


def timed(backend: str, what: str, events: int, applied: int, run: Callable[[], object]) -> Row:
    print(f"   {backend}: {what} ...", end="", flush=True)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    run()
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    per_s = events / seconds if seconds > 0 else 0.0
    applied_per_s = applied / seconds if seconds > 0 else 0.0
    print(f" {seconds:.2f}s ({cpu:.2f}s CPU), {per_s:,.0f} events/s", flush=True)
    return Row(
        backend,
        what,
        events,
        applied,
        round(seconds, 3),
        round(per_s, 1),
        round(applied_per_s, 1),
        cpu_seconds=round(cpu, 3),
    )


@dataclass
class BackendResult:
    backend: str
    fill_facts: int
    fill_events: int
    fill_seconds: float
    fill_per_s: float
    fill_appends: int
    facts_sent: dict[str, int]
    log_events: dict[str, int]
    subjects: int
    rows: list[Row] = field(default_factory=list)
    table_rows: dict[str, int] = field(default_factory=dict)
    """Rows in each read-model table after the rebuilds."""
    disclosure_verdicts: dict[str, int] = field(default_factory=dict)
    digest_all: str = ""
    digest_each: str = ""
    digests_match: bool = False
    """The tables are the same after rebuilding all four together and each group alone."""
    problems: list[str] = field(default_factory=list)


def run_backend(name: str, settings: Settings, args: argparse.Namespace) -> BackendResult:
    run_id = secrets.token_hex(3)
    print(f"\n== {name}: filling a new ledger with {args.events:,} events", end="", flush=True)
    app = open_ledger(settings)
    try:
        fill, workload = fill_ledger(app, args.events, run_id)
        print(
            f"   {name}: appended {fill.facts:,} facts ({fill.events:,} events) in "
            f"{fill.seconds:.1f}s, {fill.per_second:,.0f} events/s",
            flush=True,
        )
        topics = read_raw(app)  # warm-up (caches), and the log's composition
        result = BackendResult(
            backend=name,
            fill_facts=fill.facts,
            fill_events=fill.events,
            fill_seconds=round(fill.seconds, 3),
            fill_per_s=round(fill.per_second, 1),
            fill_appends=fill.appends,
            facts_sent=dict(workload.sent.most_common()),
            log_events=dict(topics.most_common()),
            subjects=workload.subjects_made,
        )
        events = fill.events
        raw = timed(name, "raw read", events, events, lambda: read_raw(app))
        read_models = ReadModels(app, settings)
        try:
            runner = read_models.runner
            reads = {
                n: sum(
                    count
                    for topic, count in topics.items()
                    if topic in runner.projection(n).topics or topic == "correction.recorded"
                )
                for n in runner.projections
            }
            rows = [raw]
            rows.append(
                timed(name, "all four", events, sum(reads.values()), lambda: runner.rebuild())
            )
            result.digest_all = table_digest(read_models.db)
            result.problems += check_status(runner, events)
            # A runner of before round three has no groups: each read model is its own.
            group_of = getattr(runner, "group", lambda n: (n,))
            for group in dict.fromkeys(group_of(n) for n in runner.projections):
                rows.append(
                    timed(
                        name,
                        "+".join(group),
                        events,
                        sum(reads[n] for n in group),
                        partial(runner.rebuild, [group[-1]]),
                    )
                )
            result.digest_each = table_digest(read_models.db)
            result.digests_match = result.digest_all == result.digest_each
            if not result.digests_match:
                result.problems.append(
                    "tables differ after rebuilding all four and each group alone"
                )
            result.problems += check_status(runner, events)
            result.table_rows = {
                table: int(read_models.db.query(f"SELECT count(*) FROM {table}")[0][0])
                for table in read_models.db.table_names()
            }
            result.disclosure_verdicts = {
                str(verdict): int(count)
                for verdict, count in read_models.db.query(
                    "SELECT verdict, count(*) FROM proj_disclosures GROUP BY verdict "
                    "ORDER BY count(*) DESC"
                )
            }
        finally:
            read_models.close()
        for row in rows:
            row.ratio = round(row.per_s / raw.per_s, 3) if raw.per_s else None
        result.rows = rows
        return result
    finally:
        app.close()


def check_status(runner: ProjectionRunner, head: int) -> list[str]:
    return [
        f"{s.name}: at {s.position} of {head}, error {s.error}"
        for s in runner.status()
        if s.position != head or s.error is not None
    ]


# -- backends ---------------------------------------------------------------------------------


@contextmanager
def sqlite_backend() -> Iterator[Settings]:
    with temporary_directory("bench-read-models-") as tmp:
        yield Settings(data_dir=tmp / "ledger")


@contextmanager
def postgres_backend(url: str) -> Iterator[Settings]:
    with (
        temporary_directory("bench-read-models-") as tmp,
        temporary_schema(url, "bench_rm_") as schema,
    ):
        settings = Settings(data_dir=tmp / "ledger", database_url=url, database_schema=schema)
        generate_keys(settings)
        yield settings


# -- running and reporting --------------------------------------------------------------------


def format_table(rows: list[Row]) -> str:
    headers = [
        "backend",
        "what",
        "events",
        "applied",
        "seconds",
        "CPU s",
        "events/s",
        "applied/s",
        "ratio",
    ]
    lines = [
        [
            r.backend,
            r.what,
            f"{r.events:,}",
            f"{r.applied:,}",
            f"{r.seconds:.2f}",
            f"{r.cpu_seconds:.2f}",
            f"{r.per_s:,.0f}",
            f"{r.applied_per_s:,.0f}",
            "-" if r.ratio is None else f"{r.ratio:.3f}",
        ]
        for r in rows
    ]
    return markdown_table(headers, lines, left=2)


def format_fill(results: list[BackendResult]) -> str:
    return "\n".join(
        f"fill {r.backend}: {r.fill_facts:,} facts -> {r.fill_events:,} events "
        f"({r.subjects:,} subjects) in {r.fill_appends} appends, {r.fill_seconds:.1f}s, "
        f"{r.fill_per_s:,.0f} events/s appended"
        for r in results
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Read-model rebuild throughput (events/s) against reading and decoding "
        "the raw log, on SQLite and PostgreSQL."
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--events",
        type=int,
        default=DEFAULT_EVENTS,
        help=f"log events to fill the ledger with (default {DEFAULT_EVENTS:,})",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL),
        help=f"PostgreSQL URL (default $BENCH_PG_URL or {DEFAULT_PG_URL})",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write the figures (default bench/results/read_model_rebuild-<UTC>.json)",
    )
    args = parser.parse_args(argv)
    if args.events < MIN_EVENTS:
        parser.error(f"--events must be at least {MIN_EVENTS}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    json_path: Path = args.json or RESULTS_DIR / (
        f"read_model_rebuild-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    )
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    facts = machine_facts(args.pg_url if "postgres" in backends else None)
    command = announce("projection rebuild benchmark", started, facts)

    results: list[BackendResult] = []
    for name in backends:
        context = sqlite_backend() if name == "sqlite" else postgres_backend(args.pg_url)
        with context as settings:
            results.append(run_backend(name, settings, args))

    facts["loadavg_at_end"] = list(os.getloadavg())
    rows = [row for result in results for row in result.rows]
    table = format_table(rows)
    fill = format_fill(results)
    print()
    print(table)
    print()
    print(fill)
    for result in results:
        print(f"log {result.backend}: {result.log_events}")
    print(
        "\nevents/s: events in the log / wall time. raw read: select_notifications in pages "
        f"of {PAGE} + LoggedEvent.from_entry, the floor. all four: runner.rebuild() of every "
        "read model ReadModels wires (retention too), together: each page of the log read once "
        "for all ('applied': each one's own event types, summed). Each group (names joined "
        "by +): runner.rebuild([name]) of one of them, which rebuilds its group. "
        "ratio = events/s / raw read events/s."
    )
    problems = [f"{r.backend}: {p}" for r in results for p in r.problems]
    for problem in problems:
        print(f"PROBLEM {problem}", file=sys.stderr)
    output = {
        "benchmark": "projections",
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "command": command,
        "config": {
            "backends": backends,
            "events": args.events,
            "page": PAGE,
            "append_batch": APPEND_BATCH,
            "span_days": SPAN.days,
            "seed": SEED,
            "fact_weights": FACT_WEIGHTS,
            "new_subject_share": NEW_SUBJECT_SHARE,
            "pg_url": args.pg_url if "postgres" in backends else None,
        },
        "machine": facts,
        "results": [asdict(r) for r in results],
        "table": table,
        "fill": fill,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(output, indent=2) + "\n")
    print(f"\nwrote {json_path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
