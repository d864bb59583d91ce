"""Check the whole stored log: every entry's bytes, signature and place in the order.

:func:`check_log` reads every row, in storage order, and reports each problem with the
sequence number it concerns:

- the entry does not parse, or its signature does not verify under the keyring;
- the body is not the one the entry commits to, or the entry's tags are not those of the
  scopes the body concerns (a correction: those of the event it corrects);
- the row's columns (seq, stream, stream version, type, key id) disagree with the signed entry
  and body (a row moved, swapped or copied);
- a sequence number is missing (a row deleted) or present twice (a row inserted);
- a stream's versions do not run 1, 2, 3 ... in sequence order;
- an emitter's event id points at an event that is not there (the tail was cut), or at an
  event that does not carry that id; an event id stands in the log twice; an event that
  carries an emitter's event id has no claim (claims were removed, so a retry would store it
  again);
- the stored Merkle tree is not the tree of the entries;
- a signed checkpoint does not verify, does not match the entries, or is larger than the log
  (the tail was cut, claims and all);
- checkpoints were removed: the database counts every checkpoint it stores, and the largest
  size, in two counters of ``ledger_meta`` that triggers keep and that may only count up; fewer
  checkpoints stored than counted, or none as large as the largest counted, is reported.

The claims' content digests are keyed with the ledger's secret over the plaintext fact, so
they are not recomputed here; a claim is checked against the event id its event carries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from ledger.mapper import MentionsOpener
from ledger.merkle_log import TreeError
from ledger.recorder import LedgerRecorder
from ledger.signing import Keyring
from ledger.subject_keys import SEALED_PREFIX, SealError
from ledger.verifier.checkpoint import CheckpointError, open_checkpoint
from ledger.verifier.entry import EntryError, parse_body, parse_entry
from ledger.verifier.mentions import mention_paths
from ledger.verifier.merkle import CompactRange, leaf_hash
from ledger.verifier.note import NoteError, format_verifier_key, parse_verifier_key
from ledger.verifier.scopes import concerned_scopes, correction_concerns, scopes_of, tags_for


@dataclass(frozen=True)
class LogProblem:
    seq: int | None
    message: str

    def describe(self) -> str:
        return f"event {self.seq}: {self.message}" if self.seq is not None else self.message


@dataclass
class LogReport:
    checked: int = 0
    head: int = 0
    problems: list[LogProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_log(
    recorder: LedgerRecorder,
    keyring: Keyring,
    progress: Callable[[int], None] | None = None,
    origin: str | None = None,
    mentions: MentionsOpener | None = None,
) -> LogReport:
    """Check every row of the log and the tree (see docs/verification.md). ``mentions``
    opens the sealed pseudonyms of facts about many subjects
    (:meth:`ledger.application.LedgerApplication.mentions_opened`), so that their tags are
    checked too; without it, such an entry's tags are reported as unchecked."""
    report = LogReport()
    add = report.problems.append
    seen: set[int] = set()
    stream_versions: dict[str, list[tuple[int, int]]] = {}
    event_ids: dict[int, str | None] = {}
    first_seq_of: dict[str, int] = {}
    for record in recorder.select_record_rows():
        report.checked += 1
        if progress is not None:
            progress(1)
        seq = record.seq
        if seq in seen:
            add(LogProblem(seq, "sequence number stored twice (a row was inserted)"))
        seen.add(seq)
        if not keyring.verify(record.key_id, record.entry, record.signature):
            if record.key_id not in keyring.public_keys:
                add(LogProblem(seq, f"signed by unknown key {record.key_id!r}"))
            else:
                add(
                    LogProblem(
                        seq, "signature does not verify: the bytes or the signature were altered"
                    )
                )
        try:
            entry = parse_entry(record.entry)
        except EntryError as exc:
            add(LogProblem(seq, f"entry does not parse: {exc}"))
            continue
        if entry.seq != seq:
            add(
                LogProblem(
                    seq, f"row holds the signed entry of event {entry.seq} (rows moved or swapped)"
                )
            )
        if entry.key_id != record.key_id:
            add(
                LogProblem(
                    seq, f"row names key {record.key_id}, the entry was signed as {entry.key_id}"
                )
            )
        if hashlib.sha256(record.body).digest() != entry.body_sha256:
            add(LogProblem(seq, "the body is not the one its signed entry commits to"))
            continue
        try:
            body = parse_body(record.body)
        except EntryError as exc:
            add(LogProblem(seq, f"body does not parse: {exc}"))
            continue
        if (body["stream"], body["stream_version"]) != (
            record.originator_id,
            record.originator_version,
        ):
            add(LogProblem(seq, "row's stream or stream version differs from its signed body"))
        if body["type"] != record.topic:
            add(LogProblem(seq, f"row's type {record.topic!r} differs from its signed body"))
        data, problem = _opened(body, mentions)
        if problem is not None:
            add(LogProblem(seq, problem))
        else:
            scopes = scopes_of(body["type"], data, body["occurred_at"])
            if tuple(tags_for(scopes, entry.seq)) != entry.tags:
                add(
                    LogProblem(
                        seq, "the entry's tags are not those of the scopes its body concerns"
                    )
                )
        if body["type"] == "correction.recorded":
            problem = _check_concerns(recorder, body, mentions)
            if problem is not None:
                add(LogProblem(seq, problem))
        stream_versions.setdefault(body["stream"], []).append((entry.seq, body["stream_version"]))
        event_id = body.get("event_id")
        event_ids[seq] = event_id if isinstance(event_id, str) else None
        if isinstance(event_id, str):
            earlier = first_seq_of.setdefault(event_id, seq)
            if earlier != seq:
                add(
                    LogProblem(
                        seq, f"event id {event_id!r} is in the log already, as event {earlier}"
                    )
                )
    report.head = max(seen, default=0)
    for missing in sorted(set(range(1, report.head + 1)) - seen):
        add(LogProblem(missing, "missing (a row was deleted)"))
    for stream, pairs in stream_versions.items():
        versions = [version for _, version in sorted(pairs)]
        if versions != list(range(1, len(versions) + 1)):
            add(
                LogProblem(
                    None, f"stream {stream}: versions {versions[:10]} do not run 1, 2, 3 in order"
                )
            )
    claimed: set[int] = set()
    for claim in recorder.select_all_claims():
        claimed.add(claim.seq)
        if claim.seq not in seen:
            add(
                LogProblem(
                    claim.seq, f"missing, though event id {claim.event_id!r} was recorded as it"
                )
            )
        elif claim.seq in event_ids and event_ids[claim.seq] != claim.event_id:
            carried = event_ids[claim.seq]
            add(
                LogProblem(
                    claim.seq,
                    f"event id {claim.event_id!r} is claimed for this event, which carries "
                    + ("no event id" if carried is None else repr(carried)),
                )
            )
    for seq, event_id in sorted(event_ids.items()):
        if event_id is not None and seq not in claimed:
            add(
                LogProblem(
                    seq,
                    f"event id {event_id!r} has no claim (claims were removed: a retry would "
                    "record it again)",
                )
            )
    report.problems.extend(_check_tree(recorder, keyring, report.head, origin))
    report.problems.extend(_check_checkpoint_counts(recorder))
    report.problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    return report


def _check_checkpoint_counts(recorder: LedgerRecorder) -> list[LogProblem]:
    """Checkpoints the database counted when they were stored, and are not there now."""
    meta = recorder.checkpoints_table.replace("ledger_checkpoints", "ledger_meta")
    query = f"SELECT name, value FROM {meta} "  # noqa: S608 (our own table names)
    counters = dict(
        recorder._select(query + "WHERE name IN ('checkpoints_signed', 'checkpoint_largest')", ())
    )
    query = f"SELECT count(*), coalesce(max(size), 0) FROM {recorder.checkpoints_table}"  # noqa: S608
    [(stored, largest)] = recorder._select(query, ())
    problems = []
    signed = int(counters.get("checkpoints_signed", 0))
    if int(stored) < signed:
        problems.append(
            LogProblem(
                None,
                f"{signed - int(stored)} of the {signed} checkpoints signed are missing "
                "(rows were removed from ledger_checkpoints)",
            )
        )
    wanted = int(counters.get("checkpoint_largest", 0))
    if int(largest) < wanted:
        problems.append(
            LogProblem(
                None,
                f"the checkpoint of size {wanted} was signed and is missing (the largest stored "
                f"is of size {int(largest)})",
            )
        )
    return problems


def _opened(
    body: dict[str, Any], mentions: MentionsOpener | None
) -> tuple[dict[str, Any], str | None]:
    """The body's data with its mentions opened, or why they cannot be."""
    data: dict[str, Any] = body["data"]
    if not any(v.startswith(SEALED_PREFIX) for _, _, v in mention_paths(data)):
        return data, None
    if mentions is None:
        return data, "its mentions are sealed: verify-log needs the ledger's keys to check its tags"
    try:
        return mentions(data, UUID(body["stream"]), body["stream_version"]), None
    except SealError:
        return data, "a sealed mention does not open: it was altered or moved"


def _check_concerns(
    recorder: LedgerRecorder, body: dict[str, Any], mentions: MentionsOpener | None = None
) -> str | None:
    """A correction must concern the scopes of the event it corrects, as recorded and as
    corrected (so exports carry it)."""
    wanted = body["data"].get("corrects_event_id")
    claim = recorder.select_claims([wanted]).get(wanted) if isinstance(wanted, str) else None
    record = None if claim is None else recorder.get_record(claim.seq)
    if record is None:
        return f"corrects event {wanted!r}, which is not in the log"
    try:
        corrected = parse_body(record.body)
    except EntryError:
        return None  # reported at the corrected event's own row
    fields = body["data"].get("corrected_fields")
    corrected_data, problem = _opened(corrected, mentions)
    if problem is not None:
        return None  # reported at the corrected event's own row
    try:
        scopes = correction_concerns(
            corrected["type"],
            corrected_data,
            corrected["occurred_at"],
            fields if isinstance(fields, dict) else {},
        )
    except ValueError:
        return "the correction's corrected occurred_at is not a time"
    own, problem = _opened(body, mentions)
    if problem is not None:
        return None  # reported at the correction's own row
    if concerned_scopes(own) != scopes:
        return "the correction does not concern the scopes of the event it corrects"
    return None


def _check_tree(
    recorder: LedgerRecorder, keyring: Keyring, head: int, origin: str | None
) -> list[LogProblem]:
    """Recompute the tree from the entries, in order; compare it and every checkpoint."""
    problems: list[LogProblem] = []
    checkpoints = recorder.checkpoints()
    verifiers = (
        [
            parse_verifier_key(format_verifier_key(origin, key))
            for key in keyring.public_keys.values()
        ]
        if origin is not None
        else []
    )
    for checkpoint in checkpoints:
        if origin is None:
            continue
        try:
            opened = open_checkpoint(checkpoint.note, origin, verifiers)
        except (NoteError, CheckpointError) as exc:
            problems.append(LogProblem(None, f"checkpoint of size {checkpoint.size}: {exc}"))
            continue
        if (opened.size, opened.root_hash) != (checkpoint.size, checkpoint.root):
            problems.append(
                LogProblem(None, f"checkpoint of size {checkpoint.size}: its note says otherwise")
            )
    if checkpoints and checkpoints[-1].size > head:
        problems.append(
            LogProblem(
                None,
                f"a checkpoint was signed at size {checkpoints[-1].size} but the log ends at "
                f"{head}: events were removed from its end",
            )
        )
    expected = {c.size: c.root for c in checkpoints}
    tree = CompactRange()
    if 0 in expected and expected[0] != tree.root():
        problems.append(LogProblem(None, "checkpoint of size 0 has a wrong root"))
    start = 1
    while True:
        records = recorder.select_records(start, 1000)
        created: list[tuple[int, int, bytes]] = []
        for record in records:
            if record.seq != tree.size + 1:
                return problems  # a gap, reported above; the tree cannot be recomputed past it
            created.extend(tree.append(leaf_hash(record.entry)))
            wanted = expected.get(tree.size)
            if wanted is not None and wanted != tree.root():
                problems.append(
                    LogProblem(
                        tree.size, f"the checkpoint of size {tree.size} does not match the entries"
                    )
                )
        stored_nodes = recorder.select_nodes([(level, index) for level, index, _ in created])
        for level, index, value in created:
            if stored_nodes.get((level, index)) != value:
                first, last = (index << level) + 1, (index + 1) << level
                span = f"event {first}" if level == 0 else f"events {first}..{last}"
                problems.append(
                    LogProblem(
                        first if level == 0 else None,
                        f"the stored Merkle node at level {level}, index {index} ({span}) "
                        "does not match the entries",
                    )
                )
        if len(records) < 1000:
            break
        start = records[-1].seq + 1
    try:
        stored = recorder.tree().root(tree.size)
    except TreeError as exc:
        problems.append(LogProblem(None, f"the stored Merkle tree is incomplete: {exc}"))
        return problems
    if stored != tree.root():
        problems.append(LogProblem(None, "the stored Merkle tree does not match the entries"))
    return problems
