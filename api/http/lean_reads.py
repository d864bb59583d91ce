"""The consent decision, served lean: ``GET /v1/consent/decision`` without FastAPI's per-request
machinery when the question is plain.

A decision is the read a service asks on every use of someone's data, so its cost is the API's
latency where it matters (issue 16). The query itself is one SQL statement (about 50 µs of CPU
on SQLite); FastAPI's dependency solving, parameter validation and anyio's threadpool cost
several times that per request. Like the lean append route (api/http/routes/events.py), this is
a plain route placed ahead of FastAPI's, which still describes the operation in the OpenAPI
document and still answers every question this one does not take:

- taken here: ``subject`` and ``purpose``, each given once, of an allowed length and without a
  control character, and nothing else (no ``at``, no ``wait_for``); the token is checked as
  FastAPI's dependency checks it (:func:`api.http.deps.authorise`, scope ``state:read``, the same
  401 or 403); the query runs on the event loop itself in a reads process (``serve --role
  reads``, which has nothing else for its loop to do: about a fifth of the CPU a decision costs
  is the hand-off to a thread and back, measured in docs/performance.md), and in a small pool of
  threads of its own (``app.state.decision_executor``) in the writer, whose loop serves the
  appends; the answer is encoded once, by orjson;
- handed to FastAPI's route, unchanged: any other parameter, a repeated or invalid one, and any
  question whose query raised (a stopped read model, an unknown purpose, a storage error): that
  route asks again and answers as it always did, its problem documents included.

So every answer is the one FastAPI's route gives (tests/integration/test_lean_decision.py asks
both for the same questions and compares the bodies).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from api.http.deps import authorise
from api.token_store import Scope as TokenScope
from ledger.events import check_one_line
from projections.queries import Queries

logger = logging.getLogger("consent_ledger.http")

PATH = "/v1/consent/decision"
PARAMETERS = {"subject": 256, "purpose": 64}
"""The parameters this route takes, with their longest allowed length (as consent.py says)."""
JSON = "application/json"
DECISION_THREADS = 8
"""Threads of ``app.state.decision_executor``: each holds one query of well under a millisecond,
and none waits behind an append (appends have their own pool)."""


def plain_question(request: Request) -> tuple[str, str] | None:
    """``(subject, purpose)`` when the query holds exactly these two, each once and valid as
    FastAPI's route would find it; else None (FastAPI's route answers)."""
    raw = request.scope.get("query_string", b"")
    if not raw:
        return None
    params = request.query_params
    if set(params.keys()) != PARAMETERS.keys() or len(params.multi_items()) != len(PARAMETERS):
        return None
    values = []
    for name, longest in PARAMETERS.items():
        value = params[name]
        if not 1 <= len(value) <= longest:
            return None
        try:
            check_one_line(value)
        except ValueError:
            return None
        values.append(value)
    return values[0], values[1]


def decide(queries: Queries, subject: str, purpose: str) -> bytes:
    """The decision's JSON, after the same check FastAPI's route makes first (the consent state
    is not stopped at an event)."""
    queries.wait_for(None, 0.0, "consent_state")
    answer: dict[str, Any] = queries.decision(subject, purpose, None).as_dict()
    return orjson.dumps(answer)


class LeanDecision:
    """The ASGI app of the lean route; ``fallback`` is FastAPI's route for the same path;
    ``inline``: query on the event loop, not in ``app.state.decision_executor``."""

    def __init__(self, fallback: ASGIApp, *, inline: bool = False) -> None:
        self.fallback = fallback
        self.inline = inline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        question = plain_question(request)
        if question is None:
            await self.fallback(scope, receive, send)
            return
        await authorise(request, TokenScope.READ_STATE)  # 401 or 403, as the dependency says
        app = request.app
        try:
            if self.inline:
                body = decide(app.state.queries, *question)
            else:
                executor: Executor = app.state.decision_executor
                body = await asyncio.get_running_loop().run_in_executor(
                    executor, decide, app.state.queries, *question
                )
        except Exception:  # FastAPI's route asks again and answers as it always did
            logger.debug("decision handed to the full route", exc_info=True)
            await self.fallback(scope, receive, send)
            return
        await Response(body, media_type=JSON)(scope, receive, send)


class _GetOnly(Route):
    """A route that matches GET alone: HEAD (which Starlette adds beside GET) and every other
    method go on to FastAPI's routes and get the answer they always got."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["method"] != "GET":
            return Match.NONE, {}
        return super().matches(scope)


def decision_route(router: APIRouter, *, inline: bool = False) -> Route:
    """The lean route of ``GET /v1/consent/decision``, handing what it does not take to the GET
    route of ``router`` at the same path; to be placed ahead of FastAPI's routes."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.path == PATH and "GET" in (route.methods or ()):
            lean = LeanDecision(route.app, inline=inline)
            return _GetOnly(PATH, lean, methods=["GET"], include_in_schema=False)
    raise LookupError(f"no GET {PATH} in the router")
