"""``ledger.notices.check_reply``: a recipient's answer acknowledges its notice only when it is
the recipient's own signature, fresh, over a body that names exactly this notice and this
recipient; any change to what was signed, and any input at all, gives None, never an error."""

from __future__ import annotations

import json
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from ledger.notices import Reply, check_reply, notice_id, reply_body, webhook_headers

KEY = SigningKey(b"\x07" * 32)
OTHER = SigningKey(b"\x09" * 32)
NOTICE = notice_id(42, "rcp-mailforge")
RECIPIENT = "rcp-mailforge"
NOW = 1_800_000_000


def _answer(
    key: SigningKey = KEY, notice: str = NOTICE, body: bytes | None = None, stamp: int = NOW
) -> tuple[dict[str, str], bytes]:
    signed = reply_body(notice, RECIPIENT) if body is None else body
    return webhook_headers(notice, stamp, signed, lambda m: key.sign(m).signature), signed


def _check(headers: dict[str, str], body: bytes, now: float = NOW) -> Reply | None:
    return check_reply(
        notice=NOTICE,
        recipient_id=RECIPIENT,
        headers=headers,
        body=body,
        ack_key=bytes(KEY.verify_key),
        now=now,
    )


def test_the_recipients_signed_answer_is_an_acknowledgement_kept_as_signed() -> None:
    headers, body = _answer()
    reply = _check(headers, body)
    assert reply is not None
    assert reply.data() == {
        "via": "webhook_reply",
        "reply_timestamp": NOW,
        "reply_signature": headers["webhook-signature"],
        "reply_body": body.decode(),
    }


def test_key_order_and_spacing_are_the_recipients() -> None:
    body = json.dumps(
        {"type": "recipient.acknowledged", "recipient_id": RECIPIENT, "notice_id": NOTICE},
        indent=2,
    ).encode()
    headers, signed = _answer(body=body)
    assert _check(headers, signed) is not None
    upper = {k.upper(): v for k, v in headers.items()}  # header names are case-insensitive
    assert _check(upper, signed) is not None


def test_what_is_not_the_recipients_fresh_signature_for_this_notice_is_none() -> None:
    other_notice = str(uuid.uuid4())
    cases = [
        _answer(key=OTHER),
        _answer(notice=other_notice),
        _answer(body=reply_body(other_notice, RECIPIENT)),
        _answer(body=reply_body(NOTICE, "rcp-adbridge")),
        _answer(body=json.dumps({"type": "recipient.acknowledged", "notice_id": NOTICE}).encode()),
        _answer(
            body=json.dumps(
                {
                    "type": "recipient.acknowledged",
                    "notice_id": NOTICE,
                    "recipient_id": RECIPIENT,
                    "subject": "user-10482",
                }
            ).encode()
        ),
        _answer(body=b"[]"),
        _answer(body=b"not json"),
        _answer(stamp=NOW - 301),
        _answer(stamp=NOW + 301),
    ]
    assert _check(*_answer(), now=float("nan")) is None
    for headers, body in cases:
        assert _check(headers, body) is None, (headers, body)
    headers, body = _answer()
    assert _check({k: v for k, v in headers.items() if k != "webhook-signature"}, body) is None
    assert _check(headers | {"webhook-signature": "v1,c2lnbmF0dXJl"}, body) is None


@settings(max_examples=200)
@given(st.data())
def test_any_change_to_a_signed_byte_breaks_it(data: st.DataObject) -> None:
    headers, body = _answer()
    index = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    assert _check(headers, changed) is None


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "x"]),
        st.text(max_size=120),
    ),
    st.binary(max_size=1500),
    st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**12), 10**12),
)
def test_no_answer_raises(headers: dict[str, str], body: bytes, now: float) -> None:
    assert _check(headers, body, now) is None
