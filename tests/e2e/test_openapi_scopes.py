"""The scope the OpenAPI document names on each operation (``x-required-scope``) is the one the
server checks: a token with only that scope gets past the check, a token with any other is 403,
and an operation that names none answers without a token."""

from __future__ import annotations

import re
from typing import Any

from api.token_store import GRANTED_BY_NAME, Scope
from tests.e2e.conftest import Server
from tests.support.processes import add_client

DENIED = {401, 403}


def concrete(path: str) -> str:
    """The path with each parameter given a value of its kind (the check comes first anyway)."""
    return re.sub(r"\{[^}]+\}", "1", path)


def test_each_operation_needs_the_scope_it_names(server: Server) -> None:
    with server.client(None) as anonymous:
        document: dict[str, Any] = anonymous.get("/openapi.json").json()
    tokens = {
        scope: add_client(server.settings, f"only-{scope.name.lower()}", scope.value)
        for scope in Scope
    }
    checked: dict[str, list[str]] = {"named": [], "public": []}
    wrong: list[str] = []
    with server.client(None) as http:
        for path, item in document["paths"].items():
            for method, operation in item.items():
                url = concrete(path)
                named = operation.get("x-required-scope")
                if named is None:
                    status = http.request(method, url).status_code
                    if status in DENIED:
                        wrong.append(f"{method} {path}: no scope named, yet {status}")
                    checked["public"].append(f"{method} {path}")
                    continue
                needed = Scope(named)
                for scope, token in tokens.items():
                    headers = {"Authorization": f"Bearer {token}"}
                    status = http.request(method, url, headers=headers).status_code
                    allowed = scope == needed or (
                        scope == Scope.ADMIN and needed not in GRANTED_BY_NAME
                    )
                    if allowed and status in DENIED:
                        wrong.append(f"{method} {path} with {scope}: {status}")
                    if not allowed and status != 403:
                        wrong.append(f"{method} {path} with {scope}: {status}, not 403")
                checked["named"].append(f"{method} {path}")
    assert wrong == []
    assert len(checked["named"]) >= 20
    assert "post /v1/events" in checked["named"]
    assert sorted(checked["public"]) == [
        "get /healthz",
        "get /readyz",
        "get /v1/checkpoint",
        "get /v1/keys",
    ]
