"""Schemathesis against the app's own OpenAPI on a real server: no 5xx, responses as documented,
and facts of every type of the catalogue recorded from what it generates.

Bounded (a few hundred generated requests per backend) so the suite stays fast; for a longer
run by hand, ``LEDGER_SCHEMATHESIS_EXAMPLES=500``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from api.http.fact_examples import CONTEXT
from ledger.events import FACT_TYPES
from tests.e2e.conftest import Server

MAX_EXAMPLES = os.environ.get("LEDGER_SCHEMATHESIS_EXAMPLES", "25")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "content_type_conformance",
        "response_schema_conformance",
        "status_code_conformance",
    ]
)


def appended_types(har: dict[str, Any]) -> dict[str, int]:
    """How many facts of each type the requests of a HAR log got a 2xx for on POST /v1/events."""
    found: dict[str, int] = {}
    for entry in har["log"]["entries"]:
        request, status = entry["request"], entry["response"]["status"]
        if request["method"] != "POST" or urlsplit(request["url"]).path != "/v1/events":
            continue
        if not 200 <= status < 300:
            continue
        body = json.loads(request["postData"]["text"])
        for fact in body if isinstance(body, list) else [body]:
            found[fact["type"]] = found.get(fact["type"], 0) + 1
    return found


def test_generated_requests_get_documented_answers(server: Server, tmp_path: Path) -> None:
    # What the catalogue's examples name (a policy version, recipients, incidents, requests): with
    # it recorded, each example is recorded whichever came before it (tests/e2e/
    # test_fact_examples.py), so the order schemathesis sends them in does not matter.
    with server.client() as client:
        assert client.post("/v1/events", json=list(CONTEXT)).status_code == 201
    har = tmp_path / "requests.har"
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{server.url}/openapi.json",
            "-H",
            f"Authorization: Bearer {server.tokens['admin']}",
            "--max-examples",
            MAX_EXAMPLES,
            "--checks",
            CHECKS,
            "--seed",
            "9457",
            "--generation-deterministic",
            # Every phase: the schema's examples, its boundary values (coverage: the edges of
            # each parameter's range and length, wrong types, missing and repeated values)
            # and random generation, NUL characters included.
            "--phases",
            "examples,coverage,fuzzing",
            "--generation-allow-x00",
            "true",
            "--mode",
            "all",
            "--report",
            "har",
            "--report-har-path",
            str(har),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # The request body's schema is the catalogue's: what was generated from it (its examples,
    # the story of api/http/fact_examples.py, and facts made from the schemas) was recorded,
    # for every type.
    recorded = appended_types(json.loads(har.read_text()))
    assert sorted(recorded) == sorted(FACT_TYPES), recorded
