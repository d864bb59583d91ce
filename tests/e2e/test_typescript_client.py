"""The TypeScript package (clients/typescript/) against the app: its OpenAPI document and types
are what generating them now makes (so they cannot drift from the routes), they type-check,
and a Node script posts a batch to a served ledger, reads its receipts (the same ones again on
a resend) and fetches an event back, whose receipt then checks out by proof from Python.

Node and the package's dependencies (``npm ci`` in clients/typescript, which .ci/run does) are
needed: under CI (``CI`` set) their absence fails these tests, elsewhere it skips them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from api.client import LedgerClient, NotYetCoveredError, Receipt, ReceiptCheck
from tests.e2e.conftest import Server
from tests.support.processes import ROOT
from tests.support.waiting import wait_until

PACKAGE = ROOT / "clients" / "typescript"
TSC = PACKAGE / "node_modules" / ".bin" / "tsc"


@pytest.fixture(scope="module")
def node() -> str:
    """The ``node`` executable, with the package's dependencies installed beside it."""
    found = shutil.which("node")
    missing = None
    if found is None:
        missing = "node is not installed (Node 20 or later)"
    elif not TSC.exists():
        missing = f"the TypeScript package's dependencies are missing: run `npm ci` in {PACKAGE}"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing + " (CI needs it: .ci/run installs it)")
        pytest.skip(missing)
    assert found is not None
    return found


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-4000:]}{done.stderr[-4000:]}"
    return done.stdout


def test_the_openapi_document_and_types_are_what_generation_makes_now(node: str) -> None:
    run([sys.executable, str(PACKAGE / "generate.py"), "--check"], ROOT)


@pytest.fixture(scope="module")
def compiled(node: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package type-checked by tsc (strict) and compiled, once, outside the package: an
    error fails here and emits nothing. Node finds openapi-fetch through a link."""
    out = tmp_path_factory.mktemp("typescript")
    (out / "node_modules").symlink_to(PACKAGE / "node_modules")
    (out / "package.json").write_text('{"type": "module"}')
    command = [node, str(TSC), "-p", str(PACKAGE), "--outDir", str(out / "dist")]
    run([*command, "--noEmitOnError"], PACKAGE)
    return out / "dist"


def test_the_package_type_checks(compiled: Path) -> None:
    assert (compiled / "roundtrip.js").exists() and (compiled / "schema.d.ts").exists()


def test_a_batch_from_node_gets_receipts_that_check_out(
    node: str, compiled: Path, server: Server
) -> None:
    env = dict(os.environ, LEDGER_URL=server.url, LEDGER_TOKEN=server.tokens["writer"])
    script = [node, str(compiled / "roundtrip.js")]
    seen: dict[str, Any] = json.loads(run(script, compiled, env))

    receipts = [Receipt(**r) for r in seen["receipts"]]
    assert [r.event_id for r in receipts] == seen["event_ids"]
    assert not any(r.duplicate for r in receipts)
    resent = [Receipt(**r) for r in seen["resent"]]
    assert all(r.duplicate for r in resent)  # the resend stored nothing
    assert [(r.seq, r.event_hash) for r in resent] == [(r.seq, r.event_hash) for r in receipts]
    consent = receipts[-1]
    event = seen["event"]
    assert (event["seq"], event["event_id"], event["event_hash"]) == (
        consent.seq,
        consent.event_id,
        consent.event_hash,
    )
    assert event["data"]["subject_ref"] == seen["subject"]

    with LedgerClient(server.url, server.tokens["writer"]) as ledger:
        [key] = ledger.verifier_keys()

        def covered() -> ReceiptCheck | None:
            try:
                return ledger.check_receipt(consent, key)
            except NotYetCoveredError:
                return None

        checked = wait_until(covered, "a checkpoint covering the Node client's receipt", 10, 0.2)
    assert checked is not None and checked.seq == consent.seq
