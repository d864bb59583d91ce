"""The HTTP API: ``create_app(settings)`` wires the ledger, the read models and the routes.

By default two threads keep things moving while the app runs: the read models follow the log,
and a checkpoint is signed every half second while events arrive. Either can be left to its own
process (``consent-ledger projections run``, ``consent-ledger checkpoint --every 0.5``) with
``serve --no-projections --no-signer``, as docker-compose.yml does; the API then reads what
those processes write to the shared database (read-your-writes waits on their positions).
Where the read models run, a third thread runs retention (``projections.retention_job``) every
``CONSENT_LEDGER_RETENTION_INTERVAL_HOURS`` (24; 0 turns it off), the first time ten minutes
after start.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from api import logs, problems
from api.clients import ClientStore, Scope, hash_token
from api.limits import LimitsMiddleware, RequestLimits
from api.metrics import Metrics
from api.routes import consent, events, log, registers, subjects
from api.schedule import run_every
from ledger.config import Setting, SettingGroup, Settings, SettingsError, load_keyring, open_ledger
from projections.base import PoisonEventError
from projections.database import ProjectionDatabase
from projections.read_models import ReadModels, ReadModelSettings
from projections.retention_job import retention_loop

logger = logging.getLogger("consent_ledger.api")

ADMIN_TOKEN_FILE = "CONSENT_LEDGER_ADMIN_TOKEN_FILE"  # noqa: S105 (a variable name)
ADMIN_CLIENT_PREFIX = "admin-token-file-"
"""Clients made from the admin token file are named this plus the start of the token's hash."""
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{32,512}")


@dataclass(frozen=True)
class ServerSettings:
    """How ``consent-ledger serve`` runs: ``CONSENT_LEDGER_*`` variables, overridden by flags."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    projections: bool = True
    """Follow the log with the read models in this process (off: ``projections run`` does)."""
    signer: bool = True
    """Sign checkpoints in this process (off: ``checkpoint --every 0.5`` does)."""
    admin_token_file: Path | None = None
    """A file holding a token that the API accepts with the admin scope."""
    log_format: str = "auto"
    log_level: str = "warning"
    """``info`` adds a line per request (compose sets it); ``warning`` keeps a terminal quiet."""
    shutdown_timeout: int = 20
    """Seconds a stopping server waits for requests in flight before cancelling them."""
    retention_interval_hours: int = 24
    """Hours between retention runs, in a process that runs the read models (0: none here)."""
    checkpoint_interval_ms: int = 500
    """Milliseconds between checkpoints, at a fixed rate, in a process that signs them."""
    # Limits (api/limits.py; docs/operations.md, Limits), each per worker process.
    max_connections: int = 1000
    """Open connections; past it a request is answered 503 with Retry-After."""
    max_inflight_appends: int = 64
    """Requests with a body (appends) handled at a time; past it, 503 with Retry-After."""
    max_body_bytes: int = 16 * 1024 * 1024
    """A request body's bytes; more is 413, and nothing past the limit is read."""
    max_json_depth: int = 32
    """How deep arrays and objects nest in a JSON body; deeper is 400."""
    header_timeout: int = 10
    """Seconds for a connection to send a whole request head; then 408 and closed."""
    body_timeout: int = 60
    """Seconds for a request body to arrive after its head; then 408 and closed."""
    keep_alive_timeout: int = 5
    """Seconds an idle kept-alive connection stays open."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """The ``CONSENT_LEDGER_*`` server settings; a bad one raises SettingsError."""
        return cls(**SERVER_SETTINGS.read(environ))

    def environment(self) -> dict[str, str]:
        """These settings as the variables :meth:`from_env` reads (for worker processes)."""
        return SERVER_SETTINGS.environment(self)


def _check_host(host: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9.:\[\]-]{1,253}", host):
        raise SettingsError(f"CONSENT_LEDGER_HOST={host!r} is not a host name or address")
    return host


def _seconds(env: str, field: str, default: int, help: str, flag: str = "") -> Setting:
    return Setting(env, field, "integer", default, help, low=1, high=3600, flag=flag)


SERVER_SETTINGS = SettingGroup(
    "The HTTP server (`consent-ledger serve`)",
    (
        Setting(
            "HOST",
            "host",
            "text",
            "127.0.0.1",
            "address to listen on (`0.0.0.0` in a container)",
            check=_check_host,
            flag="--host",
        ),
        Setting(
            "PORT", "port", "integer", 8000, "port (1..65535)", low=1, high=65535, flag="--port"
        ),
        Setting(
            "WORKERS",
            "workers",
            "integer",
            1,
            "worker processes (1..64); more than one needs PostgreSQL. Each worker listens on "
            "its own socket at the same address (`SO_REUSEPORT`, so the kernel spreads "
            "connections evenly); an address where something already listens is refused",
            low=1,
            high=64,
            flag="--workers",
        ),
        Setting(
            "PROJECTIONS",
            "projections",
            "flag",
            True,
            "keep the read models up to date in this process. Turn off when `consent-ledger "
            "projections run` runs as a process of its own (compose does); with several "
            "workers, each would otherwise run one",
            flag="--projections/--no-projections",
        ),
        Setting(
            "SIGNER",
            "signer",
            "flag",
            True,
            "sign checkpoints (every `CONSENT_LEDGER_CHECKPOINT_INTERVAL_MS`, while events "
            "arrive) in this process. Turn off when `consent-ledger checkpoint --every 0.5` "
            "runs as a process of its own",
            flag="--signer/--no-signer",
        ),
        Setting(
            "ADMIN_TOKEN_FILE",
            "admin_token_file",
            "existing_file",
            None,
            "a file holding one token (32 to 512 characters of `A-Za-z0-9._~+/=-`) that the "
            "API accepts with the `admin` scope; see below",
            flag="--admin-token-file",
        ),
        Setting(
            "LOG_FORMAT",
            "log_format",
            "choice",
            "auto",
            "`json` (one JSON object a line), `text`, or `auto`: text on a terminal, JSON "
            "otherwise",
            choices=logs.FORMATS,
            flag="--log-format",
        ),
        Setting(
            "LOG_LEVEL",
            "log_level",
            "choice",
            "warning",
            "`info` adds one line per request and the start and stop of the server (compose "
            "sets it); `debug` adds the health probes' requests too; `warning` (quiet on a "
            "terminal) and `error` keep failures only",
            choices=logs.LEVELS,
            flag="--log-level",
        ),
        _seconds(
            "SHUTDOWN_TIMEOUT",
            "shutdown_timeout",
            20,
            "on SIGTERM, seconds the requests in flight may still take before they are "
            "cancelled (1..3600)",
            flag="--shutdown-timeout",
        ),
        Setting(
            "RETENTION_INTERVAL_HOURS",
            "retention_interval_hours",
            "integer",
            24,
            "hours between retention runs, in a process that runs the read models (`serve` "
            "with projections, or `projections run`); the first comes 10 minutes after "
            "start; `0` turns it off (0..8784)",
            low=0,
            high=24 * 366,
        ),
        Setting(
            "CHECKPOINT_INTERVAL_MS",
            "checkpoint_interval_ms",
            "integer",
            500,
            "milliseconds between checkpoints, at a fixed rate, in a process that signs them "
            "(100..3600000); a receipt is covered by a signed checkpoint within one interval "
            'plus a signing, so keep it under 1000 to meet "within a second"; `checkpoint '
            "--every SECONDS` for the signer process",
            low=100,
            high=3_600_000,
        ),
        Setting(
            "MAX_CONNECTIONS",
            "max_connections",
            "integer",
            1000,
            "open connections a worker serves; past it, a request is answered `503` with "
            "`Retry-After: 1` and its connection closed (it has 1 s to send its request "
            "head), and past twice it a new connection is closed at once, unanswered "
            "(1..1000000). `serve` raises its open-files limit (`ulimit -n`) to twice this "
            "plus 256, up to the hard limit, and warns when it cannot",
            low=1,
            high=1_000_000,
        ),
        Setting(
            "MAX_INFLIGHT_APPENDS",
            "max_inflight_appends",
            "integer",
            64,
            "requests with a body (appends) a worker handles at a time, counted from before "
            "their body is read; past it, `503` with `Retry-After: 1` (1..100000). Body memory "
            "is at most this times `CONSENT_LEDGER_MAX_BODY_BYTES`",
            low=1,
            high=100_000,
        ),
        Setting(
            "MAX_BODY_BYTES",
            "max_body_bytes",
            "integer",
            16 * 1024 * 1024,
            "bytes of a request body (1024..16777216); a larger `Content-Length` is `413` "
            "before anything is read, a chunked body is `413` as it crosses the limit, and "
            "nothing past it is kept",
            low=1024,
            high=16 * 1024 * 1024,
        ),
        Setting(
            "MAX_JSON_DEPTH",
            "max_json_depth",
            "integer",
            32,
            "how deep arrays and objects may nest in a JSON body (4..512); deeper is `400`, "
            "rule `json_too_deep` (a batch of events nests 5 deep at most)",
            low=4,
            high=512,
        ),
        _seconds(
            "HEADER_TIMEOUT",
            "header_timeout",
            10,
            "seconds a connection has to send a whole request line and headers, from opening "
            "or from starting its next request (1..3600); then `408` and closed. A request "
            "head over 64 KiB is `431`",
        ),
        _seconds(
            "BODY_TIMEOUT",
            "body_timeout",
            60,
            "seconds a request body has to arrive after its headers (1..3600); then `408`, "
            "the connection closed, nothing stored",
        ),
        _seconds(
            "KEEP_ALIVE_TIMEOUT",
            "keep_alive_timeout",
            5,
            "seconds an idle kept-alive connection stays open between requests (1..3600)",
        ),
    ),
)


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


def ensure_admin_client(store: ClientStore, token: str) -> str:
    """Make ``token`` a live admin token; the client's name.

    The client is named after the token's hash, so a new token in the file gets a new client and
    the clients of earlier file tokens are revoked (their rows stay, as every revoked client's
    does). A token that belongs to a revoked client, or to one without the admin scope, is
    refused: the file must not bring back or widen what someone took away.
    """
    digest = hash_token(token)
    name = ADMIN_CLIENT_PREFIX + digest[:12]
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    with store.db.transaction() as sql:
        store.db.lock_schema(sql)
        rows = sql.execute(
            "SELECT name, scopes, revoked_at FROM api_clients WHERE token_hash = ?", (digest,)
        )
        if rows:
            owner, scopes, revoked_at = rows[0]
            if revoked_at is not None:
                raise SettingsError(
                    f"the token in {ADMIN_TOKEN_FILE} belongs to client {owner}, revoked at "
                    f"{revoked_at}; write a new token into the file"
                )
            if Scope.ADMIN.value not in str(scopes).split():
                raise SettingsError(
                    f"the token in {ADMIN_TOKEN_FILE} belongs to client {owner}, which lacks the "
                    "admin scope; write a new token into the file"
                )
            return str(owner)
        sql.execute(
            "UPDATE api_clients SET revoked_at = ? WHERE revoked_at IS NULL AND name LIKE ?",
            (now, ADMIN_CLIENT_PREFIX + "%"),
        )
        sql.execute(
            "INSERT INTO api_clients (client_id, name, token_hash, scopes, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (str(uuid.uuid4()), name, digest, Scope.ADMIN.value, now),
        )
    return name


def open_client_database(settings: Settings) -> ProjectionDatabase:
    """API clients live beside the read models: ``api.sqlite3``, or the ledger's schema."""
    if settings.database_url is None:
        from projections.sqlite import SQLiteProjectionDatabase

        return SQLiteProjectionDatabase(settings.data_dir / "api.sqlite3")
    from projections.postgres import PostgresProjectionDatabase

    return PostgresProjectionDatabase(settings.database_url, settings.database_schema, max_size=4)


def create_app(
    settings: Settings,
    read_settings: ReadModelSettings | None = None,
    server: ServerSettings | None = None,
) -> FastAPI:
    serving = server or ServerSettings.from_env()

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
        if serving.admin_token_file is not None:
            ensure_admin_client(app.state.clients, read_admin_token(serving.admin_token_file))
        stop = threading.Event()
        workers = []
        if serving.projections:
            workers.append(
                threading.Thread(
                    target=_follow, args=(models, stop), name="read-models", daemon=True
                )
            )
        if serving.projections and serving.retention_interval_hours:
            workers.append(
                threading.Thread(
                    target=retention_loop,
                    args=(ledger, models, stop, serving.retention_interval_hours * 3600.0),
                    name="retention",
                    daemon=True,
                )
            )
        if serving.signer:
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
        logger.info(
            "API started",
            extra={
                "storage": settings.describe_storage(),
                "projections": "in this process" if serving.projections else "elsewhere",
                "signer": "in this process" if serving.signer else "elsewhere",
            },
        )
        try:
            yield
        finally:
            # uvicorn calls this after the requests in flight have had their answers, so every
            # append that was handed to the recorder is committed (close() drains it).
            stop.set()
            models.runner.wake()
            for worker in workers:
                worker.join(timeout=10)
            client_db.close()
            models.close()
            ledger.close()
            logger.info("API stopped: every accepted append is committed")

    app = FastAPI(
        title="Consent Ledger",
        version="0.1.0",
        summary="A signed, append-only audit and consent ledger.",
        lifespan=lifespan,
    )
    problems.install(app)
    for router in (events.router, consent.router, subjects.router, registers.router, log.router):
        app.include_router(router)
    limits = RequestLimits(
        max_body_bytes=serving.max_body_bytes,
        max_json_depth=serving.max_json_depth,
        max_inflight_appends=serving.max_inflight_appends,
    )
    app.add_middleware(LimitsMiddleware, limits=limits)
    app.add_middleware(logs.RequestLogMiddleware)  # outermost: it logs what the limits answer
    return app


def _follow(models: ReadModels, stop: threading.Event) -> None:
    def report(exc: PoisonEventError) -> None:
        logger.error("read model stopped: %s", exc)

    models.runner.follow(stop, on_error=report)


def _checkpoints(ledger: Any, stop: threading.Event, interval: float) -> None:
    """Sign at a fixed rate: a slow signing does not push the next one back."""

    def sign() -> None:
        try:
            ledger.sign_checkpoint()
        except Exception:
            logger.exception("checkpoint not signed")

    run_every(interval, stop, sign)
