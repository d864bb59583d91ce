"""What the docs pages and the OpenAPI document promise, checked over HTTP (no browser): the pages
name files of this server only, which it serves; the document's bearer scheme sits on exactly
the operations that refuse a request without a token."""

from __future__ import annotations

import http.client
import re
from importlib.resources import files
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.browser import DocsServer

METHODS = frozenset({"get", "put", "post", "delete", "patch"})
PATH_VALUES = {"seq": "1", "incident_id": "inc-1", "job_id": "job-1", "notice_id": "notice-1"}
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


def get_as_written(url: str, path: str) -> tuple[int, str | None, bytes]:
    """``GET path`` sent as written: http.client does not resolve ``..`` as httpx would."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, answer.getheader("content-type"), answer.read()
    finally:
        connection.close()


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
    status, content_type, body = get_as_written(docs_server.url, path)
    assert status == 404
    assert content_type == "application/problem+json"
    assert b"[project]" not in body


ASSET_BYTES = {
    item.name: item.read_bytes()
    for item in files("fastapi_offline").joinpath("static").iterdir()
    if item.is_file()
}
_ODD = ["..", ".", "%2e%2e", "%2f", "%5c", "%00", "", "static", "docs", "pyproject.toml", "x.js"]
_SEGMENTS = st.sampled_from([*_ODD, *sorted(ASSET_BYTES)])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(segments=st.lists(_SEGMENTS, min_size=1, max_size=6))
def test_any_path_under_the_assets_serves_one_of_them_or_nothing(
    docs_server: DocsServer, segments: list[str]
) -> None:
    """Whatever the path, the answer is one of the packaged files or a 4xx, never a 5xx and
    never a file from elsewhere."""
    status, _, body = get_as_written(docs_server.url, "/docs/assets/" + "/".join(segments))
    assert (status == 200 and body in ASSET_BYTES.values()) or 400 <= status < 500
