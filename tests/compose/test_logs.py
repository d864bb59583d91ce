"""Logs: a request id on every request's line; no subject reference, token or body, ever."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from api import logs
from api.http.app import ServerSettings, create_app, open_client_database
from api.token_store import Scope, SqlTokenStore
from ledger.config import Settings, generate_keys
from tests import facts

CLIENT_SIDE = {"httpx", "httpcore", "asyncio"}
"""Loggers of the test's own HTTP client (httpx logs whole URLs, queries included)."""
Session = Callable[[httpx.AsyncClient], Coroutine[Any, Any, None]]


class App:
    """The app in this process (its lifespan included), called through httpx."""

    def __init__(self, settings: Settings, token: str) -> None:
        self.settings = settings
        self.token = token

    def run(self, session: Session) -> None:
        asyncio.run(self._run(session))

    async def _run(self, session: Session) -> None:
        async with self._client() as http:
            await session(http)

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(self.settings, server=ServerSettings(projections=True, signer=False))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ledger") as http:
                yield http


@pytest.fixture
def client(tmp_path: Path) -> Iterator[App]:
    settings = Settings(data_dir=tmp_path / "data")
    generate_keys(settings)
    store = SqlTokenStore(open_client_database(settings))
    _, token = store.add("billing", [Scope.WRITE_EVENTS, Scope.READ_STATE])
    store.db.close()
    yield App(settings, token)


def request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logs.REQUEST_LOGGER]


def test_each_request_has_an_id_in_its_answer_and_its_log_line(
    client: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=logs.REQUEST_LOGGER)
    subject = facts.ref("user")
    auth = {"Authorization": f"Bearer {client.token}"}
    answers: list[httpx.Response] = []

    async def session(http: httpx.AsyncClient) -> None:
        state = "/v1/consent/state"
        answers.append(
            await http.get(
                state, params={"subject": subject}, headers={**auth, "X-Request-Id": "r-1"}
            )
        )
        answers.append(await http.get(state, params={"subject": subject}, headers=auth))
        answers.append(
            await http.get("/metrics", headers={**auth, "X-Request-Id": f"{subject} <b>"})
        )

    client.run(session)
    given, made_up, refused = answers
    assert given.headers["x-request-id"] == "r-1"
    assert len(made_up.headers["x-request-id"]) == 32
    assert refused.status_code == 403 and refused.headers["x-request-id"] != f"{subject} <b>"
    first, second, third = request_lines(caplog)
    assert first.request_id == "r-1"  # type: ignore[attr-defined]
    assert second.request_id == made_up.headers["x-request-id"]  # type: ignore[attr-defined]
    assert third.request_id == refused.headers["x-request-id"]  # type: ignore[attr-defined]
    line = orjson.loads(logs.JsonFormatter().format(first))
    assert line["path"] == "/v1/consent/state" and line["status"] == 200
    assert line["client"] == "billing" and line["method"] == "GET"
    assert line["message"] == "GET /v1/consent/state 200"
    assert orjson.loads(logs.JsonFormatter().format(third))["client"] == "billing"


def test_no_subject_reference_token_or_body_reaches_the_logs(
    client: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    subject = facts.ref("user")
    pol = facts.policy()
    auth = {"Authorization": f"Bearer {client.token}"}
    given = facts.consent(subject, pol["version"], contact="someone@example.org")

    async def session(http: httpx.AsyncClient) -> None:
        await http.post("/v1/events", json=pol, headers=auth)
        receipt = (await http.post("/v1/events", json=given, headers=auth)).json()
        decision = await http.get(
            "/v1/consent/decision",
            params={"subject": subject, "purpose": "marketing_email", "wait_for": receipt["seq"]},
            headers=auth,
        )
        assert decision.status_code == 200
        await http.get(
            "/v1/consent/state", params={"subject": subject}, headers={"Authorization": "x"}
        )
        await http.post("/v1/events", json={**given, "occurred_at": "not a time"}, headers=auth)

    client.run(session)
    assert len(request_lines(caplog)) == 5
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    for formatter in (logs.JsonFormatter(), logs.TextFormatter()):
        handler.setFormatter(formatter)
        for record in caplog.records:
            if record.name.split(".")[0] not in CLIENT_SIDE:
                handler.handle(record)
    text = stream.getvalue()
    assert "/v1/consent/decision" in text
    for secret in (subject, client.token, "someone@example.org", given["event_id"], "not a time"):
        assert secret not in text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_unless_on_a_terminal() -> None:
    assert logs.resolve_format("auto", io.StringIO()) == "json"
    assert logs.resolve_format("auto", _Terminal()) == "text"
    assert logs.resolve_format("text", io.StringIO()) == "text"
    config = logs.dict_config("json", "warning")
    assert config["formatters"]["ledger"]["()"] is logs.JsonFormatter
    assert config["loggers"]["uvicorn.access"]["propagate"] is False
