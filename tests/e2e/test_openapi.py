"""Schemathesis against the app's own OpenAPI on a real server: no 5xx, responses as documented.

Bounded (a few hundred generated requests per backend) so the suite stays fast; for a longer
run by hand, ``LEDGER_SCHEMATHESIS_EXAMPLES=500``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def test_generated_requests_get_documented_answers(server: Server) -> None:
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
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
