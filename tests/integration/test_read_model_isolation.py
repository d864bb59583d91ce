"""One failing read model never takes the others down (issue 14, point 3), except its group.

A real read model, subclassed to fail on a chosen event, stops at that event with its group
(the read models that share the consent facts stop together, issue 16): the others follow the
log to its head, appends go on, ``/readyz``, ``/metrics`` and ``projections status``
name the read model, the event and the error, consent questions that need it answer a 503
naming it, and once the fault is gone a resume or ``projections rebuild NAME`` brings it to
the head with the rows of a fresh build. A passing fault (a lost database connection) heals
by itself.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg
import pytest

from api.http.app import ServerSettings, create_app, open_client_database
from api.token_store import Scope, SqlTokenStore
from ledger.application import LedgerApplication
from ledger.config import Settings
from projections.base import LoggedEvent, PoisonEventError, Projection
from projections.consent_state import ConsentState
from projections.database import ProjectionDatabase, Sql
from projections.disclosures import DisclosureHistory
from projections.incidents import IncidentRegister
from projections.requests import RequestRegister
from projections.retention import Retention
from projections.runner import ProjectionRunner, table_digest
from tests import facts
from tests.cli_runner import run_cli
from tests.integration.projection_fixtures import projection_database
from tests.support.in_process import InProcess
from tests.support.waiting import wait_until

PSEUDONYM = str(uuid.UUID(int=7))


class Fault:
    """Where the failing read models fail: on event ``seq``, or on the next ``times`` tries
    whatever the event (a passing fault)."""

    seq: ClassVar[int | None] = None
    times: ClassVar[int] = 0

    @classmethod
    def check(cls, event: LoggedEvent) -> None:
        if event.seq == cls.seq:
            # A message as a careless bug might write: a pseudonym, a NUL, a second line.
            raise OverflowError(
                f"date value out of range for {PSEUDONYM}\x00\nDETAIL: subject {PSEUDONYM}"
            )
        if cls.times > 0:
            cls.times -= 1
            raise ConnectionError("the server closed the connection")

    @classmethod
    def clear(cls) -> None:
        cls.seq, cls.times = None, 0


class FailingConsentState(ConsentState):
    def process(self, sql: Sql, event: LoggedEvent) -> None:
        Fault.check(event)
        super().process(sql, event)


class FailingDisclosures(DisclosureHistory):
    def process(self, sql: Sql, event: LoggedEvent) -> None:
        Fault.check(event)
        super().process(sql, event)


class BrokenIncidents(IncidentRegister):
    """Fails before any event of a page: in ``begin``, where a page's state is loaded."""

    broken: ClassVar[bool] = False

    def begin(self, sql: Sql, events: Sequence[LoggedEvent] = ()) -> None:
        if self.broken:
            raise KeyError("incident_state")
        super().begin(sql, events)


@pytest.fixture(autouse=True)
def _no_fault() -> Iterator[None]:
    Fault.clear()
    yield
    Fault.clear()


def read_models(settings: Settings, **replaced: Projection) -> list[Projection]:
    """The read models ``ReadModels`` runs, with some replaced by failing ones (same names
    and versions, so a runner with the real ones takes their tables as they are)."""
    real: list[Projection] = [
        ConsentState(),
        DisclosureHistory(settings.limits.minimum_age),
        IncidentRegister(),
        RequestRegister(),
        Retention(),
    ]
    return [replaced.get(p.name, p) for p in real]


def story(ledger: LedgerApplication, subjects: int = 12) -> tuple[dict[str, Any], list[str]]:
    pol = facts.policy()
    rcpt = facts.recipient()
    people = [facts.ref("user") for _ in range(subjects)]
    ledger.append([pol, rcpt])
    ledger.append([facts.consent(p, pol["version"]) for p in people])
    ledger.append([facts.disclosure(rcpt["recipient_id"], people[:4], pol["version"])])
    ledger.append([facts.request(people[0]), facts.incident()])
    return rcpt, people


def more(ledger: LedgerApplication, recipient: dict[str, Any], people: list[str]) -> int:
    """Events for every read model; the new head."""
    pol = facts.policy()
    ledger.append([pol])
    ledger.append([facts.consent(p, pol["version"], kind="withdrawn") for p in people[::2]])
    ledger.append([facts.disclosure(recipient["recipient_id"], people[4:8], pol["version"])])
    ledger.append([facts.request(people[1]), facts.incident()])
    return ledger.head()


def seq_of(ledger: LedgerApplication, event_type: str, after: int = 0) -> int:
    [first] = ledger.ledger.select_notifications(
        start=after, limit=1, stop=ledger.head(), topics=[event_type]
    )
    return int(first.id)


def eventually(check: Callable[[], bool], seconds: float = 20.0) -> None:
    wait_until(check, "not reached in time", seconds, 0.02)


class Follower:
    """``runner.follow`` in a thread, as ``projections run`` and ``serve`` run it."""

    def __init__(self, runner: ProjectionRunner) -> None:
        self.runner = runner
        self.reported: list[PoisonEventError] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=runner.follow, args=(self.stop, self.reported.append), daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.runner.wake()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive()


def test_a_read_model_failing_on_an_event_stops_with_its_group_and_resumes_once_fixed(
    ledger: LedgerApplication, settings: Settings, db: ProjectionDatabase
) -> None:
    recipient, people = story(ledger)
    poison = seq_of(ledger, "disclosure.recorded")
    Fault.seq = poison
    runner = ProjectionRunner(
        ledger,
        db,
        read_models(settings, disclosures=FailingDisclosures(settings.limits.minimum_age)),
        batch_size=3,
        poll_interval=0.02,
        retry_first=0.05,
        retry_max=0.2,
    )
    group = runner.group("disclosures")
    assert set(group) == {"consent_facts", "consent_state", "disclosures", "retention"}
    follower = Follower(runner)
    try:
        # The others reach the head, and follow what is appended after the failure.
        eventually(lambda: runner.position("incidents") == ledger.head())
        head = more(ledger, recipient, people)
        others = [name for name in runner.projections if name not in group]
        eventually(lambda: all(runner.position(name) == head for name in others))

        # Stopped at the event with its group, nothing of it written, the failure recorded
        # without the pseudonym or the NUL of the error's text; tried again, backing off,
        # reported once (for each read model of the group).
        assert runner.position("disclosures") < poison
        assert {runner.position(name) for name in group} == {runner.position("disclosures")}
        assert db.query("SELECT seq FROM proj_disclosures WHERE seq >= ?", (poison,)) == []
        eventually(lambda: (f := runner.failure("disclosures")) is not None and f.attempts >= 3)
        failure = runner.failure("disclosures")
        assert failure is not None
        assert (failure.seq, failure.event_type, failure.error_class) == (
            poison,
            "disclosure.recorded",
            "OverflowError",
        )
        assert failure.message == "date value out of range for <uuid>?"
        reported = [(e.projection, e.seq) for e in follower.reported]
        assert sorted(reported) == sorted((name, poison) for name in group)
        assert reported[0] == ("disclosures", poison)  # the one that failed, first
        sibling = runner.failure("consent_state")
        assert sibling is not None and sibling.seq == poison
        assert (
            sibling.message == "in disclosures, of its group: date value out of range for <uuid>?"
        )
        [status] = [s for s in runner.status() if s.name == "disclosures"]
        assert status.failure == failure and status.lag_events == head - status.position
        assert f"event {poison} (disclosure.recorded): OverflowError" in str(status.error)
        assert PSEUDONYM not in str(status.error) and "\x00" not in str(status.error)
        assert not any(s.error for s in runner.status() if s.name not in group)
        assert runner.retrying().keys() == set(group)

        # The fault goes away (the code is fixed): the follower resumes by itself.
        Fault.clear()
        eventually(lambda: runner.position("disclosures") == ledger.head())
        eventually(lambda: not runner.retrying())
        assert runner.failure("disclosures") is None
        assert all(s.error is None and s.failure is None for s in runner.status())
    finally:
        follower.close()
    resumed = table_digest(db)
    ProjectionRunner(ledger, db, read_models(settings)).rebuild()
    assert table_digest(db) == resumed  # the rows of a fresh build


def test_a_passing_fault_heals_by_itself(
    ledger: LedgerApplication, settings: Settings, db: ProjectionDatabase
) -> None:
    recipient, people = story(ledger)
    runner = ProjectionRunner(
        ledger,
        db,
        read_models(settings, consent_state=FailingConsentState()),
        poll_interval=0.02,
        retry_first=0.05,
        retry_max=0.1,
    )
    runner.catch_up()
    Fault.times = 3  # the next three tries fail, whichever event they meet
    follower = Follower(runner)
    try:
        head = more(ledger, recipient, people)
        eventually(lambda: all(runner.position(name) == head for name in runner.projections))
        eventually(lambda: runner.failure("consent_state") is None)
        assert Fault.times == 0 and follower.reported[0].projection == "consent_state"
        assert sorted(e.projection for e in follower.reported) == sorted(
            runner.group("consent_state")
        )
        assert follower.reported[0].error_class == "ConnectionError"
    finally:
        follower.close()


def test_on_postgresql_a_lost_connection_heals_by_itself(
    ledger: LedgerApplication,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if settings.database_url is None:
        pytest.skip("SQLite has no connection to lose (the test above covers passing faults)")
    recipient, people = story(ledger)
    name = f"isolation-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("PGAPPNAME", name)  # the read models' first connection, and only it
    db = projection_database(settings)
    monkeypatch.delenv("PGAPPNAME")
    runner = ProjectionRunner(
        ledger, db, read_models(settings), poll_interval=0.02, retry_first=0.05, retry_max=0.2
    )
    follower = Follower(runner)
    try:
        eventually(lambda: all(s.lag_events == 0 for s in runner.status()))
        with psycopg.connect(settings.database_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            ).fetchall()
        assert killed, "no connection of the read models was found"
        head = more(ledger, recipient, people)
        eventually(lambda: all(runner.position(n) == head for n in runner.projections))
        eventually(lambda: not runner.failures() and not runner.retrying())
        assert follower.thread.is_alive()
    finally:
        follower.close()
        db.close()


def test_a_read_model_failing_before_any_event_stops_alone_at_its_next_event(
    ledger: LedgerApplication, settings: Settings, db: ProjectionDatabase
) -> None:
    story(ledger)
    runner = ProjectionRunner(ledger, db, read_models(settings, incidents=BrokenIncidents()))
    BrokenIncidents.broken = True
    try:
        [stopped] = runner.catch_up_each()  # one page shared by all of them at first
        first = seq_of(ledger, "incident.opened")
        assert (stopped.projection, stopped.seq, stopped.error_class) == (
            "incidents",
            first,
            "KeyError",
        )
        positions = {s.name: s.position for s in runner.status()}
        assert positions.pop("incidents") == 0
        assert set(positions.values()) == {ledger.head()}
        failure = runner.failure("incidents")
        assert failure is not None and failure.event_type == "incident.opened"
        BrokenIncidents.broken = False
        assert runner.catch_up_each() == []
        assert runner.failure("incidents") is None
    finally:
        BrokenIncidents.broken = False


# -- what users see: /readyz, /metrics, consent questions, projections status, rebuild --------


@dataclass
class Deployment:
    """The API, with its read models run elsewhere (``serve --no-projections`` beside
    ``projections run``): here a runner whose consent state fails on a chosen event."""

    settings: Settings
    http: InProcess
    tokens: dict[str, str]
    ledger: LedgerApplication
    worker: ProjectionRunner

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def post(self, fact: dict[str, Any]) -> int:
        response = self.http.post("/v1/events", json=fact, headers=self.headers("writer"))
        assert response.status_code == 201, response.text
        return int(response.json()["seq"])

    def decision(self, subject: str, **params: Any) -> Any:
        return self.http.get(
            "/v1/consent/decision",
            params={"subject": subject, "purpose": "marketing_email", **params},
            headers=self.headers("reader"),
        )


@pytest.fixture
def deployment(
    settings: Settings, ledger: LedgerApplication, db: ProjectionDatabase
) -> Iterator[Deployment]:
    store = SqlTokenStore(open_client_database(settings))
    tokens = {
        "writer": store.add("writer", [Scope.WRITE_EVENTS])[1],
        "reader": store.add("reader", [Scope.READ_STATE, Scope.READ_HISTORY])[1],
        "admin": store.add("admin", [Scope.ADMIN])[1],
    }
    app = create_app(settings, server=ServerSettings(projections=False, signer=False))
    http = InProcess(app)
    worker = ProjectionRunner(
        ledger, db, read_models(settings, consent_state=FailingConsentState())
    )
    try:
        yield Deployment(settings, http, tokens, ledger, worker)
    finally:
        http.close()
        store.db.close()


def test_status_readyz_metrics_and_decisions_name_the_stopped_read_model(
    deployment: Deployment,
) -> None:
    d = deployment
    pol, rcpt = facts.policy(), facts.recipient()
    alice, bob = facts.ref("user"), facts.ref("user")
    for fact in (pol, rcpt, facts.consent(alice, pol["version"])):
        d.post(fact)
    d.post(facts.consent(bob, pol["version"]))
    assert d.worker.catch_up_each() == []
    assert d.decision(alice).json()["allowed"] is True

    withdrawal = d.post(facts.consent(alice, pol["version"], kind="withdrawn"))
    Fault.seq = withdrawal
    group = d.worker.group("consent_state")
    stopped = d.worker.catch_up_each()
    assert (stopped[0].projection, stopped[0].seq) == ("consent_state", withdrawal)
    assert sorted(e.projection for e in stopped) == sorted(group)  # its group with it

    # Appends go on, and the other read models follow them.
    d.post(facts.disclosure(rcpt["recipient_id"], [alice, bob], pol["version"]))
    head = d.post(facts.request(bob))
    assert d.worker.catch_up_each() != []  # tried again: still stopped
    positions = {s.name: s.position for s in d.worker.status()}
    assert {positions.pop(name) for name in group} == {withdrawal - 1}
    assert set(positions.values()) == {head}

    expected = {
        "read_model": "consent_state",
        "seq": withdrawal,
        "event_type": "consent.withdrawn",
        "error": "OverflowError",
        "message": "date value out of range for <uuid>?",
    }

    # /readyz: 200, degraded, naming it: this process still takes appends and serves the rest.
    ready = d.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert (body["status"], body["head"]) == ("degraded", head)
    assert sorted(f["read_model"] for f in body["failed"]) == sorted(group)
    [failed] = [f for f in body["failed"] if f["read_model"] == "consent_state"]
    assert {k: failed[k] for k in expected} == expected
    assert failed["position"] == withdrawal - 1 and failed["attempts"] == 2

    # /metrics: per read model, failed, the event and the error class.
    metrics = d.http.get("/metrics", headers=d.headers("admin"))
    assert metrics.status_code == 200
    text = metrics.text
    assert 'ledger_projection_failed{projection="consent_state"} 1.0' in text
    assert 'ledger_projection_failed{projection="disclosures"} 1.0' in text  # its group
    assert 'ledger_projection_failed{projection="incidents"} 0.0' in text
    assert f'ledger_projection_failed_seq{{projection="consent_state"}} {withdrawal}.0' in text
    assert (
        'ledger_projection_failure{error="OverflowError",event_type="consent.withdrawn",'
        'projection="consent_state"} 1.0'
    ) in text
    assert f'ledger_projection_position{{projection="consent_state"}} {withdrawal - 1}.0' in text
    assert f'ledger_projection_position{{projection="requests"}} {head}.0' in text
    assert 'ledger_projection_failure_attempts{projection="consent_state"} 2.0' in text
    assert PSEUDONYM not in text

    # Consent questions: a 503 naming it, at once (no wait for a seq it cannot reach), for
    # every subject: the stopped read model misses every fact after the event.
    for subject, params in ((alice, {}), (bob, {}), (alice, {"wait_for": str(head)})):
        started = time.monotonic()
        answer = d.decision(subject, **params)
        assert answer.status_code == 503, answer.text
        assert time.monotonic() - started < 2.5
        problem = answer.json()
        assert {k: problem[k] for k in expected} == expected
        assert "consent_state" in problem["detail"] and f"event {withdrawal}" in problem["detail"]
        assert answer.headers["Retry-After"] == "30"
    state = d.http.get("/v1/consent/state", params={"subject": bob}, headers=d.headers("reader"))
    assert state.status_code == 503 and state.json()["read_model"] == "consent_state"

    # Registers of healthy read models answer, with what came after the failed event.
    requests = d.http.get("/v1/requests", headers=d.headers("reader"))
    assert requests.status_code == 200 and len(requests.json()) == 1

    # projections status names it, the event, the error, and the way back.
    status = run_cli(d.settings, "projections", "status")
    assert status.exit_code == 4, status.output  # a stopped read model, for scripts
    [line] = [x for x in status.output.splitlines() if x.startswith("consent_state")]
    assert re.search(
        rf"FAILED at event {withdrawal} \(consent\.withdrawn\): OverflowError: "
        r"date value out of range for <uuid>\?",
        line,
    )
    assert "2 tries" in status.output
    assert "consent-ledger projections rebuild consent_state" in status.output
    as_json = run_cli(d.settings, "projections", "status", "--json")
    assert as_json.exit_code == 4, as_json.output
    [entry] = [e for e in json.loads(as_json.output) if e["name"] == "consent_state"]
    assert {k: entry["failure"][k] for k in expected} == expected

    # The fix (the CLI runs the real read model): rebuild that one, with its group; the
    # others are untouched.
    others = [*RequestRegister.tables, *IncidentRegister.tables]
    untouched = table_digest(d.worker.db, others)
    rebuilt = run_cli(d.settings, "projections", "rebuild", "consent_state")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "with their group: consent_facts, disclosures, retention" in rebuilt.output
    assert table_digest(d.worker.db, others) == untouched
    assert all(s.position == head and s.failure is None for s in d.worker.status())
    assert d.http.get("/readyz").json() == {"status": "ready", "head": head}
    assert run_cli(d.settings, "projections", "status").exit_code == 0
    eventually(lambda: d.decision(alice).status_code == 200, seconds=5)
    assert (d.decision(alice).json()["status"], d.decision(bob).json()["allowed"]) == (
        "withdrawn",
        True,
    )
    metrics_after = d.http.get("/metrics", headers=d.headers("admin")).text
    assert 'ledger_projection_failed{projection="consent_state"} 0.0' in metrics_after
    assert "ledger_projection_failed_seq" not in metrics_after.replace(
        "# HELP ledger_projection_failed_seq", ""
    ).replace("# TYPE ledger_projection_failed_seq", "")

    # The same rows as a fresh build of that read model.
    tables = list(ConsentState.tables)
    recovered = table_digest(d.worker.db, tables)
    with_fix = ProjectionRunner(d.ledger, d.worker.db, read_models(d.settings))
    with_fix.rebuild(["consent_state"])
    assert table_digest(d.worker.db, tables) == recovered


def test_rebuild_while_the_cause_is_still_there_says_so(deployment: Deployment) -> None:
    d = deployment
    pol = facts.policy()
    d.post(pol)
    Fault.seq = d.post(facts.consent(facts.ref("user"), pol["version"]))
    d.worker.catch_up_each()
    # A rebuild by a runner whose read model still fails: it stops at the same event again.
    with pytest.raises(PoisonEventError) as caught:
        d.worker.rebuild(["consent_state"])
    assert caught.value.seq == Fault.seq
    failure = d.worker.failure("consent_state")
    assert failure is not None and failure.attempts == 1  # the rebuild counts anew


def test_cli_queries_fail_only_on_a_read_model_they_read(
    ledger: LedgerApplication, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's read models, with a consent state that fails on a chosen event (a real
    subclass put where ``ReadModels`` takes it from)."""
    monkeypatch.setattr("projections.read_models.ConsentState", FailingConsentState)
    recipient, people = story(ledger)
    Fault.seq = seq_of(ledger, "consent.given")

    check = run_cli(settings, "consent", "check", people[0], "marketing_email")
    assert check.exit_code == 1
    assert f"projection consent_state stopped at event {Fault.seq} (consent.given)" in (
        check.stderr
    )
    assert "consent-ledger projections rebuild consent_state" in check.stderr

    listed = run_cli(settings, "requests")
    assert listed.exit_code == 0, listed.output
    assert len(json.loads(listed.stdout)) == 1
    assert "warning: projection consent_state stopped" in listed.stderr
    # The disclosures are of its group: stopped with it.
    stopped = run_cli(settings, "disclosures", "--recipient", recipient["recipient_id"])
    assert stopped.exit_code == 1
    assert f"projection disclosures stopped at event {Fault.seq}" in stopped.stderr

    again = run_cli(settings, "projections", "rebuild", "consent_state")
    assert again.exit_code == 1 and "the cause is still there" in again.stderr

    Fault.clear()  # the fix
    fixed = run_cli(settings, "projections", "rebuild", "consent_state")
    assert fixed.exit_code == 0, fixed.output
    check = run_cli(settings, "consent", "check", people[0], "marketing_email")
    assert check.exit_code == 0 and check.stderr == ""
