"""A command that keeps losing the race for its streams is answered 503 with Retry-After.

The ledger retries a batch whose streams another writer took meanwhile; when every retry is
lost (:class:`ledger.errors.ConcurrencyError`), nothing of the batch is stored and the client
may send the very same request again: its event ids make that idempotent. That answer is a
``503`` with ``Retry-After`` (docs/api.md, Errors), not a ``422`` refusal, which would tell
the client its facts were wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from ledger.config import Settings
from tests import facts
from tests.integration.full_stack import full_stack


def test_streams_taken_at_every_retry_answer_503_retry_after_and_the_resend_is_recorded(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with full_stack(settings, tmp_path) as stack:
        policy = facts.policy()
        assert stack.record([policy]).status_code == 201
        batch = [facts.consent(facts.ref("user"), policy["version"]) for _ in range(2)]
        head = stack.ledger.head()

        # Another writer takes the batch's stream versions first, at every attempt: the
        # recorder's commit fails as a lost race does (an IntegrityError), every time.
        recorder = stack.ledger.ledger
        attempts: list[int] = []

        def lose_the_race(*args: Any, **kwargs: Any) -> Sequence[Any]:
            attempts.append(1)
            raise IntegrityError("a stream version was taken by another writer")

        monkeypatch.setattr(recorder, "append", lose_the_race)
        busy = stack.post("/v1/events", batch)
        monkeypatch.undo()

        assert busy.status_code == 503, busy.text
        assert busy.headers["retry-after"] == "1"
        assert busy.headers["content-type"].startswith("application/problem+json")
        problem = busy.json()
        assert (problem["status"], problem["title"]) == (503, "Streams contended")
        assert "sending it again is safe" in problem["detail"]
        assert len(attempts) > 1, "the ledger retried before it gave up"
        assert stack.ledger.head() == head, "nothing of the batch was stored"

        # The client does what Retry-After says: the same request, once the streams are free.
        resent = stack.post("/v1/events", batch)
        assert resent.status_code == 201, resent.text
        seqs = [r["seq"] for r in resent.json()["receipts"]]
        assert len(seqs) == 2 and head < seqs[0] < seqs[1] <= stack.ledger.head()
        again = stack.post("/v1/events", batch)
        assert again.status_code == 200
        assert [r["seq"] for r in again.json()["receipts"]] == seqs
