"""Interactive API docs that work offline, and the bearer scheme behind their Authorize button.

FastAPI's own ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from a CDN, so on a machine
without internet they are blank. Here both pages load their scripts from ``/docs/assets/``,
files of the ``fastapi-offline`` package (Swagger UI 5, ReDoc 2, MIT and Apache-2.0; see
pyproject.toml for why that package), served by this app. Both pages carry a same-origin
Content-Security-Policy, so a browser asks no other host for anything (``tests/browser/`` loads
them in chromium with every other host unreachable and sees no request try to leave).

The OpenAPI document gets a ``bearer`` security scheme, and each operation that asks for a token
says so, as the routes check it (:func:`api.http.deps.authorise`); the checks themselves are
untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute

from api.http.deps import authorise, authorised
from api.token_store import Scope

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs/assets"
ASSET_PACKAGE = "fastapi_offline"
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
"""The files the two pages load, all from :data:`ASSETS_URL`."""
POLICY = "; ".join(
    [
        "default-src 'self'",
        # Both pages start their viewer in an inline script, and both inject their styles.
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
"""The Content-Security-Policy of both pages: this origin only. ReDoc names a logo on another
host (its "API docs by Redocly" badge); the browser does not ask for it."""
BEARER = "bearer"
"""The name of the security scheme in ``components.securitySchemes``."""

_CHECK_CODE = authorised(Scope.ADMIN).__code__
"""The code of every check :func:`~api.http.deps.authorised` makes, whatever its scope."""


def asset_directory() -> Path:
    """The installed directory holding :data:`ASSETS`; a clear error if any is missing.

    Checked when the app is made, so a broken install fails at start, not as a blank page.
    """
    directory = Path(str(files(ASSET_PACKAGE).joinpath("static")))
    missing = [name for name in ASSETS if not (directory / name).is_file()]
    if missing:
        raise RuntimeError(
            f"the API docs' assets {', '.join(missing)} are not in {directory}: "
            f"reinstall the {ASSET_PACKAGE} package"
        )
    return directory


def install(app: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets, and add the bearer scheme to the OpenAPI
    document. ``app`` must have been made with ``docs_url=None, redoc_url=None``."""
    app.mount(ASSETS_URL, StaticFiles(directory=asset_directory()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _confined(
            get_swagger_ui_html(
                openapi_url=root + openapi_url,
                title=f"{app.title}: Swagger UI",
                swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                swagger_ui_parameters=app.swagger_ui_parameters,
            )
        )

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _confined(
            get_redoc_html(
                openapi_url=root + openapi_url,
                title=f"{app.title}: ReDoc",
                redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                with_google_fonts=False,
            )
        )

    app.add_api_route(DOCS_URL, swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(REDOC_URL, redoc, methods=["GET"], include_in_schema=False)
    app.openapi = _with_bearer(app.openapi, app)  # type: ignore[method-assign]


def _confined(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = POLICY
    return page


def _with_bearer(generate: Callable[[], dict[str, Any]], app: FastAPI) -> Callable[[], Any]:
    """FastAPI's document generation (cached by FastAPI), then :func:`add_bearer` (idempotent,
    so a document FastAPI made again gets it too)."""

    def openapi() -> dict[str, Any]:
        document = generate()
        add_bearer(document, api_routes(app.routes))
        return document

    return openapi


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[tuple[str, APIRoute]]:
    """Each API route of ``routes`` with its path as the OpenAPI document writes it.

    Recent FastAPI (0.165 here) keeps an included router as one route, walked with
    ``iter_route_contexts`` as its own document generation does; earlier versions copy the
    router's routes into the app's.
    """
    walk = getattr(routing, "iter_route_contexts", None)
    if walk is None:
        for route in routes:
            if isinstance(route, APIRoute):
                yield route.path_format, route
        return
    for context in walk(routes):
        if isinstance(context.original_route, APIRoute):
            yield context.path_format, context.original_route


def add_bearer(document: dict[str, Any], routes: Iterable[tuple[str, APIRoute]]) -> None:
    """Declare the ``bearer`` scheme and put it on each operation whose route asks for a token."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A client's token, as `consent-ledger clients add` prints it; "
        "each route needs one scope of it (docs/api.md, Clients and scopes).",
    }
    paths = document.get("paths", {})
    for path, route in routes:
        if not (route.include_in_schema and needs_token(route)):
            continue
        for method in route.methods or ():
            operation = paths.get(path, {}).get(method.lower())
            if operation is not None:
                operation["security"] = [{BEARER: []}]


def needs_token(route: APIRoute) -> bool:
    """Whether the route checks a token: through a dependency made by
    :func:`~api.http.deps.authorised`, or by calling :func:`~api.http.deps.authorise` itself
    (as the lean append route does)."""
    code = getattr(route.endpoint, "__code__", None)
    if code is not None and authorise.__name__ in code.co_names:
        return True
    return any(
        getattr(dependant.call, "__code__", None) is _CHECK_CODE
        for dependant in _dependants(route.dependant)
    )


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependants(sub)
