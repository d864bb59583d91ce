"""The clients' operations without a server (api/client_calls.py is sans-I/O): whatever the
connection and the ledger answer, a write is resent as the same signed bytes, waits stay within
their cap and the last failure is the caller's; a paged read keeps its filters on every page."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Generator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from api.client_calls import RETRY_AFTER_CAP, Ask, Exchange, Item, LedgerCalls, Pause
from api.client_types import LedgerAPIError, Receipt

RECEIPT: dict[str, Any] = {
    "seq": 7,
    "leaf_index": 6,
    "event_id": "evt-1",
    "event_hash": "ab" * 32,
    "signature": "c2ln",
    "key_id": "6775c32dd645dad0",
    "recorded_at": "2026-12-02T00:00:00Z",
    "duplicate": True,
    "added_by_a_newer_server": 1,
}
SEED = bytes(range(32))

retry_after = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),
    st.sampled_from(["nan", "inf", "-inf", "-5", "1e308", "0", "2.5", "31"]),
)
outcome = st.one_of(
    st.tuples(st.just("busy"), retry_after),
    st.tuples(st.just("lost"), st.just("")),
    st.tuples(st.sampled_from(["stored", "refused"]), st.just("")),
)


def answer(kind: str, retry: str) -> httpx.Response:
    if kind == "busy":
        return httpx.Response(503, headers={"Retry-After": retry}, json={"title": "busy"})
    if kind == "stored":
        return httpx.Response(201, json=RECEIPT)
    return httpx.Response(422, json={"title": "Invalid", "detail": "no", "errors": []})


def drive(
    call: Generator[Any, Any, Any], outcomes: list[tuple[str, str]]
) -> tuple[list[Ask], list[float], Any]:
    """Run ``call`` as the clients do (an :class:`Exchange`), answering each request with the
    next outcome; the requests, the pauses, and the result (or the exception raised)."""
    asks: list[Ask] = []
    pauses: list[float] = []
    exchange = Exchange(call)
    try:
        while (step := exchange.step()) is not None:
            if isinstance(step, Pause):
                pauses.append(step.seconds)
                continue
            assert isinstance(step, Ask)
            asks.append(step)
            kind, retry = outcomes[len(asks) - 1]
            if kind == "lost":
                exchange.fail(httpx.ReadError("lost"))
            else:
                exchange.reply(answer(kind, retry))
    except (LedgerAPIError, httpx.TransportError) as exc:
        return asks, pauses, exc
    return asks, pauses, exchange.result


@given(retries=st.integers(0, 4), outcomes=st.lists(outcome, min_size=5, max_size=5))
def test_a_write_is_resent_as_the_same_signed_bytes_until_an_answer(
    retries: int, outcomes: list[tuple[str, str]]
) -> None:
    calls = LedgerCalls(signing_key=SEED, retries=retries)
    event = {"type": "policy.version_published", "event_id": "evt-1"}
    asks, pauses, result = drive(calls.append(event), outcomes)

    assert 1 <= len(asks) <= retries + 1
    assert {(a.method, a.path, a.content) for a in asks} == {
        ("POST", "/v1/events", orjson.dumps(event))
    }
    [signature] = {a.headers["Content-Signature"] for a in asks}
    raw = base64.b64decode(signature.removeprefix("ed25519="))
    SigningKey(SEED).verify_key.verify(orjson.dumps(event), raw)
    assert all(0.0 <= p <= RETRY_AFTER_CAP for p in pauses)
    assert len(pauses) == len(asks) - 1  # a wait before each resend, none after the last

    last, _ = outcomes[len(asks) - 1]
    if last == "stored":
        assert isinstance(result, Receipt)  # the field a newer server added is left out
        assert (result.seq, result.event_id, result.duplicate) == (7, "evt-1", True)
    elif last == "refused" or last == "busy":
        assert isinstance(result, LedgerAPIError)
        assert result.status == (422 if last == "refused" else 503)
    else:
        assert isinstance(result, httpx.ReadError)
    # It stops at the first answer that is not a push-back.
    assert all(kind in ("busy", "lost") for kind, _ in outcomes[: len(asks) - 1])


def test_retries_are_zero_or_more() -> None:
    with pytest.raises(ValueError, match="0 or more"):
        LedgerCalls(retries=-1)


@given(
    subject=st.none() | st.text(min_size=1, max_size=20),
    recipient=st.none() | st.text(min_size=1, max_size=20),
    violations=st.booleans(),
    pages=st.integers(1, 5),
)
def test_every_page_of_disclosures_keeps_the_filters(
    subject: str | None, recipient: str | None, violations: bool, pages: int
) -> None:
    rows = iter(range(100))
    read = LedgerCalls().iter_disclosures(
        subject=subject, recipient=recipient, violations=violations, page_size=2
    )
    asks: list[Ask] = []
    items: list[Any] = []
    exchange = Exchange(read)
    while (step := exchange.step()) is not None:
        if isinstance(step, Item):
            items.append(step.value)
            continue
        assert isinstance(step, Ask)
        asks.append(step)
        following = None if len(asks) == pages else f"c{len(asks)}"
        body = {"items": [{"seq": next(rows)}, {"seq": next(rows)}], "next_cursor": following}
        exchange.reply(httpx.Response(200, json=body))
    assert items == [{"seq": n} for n in range(2 * pages)]  # every row, in order, once
    assert len(asks) == pages
    first = dict(asks[0].params)
    assert "cursor" not in first
    assert first.get("subject") == subject and first.get("recipient") == recipient
    assert ("violations" in first) == violations
    for n, ask in enumerate(asks[1:], start=1):
        assert dict(ask.params) == {**first, "cursor": f"c{n}"}


one_line = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]))


@given(rows=st.lists(st.lists(one_line, min_size=2, max_size=2), max_size=5))
@example(rows=[["user-\u2028x", "Example\x85Cloud\x1c"]])
def test_csv_lines_are_the_rows_written_whatever_a_value_holds(rows: list[list[str]]) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["subject", "recipient_name"])
    writer.writerows(rows)
    read = LedgerCalls().disclosures_csv(subject="user-1")
    exchange = Exchange(read)
    lines: list[str] = []
    while (step := exchange.step()) is not None:
        if isinstance(step, Item):
            lines.append(step.value)
        else:
            exchange.reply(httpx.Response(200, text=out.getvalue()))
    assert len(lines) == len(rows) + 1  # one a row: U+2028 or U+0085 in a value splits nothing
    assert list(csv.reader(lines)) == [["subject", "recipient_name"], *rows]


@given(incident_id=st.text(min_size=1, max_size=30) | st.sampled_from([".", "..", "a/../b"]))
def test_an_id_is_one_path_segment_whatever_it_holds(incident_id: str) -> None:
    exchange = Exchange(LedgerCalls().incident(incident_id))
    step = exchange.step()
    assert isinstance(step, Ask)
    url = httpx.URL("http://ledger.test").join(step.path)
    assert url.path == f"/v1/incidents/{incident_id}"  # the same id back, on that route
    assert url.raw_path.count(b"/") == 3 and not url.query and not url.fragment
