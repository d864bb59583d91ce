"""A writer killed with SIGKILL mid-append loses nothing it had a receipt for."""

from __future__ import annotations

import contextlib
import signal
from collections import Counter

import orjson
import pytest

from ledger.committer import CommitterAddress, CommitterProcess
from ledger.config import Settings, load_keyring, open_ledger
from ledger.integrity import check_log
from ledger.verifier.entry import entry_hash, parse_body
from tests import facts
from tests.support.processes import start_appender

BATCH = 7


@pytest.mark.parametrize("committer", ["thread", "process"])
def test_sigkill_while_appending_loses_no_receipted_event(
    settings: Settings, committer: str
) -> None:
    """With ``process``, the writer killed is a worker that hands its appends to a committer
    process (as under ``serve``), which lives on and commits what it was handed."""
    app = open_ledger(settings)
    pol = facts.policy()
    app.append([pol])
    app.close()
    subjects = [facts.ref("user") for _ in range(20)]
    with contextlib.ExitStack() as stack:
        environment: dict[str, str] = {}
        if committer == "process":
            own = CommitterProcess(settings, CommitterAddress.new())
            own.start()
            stack.callback(own.stop)
            environment = own.environment()
        process = start_appender(
            settings, "crash", pol["version"], 100_000, BATCH, subjects, committer=environment
        )
        assert process.stdout is not None
        receipted: list[tuple[str, int, str]] = []
        for line in process.stdout:
            receipted.extend(orjson.loads(line)["receipts"])
            if len(receipted) >= 40 * BATCH:
                break
        process.send_signal(signal.SIGKILL)  # while it is appending its next batches
        process.wait()
        process.stdout.close()

    app = open_ledger(settings)
    try:
        for event_id, seq, event_hash in receipted:
            record = app.ledger.get_record(seq)
            assert record is not None, f"receipted event {seq} is gone"
            assert entry_hash(record.entry).hex() == event_hash
            assert parse_body(record.body)["event_id"] == event_id
        batches = Counter(
            body["event_id"].rsplit("-", 1)[0]
            for body in (parse_body(r.body) for r in app.iter_records())
            if (body["event_id"] or "").startswith("crash-")
        )
        partial = {batch: n for batch, n in batches.items() if n != BATCH}
        assert not partial, f"batches stored in part: {partial}"
        report = check_log(app.ledger, load_keyring(settings), mentions=app.mentions_opened)
        assert report.ok, report.problems
        # The ledger still takes appends after the crash.
        assert app.append([facts.consent(subjects[0], pol["version"])])[0].seq == report.head + 1
    finally:
        app.close()
