"""A recipient's side of Consent Ledger's notices (docs/notices.md): receive a webhook, check
it, act on it, acknowledge it. Standard library and PyNaCl only; copy it and replace ``act``.

    python examples/recipient_webhook.py --port 8088 --ledger https://ledger.example \\
        --keys keys.txt --token-file token.txt

``--keys``: the ledger's verifier keys, one a line, as ``GET /v1/keys`` answers them (every
key is tried, so a signature by a rotated key still checks). ``--token-file``: a token of the
client named as this recipient, with the scope ``notices:ack``. Each webhook is checked in
this order, and refused with 401 at the first failure: the three Standard Webhooks headers
are there; the timestamp is within five minutes of this machine's clock (an old delivery
replayed is refused); a ``v1a`` signature of ``{id}.{timestamp}.{body}`` checks with one of
the ledger's keys. A notice seen before (same ``webhook-id``: the ledger sends a notice again
when it could not record that it was delivered) is answered 204 and not acted on twice.
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

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

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


def act(notice: dict[str, Any]) -> None:
    """Stop processing (withdrawal), erase (erasure) or correct (rectification) what you hold
    about ``notice["subject_ref"]``. Here: print it."""
    print(f"{notice['reason']}: {notice['subject_ref']} (notice {notice['notice_id']})")


def make_server(
    port: int,
    keys: list[VerifyKey],
    on_notice: Callable[[dict[str, Any]], None],
    clock: Callable[[], float] = time.time,
) -> ThreadingHTTPServer:
    """A server on 127.0.0.1:``port`` that checks each webhook and hands each new notice to
    ``on_notice`` (after answering, so that the ledger is not kept waiting)."""
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
            self.send_response(204)
            self.end_headers()
            if new:
                on_notice(json.loads(body)["data"])

        def log_message(self, format: str, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ledger", required=True, help="the ledger's base URL")
    parser.add_argument("--keys", type=Path, required=True, help="GET /v1/keys, saved")
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument(
        "--never-ack", action="store_true", help="act, but never acknowledge (a demo of overdue)"
    )
    args = parser.parse_args()
    token = args.token_file.read_text().strip()

    def on_notice(notice: dict[str, Any]) -> None:
        act(notice)
        if not args.never_ack:
            print(f"acknowledged: {acknowledge(args.ledger, token, notice['ack_path'])}")

    server = make_server(args.port, public_keys(args.keys.read_text()), on_notice)
    print(f"listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
