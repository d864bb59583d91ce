"""A separate process that appends, for the concurrency and crash tests.

Usage: python -m tests.integration.appender PREFIX POLICY_VERSION BATCHES BATCH_SIZE SUBJECT...
Settings come from CONSENT_LEDGER_* variables (with CONSENT_LEDGER_COMMITTER_ADDRESS, its appends
go to that committer process). After each committed batch it prints one JSON
line: {"batch": k, "receipts": [[event_id, seq, event_hash], ...]}.
"""

from __future__ import annotations

import sys

import orjson

from ledger.committer import CommitterAddress
from ledger.config import Settings, open_ledger
from tests import facts


def main(argv: list[str]) -> None:
    prefix, version, batches, size, *subjects = argv
    settings = Settings.from_env()
    committer = CommitterAddress.from_environment()
    app = open_ledger(settings, create_keys=False, committer=committer)
    try:
        for batch in range(int(batches)):
            items = []
            for index in range(int(size)):
                n = batch * int(size) + index
                fact = facts.consent(subjects[n % len(subjects)], version)
                fact["event_id"] = f"{prefix}-{batch}-{index}"
                items.append(fact)
            receipts = app.append(items)
            line = {
                "batch": batch,
                "receipts": [[r.event_id, r.seq, r.event_hash] for r in receipts],
            }
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
            sys.stdout.flush()
    finally:
        app.close()


if __name__ == "__main__":
    main(sys.argv[1:])
