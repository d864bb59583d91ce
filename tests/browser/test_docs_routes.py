"""What the docs pages and the OpenAPI document promise, checked over HTTP (no browser): the pages
name files of this server only, which it serves; the document's bearer scheme sits on exactly
the operations that refuse a request without a token."""

from __future__ import annotations

import http.client
import re
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.browser import DocsServer

METHODS = frozenset({"get", "put", "post", "delete", "patch"})
PATH_VALUES = {"seq": "1", "incident_id": "inc-1", "job_id": "job-1"}
"""A value for each path parameter: any will do, the token is checked first."""
_REFERENCE = re.compile(r"""(?:src|href|spec-url)\s*[=:]\s*['"]([^'"]+)['"]""")
_CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_files_of_this_server_only(docs_server: DocsServer, page: str) -> None:
    answer = httpx.get(docs_server.url + page)
    assert answer.status_code == 200
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self' 'unsafe-inline'" in policy
    references = _REFERENCE.findall(answer.text)
    assets = [ref for ref in references if ref.startswith("/docs/assets/")]
    assert len(assets) >= 2, references
    assert all(urlsplit(ref).netloc == "" and ref.startswith("/") for ref in references)
    for asset in assets:
        served = httpx.get(docs_server.url + asset)
        assert served.status_code == 200
        assert _CONTENT_TYPES[asset[asset.rindex(".") :]] in served.headers["content-type"]
        assert len(served.content) > 1000


def test_the_bearer_scheme_is_on_exactly_the_operations_that_need_a_token(
    docs_server: DocsServer,
) -> None:
    document = httpx.get(f"{docs_server.url}/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    wrong = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            declared = operation.get("security") == [{"bearer": []}]
            answer = httpx.request(method, docs_server.url + path.format(**PATH_VALUES))
            if declared != (answer.status_code == 401):
                wrong.append(f"{method.upper()} {path}: security {declared}, {answer.status_code}")
    assert wrong == []
    assert document["paths"]["/v1/events"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in document["paths"]["/healthz"]["get"]


@pytest.mark.parametrize(
    "path",
    [
        "/docs/assets/missing.js",
        "/docs/assets/../../pyproject.toml",
        "/docs/assets/%2e%2e/%2e%2e/pyproject.toml",
        "/docs/assets/..%2f..%2fpyproject.toml",
        "/docs/assets/",
    ],
)
def test_an_asset_that_is_not_there_is_a_404_problem(docs_server: DocsServer, path: str) -> None:
    """Sent as written (http.client does not resolve ``..`` as httpx would)."""
    parts = urlsplit(docs_server.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        body = answer.read()
    finally:
        connection.close()
    assert answer.status == 404
    assert answer.getheader("content-type") == "application/problem+json"
    assert b"[project]" not in body
