"""What a public endpoint bounds: connections, time, appends in flight, body size and nesting.

Two layers, each configured by :class:`api.http.app.ServerSettings` (docs/configuration.md, and
docs/operations.md, Limits, for what a client sees):

- :class:`LimitedHttpProtocol`, uvicorn's HTTP protocol with a connection cap and timeouts.
  Past ``max_connections`` open connections, a request is answered ``503`` with
  ``Retry-After`` and its connection closed (it has one second to send its request head);
  past twice that, a new connection is closed at once, unanswered. A connection that has not
  sent a whole request head within ``header_timeout`` seconds of opening (or of starting its
  next request), or whose request head exceeds 64 KiB, and a request whose body has not
  arrived within ``body_timeout`` seconds of its head, get ``408`` (``431`` for the head size)
  and are closed; idle kept-alive connections close after ``keep_alive_timeout`` (uvicorn's).
  Each is a timer in the event loop: slow clients cost one socket each for a bounded time and
  never hold up the others.
- :class:`LimitsMiddleware`, in the app. A request with a body (every append) takes one of
  ``max_inflight_appends`` slots before its body is read, or is answered ``503`` with
  ``Retry-After``; its body is read up to ``max_body_bytes`` and no further (a larger
  ``Content-Length`` is refused before reading, a chunked body as it crosses the limit):
  ``413``; JSON nested deeper than ``max_json_depth`` is ``400``. Memory for bodies is thus at
  most slots times the body limit, whatever clients send.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.http.problems import PROBLEM, problem

logger = logging.getLogger("consent_ledger.http")

RETRY_AFTER_SECONDS = 1
"""What ``Retry-After`` says when the server is at a limit: try again in a second."""
MAX_HEAD_BYTES = 64 * 1024
"""Request line and headers together: more is ``431`` (a token or signature header is < 1 KiB)."""
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
OVERFLOW_FACTOR = 2
"""Past this many times ``max_connections``, a new connection is closed at once, unanswered:
sockets (file descriptors) stay bounded whatever a flood opens."""


@dataclass(frozen=True)
class RequestLimits:
    max_body_bytes: int = 16 * 1024 * 1024
    max_json_depth: int = 32
    max_inflight_appends: int = 64


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1000
    header_timeout: float = 10.0
    body_timeout: float = 60.0


# -- the app side ------------------------------------------------------------------------------


class LimitsMiddleware:
    """Appends in flight, body size and JSON nesting, before the route sees the request."""

    def __init__(self, app: ASGIApp, limits: RequestLimits | None = None) -> None:
        self.app = app
        self.limits = limits or RequestLimits()
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        limits = self.limits
        if self.inflight >= limits.max_inflight_appends:
            await refuse_and_close(
                scope,
                receive,
                send,
                503,
                "Too many appends in flight",
                f"this server handles {limits.max_inflight_appends} appends at a time; "
                f"try again in {RETRY_AFTER_SECONDS} s",
                retry_after=RETRY_AFTER_SECONDS,
            )
            return
        self.inflight += 1
        try:
            declared = _content_length(scope)
            if declared is not None and declared > limits.max_body_bytes:
                await _too_large(scope, receive, send, limits.max_body_bytes)
                return
            body = await _read_body(receive, limits.max_body_bytes)
            if body is None:
                await _too_large(scope, receive, send, limits.max_body_bytes)
                return
            if json_depth_exceeds(body, limits.max_json_depth):
                await refuse_and_close(
                    scope,
                    receive,
                    send,
                    400,
                    "JSON nested too deep",
                    f"the body nests arrays and objects deeper than {limits.max_json_depth} levels",
                    rule="json_too_deep",
                    body_read=True,
                )
                return
            await self.app(scope, _replay(body, receive), send)
        finally:
            self.inflight -= 1


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``limit`` bytes (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body read here, then the connection's messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    await refuse_and_close(
        scope,
        receive,
        send,
        413,
        "Body too large",
        f"a request body is at most {limit} bytes",
        rule="body_too_large",
    )


async def refuse_and_close(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    title: str,
    detail: str,
    *,
    body_read: bool = False,
    **extra: Any,
) -> None:
    """Answer with a problem and close the connection.

    A little of the body still coming is read and dropped first (a lingering close, as web
    servers do): a socket closed with unread data is reset, and the reset can destroy the answer
    before the client reads it. What is left past that stays unread.
    """
    if not body_read:
        await _linger(receive)
    response = problem(status, title, detail, **extra)
    response.headers["connection"] = "close"
    await response(scope, receive, send)


LINGER_BYTES = 1024 * 1024
LINGER_SECONDS = 1.0


async def _linger(receive: Receive) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LINGER_SECONDS
    dropped = 0
    while dropped <= LINGER_BYTES:
        try:
            message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


ORJSON_MAX_DEPTH = 1024
"""How deep orjson, the API's JSON parser, nests at most (it refuses more, in C)."""


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether the JSON in ``body`` nests arrays and objects more than ``limit`` deep.

    The body is parsed inside ``1024 - limit`` arrays, so that orjson's own depth limit of 1024
    (checked in C, as fast for a hostile body as for any) falls exactly at ``limit``. Text that
    is not JSON is left to the route's parser to refuse, with the same parser.
    """
    if not 0 < limit < ORJSON_MAX_DEPTH:
        raise ValueError(f"a JSON depth limit is between 1 and {ORJSON_MAX_DEPTH - 1}")
    if body.count(b"[") + body.count(b"{") <= limit:
        # Nesting n deep takes n opening brackets, so a body with no more than ``limit`` of
        # them (a single event has two or three) cannot exceed it: two scans in C instead of
        # parsing inside the wrap below, whose thousand-odd arrays cost ~50 us per request.
        return False
    return parsed_too_deep(body, limit)


def parsed_too_deep(body: bytes, limit: int) -> bool:
    """:func:`json_depth_exceeds` without its shortcut: ``body`` parsed inside
    ``1024 - limit`` arrays, whatever it holds."""
    wrap = ORJSON_MAX_DEPTH - limit
    try:
        orjson.loads(b"[" * wrap + body + b"]" * wrap)
    except orjson.JSONDecodeError as exc:
        return str(exc).startswith("depth limit exceeded")
    return False


# -- the connection side -----------------------------------------------------------------------


@functools.cache
def connection_limits() -> ConnectionLimits:
    """This process's limits, from the ``CONSENT_LEDGER_*`` variables that ``serve`` sets."""
    from api.http.app import ServerSettings

    server = ServerSettings.from_env()
    return ConnectionLimits(
        max_connections=server.max_connections,
        header_timeout=float(server.header_timeout),
        body_timeout=float(server.body_timeout),
    )


def _raw_problem(status: int, reason: str, title: str, detail: str, **extra: Any) -> bytes:
    body = orjson.dumps(
        {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    )
    head = [
        f"HTTP/1.1 {status} {reason}",
        f"content-type: {PROBLEM}",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if "retry_after" in extra:
        head.append(f"retry-after: {extra['retry_after']}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _busy(scope: Scope, receive: Receive, send: Send) -> None:
    limit = connection_limits().max_connections
    await refuse_and_close(
        scope,
        receive,
        send,
        503,
        "Too many connections",
        f"this server holds {limit} connections at a time; try again in {RETRY_AFTER_SECONDS} s",
        retry_after=RETRY_AFTER_SECONDS,
    )


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a connection cap, header and body timeouts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = connection_limits()
        self.over_limit = False
        self.timer: asyncio.TimerHandle | None = None
        self.head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        count = len(self.connections)
        if count > OVERFLOW_FACTOR * self.limits.max_connections:
            transport.abort()  # a flood: no socket is kept for it, not even to answer
            return
        self.over_limit = count > self.limits.max_connections
        # Past the cap a connection gets a second, not the usual time, to ask for its 503.
        wait = min(self.limits.header_timeout, 1.0) if self.over_limit else None
        self._arm(wait or self.limits.header_timeout, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes = 0
        if self.timer is None:
            self._arm(self.limits.header_timeout, self._head_too_slow)

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        if self.transport.is_closing():
            return  # refused while its head arrived (too large)
        if self.over_limit:
            app, self.app = self.app, _busy
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()
        self._arm(self.limits.body_timeout, self._body_too_slow)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _count_head(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._close_with(
                _raw_problem(
                    431,
                    "Request Header Fields Too Large",
                    "Request head too large",
                    f"the request line and headers are at most {MAX_HEAD_BYTES} bytes",
                )
            )

    def _arm(self, seconds: float, then: Any) -> None:
        self._disarm()
        self.timer = self.loop.call_later(seconds, then)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _head_too_slow(self) -> None:
        self.timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            # Between requests (or before the first) and not a whole head within the time.
            self._close_with(
                _raw_problem(
                    408,
                    "Request Timeout",
                    "Request head too slow",
                    f"the request line and headers must arrive within "
                    f"{self.limits.header_timeout:g} s",
                )
            )

    def _body_too_slow(self) -> None:
        self.timer = None
        if self.transport.is_closing() or self.cycle is None or self.cycle.response_started:
            return
        self.cycle.scope.setdefault("state", {})["timed_out"] = "body"
        self._close_with(
            _raw_problem(
                408,
                "Request Timeout",
                "Request body too slow",
                f"the request body must arrive within {self.limits.body_timeout:g} s of its "
                "headers",
            )
        )

    def _close_with(self, response: bytes) -> None:
        """Answer ``response`` and close: the request's app, if any, sees a disconnect."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.write(response)
        self.transport.close()
