"""A writer killed with SIGKILL mid-append loses nothing it had a receipt for."""

from __future__ import annotations

import contextlib
import signal

import orjson
import pytest

from ledger.committer import CommitterAddress, CommitterProcess
from ledger.config import Settings, open_ledger
from tests import facts
from tests.support.crash_checks import check_after_crash
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
            own = CommitterProcess(settings.storage(), CommitterAddress.new())
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
        report = check_after_crash(app, settings, receipted, "crash", BATCH)
        # The ledger still takes appends after the crash.
        assert app.append([facts.consent(subjects[0], pol["version"])])[0].seq == report.head + 1
    finally:
        app.close()
