"""The HTTP API: ``create_app(settings)`` wires the ledger, the read models and the routes.

While the app runs, two threads keep things moving: the read models follow the log, and a
checkpoint is signed every second while events arrive.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api import problems
from api.clients import ClientStore
from api.metrics import Metrics
from api.routes import consent, events, log, registers, subjects
from ledger.config import Settings, load_keyring, open_ledger
from projections.base import PoisonEventError
from projections.database import ProjectionDatabase
from projections.read_models import ReadModels, ReadModelSettings

logger = logging.getLogger("consent_ledger.api")
CHECKPOINT_INTERVAL = 1.0


def open_client_database(settings: Settings) -> ProjectionDatabase:
    """API clients live beside the read models: ``api.sqlite3``, or the ledger's schema."""
    if settings.database_url is None:
        from projections.sqlite import SQLiteProjectionDatabase

        return SQLiteProjectionDatabase(settings.data_dir / "api.sqlite3")
    from projections.postgres import PostgresProjectionDatabase

    return PostgresProjectionDatabase(settings.database_url, settings.database_schema, max_size=4)


def create_app(settings: Settings, read_settings: ReadModelSettings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ledger = open_ledger(settings)
        models = ReadModels(ledger, settings, read_settings or ReadModelSettings.from_env())
        client_db = open_client_database(settings)
        app.state.ledger = ledger
        app.state.read_models = models
        app.state.keyring = load_keyring(settings)
        app.state.clients = ClientStore(client_db)
        app.state.metrics = Metrics(ledger, models)
        stop = threading.Event()
        workers = [
            threading.Thread(target=_follow, args=(models, stop), name="read-models", daemon=True),
            threading.Thread(
                target=_checkpoints, args=(ledger, stop), name="checkpoints", daemon=True
            ),
        ]
        for worker in workers:
            worker.start()
        try:
            yield
        finally:
            stop.set()
            models.runner.wake()
            for worker in workers:
                worker.join(timeout=10)
            client_db.close()
            models.close()
            ledger.close()

    app = FastAPI(
        title="Consent Ledger",
        version="0.1.0",
        summary="A signed, append-only audit and consent ledger.",
        lifespan=lifespan,
    )
    problems.install(app)
    for router in (events.router, consent.router, subjects.router, registers.router, log.router):
        app.include_router(router)
    return app


def _follow(models: ReadModels, stop: threading.Event) -> None:
    def report(exc: PoisonEventError) -> None:
        logger.error("read model stopped: %s", exc)

    models.runner.follow(stop, on_error=report)


def _checkpoints(ledger: Any, stop: threading.Event) -> None:
    while not stop.wait(CHECKPOINT_INTERVAL):
        try:
            ledger.sign_checkpoint()
        except Exception:
            logger.exception("checkpoint not signed")
