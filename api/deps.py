"""What routes depend on: the ledger, the read models, the calling client (checked scope)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from api.clients import Client, ClientStore, Scope
from api.problems import ProblemError
from ledger.application import LedgerApplication
from projections.read_models import ReadModels


def ledger(request: Request) -> LedgerApplication:
    app: LedgerApplication = request.app.state.ledger
    return app


def read_models(request: Request) -> ReadModels:
    models: ReadModels = request.app.state.read_models
    return models


def authorised(scope: Scope) -> Callable[[Request], Client]:
    """A dependency that lets a request in only with a live token carrying ``scope``."""

    def check(request: Request) -> Client:
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token:
            raise ProblemError(
                401, "Unauthorized", "send a bearer token: Authorization: Bearer ..."
            )
        store: ClientStore = request.app.state.clients
        client = store.authenticate(token.strip())
        if client is None or client.revoked_at is not None:
            raise ProblemError(401, "Unauthorized", "the token is not valid")
        request.state.client_name = client.name  # for the request's log line (api/logs.py)
        if not client.allows(scope):
            raise ProblemError(403, "Forbidden", f"this route needs the scope {scope.value}")
        return client

    return check


LedgerDep = Annotated[LedgerApplication, Depends(ledger)]
ReadModelsDep = Annotated[ReadModels, Depends(read_models)]
Writer = Annotated[Client, Depends(authorised(Scope.WRITE_EVENTS))]
StateReader = Annotated[Client, Depends(authorised(Scope.READ_STATE))]
HistoryReader = Annotated[Client, Depends(authorised(Scope.READ_HISTORY))]
IncidentManager = Annotated[Client, Depends(authorised(Scope.MANAGE_INCIDENTS))]
Admin = Annotated[Client, Depends(authorised(Scope.ADMIN))]
