"""What a crash must leave: every receipted event, no batch in part, a log that verifies."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ledger.application import LedgerApplication
from ledger.config import Settings, load_keyring
from ledger.integrity import LogReport, check_log
from ledger.verifier.entry import entry_hash, parse_body


def check_after_crash(
    app: LedgerApplication,
    settings: Settings,
    receipted: Sequence[tuple[str, int, str]],
    prefix: str,
    batch_size: int,
) -> LogReport:
    """Assert that each receipted ``(event_id, seq, event_hash)`` is stored as receipted, that
    the batches whose event ids start with ``prefix-`` are stored whole or not at all, and that
    the log verifies; its report."""
    for event_id, seq, event_hash in receipted:
        record = app.ledger.get_record(seq)
        assert record is not None, f"receipted event {seq} is gone"
        assert entry_hash(record.entry).hex() == event_hash
        assert parse_body(record.body)["event_id"] == event_id
    batches = Counter(
        body["event_id"].rsplit("-", 1)[0]
        for body in (parse_body(r.body) for r in app.iter_records())
        if (body["event_id"] or "").startswith(f"{prefix}-")
    )
    partial = {batch: n for batch, n in batches.items() if n != batch_size}
    assert not partial, f"batches stored in part: {partial}"
    report = check_log(app.ledger, load_keyring(settings), mentions=app.mentions_opened)
    assert report.ok, report.problems
    return report
