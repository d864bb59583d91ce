"""ledger/notices.py: notice ids, the endpoints file, and Standard Webhooks signatures, each
against what a recipient or an operator may throw at them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.public import PrivateKey, SealedBox
from nacl.signing import SigningKey

from ledger.notices import (
    Endpoint,
    endpoints_from,
    notice_id,
    seal_reference,
    signatures_of,
    signed_content,
    webhook_body,
    webhook_headers,
)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.integers(1, 2**62), st.text(min_size=1), st.integers(1, 2**62), st.text(min_size=1))
def test_a_notice_id_depends_on_its_cause_and_recipient_only(
    seq: int, recipient: str, other_seq: int, other_recipient: str
) -> None:
    assert notice_id(seq, recipient) == notice_id(seq, recipient)
    if (seq, recipient) != (other_seq, other_recipient):
        assert notice_id(seq, recipient) != notice_id(other_seq, other_recipient)


@given(st.dictionaries(st.text(), JSON, max_size=6))
def test_any_endpoints_file_gives_only_well_formed_endpoints(raw: dict[str, Any]) -> None:
    for recipient, endpoint in endpoints_from(raw).items():
        assert recipient in raw
        assert endpoint.url.startswith(("http://", "https://", "amqp://", "amqps://"))
        assert endpoint.box_key is None or len(endpoint.box_key) == 32


def test_an_endpoint_is_a_url_or_a_url_with_a_32_byte_key() -> None:
    key = base64.b64encode(bytes(range(32))).decode()
    raw = {
        "plain": "https://a.example/hook",
        "keyed": {"url": "http://127.0.0.1:1/", "box_public_key": key},
        "bus": "amqp://guest:guest@127.0.0.1:5672/%2F#q",
        "short-key": {"url": "https://b.example/", "box_public_key": key[:8]},
        "not-base64": {"url": "https://b.example/", "box_public_key": "**"},
        "file": "file:///etc/passwd",
        "javascript": "javascript:alert(1)",
        "number": 7,
    }
    assert endpoints_from(raw) == {
        "plain": Endpoint("https://a.example/hook"),
        "keyed": Endpoint("http://127.0.0.1:1/", bytes(range(32))),
        "bus": Endpoint("amqp://guest:guest@127.0.0.1:5672/%2F#q"),
    }


@given(st.text(max_size=300))
def test_any_signature_header_parses_without_error(header: str) -> None:
    for signature in signatures_of(header):
        assert isinstance(signature, bytes)


def test_a_signed_webhook_checks_and_an_edited_one_does_not() -> None:
    key = SigningKey.generate()
    body = webhook_body(
        notice="n-1",
        recipient_id="rcp",
        reason="erasure",
        subject_ref=None,
        subject_ref_sealed=None,
        purposes=[],
        cause_seqs=[3],
        disclosure_seqs=[1, 2],
        due_seq=4,
        timestamp=1_700_000_000,
    )
    headers = webhook_headers("n-1", 1_700_000_000, body, lambda data: key.sign(data).signature)
    assert headers["webhook-id"] == "n-1"
    (signature,) = signatures_of("v1,ignored " + headers["webhook-signature"])
    key.verify_key.verify(signed_content("n-1", 1_700_000_000, body), signature)
    edited = body.replace(b'"erasure"', b'"consent_withdrawn"')
    with pytest.raises(BadSignatureError):
        key.verify_key.verify(signed_content("n-1", 1_700_000_000, edited), signature)
    assert json.loads(body)["data"]["ack_path"] == "/v1/notices/n-1/ack"


@given(st.text(min_size=1, max_size=256))
def test_a_sealed_reference_opens_only_with_the_recipients_key(reference: str) -> None:
    mine, theirs = PrivateKey.generate(), PrivateKey.generate()
    sealed = base64.b64decode(seal_reference(bytes(mine.public_key), reference))
    assert SealedBox(mine).decrypt(sealed).decode() == reference
    with pytest.raises(CryptoError):
        SealedBox(theirs).decrypt(sealed)
    assert seal_reference(bytes(mine.public_key), reference) != seal_reference(
        bytes(mine.public_key), reference
    ), "randomised: a guess cannot be tested against it"
