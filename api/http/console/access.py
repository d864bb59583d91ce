"""Who may see a console page, and the plumbing every page shares: the session cookie, the
scope check (the API's own :func:`api.http.deps.authorise`, fed the session's token), CSRF,
form bodies and rendering.

A page refused for its scope answers 403 with a page that says which scope it needs; a page
asked for without a live session redirects to the sign-in form; a POST without the session's
CSRF token (or from another origin) is refused with 403 before anything is read or appended.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from api.http.console.sessions import Session, Sessions
from api.http.deps import authorise
from api.http.problems import ProblemError
from api.token_store import Client, Scope

HERE = Path(__file__).parent
PREFIX = "/console"
COOKIE = "console_session"
LOGIN_COOKIE = "console_login"
"""The sign-in form's CSRF token, double-submitted (there is no session yet to hold it)."""
MAX_FORM_FIELDS = 40
POLICY = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""The console's Content-Security-Policy: its own files only, no inline script or style."""
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make the forms' Origin "null"
    "Cache-Control": "no-store",
}
"""On every page: they may show personal data, so no cache keeps them."""

NAV = {
    "overview": "overview",
    "incidents": "incidents",
    "incident": "incidents",
    "people": "incidents",
    "requests": "requests",
    "request": "requests",
    "subject": "subjects",
    "disclosures": "disclosures",
    "evidence": "evidence",
    "entry": "evidence",
    "exports": "exports",
    "export": "exports",
    "notices": "notices",
    "notice": "notices",
}
"""The menu entry each template's page is under."""

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class PageError(Exception):
    """A page's refusal, answered as an HTML page with ``status``."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        super().__init__(detail)


class SignInNeededError(Exception):
    """No live session: the visitor is sent to the sign-in form (then back to ``path``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(path)


@dataclass
class Visitor:
    """A signed-in visitor allowed on the page: the API client and its session."""

    client: Client
    session: Session
    notes: list[str] = field(default_factory=list)

    def allows(self, scope: Scope) -> bool:
        return self.client.allows(scope)


def sessions(request: Request) -> Sessions:
    found: Sessions = request.app.state.console_sessions
    return found


async def authorise_token(request: Request, token: str, scope: Scope) -> Client:
    """:func:`api.http.deps.authorise` for ``token``, as if it came as the bearer header."""
    scope_of_request = dict(request.scope)
    scope_of_request["headers"] = [(b"authorization", f"Bearer {token}".encode())]
    return await authorise(Request(scope_of_request, request.receive), scope)


async def visitor(request: Request, scope: Scope) -> Visitor:
    """The visitor, if signed in with a live token that carries ``scope``: else the sign-in
    form (no session, or its token revoked) or a 403 page."""
    session_id = request.cookies.get(COOKIE)
    session = sessions(request).find(session_id)
    if session is None:
        raise SignInNeededError(request.url.path)
    try:
        client = await authorise_token(request, session.token, scope)
    except ProblemError as exc:
        if exc.status == 401:
            sessions(request).close(session_id)
            raise SignInNeededError(request.url.path) from None
        raise PageError(
            exc.status,
            "Not allowed",
            f"This page needs the scope {scope.value}, which your token does not carry. "
            "Ask an administrator for a token with that scope (consent-ledger clients add).",
        ) from None
    return Visitor(client, session)


def same_origin(request: Request) -> bool:
    """A POST's ``Origin``, when the browser sends one, is this server's."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    own = f"{request.url.scheme}://{request.url.netloc}"
    return origin == own


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body: each field once (a repeated field, a body
    that is not UTF-8 or more than :data:`MAX_FORM_FIELDS` fields are refused with 400)."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise PageError(415, "Not a form", "The console takes forms sent by its own pages.")
    try:
        text = (await request.body()).decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise PageError(400, "Bad form", "The form could not be read.") from None
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in found:
            raise PageError(400, "Bad form", f"The field {name} was sent twice.")
        found[name] = value
    return found


async def posted(request: Request, scope: Scope) -> tuple[Visitor, dict[str, str]]:
    """A POST's visitor and form, once its CSRF token matches the session's and it comes from
    this origin; else a 403 page (nothing read, nothing appended)."""
    if not same_origin(request):
        raise PageError(403, "Refused", "The form was sent from another site.")
    who = await visitor(request, scope)
    return who, await _checked_form(request, who.session)


async def signing_out(request: Request) -> str | None:
    """The session id a sign-out form closes: any live session's, its CSRF token checked (a
    sign-out needs no scope); None when there is no live session."""
    if not same_origin(request):
        raise PageError(403, "Refused", "The form was sent from another site.")
    session_id = request.cookies.get(COOKIE)
    session = sessions(request).find(session_id)
    if session is None:
        return None
    await _checked_form(request, session)
    return session_id


async def _checked_form(request: Request, session: Session) -> dict[str, str]:
    form = await read_form(request)
    if not hmac.compare_digest(form.get("csrf", "").encode(), session.csrf.encode()):
        raise PageError(
            403,
            "Refused",
            "The form's CSRF token is missing or out of date. Reload the page and send it again.",
        )
    return form


def render(
    template: str, context: dict[str, Any], status: int = 200, visitor: Visitor | None = None
) -> HTMLResponse:
    nav = NAV.get(template.partition(".")[0])
    body = templates.get_template(template).render(
        visitor=visitor, prefix=PREFIX, nav=nav, **context
    )
    return HTMLResponse(body, status_code=status, headers=HEADERS)


def error_page(request: Request, exc: Exception) -> Response:
    """The answer to :class:`PageError` and :class:`SignInNeededError` (installed on the app)."""
    if isinstance(exc, SignInNeededError):
        target = exc.path if request.method == "GET" else PREFIX
        return RedirectResponse(
            f"{PREFIX}/login?next={quote(target, safe='/')}", status_code=303, headers=HEADERS
        )
    assert isinstance(exc, PageError)
    context = {"title": exc.title, "detail": exc.detail, "status": exc.status}
    return render("error.html", context, status=exc.status)


def cookie_args(request: Request) -> dict[str, Any]:
    """``HttpOnly``, ``SameSite=Strict``, the console's path, and ``Secure`` over HTTPS."""
    return {
        "httponly": True,
        "samesite": "strict",
        "path": PREFIX,
        "secure": request.url.scheme == "https",
    }


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: a console path of this server, never another site."""
    if (
        target
        and target.startswith(PREFIX)
        and not target.startswith("//")
        and "\\" not in target
        and all(c.isprintable() for c in target)
        and target != f"{PREFIX}/login"
    ):
        return target
    return PREFIX
