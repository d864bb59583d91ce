"""What ``docker compose up`` starts, run here as processes against the local PostgreSQL.

No container engine runs on these machines, so the test takes the ``command`` and
``environment`` of the api, reads, projections and signer services from docker-compose.yml and runs
them with the installed ``consent-ledger`` console script. Only what points outside this machine
is changed: the database URL and schema, the data directory, the API's address, and the paths
under /run/secrets, which become files in a temporary directory (mode 0600). Then: append over
HTTP with the admin token from its secret file, see the runner's consent state and the signer's
checkpoint advance, ask the reads service a decision (and see a write sent there refused with
the api's address), stop everything with SIGTERM while appends are in flight, and find every
event that got a receipt in the log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from uuid import uuid4

import httpx
import orjson
import psycopg
import pytest

from ledger.config import Settings, generate_keys, open_ledger
from tests import facts
from tests.compose import compose
from tests.conftest import PG_URL, require_postgres
from tests.support.processes import free_port
from tests.support.waiting import answers_healthz, wait_until

SERVICES = ("api", "reads", "projections", "signer")
CONSOLE_SCRIPT = Path(sys.executable).parent / "consent-ledger"
WORKERS = "2"
"""Fewer API workers than compose's, to keep the test light: still the multi-process server."""


@dataclass
class Stack:
    url: str
    reads_url: str
    token: str
    settings: Settings
    processes: dict[str, subprocess.Popen[bytes]]
    logs: dict[str, Path]
    env: dict[str, dict[str, str]] = field(default_factory=dict)

    def http(self, url: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=url or self.url, headers=headers, timeout=30)

    def log_text(self, name: str) -> str:
        return self.logs[name].read_text()


def write_secrets(secrets: Path) -> str:
    """The files compose mounts under /run/secrets, as init-secrets makes them."""
    secrets.mkdir(mode=0o700)
    keys = Settings(
        data_dir=secrets,
        keys_dir_override=secrets / "signing_keys",
        master_key_file_override=secrets / "master_key",
    )
    generate_keys(keys)
    token = f"cl_{uuid4().hex}{uuid4().hex}"
    for name, content in (("admin_token", token), ("pgpass", "*:*:*:postgres:unused")):
        fd = os.open(secrets / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, content.encode() + b"\n")
        os.close(fd)
    return token


def service_env(
    document: dict[str, Any], name: str, tmp: Path, schema: str, ports: dict[str, int]
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENT_LEDGER_")}
    for key, value in compose.environment(document, name).items():
        if value.startswith(compose.SECRETS_DIR):
            value = str(tmp / "secrets" / value.removeprefix(compose.SECRETS_DIR))
        env[key] = value
    (tmp / f"tmp-{name}").mkdir(mode=0o700)  # the service's tmpfs /tmp
    env.update(
        CONSENT_LEDGER_DATABASE_URL=PG_URL,
        CONSENT_LEDGER_DATABASE_SCHEMA=schema,
        CONSENT_LEDGER_DATA_DIR=str(tmp / "data"),
        TMPDIR=str(tmp / f"tmp-{name}"),
    )
    if name in ports:  # the api and the reads service listen here, on ports of their own
        env.update(
            CONSENT_LEDGER_HOST="127.0.0.1",
            CONSENT_LEDGER_PORT=str(ports[name]),
            CONSENT_LEDGER_WORKERS=WORKERS,
        )
    if "CONSENT_LEDGER_WRITER_URL" in env:
        env["CONSENT_LEDGER_WRITER_URL"] = f"http://127.0.0.1:{ports['api']}"
    return env


def run_command(command: list[str]) -> list[str]:
    assert command[0] == "consent-ledger", command
    return [str(CONSOLE_SCRIPT), *command[1:]]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    require_postgres()
    schema = f"test_{uuid4().hex[:12]}"
    token = write_secrets(tmp_path / "secrets")
    (tmp_path / "data").mkdir()
    document = compose.load()
    ports = {"api": free_port(), "reads": free_port()}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    files: list[TextIO] = []
    envs = {name: service_env(document, name, tmp_path, schema, ports) for name in SERVICES}
    try:
        for name in SERVICES:
            logs[name] = tmp_path / f"{name}.log"
            out = logs[name].open("w")
            files.append(out)
            processes[name] = subprocess.Popen(
                run_command(compose.command(document, name)),
                env=envs[name],
                cwd=tmp_path / "data",
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url, reads_url = (f"http://127.0.0.1:{ports[name]}" for name in ("api", "reads"))
        wait_until_healthy(url, processes, logs)
        wait_until_healthy(reads_url, processes, logs)
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=PG_URL,
            database_schema=schema,
            keys_dir_override=tmp_path / "secrets" / "signing_keys",
            master_key_file_override=tmp_path / "secrets" / "master_key",
        )
        yield Stack(url, reads_url, token, settings, processes, logs, envs)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        for file in files:
            file.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def wait_until_healthy(
    url: str, processes: dict[str, subprocess.Popen[bytes]], logs: dict[str, Path]
) -> None:
    def started() -> bool:
        for name, process in processes.items():
            assert process.poll() is None, f"{name} exited:\n{logs[name].read_text()}"
        return answers_healthz(url)

    wait_until(started, lambda: "the API did not start:\n" + logs["api"].read_text(), 60, 0.1)


def poll(what: str, check: Any, seconds: float = 20) -> Any:
    """``check()`` until it returns something true; fails naming ``what`` at the deadline."""
    return wait_until(check, f"{what} did not happen", seconds, 0.1)


class Appender(threading.Thread):
    """Appends batches until the server stops answering; keeps every receipt it got."""

    def __init__(self, stack: Stack, version: str, number: int) -> None:
        super().__init__(daemon=True, name=f"appender-{number}")
        self.stack = stack
        self.version = version
        self.receipts: list[dict[str, Any]] = []
        self.sent = threading.Event()

    def run(self) -> None:
        with self.stack.http() as http:
            for _ in range(500):  # bounded; the server stops long before
                batch = [facts.consent(facts.ref("user"), self.version) for _ in range(5)]
                try:
                    response = http.post("/v1/events", json=batch)
                except httpx.TransportError:
                    return
                if response.status_code >= 300:
                    return
                self.receipts.extend(response.json()["receipts"])
                self.sent.set()


def test_the_compose_services_run_together_and_stop_cleanly(stack: Stack) -> None:
    subject = facts.ref("user")
    pol = facts.policy()
    with stack.http() as http:
        # The token from the admin secret file is accepted (admin holds every scope).
        first = http.post("/v1/events", json=pol, headers={"X-Request-Id": "compose-req-1"})
        assert first.status_code == 201, first.text
        assert first.headers["x-request-id"] == "compose-req-1"
        receipt = http.post("/v1/events", json=facts.consent(subject, pol["version"])).json()
        # The consent state comes from the projections service's writes.
        state = http.get(
            "/v1/consent/state", params={"subject": subject, "wait_for": receipt["seq"]}
        )
        assert state.status_code == 200, state.text
        assert [p["status"] for p in state.json()["purposes"]] == ["given"]
        assert http.get("/readyz").status_code == 200
        # The signer service's checkpoints cover what was appended.
        poll(
            "a checkpoint of the appended events",
            lambda: (
                (r := http.get("/v1/checkpoint")).status_code == 200
                and int(r.text.splitlines()[1]) >= receipt["seq"]
            ),
        )

    # The reads service answers the same question from the same storage, and refuses a write,
    # naming the api service.
    with stack.http(stack.reads_url) as reads:
        decision = reads.get(
            "/v1/consent/decision",
            params={"subject": subject, "purpose": "marketing_email", "wait_for": receipt["seq"]},
        )
        assert decision.status_code == 200, decision.text
        assert (decision.json()["answer"], decision.json()["decided_by_seq"]) == (
            "yes",
            receipt["seq"],
        )
        refused = reads.post("/v1/events", json=facts.consent(subject, pol["version"]))
        assert refused.status_code == 421, refused.text
        assert refused.json()["writer"] == stack.url

    # The api service's own health check command passes.
    check = subprocess.run(
        run_command(compose.service(compose.load(), "api")["healthcheck"]["test"][1:]),
        env=stack.env["api"],
        capture_output=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr.decode()

    # SIGTERM while appends are in flight: a clean exit, and every receipt's event is stored.
    appenders = [Appender(stack, pol["version"], n) for n in range(4)]
    for appender in appenders:
        appender.start()
    for appender in appenders:
        assert appender.sent.wait(30), "no append succeeded before the stop"
    api = stack.processes["api"]
    api.send_signal(signal.SIGTERM)
    assert api.wait(timeout=60) == 0, stack.log_text("api")
    # Its committer process (serve's default) stopped after the workers drained, in order: its
    # key (in the service's /tmp, the one place compose lets it write) is gone, and it never
    # died on the way.
    assert not list((stack.settings.data_dir.parent / "tmp-api").iterdir())
    assert "committer process exited" not in stack.log_text("api")
    for appender in appenders:
        appender.join(timeout=60)
        assert not appender.is_alive()
    for name in ("reads", "projections", "signer"):
        stack.processes[name].send_signal(signal.SIGTERM)
        assert stack.processes[name].wait(timeout=60) == 0, stack.log_text(name)

    receipts = [r for appender in appenders for r in appender.receipts]
    assert receipts
    ledger = open_ledger(stack.settings)
    try:
        for r in receipts:
            stored = ledger.get_event(r["seq"])
            assert (stored.event_id, stored.event_hash) == (r["event_id"], r["event_hash"])
    finally:
        ledger.close()

    # The API's logs: JSON lines, the request id on the request's line, no subject or token.
    api_log = [line for line in stack.log_text("api").splitlines() if line.strip()]
    assert api_log[0].startswith("serving on ")  # the one line on stdout
    assert "reads only (writes answered 421)" in stack.log_text("reads").splitlines()[0]
    lines = [orjson.loads(line) for line in api_log[1:]]
    [line] = [entry for entry in lines if entry.get("request_id") == "compose-req-1"]
    assert (line["method"], line["path"], line["status"]) == ("POST", "/v1/events", 201)
    assert line["client"].startswith("admin-token-file-")
    everything = "".join(stack.log_text(name) for name in SERVICES)
    assert subject not in everything and stack.token not in everything
    assert not [r for r in receipts if r["event_id"] in everything]
