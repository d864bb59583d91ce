"""examples/recipient_webhook.py against a served ledger (both backends): three recipients run
it, one acknowledges through the API, one in its signed answer to the webhook, and one never
does; the ledger's signed webhooks check out, a forged or replayed one is refused, the register
tells them apart, and a second acknowledgement through the API is refused (409)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from ledger.config import Settings
from tests import facts
from tests.support.processes import ROOT, add_client, free_port
from tests.support.serve import serve
from tests.support.waiting import wait_until

EXAMPLE = ROOT / "examples" / "recipient_webhook.py"


@contextmanager
def recipient(
    workdir: Path,
    ledger: str,
    keys: Path,
    token: str,
    *,
    never_ack: bool = False,
    box: PrivateKey | None = None,
    ack_key: Path | None = None,
) -> Iterator[tuple[str, Path]]:
    """The example listening on a free port: its URL and its output file."""
    port = free_port()
    token_file = workdir / f"token-{port}"
    token_file.write_text(token)
    output = workdir / f"recipient-{port}.out"
    command = [sys.executable, str(EXAMPLE), "--port", str(port), "--ledger", ledger]
    command += ["--keys", str(keys), "--token-file", str(token_file)]
    if box is not None:
        box_file = workdir / f"box-{port}"
        box_file.write_text(base64.b64encode(bytes(box)).decode())
        command += ["--box-key-file", str(box_file)]
    if ack_key is not None:
        command += ["--ack-key-file", str(ack_key)]
    with output.open("wb") as out:
        process = subprocess.Popen(
            [*command, *(["--never-ack"] if never_ack else [])], stdout=out, stderr=out
        )
        try:
            wait_until(
                lambda: b"listening" in output.read_bytes(),
                lambda: f"the example did not start: {output.read_text(errors='replace')}",
            )
            yield f"http://127.0.0.1:{port}/", output
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_the_example_checks_the_webhook_and_acknowledges(
    settings: Settings, tmp_path: Path
) -> None:
    version, subject = facts.ref("policy"), facts.ref("user")
    acks, ignores = facts.ref("rcp-acks"), facts.ref("rcp-ignores")
    replies = facts.ref("rcp-replies")
    ack_key = tmp_path / "ack.key"
    made = subprocess.run(
        [sys.executable, str(EXAMPLE), "--new-ack-key", str(ack_key)],
        capture_output=True,
        text=True,
        check=True,
    )
    ack_public = made.stdout.strip()
    assert len(base64.b64decode(ack_public)) == 32
    assert ack_key.stat().st_mode & 0o077 == 0, "the signing key is the recipient's alone"
    tokens = {who: add_client(settings, who, "notices:ack") for who in (acks, ignores, replies)}
    writer = add_client(settings, "writer", "events:write", "history:read")
    box = PrivateKey.generate()
    public_box = base64.b64encode(bytes(box.public_key)).decode()
    headers = {"authorization": f"Bearer {writer}"}
    with serve(settings, free_port()) as server:
        keys = tmp_path / "keys.txt"
        keys.write_text(httpx.get(f"{server.url}/v1/keys").text)
        with (
            recipient(tmp_path, server.url, keys, tokens[acks], box=box) as (acking, acking_out),
            recipient(
                tmp_path,
                server.url,
                keys,
                tokens[ignores],
                never_ack=True,
            ) as (ignoring, ignoring_out),
            recipient(
                tmp_path,
                server.url,
                keys,
                tokens[replies],
                ack_key=ack_key,
            ) as (replying, replying_out),
        ):
            settings.data_dir.joinpath("notice-endpoints.json").write_text(
                json.dumps(
                    {
                        acks: {"url": acking, "box_public_key": public_box},
                        ignores: ignoring,
                        replies: {"url": replying, "ack_public_key": ack_public},
                    }
                )
            )
            facts_sent = [
                facts.policy(version),
                facts.recipient(acks),
                facts.recipient(ignores),
                facts.recipient(replies),
                facts.consent(subject, version),
                facts.disclosure(acks, [subject], version),
                facts.disclosure(ignores, [subject], version),
                facts.disclosure(replies, [subject], version),
                facts.consent(subject, version, "withdrawn"),
            ]
            answer = httpx.post(f"{server.url}/v1/events", json=facts_sent, headers=headers)
            assert answer.status_code == 201, answer.text

            def register() -> dict[str, dict[str, object]]:
                rows = httpx.get(f"{server.url}/v1/notices", headers=headers).json()["notices"]
                return {str(row["recipient_id"]): row for row in rows}

            wait_until(
                lambda: (
                    (rows := register()).get(acks, {}).get("acknowledged_seq") is not None
                    and rows.get(ignores, {}).get("notified_seq") is not None
                    and rows.get(replies, {}).get("acknowledged_seq") is not None
                ),
                "two recipients acknowledged, the third was told",
                seconds=60,
                interval=0.3,
            )
            rows = register()
            assert rows[ignores]["acknowledged_seq"] is None
            assert subject in acking_out.read_text()
            assert "acknowledged: 201" in acking_out.read_text()
            assert subject in ignoring_out.read_text()
            assert subject in replying_out.read_text()
            assert "acknowledged:" not in replying_out.read_text(), "no API call: the answer"
            # Acknowledged in the answer: the API refuses a second one; the silent recipient's
            # own acknowledgement through the API is its first.
            for who, expected in ((replies, 409), (ignores, 201)):
                row = rows[who]
                late = httpx.post(
                    f"{server.url}/v1/notices/{row['notice_id']}/ack",
                    headers={"authorization": f"Bearer {tokens[who]}"},
                )
                assert late.status_code == expected, late.text

            # An erasure: the ledger no longer holds the reference, the keyed recipient opens it.
            request_id = facts.ref("req")
            erasure = [
                facts.request(subject, request_id, kind="erasure"),
                {
                    "type": "request.fulfilled",
                    "event_id": facts.ref("evt"),
                    "occurred_at": facts.now(),
                    "request_id": request_id,
                    "subject": subject,
                },
            ]
            answer = httpx.post(f"{server.url}/v1/events", json=erasure, headers=headers)
            assert answer.status_code == 201, answer.text
            wait_until(
                lambda: (
                    f"erasure: {subject}" in acking_out.read_text()
                    and "erasure: None" in ignoring_out.read_text()
                ),
                lambda: acking_out.read_text() + ignoring_out.read_text(),
                seconds=60,
                interval=0.3,
            )

            # What the example refuses: a body signed by another key, and an old delivery.
            body = json.dumps({"type": "recipient.notice", "data": {}}).encode()
            now = int(time.time())
            forged = base64.b64encode(
                SigningKey.generate().sign(f"msg_1.{now}.".encode() + body).signature
            ).decode()
            for stamp, signature in ((now, forged), (now - 3600, forged)):
                refused = httpx.post(
                    acking,
                    content=body,
                    headers={
                        "webhook-id": "msg_1",
                        "webhook-timestamp": str(stamp),
                        "webhook-signature": f"v1a,{signature}",
                    },
                )
                assert refused.status_code == 401
