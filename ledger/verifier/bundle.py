"""Export bundles: their files, and the offline check a regulator runs on one.

A bundle is a directory (or a .zip of one) holding:

``checkpoint``     the C2SP signed note of the log at size N the bundle is proven against
``keys``           the ledger's verifier keys (C2SP form), one a line
``leaves.bin``     the entries (Merkle leaves) 0 .. N-1 of the log, one after another: they
                   carry no personal data and link nothing, and let the verifier rebuild the
                   root and see which entries are tagged for the bundle's scope
``events.tsv``     the events of the scope, in log order: index, signature, the values the
                   report shows for sealed ones, body (:mod:`ledger.verifier.events`)
``report.html``    the report for people, and its CSV files
``manifest.json``  format, scope, checkpoint, counts, the settings the report used, and the
                   SHA-256 of every other file

:func:`verify_bundle` checks, in this order, and stops at the first failure, naming it:
the manifest's digests; the checkpoint's signature under a key the regulator trusts; every
leaf, and the root they make (and the root of a checkpoint the regulator holds already, at
its size); every event (its entry is the leaf at its index, which the root covers; the
ledger's signature; the body its entry commits to; the tags of the scopes its body concerns;
its opened values stand for its sealed ones); completeness (every leaf tagged for a scope of
the bundle is there in full, and nothing else); the report (rendered again from the events,
it is byte for byte the bundle's).

The leaves are checked in chunks and the events in ranges of bytes of ``events.tsv`` that each
worker process reads itself (:mod:`ledger.verifier.event_ranges`), by ``jobs`` worker
processes; the results are taken in log order, so the failure named is the first in the log
whatever the number of processes.

Standard library and PyNaCl only: a regulator runs this without the server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import zipfile
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from ledger.verifier.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from ledger.verifier.entry import HEADER_SIZE, TAG_SIZE, EntryError, key_id_for, parse_body
from ledger.verifier.event_ranges import LINE_BYTES, check_event_range, event_ranges
from ledger.verifier.events import (
    EVENTS,
    EventLineError,
    LazyShown,
    LeafChunk,
    LeafResult,
    check_leaf_chunk,
    report_fields,
    shown_data,
    start_worker,
)
from ledger.verifier.mentions import mention_paths, resolve_from_shown
from ledger.verifier.merkle import CompactRange
from ledger.verifier.note import NoteError, Verifier, parse_verifier_key
from ledger.verifier.report import ReportError, ReportEvent, ReportEvents, write_report
from ledger.verifier.scopes import Closure, ScopeError, tag_key

BUNDLE_FORMAT = "consent-ledger-bundle/7"
MANIFEST = "manifest.json"
CHECKPOINT = "checkpoint"
KEYS = "keys"
LEAVES = "leaves.bin"
REQUIRED_FILES = (CHECKPOINT, KEYS, LEAVES, EVENTS)
LEAF_CHUNK_LEVEL = 14
"""Leaves are checked in chunks of 2^14, each an aligned subtree of the log's tree."""
EVENT_CHUNK = 1024
"""Events are checked in ranges of ``events.tsv`` of about this many events (of
:data:`ledger.verifier.event_ranges.LINE_BYTES` bytes each)."""
T = TypeVar("T")
R = TypeVar("R")


class BundleError(ValueError):
    """The bundle fails a check; the message names the check and what failed."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:  # raised in a worker process, named in this one
        return (BundleError, (self.check, self.message))


@dataclass
class BundleReport:
    """What :func:`verify_bundle` checked, one line a check, in order."""

    checked: list[str] = field(default_factory=list)
    scope: dict[str, Any] = field(default_factory=dict)
    size: int = 0
    entries: int = 0


# -- reading a bundle (a directory or a zip) ------------------------------------------------------


class BundleFiles:
    """The files of a bundle, whether a directory or a .zip, opened by name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._prefix = ""
        if path.is_file():
            try:
                self._zip = zipfile.ZipFile(path)
            except zipfile.BadZipFile:
                raise BundleError("bundle", f"{path} is neither a directory nor a zip") from None
            tops = {name.split("/", 1)[0] for name in self._zip.namelist()}
            if MANIFEST not in tops and len(tops) == 1:
                self._prefix = tops.pop() + "/"
        elif not path.is_dir():
            raise BundleError("bundle", f"{path} does not exist")

    @property
    def is_directory(self) -> bool:
        return self._zip is None

    def names(self) -> list[str]:
        if self._zip is not None:
            return sorted(
                n[len(self._prefix) :]
                for n in self._zip.namelist()
                if n.startswith(self._prefix) and not n.endswith("/")
            )
        return sorted(p.name for p in self.path.iterdir() if p.is_file())

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        try:
            if self._zip is not None:
                with self._zip.open(self._prefix + name) as member:
                    yield member
            else:
                with (self.path / name).open("rb") as file:
                    yield file
        except (KeyError, FileNotFoundError):
            raise BundleError("bundle", f"the bundle has no file {name!r}") from None

    def read_text(self, name: str) -> str:
        with self.open(name) as file:
            try:
                return file.read().decode()
            except UnicodeDecodeError:
                raise BundleError(name, "is not UTF-8") from None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def file_digest(file: IO[bytes]) -> tuple[str, int]:
    """SHA-256 (hex) and length of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    while chunk := file.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


# -- the report's events --------------------------------------------------------------------------


class BundleEvents(ReportEvents):
    """The events of ``events.tsv`` as the report reads them (read again at each call).

    :meth:`of_types` decodes only the lines that may be of a type asked for: a line whose
    bytes hold neither the type's name nor a backslash (which a JSON escape needs) cannot be
    one. :meth:`lean` leaves the mentions of the events of the types named sealed. A bundle
    that is a directory splits into parts of ``events.tsv`` (:meth:`split`)."""

    MIN_PART_BYTES = 1 << 23
    """The smallest part :meth:`split` makes (8 MiB, about 10,000 events): below it a worker
    process costs more to start than it saves."""

    def __init__(
        self,
        files: BundleFiles,
        span: tuple[int, int, int] | None = None,
        *,
        min_part_bytes: int = MIN_PART_BYTES,
    ) -> None:
        self.files = files
        self.span = span
        """(first byte, byte after the last, number of the first line), or the whole file."""
        self.min_part_bytes = min_part_bytes

    def __call__(self) -> Iterator[ReportEvent]:
        return self._read(None, frozenset())

    def of_types(self, types: frozenset[str]) -> Iterator[ReportEvent]:
        return self._read(types, frozenset())

    def lean(self, unresolved: frozenset[str]) -> Iterator[ReportEvent]:
        return self._read(None, unresolved)

    def split(self, parts: int) -> list[ReportEvents] | None:
        if not self.files.is_directory or self.span is not None or parts < 2:
            return None
        path = self.files.path / EVENTS
        size = path.stat().st_size
        parts = min(parts, size // max(1, self.min_part_bytes))
        if parts < 2:
            return None
        spans: list[tuple[int, int, int]] = []
        start, line = 0, 1
        with path.open("rb") as file:
            for k in range(1, parts + 1):
                end = size
                if k < parts:  # the start of the line that holds byte size * k / parts
                    file.seek(max(start, size * k // parts - 1))
                    end = file.tell() + len(file.readline())
                if end <= start:
                    continue
                spans.append((start, end, line))
                file.seek(start)
                left = end - start
                while left:
                    block = file.read(min(left, 1 << 20))
                    line += block.count(b"\n")
                    left -= len(block)
                start = end
        return [BundleEvents(self.files, span) for span in spans]

    def _read(
        self, types: frozenset[str] | None, unresolved: frozenset[str]
    ) -> Iterator[ReportEvent]:
        wanted = None if types is None else frozenset(name.encode() for name in types)
        start, end, first = self.span or (0, -1, 1)
        with self.files.open(EVENTS) as file:
            if start:
                file.seek(start)
            at = start
            for number, raw in enumerate(file, start=first):
                if at == end:
                    break
                at += len(raw)
                if wanted is not None and _not_of(raw, wanted):
                    continue
                try:
                    index, opened, body_bytes = report_fields(raw)
                    body = parse_body(body_bytes)
                except (EventLineError, EntryError) as exc:
                    raise BundleError(EVENTS, f"line {number}: {exc}") from None
                kind = body["type"]
                if types is not None and kind not in types:
                    continue
                data = body["data"]
                if opened and kind not in unresolved and mention_paths(data):
                    # pseudonyms as the bundle opens them
                    data = resolve_from_shown(data, shown_data(data, opened, body_bytes))
                yield ReportEvent(
                    seq=index + 1,
                    type=kind,
                    occurred_at=body["occurred_at"],
                    recorded_at=body["recorded_at"],
                    event_id=body["event_id"],
                    backdated=body["backdated"],
                    data=data,
                    shown=LazyShown(body["data"], opened, body_bytes),
                )


_TYPE_KEY = b'"type":"'


def _not_of(raw: bytes, wanted: frozenset[bytes]) -> bool:
    """Whether a line of ``events.tsv`` cannot be of a type ``wanted``, by its bytes: its body's
    last ``"type":"`` names another (the body's keys are sorted: nothing but ``type_version``
    comes after ``type``). A line with a backslash (which a string holding a quote needs), or
    with no such key, may be: it is decoded."""
    if b"\\" in raw:
        return False
    at = raw.rfind(_TYPE_KEY)
    if at < 0:
        return False
    at += len(_TYPE_KEY)
    return raw[at : raw.find(b'"', at)] not in wanted


def report_events(files: BundleFiles) -> BundleEvents:
    """The events of ``events.tsv`` as the report reads them (read again at each call)."""
    return BundleEvents(files)


def render_report(
    manifest: Mapping[str, Any],
    checkpoint_text: str,
    files: BundleFiles,
    directory: Path,
    *,
    jobs: int = 1,
) -> list[str]:
    """The report files for the bundle's events, written into ``directory``; by ``jobs``
    processes (the same bytes whatever their number)."""
    settings = manifest.get("settings", {})
    return write_report(
        manifest["scope"],
        checkpoint_text,
        report_events(files),
        directory,
        default_minimum_age=int(settings.get("default_minimum_age", 18)),
        authority_deadline_hours=int(settings.get("authority_deadline_hours", 72)),
        request_due_days=int(settings.get("request_due_days", 15)),
        request_due_days_by_jurisdiction=settings.get("request_due_days_by_jurisdiction") or {},
        jobs=jobs,
    )


# -- verification --------------------------------------------------------------------------------


def default_jobs() -> int:
    """The verifier's worker processes unless told: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def verify_bundle(
    path: Path,
    trusted: Sequence[Verifier],
    previous: str | None = None,
    progress: Callable[[str, int], None] | None = None,
    *,
    jobs: int | None = None,
    event_chunk: int = EVENT_CHUNK,
    leaf_chunk_level: int = LEAF_CHUNK_LEVEL,
) -> BundleReport:
    """Check a bundle; raise :class:`BundleError` naming the first failure.

    ``jobs`` worker processes check the leaves and the events (default: one per CPU; 1 checks
    them in this process). The outcome, and the failure named, do not depend on ``jobs`` or on
    the chunk sizes.
    """
    files = BundleFiles(path)
    try:
        return _Verification(
            files,
            trusted,
            previous,
            progress,
            jobs or default_jobs(),
            event_chunk,
            leaf_chunk_level,
        ).run()
    finally:
        files.close()


class _Verification:
    def __init__(
        self,
        files: BundleFiles,
        trusted: Sequence[Verifier],
        previous: str | None,
        progress: Callable[[str, int], None] | None,
        jobs: int,
        event_chunk: int,
        leaf_chunk_level: int,
    ) -> None:
        if not trusted:
            raise BundleError("keys", "no verifier key was given to trust")
        if jobs < 1 or event_chunk < 1 or leaf_chunk_level < 0:
            raise ValueError("jobs and chunk sizes are positive")
        self.files = files
        self.trusted = list(trusted)
        self.previous = previous
        self.progress = progress or (lambda _what, _n: None)
        self.jobs = jobs
        self.event_chunk = event_chunk
        self.leaf_chunk_level = leaf_chunk_level
        self.pool: Executor | None = None
        self.report = BundleReport()
        self.leaf_starts: array[int] = array("q")
        """The byte offset in ``leaves.bin`` of every ``2^leaf_chunk_level``-th leaf."""
        self.plain: Path | None = None
        """A directory holding ``leaves.bin`` and ``events.tsv`` as files (a zip's copies)."""

    def ok(self, line: str) -> None:
        self.report.checked.append(line)

    def run(self) -> BundleReport:
        manifest = self.check_manifest()
        checkpoint, checkpoint_text = self.check_checkpoint(manifest)
        older = self.check_previous(checkpoint)
        keys = self.entry_keys(checkpoint.origin)
        scope = manifest["scope"]
        closure = Closure(scope)
        with tempfile.TemporaryDirectory(prefix="consent-ledger-verify-") as scratch:
            # With several jobs, the report is rendered (from events.tsv, whose digest is
            # checked) in a process of its own while the leaves and events are checked; it is
            # compared, and any failure to render it named, only after those checks passed.
            report: _Background | None = None
            if self.jobs > 1:
                # On POSIX the report is rendered in parts by worker processes of its own too
                # (they take over the CPUs the checks free); asked to stop, it stops them.
                report_jobs = self.jobs if _GRACEFUL else 1
                report = _Background(
                    _render_report_files,
                    (self.files.path, manifest, checkpoint_text, scratch, None, report_jobs),
                    starts_processes=report_jobs > 1,
                )
                self.pool = ProcessPoolExecutor(
                    self.jobs, initializer=start_worker, initargs=(keys, scope)
                )
            present = _Indexes(scratch)
            try:
                self.plain = self._plain_files(Path(scratch))
                self.check_leaves(checkpoint, older)
                self.check_entries(checkpoint, keys, scope, closure, present)
                names: set[str] = set()
                while new := closure.grow():
                    names |= new
                self.check_complete(checkpoint, present, names, closure.everything)
                if self.pool is not None:
                    self.pool.shutdown(wait=True)
                    self.pool = None
                if report is None:
                    written = _render_report_files(
                        self.files.path, manifest, checkpoint_text, scratch, self.files
                    )
                else:
                    written = report.result()
                self.check_report(manifest, written, Path(scratch))
            finally:
                present.close()
                if self.pool is not None:
                    self.pool.shutdown(wait=True, cancel_futures=True)
                    self.pool = None
                if report is not None:
                    report.stop()
        return self.report

    def _in_order(self, work: Callable[[T], R], chunks: Iterable[T]) -> Iterator[R]:
        """``work`` of each chunk, in order: in the worker processes (a few chunks ahead), or
        here when there is one job."""
        if self.pool is None:
            yield from map(work, chunks)
            return
        pending: deque[Future[R]] = deque()
        try:
            for chunk in chunks:
                pending.append(self.pool.submit(work, chunk))
                if len(pending) >= 2 * self.jobs:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()

    # -- each check ---------------------------------------------------------------------------

    def check_manifest(self) -> dict[str, Any]:
        try:
            manifest = json.loads(self.files.read_text(MANIFEST))
        except json.JSONDecodeError as exc:
            raise BundleError(MANIFEST, f"is not JSON: {exc}") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("format"), str):
            raise BundleError(MANIFEST, f"is not a {BUNDLE_FORMAT} manifest")
        if manifest["format"] != BUNDLE_FORMAT:
            raise BundleError(
                MANIFEST,
                f"the bundle's format is {manifest['format']!r}; this verifier reads "
                f"{BUNDLE_FORMAT!r} only (verify older bundles with the verifier of their time)",
            )
        listed = manifest.get("files")
        if not isinstance(listed, dict):
            raise BundleError(MANIFEST, "lists no files")
        present = set(self.files.names()) - {MANIFEST}
        for name in REQUIRED_FILES:
            if name not in listed:
                raise BundleError(MANIFEST, f"does not list {name}")
        for name in sorted(present - set(listed)):
            raise BundleError(MANIFEST, f"file {name} is in the bundle but not in the manifest")
        for name, expected in sorted(listed.items()):
            if name not in present:
                raise BundleError(MANIFEST, f"lists {name}, which is not in the bundle")
            with self.files.open(name) as file:
                digest, size = file_digest(file)
            if digest != expected.get("sha256") or size != expected.get("bytes"):
                raise BundleError(
                    name, "its SHA-256 is not the manifest's: the file was changed after export"
                )
        self.report.scope = dict(manifest.get("scope", {}))
        self.ok(f"manifest: {len(listed)} files, each matches its SHA-256")
        return manifest

    def check_checkpoint(self, manifest: Mapping[str, Any]) -> tuple[Checkpoint, str]:
        text = self.files.read_text(CHECKPOINT)
        origins = {v.name for v in self.trusted}
        problems = []
        for origin in sorted(origins):
            try:
                checkpoint = open_checkpoint(text, origin, self.trusted)
                break
            except (NoteError, CheckpointError) as exc:
                problems.append(str(exc))
        else:
            raise BundleError(CHECKPOINT, f"not signed by a trusted key ({'; '.join(problems)})")
        stated = manifest.get("checkpoint", {})
        if stated.get("size") != checkpoint.size or stated.get("root") != _b64(
            checkpoint.root_hash
        ):
            raise BundleError(MANIFEST, "its checkpoint is not the signed one")
        self.report.size = checkpoint.size
        self.ok(f"checkpoint: {checkpoint.origin}, size {checkpoint.size}, signed by a trusted key")
        return checkpoint, text

    def check_previous(self, checkpoint: Checkpoint) -> Checkpoint | None:
        if self.previous is None:
            return None
        try:
            older = open_checkpoint(self.previous, checkpoint.origin, self.trusted)
        except (NoteError, CheckpointError) as exc:
            raise BundleError("previous checkpoint", str(exc)) from None
        if older.size > checkpoint.size:
            raise BundleError(
                "previous checkpoint",
                f"size {older.size} is larger than the bundle's {checkpoint.size}: "
                "the log was cut or forked",
            )
        return older

    def entry_keys(self, origin: str) -> dict[str, bytes]:
        """Public keys by key id: the trusted ones, and those the bundle lists for the origin."""
        keys = {key_id_for(v.public_key): v.public_key for v in self.trusted}
        for number, line in enumerate(self.files.read_text(KEYS).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                listed = parse_verifier_key(line.strip())
            except NoteError as exc:
                raise BundleError(KEYS, f"line {number}: {exc}") from None
            if listed.name == origin:
                keys.setdefault(key_id_for(listed.public_key), listed.public_key)
        return keys

    def _plain_files(self, scratch: Path) -> Path:
        """Where ``leaves.bin`` and ``events.tsv`` can be read by byte ranges: the bundle's
        directory, or copies of a zip's files in ``scratch``."""
        if self.files.is_directory:
            return self.files.path
        plain = scratch / "plain"
        plain.mkdir()
        for name in (LEAVES, EVENTS):
            with self.files.open(name) as member, (plain / name).open("wb") as copy:
                shutil.copyfileobj(member, copy, 1 << 20)
        return plain

    def _leaf_chunks(
        self, prefix_at: int | None, starts: array[int] | None = None
    ) -> Iterator[LeafChunk]:
        """``leaves.bin`` cut into aligned chunks of 2^level leaves (the last may be short);
        each chunk's byte offset goes to ``starts``."""
        per_chunk = 1 << self.leaf_chunk_level
        start, data, at, offsets, ended = 0, b"", 0, [0], False
        base = 0  # the byte offset of data[0] in the file
        with self.files.open(LEAVES) as file:
            while True:
                while len(offsets) <= per_chunk and at + HEADER_SIZE <= len(data):
                    tags = int.from_bytes(data[at + HEADER_SIZE - 2 : at + HEADER_SIZE], "big")
                    if at + HEADER_SIZE + TAG_SIZE * tags > len(data):
                        break
                    at += HEADER_SIZE + TAG_SIZE * tags
                    offsets.append(at)
                if len(offsets) > per_chunk or (ended and len(offsets) > 1):
                    if starts is not None:
                        starts.append(base)
                    yield self._leaf_chunk(start, data, offsets, prefix_at)
                    start += len(offsets) - 1
                    base += at
                    data, at, offsets = data[at:], 0, [0]
                elif ended:
                    if data:
                        raise BundleError(LEAVES, "the entries end inside an entry")
                    return
                else:
                    block = file.read(1 << 22)
                    ended = not block
                    data += block

    @staticmethod
    def _leaf_chunk(
        start: int, data: bytes, offsets: list[int], prefix_at: int | None
    ) -> LeafChunk:
        count = len(offsets) - 1
        prefix = None
        if prefix_at is not None and start <= prefix_at <= start + count:
            prefix = prefix_at - start
        return LeafChunk(start, data[: offsets[-1]], tuple(offsets), prefix)

    def check_leaves(self, checkpoint: Checkpoint, older: Checkpoint | None) -> None:
        tree = CompactRange()
        prefix_at = None if older is None else older.size
        older_root: bytes | None = None
        self.leaf_starts = array("q")
        chunks = self._leaf_chunks(prefix_at, self.leaf_starts)
        results = self._in_order(_structure_of_leaves, chunks)
        for result in results:
            if result.error is not None:
                raise BundleError(LEAVES, result.error)
            if result.prefix_nodes is not None and older_root is None:
                prefix = CompactRange()
                for level, value in tree.nodes():
                    prefix.append_subtree(level, value)
                for level, value in result.prefix_nodes:
                    prefix.append_subtree(level, value)
                older_root = prefix.root()
            for level, value in result.nodes:
                tree.append_subtree(level, value)
            self.progress("leaves", result.count)
        if tree.size != checkpoint.size:
            raise BundleError(LEAVES, f"holds {tree.size} leaves, the checkpoint {checkpoint.size}")
        if tree.root() != checkpoint.root_hash:
            raise BundleError(LEAVES, "the leaves do not make the checkpoint's root")
        if older is not None:
            if older.size == 0:
                older_root = CompactRange().root()
            if older_root != older.root_hash:
                raise BundleError(
                    "previous checkpoint",
                    f"the log's first {older.size} entries do not make its root: the ledger "
                    "showed you another history",
                )
        self.ok(f"leaves: {tree.size} entries make the checkpoint's root")
        if older is not None:
            self.ok(f"consistency: the checkpoint of size {older.size} you hold is a prefix")

    def check_entries(
        self,
        checkpoint: Checkpoint,
        keys: Mapping[str, bytes],
        scope: Mapping[str, Any],
        closure: Closure,
        present: _Indexes,
    ) -> None:
        """Check every event, a range of ``events.tsv`` at a time (each worker reads its own);
        add each one's index to ``present``."""
        if self.pool is None:
            start_worker(keys, scope)
        assert self.plain is not None
        ranges = event_ranges(
            self.plain,
            checkpoint.size,
            self.leaf_chunk_level,
            self.leaf_starts,
            self.event_chunk * LINE_BYTES,
        )
        count, line, last = 0, 1, -1
        for result in self._in_order(check_event_range, ranges):
            if result.first is not None and result.first <= last:
                raise BundleError(
                    f"entry {result.first}",
                    f"comes after entry {last}: entries are out of order or repeated",
                )
            if result.error is not None:
                check, message = result.error
                if result.error_line is not None:
                    message = f"line {line + result.error_line} is not a bundle event: {message}"
                raise BundleError(check, message)
            present.extend(result.indexes)
            closure.merge(result.closure)
            count += result.lines
            line += result.lines
            if result.lines:
                last = result.last
            self.progress("entries", result.lines)
        self.report.entries = count
        self.ok(
            f"entries: {count} events, each the leaf at its index (which the root covers), "
            "signed by the ledger, its body as signed, its tags those of its scopes"
        )

    def check_complete(
        self, checkpoint: Checkpoint, present: _Indexes, names: set[str], everything: bool
    ) -> None:
        if everything:
            required: Iterable[int] = range(checkpoint.size)
        else:
            keys = tuple(tag_key(name) for name in sorted(names))
            tagged = self._in_order(_TagTest(keys), self._leaf_chunks(None))
            required = (index for result in tagged for index in result.tagged)
        # Both ascend: walk them side by side.
        missing, first_missing, first_extra = 0, -1, -1
        held = iter(present)
        have = next(held, None)
        for want in required:
            while have is not None and have < want:
                first_extra = have if first_extra < 0 else first_extra
                have = next(held, None)
            if have == want:
                have = next(held, None)
            else:
                missing += 1
                first_missing = want if first_missing < 0 else first_missing
        if have is not None and first_extra < 0:
            first_extra = have
        if missing:
            raise BundleError(
                "completeness",
                f"entry {first_missing} is tagged for the bundle's scope but is not in it "
                f"({missing} missing)",
            )
        if first_extra >= 0:
            raise BundleError(
                "completeness", f"entry {first_extra} is in the bundle but not in its scope"
            )
        what = "every entry of the log" if everything else f"{len(names)} scope names"
        self.ok(f"completeness: every entry tagged for {what} is in the bundle, nothing else")

    def check_report(self, manifest: Mapping[str, Any], written: list[str], scratch: Path) -> None:
        stated = sorted(manifest.get("report_files", []))
        if written != stated:
            raise BundleError("report", f"the bundle holds {stated}, the events make {written}")
        for name in written:
            with (scratch / name).open("rb") as mine, self.files.open(name) as held:
                problem = _stream_diff(held, mine)
            if problem is not None:
                raise BundleError(name, f"does not follow from the events: {problem}")
        self.ok(f"report: {', '.join(written)} follow from the events, byte for byte")


def _render_report_files(
    path: Path,
    manifest: Mapping[str, Any],
    checkpoint_text: str,
    scratch: str,
    files: BundleFiles | None = None,
    jobs: int = 1,
) -> list[str]:
    """The report rendered from the bundle's events into ``scratch`` by ``jobs`` processes: the
    files' names."""
    own = files is None
    files = BundleFiles(path) if files is None else files
    try:
        return render_report(manifest, checkpoint_text, files, Path(scratch), jobs=jobs)
    except (ReportError, EntryError, ScopeError, EventLineError) as exc:
        raise BundleError("report", f"cannot be rendered from the events: {exc}") from None
    finally:
        if own:
            files.close()


_GRACEFUL = os.name == "posix"
"""Whether a process can be asked to end (SIGTERM) and finish what it started first."""


class _Background:
    """A function run in a process of its own; :meth:`result` waits for what it returned (or
    raises what it raised), :meth:`stop` ends it if it still runs. With ``starts_processes``
    the process is no daemon (a daemon may start none) and ends on SIGTERM by unwinding, so
    that what it started is shut down, not left behind."""

    def __init__(
        self,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        *,
        starts_processes: bool = False,
    ) -> None:
        context = multiprocessing.get_context()
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_background_main,
            args=(send, function, args, starts_processes),
            daemon=not starts_processes,
        )
        self._process.start()
        send.close()

    def result(self) -> Any:
        try:
            failed, value = self._receive.recv()
        except EOFError:
            raise BundleError("report", "the process rendering it ended without a word") from None
        if failed:
            raise value
        return value

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._receive.close()


def _unwind(_signal: int, _frame: Any) -> None:
    raise SystemExit(1)


def _background_main(
    send: Any, function: Callable[..., Any], args: tuple[Any, ...], graceful: bool = False
) -> None:
    if graceful:  # asked to stop: unwind, so that the worker processes it started are shut down
        signal.signal(signal.SIGTERM, _unwind)
    try:
        outcome: tuple[bool, Any] = (False, function(*args))
    except BundleError as exc:
        outcome = (True, exc)
    except Exception as exc:
        outcome = (True, BundleError("report", f"cannot be rendered: {exc!r}"))
    send.send(outcome)
    send.close()


def _structure_of_leaves(chunk: LeafChunk) -> LeafResult:
    return check_leaf_chunk(chunk, None)


@dataclass(frozen=True)
class _TagTest:
    keys: tuple[bytes, ...]

    def __call__(self, chunk: LeafChunk) -> LeafResult:
        return check_leaf_chunk(chunk, self.keys)


class _Indexes:
    """The indexes of the bundle's events, in the order added, kept in a temporary file a block
    at a time (8 bytes an event would grow with the log)."""

    BLOCK = 1 << 16

    def __init__(self, directory: str) -> None:
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (closed by close)
        self._block: array[int] = array("q")

    def append(self, index: int) -> None:
        self._block.append(index)
        if len(self._block) >= self.BLOCK:
            self._block.tofile(self._file)
            self._block = array("q")

    def extend(self, indexes: bytes) -> None:
        """Indexes given as the bytes of an ``array("q")``."""
        self._block.frombytes(indexes)
        if len(self._block) >= self.BLOCK:
            self._block.tofile(self._file)
            self._block = array("q")

    def __iter__(self) -> Iterator[int]:
        self._file.seek(0)
        while True:
            block: array[int] = array("q")
            block.frombytes(self._file.read(8 * self.BLOCK))
            if not block:
                break
            yield from block
        yield from self._block

    def close(self) -> None:
        self._file.close()


def _stream_diff(held: IO[bytes], expected: IO[bytes]) -> str | None:
    """None when both streams hold the same bytes; else where they first differ, by line."""
    while True:  # compared a block at a time; by line only to name a difference
        a, b = held.read(1 << 20), expected.read(1 << 20)
        if a != b:
            break
        if not a:
            return None
    held.seek(0)
    expected.seek(0)
    number = 0
    while True:
        a, b = held.readline(), expected.readline()
        number += 1
        if a != b:
            return _line_diff(number, a, b, held, expected)
        if not a:
            return None


def _line_diff(number: int, a: bytes, b: bytes, held: IO[bytes], expected: IO[bytes]) -> str:
    if a and b:
        first = a.decode(errors="replace").rstrip("\n")
        second = b.decode(errors="replace").rstrip("\n")
        return f"line {number} reads {first[:120]!r}, the events give {second[:120]!r}"
    rest_a = (1 if a else 0) + sum(1 for _ in held)
    rest_b = (1 if b else 0) + sum(1 for _ in expected)
    return f"it has {number - 1 + rest_a} lines, the events give {number - 1 + rest_b}"


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()
