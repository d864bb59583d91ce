"""Many writers, threads and processes, on the same subjects: nothing lost, nothing doubled."""

from __future__ import annotations

import threading
from collections import defaultdict

import orjson

from ledger.application import LedgerApplication
from ledger.config import Settings, load_keyring
from ledger.integrity import check_log
from ledger.verifier.entry import parse_body
from tests import facts
from tests.support.processes import start_appender


def test_threads_and_processes_on_the_same_subjects(
    ledger: LedgerApplication, settings: Settings
) -> None:
    pol = facts.policy()
    subjects = [facts.ref("user") for _ in range(3)]
    ledger.append([pol])
    per_thread = 15
    errors: list[BaseException] = []
    receipts_by_writer: dict[str, list[int]] = defaultdict(list)

    def write(name: str) -> None:
        try:
            for n in range(per_thread):
                fact = facts.consent(subjects[n % 3], pol["version"])
                fact["event_id"] = f"{name}-{n}"
                [receipt] = ledger.append([fact])
                receipts_by_writer[name].append(receipt.seq)
        except BaseException as exc:  # reported below
            errors.append(exc)

    processes = [
        start_appender(settings, f"proc{p}", pol["version"], 10, 3, subjects) for p in range(2)
    ]
    threads = [threading.Thread(target=write, args=(f"thread{t}",)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0
        for line in out.splitlines():
            for event_id, seq, _hash in orjson.loads(line)["receipts"]:
                receipts_by_writer[event_id.rsplit("-", 2)[0]].append(seq)
    assert not errors

    expected_ids = {f"thread{t}-{n}" for t in range(8) for n in range(per_thread)}
    expected_ids |= {f"proc{p}-{b}-{i}" for p in range(2) for b in range(10) for i in range(3)}
    recorded: dict[str, int] = {}
    for record in ledger.iter_records():
        event_id = parse_body(record.body)["event_id"]
        if event_id is not None and event_id != pol["event_id"]:
            assert event_id not in recorded, f"{event_id} stored twice"
            recorded[event_id] = record.seq
    assert set(recorded) == expected_ids  # none lost, none doubled
    for name, seqs in receipts_by_writer.items():
        assert seqs == sorted(seqs), f"{name}'s events are out of its order"
    assert ledger.head() == 1 + 3 + len(expected_ids)  # policy, 3 registrations, the consents
    report = check_log(ledger.ledger, load_keyring(settings), mentions=ledger.mentions_opened)
    assert report.ok, report.problems  # gapless, and every stream runs 1, 2, 3 ...
