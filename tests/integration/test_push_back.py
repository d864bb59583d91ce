"""Past saturation the ledger pushes back: appends beyond its bound of events in flight are
refused at once (``503`` with ``Retry-After`` over HTTP), and those it admitted all commit.

A sender relies on three things here: a refusal stores nothing (sending the same batch again
is safe), every admitted batch is recorded whole, and a batch larger than the bound is still
admitted when nothing else is in flight (a legal batch is never starved). The committer is
held at its write lock so that appends are in flight for certain, with no timing involved.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ledger.application import LedgerApplication
from ledger.config import Settings, open_ledger
from ledger.errors import OverloadedError
from ledger.recorder import Admission, CommitRate, LedgerRecorder
from tests import facts
from tests.integration.full_stack import full_stack
from tests.support.waiting import wait_until


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Until ``condition`` holds (a safety bound only: nothing here is timed)."""
    wait_until(condition, f"never happened: {what}", seconds=60, interval=0.01)


@contextmanager
def committer_held(
    recorder: LedgerRecorder, monkeypatch: pytest.MonkeyPatch
) -> Iterator[threading.Event]:
    """The committer waits at its write transaction until the event yielded is set."""
    release = threading.Event()
    original = recorder._write_transaction

    def held() -> AbstractContextManager[Any]:
        release.wait(timeout=120)
        return original()

    monkeypatch.setattr(recorder, "_write_transaction", held)
    try:
        yield release
    finally:
        release.set()


def stored(ledger: LedgerApplication, batch: list[dict[str, Any]]) -> int:
    """How many of the batch's event ids the log claims."""
    return len(ledger.ledger.select_claims([fact["event_id"] for fact in batch]))


def test_appends_past_the_bound_get_503_retry_after_and_the_admitted_all_commit(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with full_stack(replace(settings, max_pending_events=4), tmp_path) as stack:
        policy = facts.policy()
        assert stack.record([policy]).status_code == 201
        version = policy["version"]

        def consents(n: int) -> list[dict[str, Any]]:
            return [facts.consent(facts.ref("user"), version) for _ in range(n)]

        admission = stack.ledger.ledger.admission
        first, second, refused = consents(3), consents(1), consents(2)
        with (
            committer_held(stack.ledger.ledger, monkeypatch) as release,
            ThreadPoolExecutor(2) as pool,
        ):
            admitted = [pool.submit(stack.post, "/v1/events", first)]
            wait_for(lambda: admission.pending == 3, "the first batch admitted")

            # 3 + 2 > 4: refused at once, while the committer still holds the others.
            busy = stack.post("/v1/events", refused)
            assert busy.status_code == 503, busy.text
            assert busy.headers["content-type"].startswith("application/problem+json")
            assert int(busy.headers["retry-after"]) >= 1
            problem = busy.json()
            assert (problem["status"], problem["title"]) == (503, "Ledger overloaded")
            assert (problem["pending_events"], problem["max_pending_events"]) == (3, 4)
            assert "sending it again" in problem["detail"]

            # 3 + 1 fits: admitted, and waits for the committer like the first.
            admitted.append(pool.submit(stack.post, "/v1/events", second))
            wait_for(lambda: admission.pending == 4, "the second batch admitted")
            release.set()
            answers: list[httpx.Response] = [future.result() for future in admitted]

        assert [answer.status_code for answer in answers] == [201, 201]
        assert (stored(stack.ledger, first), stored(stack.ledger, second)) == (3, 1)
        assert stored(stack.ledger, refused) == 0, "a refused batch stored nothing"
        assert admission.pending == 0

        # The sender does what Retry-After says: the same batch again, now admitted.
        resent = stack.post("/v1/events", refused)
        assert resent.status_code == 201, resent.text
        assert stored(stack.ledger, refused) == 2

        # A batch larger than the bound, alone in flight, is admitted whole.
        large = consents(9)
        assert stack.post("/v1/events", large).status_code == 201
        assert stored(stack.ledger, large) == 9


def test_at_the_bound_the_route_refuses_before_reading_the_body(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the bound reached, any append would be refused: the route says so before it reads
    or parses the body (a body that is not even JSON gets the 503, not a 400), and the refusal
    is counted in /metrics."""
    with full_stack(replace(settings, max_pending_events=2), tmp_path) as stack:
        policy = facts.policy()
        assert stack.record([policy]).status_code == 201
        admission = stack.ledger.ledger.admission
        held = [facts.consent(facts.ref("user"), policy["version"]) for _ in range(2)]
        with (
            committer_held(stack.ledger.ledger, monkeypatch) as release,
            ThreadPoolExecutor(1) as pool,
        ):
            pending = pool.submit(stack.post, "/v1/events", held)
            wait_for(lambda: admission.pending == 2, "the batch admitted")
            busy = stack.post("/v1/events", b"{ this is not JSON")
            assert busy.status_code == 503, busy.text
            assert busy.json()["title"] == "Ledger overloaded"
            assert "this request was not admitted" in busy.json()["detail"]
            release.set()
            assert pending.result().status_code == 201
        metrics = stack.get("/metrics", who="admin").text
        assert "ledger_appends_refused_total 1.0" in metrics
        bad = stack.post("/v1/events", b"{ this is not JSON")
        assert bad.status_code == 400  # with room again, the body is read, and refused for itself


@hypothesis_settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sizes=st.lists(st.integers(min_value=1, max_value=6), min_size=2, max_size=8))
def test_concurrent_batches_are_each_stored_whole_or_refused_with_nothing_stored(
    settings: Settings, sizes: list[int]
) -> None:
    ledger = open_ledger(replace(settings, max_pending_events=5))
    try:
        policy = facts.policy()
        ledger.append([policy])
        batches = [
            [facts.consent(facts.ref("user"), policy["version"]) for _ in range(size)]
            for size in sizes
        ]
        start = threading.Barrier(len(batches))

        def send(batch: list[dict[str, Any]]) -> bool:
            start.wait()
            try:
                ledger.append(batch)
            except OverloadedError as refusal:
                assert refusal.retry_after >= 1
                assert refusal.pending + len(batch) > refusal.limit
                return False
            return True

        with ThreadPoolExecutor(len(batches)) as pool:
            outcomes = list(pool.map(send, batches))
        for batch, admitted in zip(batches, outcomes, strict=True):
            assert stored(ledger, batch) == (len(batch) if admitted else 0)
        assert any(outcomes), "something is always admitted"
        assert ledger.ledger.admission.pending == 0
    finally:
        ledger.close()


def test_an_erasure_is_never_refused_for_load(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = open_ledger(replace(settings, max_pending_events=1))
    try:
        policy = facts.policy()
        subject = facts.ref("user")
        ledger.append([policy])
        ledger.append([facts.consent(subject, policy["version"])])
        admission = ledger.ledger.admission
        with (
            committer_held(ledger.ledger, monkeypatch) as release,
            ThreadPoolExecutor(2) as pool,
        ):
            held = pool.submit(ledger.append, [facts.consent(facts.ref("user"), policy["version"])])
            wait_for(lambda: admission.pending == 1, "an append in flight")
            with pytest.raises(OverloadedError):
                ledger.append([facts.consent(facts.ref("user"), policy["version"])])
            erasure = pool.submit(ledger.erase, subject_ref=subject)
            wait_for(lambda: admission.pending == 2, "the erasure admitted past the bound")
            release.set()
            held.result()
            assert erasure.result().seq > 0
    finally:
        ledger.close()


def test_retry_after_is_the_events_in_flight_at_the_recent_commit_rate() -> None:
    now = [100.0]
    rate = CommitRate(clock=lambda: now[0])
    admission = Admission(10, rate)
    assert admission.retry_after(3000) == 1, "no commits seen: one second"
    for _ in range(10):  # 500 events a second: 50 every 0.1 s
        started = now[0]
        now[0] += 0.1
        rate.committed(50, started)
    assert admission.retry_after(1500) == 3
    assert admission.retry_after(10) == 1
    assert admission.retry_after(10**9) == Admission.MAX_RETRY_AFTER_S
    now[0] += CommitRate.WINDOW_S + 1
    assert admission.retry_after(3000) == 1, "an idle committer's old rate says nothing"
