"""A process that serves reads only: ``consent-ledger serve --role reads``.

The ledger's writer (``serve``, role ``all``) appends, runs the export jobs and the console, and
may run the read models and the checkpoint signer. A reads process beside it answers the API's
questions from the same storage: decisions, states, histories, the registers, events, proofs,
checkpoints and keys, ``/metrics`` and the health probes. It follows no read model and signs
nothing (those run in the writer or in processes of their own), so a decision asked there never
waits behind an append for the writer's GIL or its committer (docs/performance.md, "Reads in
processes of their own").

It still appends what a read must record: a read that opens a person's data records its
``personal_data.accessed`` event before it answers, through this process's own ledger
application, as the writer's routes do (invariant 11). Every other write is refused before its
body is read: any method but GET, HEAD and OPTIONS, and every path of the console and of the
export jobs (which the writer runs), answer ``421 Misdirected Request`` with a problem document
naming the writer's address when ``CONSENT_LEDGER_WRITER_URL`` gives it. Nothing is forwarded:
a client (or the proxy in front) sends its writes to the writer.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from api.http.limits import refuse_and_close

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITER_ONLY_PATHS = ("/console", "/v1/exports")
"""Paths a reads process never serves, whatever the method: the console (its sign-in, forms
and actions) and the export jobs, which run where their runner and bundles are."""


def writer_only(method: str, path: str) -> bool:
    """Whether a request of ``method`` to ``path`` belongs to the writer, not a reads process."""
    if method.upper() not in READ_METHODS:
        return True
    return any(path == p or path.startswith(p + "/") for p in WRITER_ONLY_PATHS)


class ReadsOnlyMiddleware:
    """Answer every request :func:`writer_only` names with ``421``, before its body is read."""

    def __init__(self, app: ASGIApp, writer_url: str | None = None) -> None:
        self.app = app
        self.writer_url = writer_url.rstrip("/") if writer_url else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not writer_only(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        where = (
            f"send it to the ledger's writer, {self.writer_url}"
            if self.writer_url
            else "send it to the ledger's writer (serve with role all)"
        )
        extra: dict[str, Any] = {"writer": self.writer_url} if self.writer_url else {}
        # A little of the body still coming is read first, the rest left unread, and the
        # connection closed after the answer (limits.refuse_and_close).
        await refuse_and_close(
            scope,
            receive,
            send,
            421,
            "Misdirected Request",
            f"this process serves reads only (serve --role reads): {scope['method']} "
            f"{scope['path']} is not answered here; {where}",
            **extra,
        )
