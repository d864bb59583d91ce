"""A reads process beside a writer (``serve --role reads``), on both backends.

Two real ``consent-ledger serve`` processes share the test's storage: the writer (the whole API,
with the read models and the signer in it) and a reads process. What a user relies on:

- a decision asked at the reads process reflects a fact appended at the writer, once the read
  models have caught up (``wait_for`` the receipt's seq), and a withdrawal after it;
- a read there that opens a person's data (a subject's history, one event) is on the record,
  its ``personal_data.accessed`` committed before the answer came back, naming the client;
- a write sent there (an append, an incident, an export, the console) is ``421`` naming the
  writer, and nothing of it reaches the log;
- the Python clients given ``reads_url`` send their reads there and their writes to the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from api.cli import cli
from api.client import AsyncLedgerClient, LedgerClient
from ledger.config import Settings, open_ledger
from tests import facts
from tests.support.processes import ROOT, add_client, free_port, settings_env
from tests.support.waiting import answers_healthz, wait_until


@dataclass
class Process:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextlib.contextmanager
def serving(settings: Settings, name: str, *args: str, **env: str) -> Iterator[Process]:
    """``serve`` with ``args`` on a free port, logging to ``<data dir>/<name>.log``; stopped by
    SIGTERM afterwards."""
    port = free_port()
    environment = settings_env(settings) | env
    log = settings.data_dir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port), *args],
            env=environment,
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )
    running = Process(f"http://127.0.0.1:{port}", process, log)
    try:

        def started() -> bool:
            assert process.poll() is None, running.tail()
            return answers_healthz(running.url)

        wait_until(started, f"{name} did not start", seconds=60, interval=0.1)
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass
class Pair:
    writer: Process
    reads: Process
    settings: Settings
    token: str
    reader_token: str

    def call(self, where: Process, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {kw.pop('token', self.token)}"}
        return httpx.request(method, where.url + path, headers=headers, timeout=30, **kw)

    def append(self, body: Any) -> dict[str, Any]:
        response = self.call(self.writer, "POST", "/v1/events", json=body)
        assert response.status_code in (200, 201), response.text
        found: dict[str, Any] = response.json()
        return found

    def decision(self, subject: str, wait_for: int) -> dict[str, Any]:
        """The reads process's decision once its read models hold ``wait_for`` (a 503 "Not
        yet" means they have not caught up: asked again)."""
        params: dict[str, Any] = {
            "subject": subject,
            "purpose": "marketing_email",
            "wait_for": wait_for,
        }

        def ask() -> dict[str, Any]:
            response = self.call(
                self.reads, "GET", "/v1/consent/decision", params=params, token=self.reader_token
            )
            if response.status_code == 503:
                return {}
            assert response.status_code == 200, response.text
            found: dict[str, Any] = response.json()
            return found

        return wait_until(ask, lambda: self.reads.tail(), seconds=60, interval=0.2)

    def log_events(self) -> list[tuple[int, str, dict[str, Any]]]:
        """(seq, type, data) of every event in the log, read from the storage directly."""
        ledger = open_ledger(self.settings)
        try:
            found = []
            for record in ledger.iter_records():
                event = ledger.decode(record)
                found.append((event.seq, event.type, dict(event.data)))
            return found
        finally:
            ledger.close()


@pytest.fixture
def pair(settings: Settings) -> Iterator[Pair]:
    token = add_client(settings, "writer", "events:write", "history:read", "state:read")
    reader_token = add_client(settings, "reader", "state:read")
    with (
        serving(settings, "writer") as writer,
        serving(
            settings,
            "reads",
            *("--role", "reads", "--log-level", "info", "--log-format", "json"),
            CONSENT_LEDGER_WRITER_URL=writer.url,
        ) as reads,
    ):
        yield Pair(writer, reads, settings, token, reader_token)


def test_a_decision_at_the_reads_process_follows_the_writer(pair: Pair) -> None:
    assert "reads only (writes answered 421)" in pair.reads.tail()
    assert "read models run elsewhere, checkpoints signed elsewhere" in pair.reads.tail()
    policy = facts.policy()
    pair.append(policy)
    subject = facts.ref("user")
    given = pair.append(facts.consent(subject, policy["version"]))

    found = pair.decision(subject, given["seq"])

    assert (found["answer"], found["status"], found["decided_by_seq"]) == (
        "yes",
        "given",
        given["seq"],
    )
    withdrawn = pair.append(facts.consent(subject, policy["version"], kind="withdrawn"))
    found = pair.decision(subject, withdrawn["seq"])
    assert (found["answer"], found["status"], found["decided_by_seq"]) == (
        "no",
        "withdrawn",
        withdrawn["seq"],
    )
    # The same question at the writer gets the same answer.
    at_writer = pair.call(
        pair.writer,
        "GET",
        "/v1/consent/decision",
        params={"subject": subject, "purpose": "marketing_email"},
    )
    assert at_writer.json() == found


def test_a_read_of_a_persons_data_at_the_reads_process_is_on_the_record(pair: Pair) -> None:
    policy = facts.policy()
    pair.append(policy)
    subject = facts.ref("user")
    given = pair.append(facts.consent(subject, policy["version"], contact="ana@example.com"))
    before = {seq for seq, _, _ in pair.log_events()}

    history = pair.call(
        pair.reads,
        "GET",
        "/v1/subjects/history",
        params={"subject": subject, "purpose": "answer the subject's access request"},
    )
    assert history.status_code == 200, history.text
    assert given["seq"] in [e["seq"] for e in history.json()["events"]]
    one = pair.call(pair.reads, "GET", f"/v1/events/{given['seq']}")
    assert one.status_code == 200, one.text
    assert one.json()["data"]["contact"] == "ana@example.com"

    # Both reads are in the log already: each was committed before its answer came back.
    accessed = [
        data
        for seq, kind, data in pair.log_events()
        if seq not in before and kind == "personal_data.accessed"
    ]
    assert len(accessed) == 2, accessed
    assert {a["client"] for a in accessed} == {"writer"}
    assert {a["action"] for a in accessed} == {"subject_history", "event"}


WRITES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/events", {"json": {}}),
    ("POST", "/v1/incidents", {"json": {"incident_id": "i-1"}}),
    ("POST", "/v1/exports", {"json": {"scope": "all"}}),
    ("GET", "/v1/exports/some-job", {}),
    ("POST", "/v1/notices/n-1/ack", {"json": {}}),
    ("GET", "/console", {}),
    ("POST", "/console/login", {"data": {"token": "x"}}),
    ("DELETE", "/v1/consent/decision", {}),
]


def test_a_write_at_the_reads_process_is_421_and_names_the_writer(pair: Pair) -> None:
    policy = facts.policy()
    head = pair.append(policy)["seq"]
    for method, path, kw in WRITES:
        response = pair.call(pair.reads, method, path, **kw)
        assert response.status_code == 421, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["title"] == "Misdirected Request"
        assert problem["writer"] == pair.writer.url
        assert pair.writer.url in problem["detail"]
    # A real event sent there is not appended; sent to the writer, it is.
    event = facts.consent(facts.ref("user"), policy["version"])
    refused = pair.call(pair.reads, "POST", "/v1/events", json=event)
    assert refused.status_code == 421
    assert [seq for seq, _, _ in pair.log_events()] == list(range(1, head + 1))
    assert pair.append(event)["duplicate"] is False


def test_the_reads_role_refuses_to_run_the_read_models_or_the_signer(
    settings: Settings,
) -> None:
    args = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        args += ["--database-url", settings.database_url]
    env = {"CONSENT_LEDGER_DATABASE_SCHEMA": settings.database_schema}
    for flag in ("--projections", "--signer"):
        result = CliRunner().invoke(cli, [*args, "serve", "--role", "reads", flag], env=env)
        assert result.exit_code == 2, result.output
        assert f"{flag} runs in the writer, not with --role reads" in result.output


def requests_logged(process: Process, *wanted: tuple[str, str, int]) -> list[tuple[str, str, int]]:
    """(method, path, status) of each request line the process logged (JSON lines), once the
    ``wanted`` ones are there (a line is written just after its answer is sent)."""

    def logged() -> list[tuple[str, str, int]]:
        found = []
        for line in process.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if "status" in entry:
                    found.append((entry["method"], entry["path"], entry["status"]))
        return found if set(wanted) <= set(found) else []

    return wait_until(logged, lambda: f"{wanted} not logged: {process.tail()}")


def test_a_client_with_a_reads_url_reads_there_and_writes_at_the_writer(pair: Pair) -> None:
    with LedgerClient(pair.writer.url, pair.token, reads_url=pair.reads.url) as ledger:
        policy = facts.policy()
        ledger.append(policy)
        subject = facts.ref("user")
        receipt = ledger.append(facts.consent(subject, policy["version"]))
        answer = ledger.decision(subject, "marketing_email", wait_for=receipt.seq)
        assert (answer.answer, answer.decided_by_seq) == ("yes", receipt.seq)
        assert [e["seq"] for e in ledger.history(subject)["events"]][-1] == receipt.seq
    logged = requests_logged(
        pair.reads, ("GET", "/v1/consent/decision", 200), ("GET", "/v1/subjects/history", 200)
    )
    assert not [r for r in logged if r[0] != "GET"], logged  # no write was sent there


def test_the_async_client_with_a_reads_url_does_the_same(pair: Pair) -> None:
    async def story() -> tuple[str | None, int | None, int]:
        async with AsyncLedgerClient(
            pair.writer.url, pair.token, reads_url=pair.reads.url
        ) as ledger:
            policy = facts.policy()
            await ledger.append(policy)
            subject = facts.ref("user")
            receipt = await ledger.append(facts.consent(subject, policy["version"]))
            answer = await ledger.decision(subject, "marketing_email", wait_for=receipt.seq)
            return answer.answer, answer.decided_by_seq, receipt.seq

    answer, decided_by, seq = asyncio.run(story())
    assert (answer, decided_by) == ("yes", seq)
    logged = requests_logged(pair.reads, ("GET", "/v1/consent/decision", 200))
    assert not [r for r in logged if r[0] != "GET"], logged
