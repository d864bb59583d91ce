"""Requests signed by the emitting service: checked, and kept with the events they carry.

A client that registered an Ed25519 key (``consent-ledger clients set-key NAME KEY``) sends, with
every request that carries a body (every append), the header::

    Content-Signature: ed25519=<base64 Ed25519 signature of the exact request body bytes>

The ledger verifies it before anything else; a missing or wrong signature is 401 and nothing is
stored. Each event of the request then carries, inside its own signed entry, the client, its
key id, the SHA-256 of the body and the signature: whoever holds the body (the service) can
prove later that it sent exactly those events, and no one can deny it.

Reads (GET) are not signed, deliberately: a signature of their empty body would be the same for
every read and prove nothing (docs/api.md, Signed requests).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from api.http.problems import ProblemError
from api.token_store import Client
from ledger.verifier.entry import key_id_for

HEADER = "content-signature"


def check_request_signature(
    client: Client, header: str | None, body: bytes
) -> dict[str, Any] | None:
    """What to keep with the events, once the signature verifies; None for unsigned clients."""
    if client.public_key is None:
        return None
    if not header:
        raise ProblemError(
            401, "Signature required", "this client signs its appends: send Content-Signature"
        )
    scheme, _, encoded = header.strip().partition("=")
    if scheme.strip().lower() != "ed25519" or not encoded:
        raise ProblemError(
            401, "Bad signature", "Content-Signature reads ed25519=<base64 signature>"
        )
    try:
        signature = base64.b64decode(encoded.strip(), validate=True)
        VerifyKey(client.public_key).verify(body, signature)
    except (ValueError, BadSignatureError):
        raise ProblemError(
            401, "Bad signature", "the signature does not verify for this body"
        ) from None
    return {
        "client": client.name,
        "key_id": key_id_for(client.public_key),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "signature": base64.b64encode(signature).decode(),
    }
