"""A separate process that appends, for the concurrency and crash tests.

Usage: python -m tests.integration.appender PREFIX POLICY_VERSION BATCHES BATCH_SIZE SUBJECT...
Settings come from CONSENT_LEDGER_* variables. After each committed batch it prints one JSON
line: {"batch": k, "receipts": [[event_id, seq, event_hash], ...]}.
"""

from __future__ import annotations

import sys

import orjson

from ledger.config import Settings, open_ledger
from tests import facts


def main(argv: list[str]) -> None:
    prefix, version, batches, size, *subjects = argv
    app = open_ledger(Settings.from_env(), create_keys=False)
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
