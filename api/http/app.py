"""The HTTP API: ``create_app(settings)`` wires the ledger, the read models and the routes.

By default two threads keep things moving while the app runs: the read models follow the log,
and a checkpoint is signed every half second while events arrive. Either can be left to its own
process (``consent-ledger projections run``, ``consent-ledger checkpoint --every 0.5``) with
``serve --no-projections --no-signer``, as docker-compose.yml does; the API then reads what
those processes write to the shared database (read-your-writes waits on their positions).
Where the read models run, a third thread runs retention (``projections.retention_job``) every
``CONSENT_LEDGER_RETENTION_INTERVAL_HOURS`` (24; 0 turns it off), the first time ten minutes
after start.

With ``role="reads"`` (``serve --role reads``, api/http/reads.py) the app serves the read routes
only, beside a writer on the same storage: no read models followed, no checkpoint signer, no
export runner, and a write answered ``421``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from api import logs
from api.bootstrap import Configuration, build
from api.bootstrap import open_client_database as open_client_database  # also from here
from api.http import openapi_docs, problems
from api.http.console import routes as console
from api.http.lean_reads import DECISION_THREADS, decision_route
from api.http.limits import LimitsMiddleware, RequestLimits
from api.http.metrics import Metrics
from api.http.reads import ReadsOnlyMiddleware
from api.http.routes import consent, events, incident_people, log, registers, subjects
from api.http.routes import exports as export_routes
from api.http.routes import notices as notice_routes
from api.http.routes import receipts as receipt_routes
from api.schedule import run_every
from api.settings import ServerSettings as ServerSettings  # also imported from here
from api.token_store import AdminTokenError, TokenStore
from ledger.config import Settings, SettingsError
from ledger.operations import ExportPolicy
from projections.operations import PoisonEventError, ReadModelOperations
from projections.read_models import ReadModelSettings

logger = logging.getLogger("consent_ledger.api")

ADMIN_TOKEN_FILE = "CONSENT_LEDGER_ADMIN_TOKEN_FILE"  # noqa: S105 (a variable name)
ADMIN_CLIENT_PREFIX = "admin-token-file-"
"""Clients made from the admin token file are named this plus the start of the token's hash."""
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{32,512}")


def read_admin_token(path: Path) -> str:
    """The token in the admin token file; :class:`SettingsError` (never showing it) if unfit."""
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(
            f"{ADMIN_TOKEN_FILE}={path} cannot be read ({exc.__class__.__name__})"
        ) from None
    if not _TOKEN.fullmatch(token):
        raise SettingsError(
            f"{ADMIN_TOKEN_FILE}={path} must hold one token of 32 to 512 characters "
            "(letters, digits, ._~+/=-), such as one 'consent-ledger clients add' prints; "
            "its content is not shown"
        )
    return token


def ensure_admin_client(store: TokenStore, token: str) -> str:
    """Make ``token`` a live admin token; the client's name.

    The client is named after the token's hash, so a new token in the file gets a new client and
    the clients of earlier file tokens are revoked (their rows stay, as every revoked client's
    does). A token that belongs to a revoked client, or to one without the admin scope, is
    refused: the file must not bring back or widen what someone took away.
    """
    try:
        return store.ensure_admin(token, ADMIN_CLIENT_PREFIX)
    except AdminTokenError as exc:
        raise SettingsError(
            f"the token in {ADMIN_TOKEN_FILE} belongs to client {exc.owner}, "
            + (f"revoked at {exc.revoked_at}" if exc.revoked_at else "which lacks the admin scope")
            + "; write a new token into the file"
        ) from None


def create_app(
    settings: Settings,
    read_settings: ReadModelSettings | None = None,
    server: ServerSettings | None = None,
) -> FastAPI:
    serving = server or ServerSettings.from_env()
    reads_only = serving.role == "reads"  # nothing but the read routes (api/http/reads.py)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        wiring = build(settings, read_settings, clients=True)
        ledger, clients = wiring.application, wiring.clients
        assert clients is not None
        queries, operations = wiring.queries(), wiring.read_model_operations()
        app.state.ledger = ledger
        app.state.read_models = wiring.read_models  # for tests; routes ask app.state.queries
        app.state.queries = queries
        app.state.verifier_keys = wiring.operations().verifier_keys()
        app.state.clients = clients
        app.state.metrics = Metrics(ledger, queries)
        # Appends wait for their commit in threads of their own (api/http/routes/events.py),
        # not in anyio's pool, which the read routes keep.
        app.state.append_executor = ThreadPoolExecutor(
            max_workers=serving.append_threads, thread_name_prefix="append"
        )
        # The lean decision route's queries (api/http/lean_reads.py): never behind an append.
        app.state.decision_executor = ThreadPoolExecutor(
            max_workers=DECISION_THREADS, thread_name_prefix="decision"
        )
        if serving.admin_token_file is not None:
            ensure_admin_client(app.state.clients, read_admin_token(serving.admin_token_file))
        stop = threading.Event()
        # Export jobs (POST /v1/exports): a runner thread makes the bundles one at a time.
        reading = read_settings or ReadModelSettings.from_env()
        report_settings = Configuration(settings, reading, serving).report_settings()
        policy = ExportPolicy(
            timedelta(hours=serving.export_ttl_hours), serving.export_queue_per_client
        )
        exports = (
            None
            if reads_only  # the writer runs the jobs; a reads process refuses their routes
            else wiring.operations().export_jobs(
                settings.data_dir / "exports", report_settings, policy
            )
        )
        app.state.exports = exports
        workers: list[threading.Thread] = []
        if exports is not None:
            workers.append(
                threading.Thread(target=exports.run, args=(stop,), name="exports", daemon=True)
            )
        # The register of notices to recipients (GET /v1/notices); they are derived and
        # delivered where the read models are followed (operations.follow, below or elsewhere).
        app.state.notices = None if wiring.read_models is None else wiring.read_models.notices
        if serving.projections and not reads_only:  # retention runs where the read models run
            hours = serving.retention_interval_hours
            workers.append(
                threading.Thread(
                    target=_follow,
                    args=(operations, stop, hours * 3600.0 if hours else None),
                    name="read-models",
                    daemon=True,
                )
            )
        if serving.signer and not reads_only:
            workers.append(
                threading.Thread(
                    target=_checkpoints,
                    args=(ledger, stop, serving.checkpoint_interval_ms / 1000),
                    name="checkpoints",
                    daemon=True,
                )
            )
        for worker in workers:
            worker.start()

        def workers_named(name: str) -> bool:
            return any(w.name == name for w in workers)

        logger.info(
            "API started",
            extra={
                "storage": settings.describe_storage(),
                "role": serving.role,
                "projections": "in this process" if workers_named("read-models") else "elsewhere",
                "signer": "in this process" if workers_named("checkpoints") else "elsewhere",
            },
        )
        try:
            yield
        finally:
            # uvicorn calls this after the requests in flight have had their answers, so every
            # append that was handed to the recorder is committed (close() drains it).
            stop.set()
            operations.wake()
            if exports is not None:
                exports.wake.set()
            for worker in workers:
                worker.join(timeout=10)
            if exports is not None:
                exports.close()
            app.state.append_executor.shutdown(wait=True)
            app.state.decision_executor.shutdown(wait=True)
            wiring.close()
            logger.info("API stopped: every accepted append is committed")

    app = FastAPI(
        title="Consent Ledger",
        version="0.1.0",
        summary="A signed, append-only audit and consent ledger.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc from the package's own files (api/http/openapi_docs.py)
        redoc_url=None,
    )
    problems.install(app)
    app.include_router(receipt_routes.router)  # GET /v1/consent/receipts/{seq}
    app.include_router(export_routes.router)  # /v1/exports
    app.include_router(incident_people.router)  # GET /v1/incidents/{id}/affected
    app.include_router(notice_routes.router)  # GET /v1/notices, POST /v1/notices/{id}/ack
    # The lean append route first: it serves POST /v1/events, which events.router describes.
    app.router.routes.extend(events.LEAN_ROUTES)
    # So is GET /v1/consent/decision's plain question; FastAPI's route answers the others.
    app.router.routes.append(decision_route(consent.router, inline=reads_only))
    for router in (events.router, consent.router, subjects.router, registers.router, log.router):
        app.include_router(router)
    openapi_docs.install(app)
    console.install(app)  # /console: HTML pages for people (api/http/console/, docs/console.md)
    limits = RequestLimits(
        max_body_bytes=serving.max_body_bytes,
        max_json_depth=serving.max_json_depth,
        max_inflight_appends=serving.max_inflight_appends,
    )
    app.add_middleware(LimitsMiddleware, limits=limits)
    if reads_only:  # a write is refused before the limits read its body
        app.add_middleware(ReadsOnlyMiddleware, writer_url=serving.writer_url)
    app.add_middleware(logs.RequestLogMiddleware)  # outermost: it logs what the limits answer
    return app


def _follow(
    operations: ReadModelOperations, stop: threading.Event, retention_every: float | None
) -> None:
    def report(exc: PoisonEventError) -> None:
        logger.error("read model stopped: %s", exc)

    operations.follow(stop, on_error=report, retention_every=retention_every)


def _checkpoints(ledger: Any, stop: threading.Event, interval: float) -> None:
    """Sign at a fixed rate: a slow signing does not push the next one back."""

    def sign() -> None:
        try:
            ledger.sign_checkpoint()
        except Exception:
            logger.exception("checkpoint not signed")

    run_every(interval, stop, sign)
