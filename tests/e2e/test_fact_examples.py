"""The catalogue's examples (api/http/fact_examples.py), as the OpenAPI document shows them, are
facts the ledger records: on a real server after their context, each is 201, in any order."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from api.http.fact_examples import CONTEXT, EXAMPLES
from ledger.config import Settings, generate_keys, open_ledger
from tests.e2e.conftest import Server


def test_every_example_is_recorded_on_a_real_server(server: Server) -> None:
    with server.client() as client:
        context = client.post("/v1/events", json=list(CONTEXT))
        assert context.status_code == 201, context.text
        # Each alone, in the reverse of the catalogue's order: none needs another before it.
        for fact in reversed(EXAMPLES):
            answer = client.post("/v1/events", json=fact)
            assert answer.status_code == 201, (fact["type"], answer.text)
            assert answer.json()["event_id"] == fact["event_id"]
        # All again, one batch: each recorded before with the same content.
        again = client.post("/v1/events", json=list(EXAMPLES))
        assert again.status_code == 200, again.text
        receipts: list[dict[str, Any]] = again.json()["receipts"]
        assert [r["event_id"] for r in receipts] == [f["event_id"] for f in EXAMPLES]
        assert all(r["duplicate"] for r in receipts)


@settings(max_examples=6, deadline=None)
@given(order=st.permutations(EXAMPLES))
def test_the_examples_are_recorded_in_any_order(order: list[dict[str, Any]]) -> None:
    """On a new ledger holding the context (SQLite, in this process), each example is recorded,
    whichever came before it."""
    with tempfile.TemporaryDirectory() as directory:
        ledger_settings = Settings(data_dir=Path(directory) / "data")
        generate_keys(ledger_settings)
        ledger = open_ledger(ledger_settings)
        try:
            ledger.append(list(CONTEXT))
            for fact in order:
                (receipt,) = ledger.append([fact])
                assert (receipt.event_id, receipt.duplicate) == (fact["event_id"], False)
        finally:
            ledger.close()


def test_a_blank_purpose_reading_an_event_is_a_bad_parameter(server: Server) -> None:
    """As on every route: 400 ``required``, whether or not the event holds personal data."""
    with server.client() as client:
        client.post("/v1/events", json=list(CONTEXT)).raise_for_status()
        for seq in (1, len(CONTEXT)):
            answer = client.get(f"/v1/events/{seq}", params={"purpose": "  "})
            assert answer.status_code == 400, answer.text
            (error,) = answer.json()["errors"]
            assert (error["field"], error["rule"]) == ("query.purpose", "required")
            assert client.get(f"/v1/events/{seq}", params={"purpose": "audit"}).status_code == 200
