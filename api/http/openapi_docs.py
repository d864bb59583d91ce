"""Interactive API docs that work offline, and the bearer scheme behind their Authorize button.

FastAPI's own ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from a CDN, so on a machine
without internet they are blank. Here both pages load their scripts from ``/docs/assets/``,
files of the ``fastapi-offline`` package (Swagger UI 5, ReDoc 2, MIT and Apache-2.0; see
pyproject.toml for why that package), served by this app. Both pages carry a same-origin
Content-Security-Policy, so a browser asks no other host for anything (``tests/browser/`` loads
them in chromium with every other host unreachable and sees no request try to leave).

The OpenAPI document itself is FastAPI's, completed by :mod:`api.http.openapi_document` (the
catalogue's schemas, the problem document, the bearer scheme and each operation's scope).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

from api.http.openapi_document import api_routes, complete
from api.http.responses import complete_answers

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
    """Serve ``/docs``, ``/redoc`` and their assets, and complete the OpenAPI document.
    ``app`` must have been made with ``docs_url=None, redoc_url=None``."""
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
    app.openapi = _completed(app.openapi, app)  # type: ignore[method-assign]


def _confined(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = POLICY
    return page


def _completed(generate: Callable[[], dict[str, Any]], app: FastAPI) -> Callable[[], Any]:
    """FastAPI's document generation (cached by FastAPI), then
    :func:`api.http.openapi_document.complete` and
    :func:`api.http.responses.complete_answers` (both idempotent, so a document FastAPI made
    again gets them too)."""

    def openapi() -> dict[str, Any]:
        document = generate()
        complete(document, api_routes(app.routes))
        complete_answers(document)
        return document

    return openapi
