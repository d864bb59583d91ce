"""How ``consent-ledger serve`` runs: the server's settings, declared once (:data:`SERVER_SETTINGS`)
and read by the ledger's one parser (``ledger.config.Environment``), like every other group."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from api import logs
from ledger.config import Setting, SettingGroup, SettingsError


@dataclass(frozen=True)
class ServerSettings:
    """How ``consent-ledger serve`` runs: ``CONSENT_LEDGER_*`` variables, overridden by flags."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    role: str = "all"
    """``all``: the whole API; ``reads``: the read routes only (api/http/reads.py)."""
    writer_url: str = ""
    """The writer's address, which a reads process names when it refuses a write ("": none)."""
    committer: str = "process"
    """``process``: appends are committed by a process of their own, for every worker;
    ``thread``: by a thread of each worker (ledger/committer.py)."""
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
    # Limits (api/http/limits.py; docs/operations.md, Limits), each per worker process.
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
    append_threads: int = 64
    """Threads that run appends (``POST /v1/events``), each waiting for its commit."""
    export_ttl_hours: int = 24
    """Hours a finished export's bundle is kept before it is deleted."""
    export_queue_per_client: int = 10
    """Exports a client may have queued or running at once; past it, 429."""

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


ROLES = ("all", "reads")
COMMITTERS = ("process", "thread")


def _check_url(url: str) -> str:
    if url and not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]_~/%-]{1,2000}", url):
        raise SettingsError(
            f"CONSENT_LEDGER_WRITER_URL={url[:100]!r} is not an http(s) address such as "
            "http://api:8000"
        )
    return url


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
            "ROLE",
            "role",
            "choice",
            "all",
            "`all`: the whole API, appends included; `reads`: the read routes only (decisions, "
            "states, histories, registers, events, proofs, checkpoints, keys), with no read "
            "models followed and no checkpoints signed here, beside a writer on the same "
            "storage. A write sent to a reads process is `421` (docs/operations.md, Reads in "
            "processes of their own)",
            choices=ROLES,
            flag="--role",
        ),
        Setting(
            "WRITER_URL",
            "writer_url",
            "text",
            "",
            "the writer's address (such as `http://api:8000`), named in the `421` a reads "
            "process answers to a write; empty: not named",
            check=_check_url,
        ),
        Setting(
            "COMMITTER",
            "committer",
            "choice",
            "process",
            "`process`: `serve` starts one process that signs and commits the appends of all its "
            "workers, in shared group commits, off the workers' GIL; `thread`: each worker "
            "signs and commits its own, serialised by the database's write lock "
            "(docs/performance.md, The committer process)",
            choices=COMMITTERS,
            flag="--committer",
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
        Setting(
            "APPEND_THREADS",
            "append_threads",
            "integer",
            64,
            "threads of a worker that run `POST /v1/events` appends (1..1024), a pool of "
            "their own: each holds its append until the commit, so this bounds how many "
            "single-event appends share a group commit. Above "
            "`CONSENT_LEDGER_MAX_INFLIGHT_APPENDS` it buys nothing",
            low=1,
            high=1024,
        ),
        Setting(
            "EXPORT_TTL_HOURS",
            "export_ttl_hours",
            "integer",
            24,
            "hours a finished export's bundle (`<data dir>/exports/<job id>.zip`) is kept; "
            "then it is deleted and the job reads `expired` (1..8784)",
            low=1,
            high=24 * 366,
        ),
        Setting(
            "EXPORT_QUEUE_PER_CLIENT",
            "export_queue_per_client",
            "integer",
            10,
            "exports a client may have queued or running at once; past it, `POST /v1/exports` "
            "is `429` with `Retry-After` (1..1000)",
            low=1,
            high=1000,
        ),
    ),
)
