"""What routes depend on: the ledger application (appends), the query layer, the calling
client (checked scope)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, Request
from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError
from starlette.concurrency import run_in_threadpool

from api.http.problems import ProblemError
from api.token_store import Client, Scope, TokenStore
from ledger.application import LedgerApplication
from ledger.events import check_one_line, check_query_time, refuse_seconds
from projections.queries import Queries

# The dependencies are coroutines: FastAPI runs a plain function in the threadpool, a hop
# (and a wait for the GIL on a busy process) per dependency per request.


async def ledger(request: Request) -> LedgerApplication:
    app: LedgerApplication = request.app.state.ledger
    return app


async def queries(request: Request) -> Queries:
    """The questions routes ask (projections/queries.py), over this app's ledger and read
    models: one object, made at start-up."""
    found: Queries = request.app.state.queries
    return found


async def authorise(request: Request, scope: Scope, executor: Executor | None = None) -> Client:
    """The client calling, if its token is live and carries ``scope``; else a 401 or 403
    problem.

    A token verified in the last moment is found in memory
    (:meth:`~api.token_store.TokenStore.recently_verified`); any other is looked up in the
    database, off the event loop: in ``executor`` when given (the lean append route passes its
    own), else in anyio's threadpool. A plain coroutine, so that a route may call it inline
    instead of through FastAPI's dependency solving.
    """
    header = request.headers.get("authorization", "")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token:
        raise ProblemError(401, "Unauthorized", "send a bearer token: Authorization: Bearer ...")
    store: TokenStore = request.app.state.clients
    token = token.strip()
    client = store.recently_verified(token)
    if client is None:
        if executor is None:
            client = await run_in_threadpool(store.authenticate, token)
        else:
            loop = asyncio.get_running_loop()
            client = await loop.run_in_executor(executor, store.authenticate, token)
    if client is None or client.revoked_at is not None:
        raise ProblemError(401, "Unauthorized", "the token is not valid")
    request.state.client_name = client.name  # for the request's log line (api/logs.py)
    if not client.allows(scope):
        raise ProblemError(403, "Forbidden", f"this route needs the scope {scope.value}")
    return client


def authorised(scope: Scope) -> Callable[[Request], Awaitable[Client]]:
    """A dependency that lets a request in only with a live token carrying ``scope``
    (:func:`authorise`)."""

    async def check(request: Request) -> Client:
        return await authorise(request, scope)

    return check


LedgerDep = Annotated[LedgerApplication, Depends(ledger)]
QueriesDep = Annotated[Queries, Depends(queries)]
Writer = Annotated[Client, Depends(authorised(Scope.WRITE_EVENTS))]
StateReader = Annotated[Client, Depends(authorised(Scope.READ_STATE))]
HistoryReader = Annotated[Client, Depends(authorised(Scope.READ_HISTORY))]
IncidentManager = Annotated[Client, Depends(authorised(Scope.MANAGE_INCIDENTS))]
Identifier = Annotated[Client, Depends(authorised(Scope.IDENTIFY_SUBJECTS))]
Exporter = Annotated[Client, Depends(authorised(Scope.CREATE_EXPORTS))]
ReceiptReader = Annotated[Client, Depends(authorised(Scope.READ_RECEIPTS))]
Admin = Annotated[Client, Depends(authorised(Scope.ADMIN))]


# -- query and path parameters (docs/api.md, "Parameters") ----------------------------------------


def check_offset(value: datetime) -> datetime:
    """A time given over HTTP names its offset (``Z`` or ``+09:00``), as every fact must: a
    time without one (``2026-06-01``, ``2026-06-01T10:00``) could be meant in any zone, and a
    guess would move a question's moment by hours. The command line, which a person types,
    still reads such a time as UTC (api/cli/params.py)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise PydanticCustomError(
            "time_without_offset",
            "a time needs its UTC offset, such as 2026-06-01T00:00:00Z or "
            "2026-06-01T09:00:00+09:00",
        )
    return value


QueryTime = Annotated[
    datetime,
    BeforeValidator(refuse_seconds),
    AfterValidator(check_offset),
    AfterValidator(check_query_time),
]
"""A time parameter with its offset, in UTC once parsed (see :func:`check_offset` and
:func:`ledger.events.check_query_time`)."""
QueryText = Annotated[str, AfterValidator(check_one_line)]
"""A text parameter or path segment: no control character (NUL included)."""


def check_single_values(request: Request) -> None:
    """Every query parameter is given at most once: a repeated one is refused, not guessed."""
    if not request.scope.get("query_string"):
        return  # nothing to parse (every append but a rare one)
    for name in request.query_params:
        count = len(request.query_params.getlist(name))
        if count > 1:
            detail = f"{name} is given {count} times; give it once"
            raise ProblemError(
                400,
                "Invalid parameter",
                detail,
                errors=[{"field": f"query.{name}", "rule": "repeated", "detail": detail}],
            )


async def single_values(request: Request) -> None:
    """:func:`check_single_values` as a dependency (a coroutine: no threadpool hop)."""
    check_single_values(request)


SingleValues = Depends(single_values)


# -- paging (docs/api.md, "Conventions") --------------------------------------------------------


def next_link(request: Request, **changed: str) -> str:
    """An RFC 8288 ``Link`` header value to the next page: this request's path and WHOLE query
    (every filter kept, in its order), with ``changed`` parameters (the cursor) replaced.

    Relative to the origin, so it holds behind any proxy. A filter dropped here would hand the
    client other rows than it asked for (another recipient's, say) on the next page.
    """
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in changed]
    query = urlencode([*kept, *changed.items()])
    return f'<{request.url.path}?{query}>; rel="next"'


# -- preferences (RFC 7240) ---------------------------------------------------------------------

MINIMAL = "return=minimal"


def prefers_minimal(request: Request) -> bool:
    """The request carries ``Prefer: return=minimal`` (RFC 7240 §4.2), among other preferences
    or with parameters as it may: a write then answers its status with the least body (the
    route says which). One header lookup when there is no ``Prefer``: the append's hot path."""
    value = request.headers.get("prefer")
    if not value:
        return False
    for preference in value.split(","):
        token = preference.split(";", 1)[0].replace(" ", "").replace("\t", "").lower()
        if token in (MINIMAL, 'return="minimal"'):
            return True
    return False
