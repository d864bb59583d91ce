"""A recipient's side of Consent Ledger's notices (docs/notices.md): receive a webhook, check
it, act on it, acknowledge it. Standard library and PyNaCl only; copy it and replace ``act``.

    python examples/recipient_webhook.py --port 8088 --ledger https://ledger.example \\
        --keys keys.txt --token-file token.txt

``--keys``: the ledger's verifier keys, one a line, as ``GET /v1/keys`` answers them (every
key is tried, so a signature by a rotated key still checks). ``--token-file``: a token of the
client named as this recipient, with the scope ``notices:ack``. ``--box-key-file`` (optional):
your X25519 private key, base64, whose public half the ledger's operator put in
``notice-endpoints.json``; with it, the notice of an erasure names the person too.

Acknowledging in the answer instead (no token needed): ``--ack-key-file`` names your Ed25519
signing key (base64 of its 32-byte seed; ``--new-ack-key FILE`` writes one and prints its
public half, which the operator puts in ``notice-endpoints.json`` as ``ack_public_key``).
With it, a new notice is acted on *before* the answer, which is ``200`` with the body
``{"notice_id": ..., "recipient_id": ..., "type": "recipient.acknowledged"}`` and the headers
``webhook-id`` (the notice id), ``webhook-timestamp`` and ``webhook-signature`` (``v1a,`` and
the base64 Ed25519 signature of ``{id}.{timestamp}.{body}`` by your key): the ledger records
it as the acknowledgement (``via: webhook_reply``). A notice seen before is answered the same
way (the ledger sends one again when it lost the answer).

Each webhook is checked in this order, and refused with 401 at the first failure: the three
Standard Webhooks headers are there; the timestamp is within five minutes of this machine's
clock (an old delivery replayed is refused); a ``v1a`` signature of
``{id}.{timestamp}.{body}`` checks with one of the ledger's keys. A notice seen before (same
``webhook-id``: the ledger sends a notice again when it could not record that it was
delivered) is answered 204 and not acted on twice.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.public import PrivateKey, SealedBox
from nacl.signing import SigningKey, VerifyKey

TOLERANCE = 5 * 60
"""Seconds a webhook's timestamp may be away from this machine's clock."""


def public_keys(lines: str) -> list[VerifyKey]:
    """The Ed25519 keys of C2SP verifier keys (``<name>+<hash>+<base64 of 0x01 and the key>``),
    one a line."""
    keys = []
    for line in lines.splitlines():
        if line.strip():
            raw = base64.b64decode(line.strip().split("+", 2)[2])  # the key may hold a +
            if len(raw) == 33 and raw[0] == 1:
                keys.append(VerifyKey(raw[1:]))
    return keys


def check_webhook(
    headers: dict[str, str], body: bytes, keys: list[VerifyKey], now: float
) -> str | None:
    """Why the webhook is refused, or None when it is the ledger's and fresh."""
    webhook_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature")
    if not webhook_id or not stamp.isdigit() or not signatures:
        return "the webhook-id, webhook-timestamp and webhook-signature headers are required"
    if abs(now - int(stamp)) > TOLERANCE:
        return "the timestamp is too far from now"
    content = f"{webhook_id}.{stamp}.".encode() + body
    for part in signatures.split():
        version, _, encoded = part.partition(",")
        if version != "v1a":
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        for key in keys:
            try:
                key.verify(content, signature)
                return None
            except (BadSignatureError, ValueError):
                continue
    return "no signature checks with the ledger's keys"


def acknowledge(ledger: str, token: str, ack_path: str) -> int:
    """POST the acknowledgement; the ledger's status (201 recorded, 409 acknowledged before)."""
    if not ledger.startswith(("http://", "https://")):
        raise ValueError("the ledger's URL is http:// or https://")
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
        ledger.rstrip("/") + ack_path,
        method="POST",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def subject_of(notice: dict[str, Any], box: PrivateKey | None) -> str | None:
    """Whom the notice is about, by the reference your disclosures carried: ``subject_ref``,
    or, after an erasure (when the ledger no longer holds it), ``subject_ref_sealed`` opened
    with your private key (given to the ledger's operator as its public half)."""
    if notice.get("subject_ref") is not None:
        return str(notice["subject_ref"])
    sealed = notice.get("subject_ref_sealed")
    if box is None or not isinstance(sealed, str):
        return None
    try:
        return SealedBox(box).decrypt(base64.b64decode(sealed)).decode()
    except (CryptoError, ValueError):
        return None


def signed_ack(notice: dict[str, Any], key: SigningKey, now: float) -> tuple[dict[str, str], bytes]:
    """The headers and body of an answer that acknowledges ``notice``, signed by ``key``."""
    body = json.dumps(
        {
            "notice_id": notice["notice_id"],
            "recipient_id": notice["recipient_id"],
            "type": "recipient.acknowledged",
        },
        sort_keys=True,
    ).encode()
    stamp = str(int(now))
    content = f"{notice['notice_id']}.{stamp}.".encode() + body
    signature = base64.b64encode(key.sign(content).signature).decode()
    headers = {
        "content-type": "application/json",
        "webhook-id": str(notice["notice_id"]),
        "webhook-timestamp": stamp,
        "webhook-signature": f"v1a,{signature}",
    }
    return headers, body


def act(notice: dict[str, Any], subject: str | None) -> None:
    """Stop processing (withdrawal), erase (erasure) or correct (rectification) what you hold
    about ``subject``. Here: print it."""
    print(f"{notice['reason']}: {subject} (notice {notice['notice_id']})", flush=True)


def make_server(
    port: int,
    keys: list[VerifyKey],
    on_notice: Callable[[dict[str, Any]], None],
    clock: Callable[[], float] = time.time,
    ack_key: SigningKey | None = None,
) -> ThreadingHTTPServer:
    """A server on 127.0.0.1:``port`` that checks each webhook and hands each new notice to
    ``on_notice``: after answering (so that the ledger is not kept waiting), or, with
    ``ack_key``, before an answer that acknowledges it, signed (the notice was acted on)."""
    seen: set[str] = set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            refused = check_webhook(headers, body, keys, clock())
            if refused is not None:
                self.send_response(401)
                self.end_headers()
                self.wfile.write(refused.encode())
                return
            with lock:
                new = headers["webhook-id"] not in seen
                seen.add(headers["webhook-id"])
            notice = json.loads(body)["data"]
            if ack_key is None:
                self.send_response(204)
                self.end_headers()
                if new:
                    on_notice(notice)
                return
            if new:
                on_notice(notice)  # acted on before it is acknowledged
            answer, content = signed_ack(notice, ack_key, clock())
            self.send_response(200)
            for name, value in answer.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--new-ack-key", type=Path, help="write a new signing key; print its public half"
    )
    parser.add_argument("--port", type=int)
    parser.add_argument("--ledger", help="the ledger's base URL")
    parser.add_argument("--keys", type=Path, help="GET /v1/keys, saved")
    parser.add_argument("--token-file", type=Path, help="to acknowledge through the API")
    parser.add_argument(
        "--ack-key-file",
        type=Path,
        help="your Ed25519 signing key (base64 seed), to acknowledge in the answer",
    )
    parser.add_argument(
        "--box-key-file",
        type=Path,
        help="your X25519 private key (base64), to open references sealed to you",
    )
    parser.add_argument(
        "--never-ack", action="store_true", help="act, but never acknowledge (a demo of overdue)"
    )
    args = parser.parse_args()
    if args.new_ack_key is not None:
        key = SigningKey.generate()
        args.new_ack_key.touch(mode=0o600)
        args.new_ack_key.write_text(base64.b64encode(bytes(key)).decode())
        print(base64.b64encode(bytes(key.verify_key)).decode())  # ack_public_key
        return
    if args.port is None or args.keys is None:
        parser.error("--port and --keys are required")
    ack_key = None
    if args.ack_key_file is not None and not args.never_ack:
        ack_key = SigningKey(base64.b64decode(args.ack_key_file.read_text().strip()))
    elif (args.token_file is None or args.ledger is None) and not args.never_ack:
        parser.error("--ledger and --token-file (acknowledge through the API) or --ack-key-file")
    token = "" if args.token_file is None else args.token_file.read_text().strip()
    box = None
    if args.box_key_file is not None:
        box = PrivateKey(base64.b64decode(args.box_key_file.read_text().strip()))

    def on_notice(notice: dict[str, Any]) -> None:
        act(notice, subject_of(notice, box))
        if ack_key is None and not args.never_ack:
            status = acknowledge(args.ledger, token, notice["ack_path"])
            print(f"acknowledged: {status}", flush=True)

    keys = public_keys(args.keys.read_text())
    server = make_server(args.port, keys, on_notice, ack_key=ack_key)
    print(f"listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
