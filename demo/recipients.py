"""The demo's two recipients of notices (docs/demo.md, docs/notices.md): webhook endpoints on
loopback, run by ``consent-ledger demo --serve`` beside the API.

* :data:`ACKNOWLEDGING` (MailForge, which receives the marketing e-mail audience) checks each
  webhook's signature with the ledger's keys and answers with a signed acknowledgement (its own
  Ed25519 key, kept in the data directory as :data:`KEY_FILE`; its public half goes into
  ``notice-endpoints.json`` as ``ack_public_key``): the ledger records ``recipient.acknowledged``
  (``via: webhook_reply``).
* :data:`SILENT` (AdBridge, which receives the personalised-ads audience) checks and takes
  every notice (``204``) and never acknowledges, so its notices go overdue
  (``CONSENT_LEDGER_NOTICE_OVERDUE_HOURS`` after they were owed) in the register, the console
  and ``/metrics``.

Both receive notices of the demo's withdrawals (of marketing e-mail and of personalised ads).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ledger.notices import reply_body, signatures_of, signed_content, webhook_headers

ACKNOWLEDGING = "rcp-mailforge"
SILENT = "rcp-adbridge"
KEY_FILE = "demo-recipient-ack.key"
"""In the data directory: the acknowledging recipient's signing key (base64 of its seed)."""
ENDPOINTS_FILE = "notice-endpoints.json"
TOLERANCE = 300
"""Seconds a webhook's timestamp may be away from this clock."""
MAX_BODY = 1 << 20


def ack_key(data_dir: Path) -> SigningKey:
    """The acknowledging recipient's key: read from :data:`KEY_FILE`, made (mode 0600) the
    first time, so that rerunning the demo keeps the key the endpoints file names."""
    path = data_dir / KEY_FILE
    if path.exists():
        return SigningKey(base64.b64decode(path.read_text().strip()))
    key = SigningKey.generate()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(base64.b64encode(bytes(key)).decode())
    return key


def ledger_keys(verifier_keys: Iterable[str]) -> list[VerifyKey]:
    """The Ed25519 keys of C2SP verifier keys (``name+hash+base64(0x01 || key)``)."""
    found = []
    for line in verifier_keys:
        raw = base64.b64decode(line.strip().split("+", 2)[2])
        if len(raw) == 33 and raw[0] == 1:
            found.append(VerifyKey(raw[1:]))
    return found


def signed_by_ledger(headers: dict[str, str], body: bytes, keys: list[VerifyKey]) -> bool:
    """A fresh webhook whose ``v1a`` signature checks with one of the ledger's keys."""
    webhook_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not webhook_id or not stamp.isdigit() or abs(time.time() - int(stamp)) > TOLERANCE:
        return False
    content = signed_content(webhook_id, int(stamp), body)
    for signature in signatures_of(headers.get("webhook-signature", "")):
        for key in keys:
            try:
                key.verify(content, signature)
                return True
            except (BadSignatureError, ValueError):
                continue
    return False


@dataclass
class Running:
    """The two receivers: their URLs, and the notice ids each took."""

    urls: dict[str, str]
    taken: dict[str, list[str]]


def _server(
    recipient: str, keys: list[VerifyKey], key: SigningKey | None, taken: list[str]
) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0") or 0)
            if length > MAX_BODY:
                self.send_response(413)
                self.end_headers()
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            if not signed_by_ledger(headers, body, keys):
                self.send_response(401)
                self.end_headers()
                return
            notice = headers["webhook-id"]
            with lock:
                taken.append(notice)
            if key is None:  # takes it, never acknowledges
                self.send_response(204)
                self.end_headers()
                return
            answer = reply_body(notice, recipient)
            signed = webhook_headers(
                notice, int(time.time()), answer, lambda m: key.sign(m).signature
            )
            self.send_response(200)
            for name, value in signed.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@contextmanager
def running(data_dir: Path, verifier_keys: Iterable[str]) -> Iterator[Running]:
    """Both receivers on free loopback ports, named in ``notice-endpoints.json`` (its other
    entries kept) until the block ends."""
    keys = ledger_keys(verifier_keys)
    key = ack_key(data_dir)
    taken: dict[str, list[str]] = {ACKNOWLEDGING: [], SILENT: []}
    servers = {
        ACKNOWLEDGING: _server(ACKNOWLEDGING, keys, key, taken[ACKNOWLEDGING]),
        SILENT: _server(SILENT, keys, None, taken[SILENT]),
    }
    threads = [
        threading.Thread(target=s.serve_forever, name=f"demo-{r}", daemon=True)
        for r, s in servers.items()
    ]
    for thread in threads:
        thread.start()
    urls = {r: f"http://127.0.0.1:{s.server_address[1]}/notices" for r, s in servers.items()}
    write_endpoints(data_dir, urls, key)
    try:
        yield Running(urls, taken)
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(timeout=5)


def write_endpoints(data_dir: Path, urls: dict[str, str], key: SigningKey) -> None:
    """Name the demo's recipients' endpoints in ``notice-endpoints.json``, keeping any other
    entry (an operator's own); written whole, then renamed over the old file."""
    path = data_dir / ENDPOINTS_FILE
    try:
        current: Any = json.loads(path.read_text())
    except (OSError, ValueError):
        current = {}
    endpoints = dict(current) if isinstance(current, dict) else {}
    endpoints[ACKNOWLEDGING] = {
        "url": urls[ACKNOWLEDGING],
        "ack_public_key": base64.b64encode(bytes(key.verify_key)).decode(),
    }
    endpoints[SILENT] = urls[SILENT]
    fresh = path.with_suffix(".json.new")
    fresh.write_text(json.dumps(endpoints, indent=2) + "\n")
    fresh.replace(path)


__all__ = [
    "ACKNOWLEDGING",
    "KEY_FILE",
    "SILENT",
    "Running",
    "ack_key",
    "running",
    "write_endpoints",
]
