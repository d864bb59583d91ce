"""Logs: JSON lines when stderr is not a terminal, short human lines when it is.

Every HTTP request gets a request id (the caller's ``X-Request-Id`` when it is a plain token,
else a new one), returned in the ``X-Request-Id`` response header and attached to every log
line written while the request runs. When the request ends one line records its method, path,
status, duration and the name of the client that called (never its token).

Never logged: query strings (``?subject=`` carries the emitting service's reference to a
person), request and response bodies, headers (tokens, signatures), and secrets.
"""

from __future__ import annotations

import logging
import logging.config
import re
import sys
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FORMATS = ("auto", "json", "text")
LEVELS = ("debug", "info", "warning", "error")
REQUEST_ID_HEADER = "x-request-id"
REQUEST_LOGGER = "consent_ledger.http"
CLIENT_CLOSED = 499
"""The status a request's log line shows when its client went away first (as nginx logs it)."""

_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_QUIET_PATHS = frozenset({"/healthz", "/readyz"})
"""Probed every few seconds by health checks: logged at debug level only."""

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# What every LogRecord has; anything else on a record was passed as ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record written while it runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            current = request_id.get()
            if current is not None:
                record.request_id = current
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, then the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """``12:00:01 INFO  consent_ledger.http  POST /v1/events 201  method=... status=...``."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        pairs = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{moment} {record.levelname:<7} {record.name}  {record.getMessage()}"
        if pairs:
            line += f"  {pairs}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def resolve_format(log_format: str, stream: TextIO | None = None) -> str:
    """``auto`` means text on a terminal, JSON lines otherwise (files, pipes, containers)."""
    if log_format != "auto":
        return log_format
    stream = sys.stderr if stream is None else stream
    return "text" if stream.isatty() else "json"


def dict_config(log_format: str = "auto", level: str = "info") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for the server, uvicorn's loggers included.

    Passed to uvicorn as ``log_config``, so each worker process applies it too.
    """
    formatter = JsonFormatter if resolve_format(log_format) == "json" else TextFormatter
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "ledger",
        "filters": ["request_id"],
    }
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"ledger": {"()": formatter}},
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": upper},
        "loggers": {
            # uvicorn's own handlers are replaced by ours; its access log is off for good.
            "uvicorn": {"handlers": [], "propagate": True, "level": upper},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": upper},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "CRITICAL"},
            # An HTTP client logs whole URLs, query strings included: only its warnings.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }


def configure(log_format: str = "auto", level: str = "info") -> None:
    logging.config.dictConfig(dict_config(log_format, level))


class RequestLogMiddleware:
    """Gives each HTTP request an id and writes one line about it when it ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.logger = logging.getLogger(REQUEST_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        token = request_id.set(rid)
        state = scope.setdefault("state", {})
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        gone = ""
        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # The client's doing (it hung up, or was cut off for being too slow), not the
            # server's: one line, no traceback; nothing was stored, since the body was not whole.
            timed_out = state.get("timed_out")
            status = 408 if timed_out else CLIENT_CLOSED
            gone = (
                f" (the {timed_out} did not arrive in time: 408, connection closed)"
                if timed_out
                else " (the client closed the connection before its request was whole)"
            )
        finally:
            path = scope.get("path", "")  # never the query string
            level = logging.DEBUG if path in _QUIET_PATHS and status < 500 else logging.INFO
            if status >= 500 and status != CLIENT_CLOSED:
                level = logging.ERROR
            if self.logger.isEnabledFor(level):  # the line's fields only when it is written
                self.logger.log(
                    level,
                    "%s %s %d%s",
                    scope.get("method", ""),
                    path,
                    status,
                    gone,
                    extra={
                        "request_id": rid,
                        "method": scope.get("method", ""),
                        "path": path,
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        "client": state.get("client_name"),
                    },
                )
            request_id.reset(token)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            text = bytes(value).decode("latin-1")
            if _SANE_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex
