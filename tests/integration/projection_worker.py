"""A separate process that catches the consent read models up, for the kill test.

Usage: python -m tests.integration.projection_worker BATCH_SIZE (settings from CONSENT_LEDGER_*).
"""

from __future__ import annotations

import sys

from ledger.config import Settings, open_ledger
from projections.consent_state import ConsentState
from projections.disclosures import DisclosureHistory
from projections.runner import ProjectionRunner
from tests.integration.projection_fixtures import projection_database


def main(batch_size: int) -> None:
    settings = Settings.from_env()
    app = open_ledger(settings, create_keys=False)
    db = projection_database(settings)
    runner = ProjectionRunner(app, db, [ConsentState(), DisclosureHistory()], batch_size=batch_size)
    print("started", flush=True)
    runner.catch_up()
    print("done", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
