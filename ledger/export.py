"""Export a bundle for a regulator: one scope's events, proven complete against a checkpoint.

:func:`export_bundle` signs (or reuses) a checkpoint of size N, writes the log's N entries to
``leaves.bin`` while finding those tagged for the scope, grows the scope as
:class:`ledger.verifier.scopes.Closure` says (the exporter and the verifier apply the same
rules), writes those events to ``events.tsv`` (no proofs: ``leaves.bin`` holds every leaf up
to the checkpoint, so the verifier rebuilds the root and takes each event's entry from it),
renders the report from them, and seals the whole with ``manifest.json``. It streams: memory
holds the sequence numbers in scope and one page of records, never the log. The file formats
are those of :mod:`ledger.verifier.bundle` and :mod:`ledger.verifier.events`, which check
them.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import shutil
import tempfile
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from ledger.application import LedgerApplication
from ledger.domain import stream_id
from ledger.errors import LedgerError
from ledger.mapper import format_time
from ledger.recorder import LogRecord
from ledger.sealing import open_data
from ledger.subject_keys import KeySource, mention_aad, open_text
from ledger.verifier.bundle import (
    BUNDLE_FORMAT,
    CHECKPOINT,
    KEYS,
    LEAVES,
    MANIFEST,
    BundleFiles,
    default_jobs,
    file_digest,
    render_report,
)
from ledger.verifier.entry import parse_body, parse_entry, read_entries
from ledger.verifier.events import EVENTS, SEALED_PREFIX, event_line, opened_values
from ledger.verifier.mentions import (
    MENTION_LISTS,
    mention_paths,
    resolve_from_shown,
    without_withheld,
)
from ledger.verifier.scopes import Closure, ScopeError, tag, tag_key

PAGE = 1000
LINES_IN_POOL = 20_000
"""Events in a bundle from which, with several jobs, the lines of ``events.tsv`` are built by
worker processes (below it starting them costs more than it saves)."""
Progress = Callable[[str, int, int], None]
"""Called with a phase name, the units just done, and the phase's total."""


class ExportError(LedgerError):
    """The export cannot be made; the message says why."""


class ScopeNotFoundError(ExportError):
    """The scope names a subject, recipient or incident the log holds nothing of: a bundle of
    it would verify and say "0 events", which reads as a clean record rather than a wrong
    name."""


STAND_IN_VERSION = 8
"""The UUID version of the stand-in pseudonym an unknown or erased reference reads as
(:meth:`ledger.subject_keys.SubjectKeys.nobody`); pseudonyms are version 4."""


def missing_scope(app: LedgerApplication, scope: Mapping[str, Any]) -> str | None:
    """Why ``scope`` names nothing in the log, or None when it names something (or is a period
    or the whole log, which may be empty and say so truthfully)."""
    kind = scope.get("kind")
    if kind == "subject":
        if UUID(str(scope["subject"])).version == STAND_IN_VERSION:
            return "no subject has that reference (none was recorded, or it was erased)"
        return None
    if kind == "recipient":
        stream, what = stream_id("recipient", scope["recipient_id"]), "recipient"
        name = scope["recipient_id"]
    elif kind == "incident":
        stream, what = stream_id("incident", scope["incident_id"]), "incident"
        name = scope["incident_id"]
    else:
        return None
    if app.ledger.select_events(stream, limit=1):
        return None
    verb = "registered" if what == "recipient" else "opened"
    return f"no {what} {name!r} was {verb} in this log"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    scope: dict[str, Any]
    size: int
    """The checkpoint's tree size (the leaves in the bundle)."""
    entries: int
    files: list[str]


def export_bundle(
    app: LedgerApplication,
    scope: Mapping[str, Any],
    target: Path,
    *,
    verifier_keys: Sequence[str],
    report_settings: Mapping[str, Any],
    progress: Progress | None = None,
    jobs: int | None = None,
) -> ExportResult:
    """Write the bundle of ``scope`` to ``target`` (a new directory, or a file ending .zip).

    ``scope`` is as :class:`ledger.verifier.scopes.Closure` takes it (a subject by pseudonym).
    ``report_settings`` are the read models' settings the report is rendered with; ``jobs``
    the processes that render it (default: one per CPU; the bytes do not depend on it).
    """
    try:
        Closure(scope)
    except ScopeError as exc:
        raise ExportError(str(exc)) from None
    missing = missing_scope(app, scope)
    if missing is not None:
        raise ScopeNotFoundError(f"nothing to export: {missing}")
    if target.exists():
        raise ExportError(f"{target} exists already; choose a new path")
    tick = progress or (lambda _phase, _done, _total: None)
    as_zip = target.suffix.lower() == ".zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=target.parent) as scratch:
        directory = Path(scratch) / target.stem if as_zip else Path(scratch) / "bundle"
        directory.mkdir()
        writer = _BundleWriter(app, dict(scope), directory, tick, jobs or default_jobs())
        result = writer.write(verifier_keys, report_settings)
        if as_zip:
            _zip_directory(directory, target)
        else:
            directory.rename(target)
    return ExportResult(target, result.scope, result.size, result.entries, result.files)


class _BundleWriter:
    def __init__(
        self,
        app: LedgerApplication,
        scope: dict[str, Any],
        directory: Path,
        tick: Progress,
        jobs: int,
    ) -> None:
        self.app = app
        self.scope = scope
        self.directory = directory
        self.tick = tick
        self.jobs = jobs

    def write(
        self, verifier_keys: Sequence[str], report_settings: Mapping[str, Any]
    ) -> ExportResult:
        signed = self.app.sign_checkpoint()
        assert self.app.checkpointer is not None  # sign_checkpoint needs one
        size = signed.size
        (self.directory / CHECKPOINT).write_text(signed.note, encoding="utf-8")
        (self.directory / KEYS).write_text(
            "".join(f"{key}\n" for key in verifier_keys), encoding="utf-8"
        )
        closure = Closure(self.scope)
        in_scope = self._write_leaves(size, closure)
        while new := closure.grow():
            found = self._scan_leaves(new) - in_scope
            self._see(closure, found)
            in_scope |= found
        in_order: Sequence[int] = range(size) if closure.everything else sorted(in_scope)
        entries = self._write_entries(in_order, size)
        manifest: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "scope": self.scope,
            "closure": sorted(closure.names),
            "checkpoint": {
                "origin": self.app.checkpointer.origin,
                "size": size,
                "root": _b64(signed.root),
            },
            "counts": {"leaves": size, "entries": entries},
            "settings": dict(report_settings),
            "exported_at": format_time(datetime.now(UTC)),
        }
        files = BundleFiles(self.directory)
        report_files = render_report(manifest, signed.note, files, self.directory, jobs=self.jobs)
        manifest["report_files"] = report_files
        manifest["files"] = {}
        for name in sorted(p.name for p in self.directory.iterdir()):
            with (self.directory / name).open("rb") as file:
                digest, length = file_digest(file)
            manifest["files"][name] = {"sha256": digest, "bytes": length}
        (self.directory / MANIFEST).write_text(
            json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
        names = sorted(p.name for p in self.directory.iterdir())
        return ExportResult(self.directory, self.scope, size, entries, names)

    def _write_leaves(self, size: int, closure: Closure) -> set[int]:
        """Write every leaf up to ``size``; return the indexes tagged for the scope's names."""
        names = closure.grow()
        keys = [tag_key(name) for name in sorted(names)]
        found: set[int] = set()
        with (self.directory / LEAVES).open("wb") as out:
            seq = 1
            while seq <= size:
                page = self.app.ledger.select_entries(seq, size, PAGE)
                if not page or page[0][0] != seq:
                    raise ExportError(f"the log has no event {seq} below its checkpoint {size}")
                for number, entry in page:
                    out.write(entry)
                    if not closure.everything and _tagged(entry, number, keys):
                        found.add(number - 1)
                seq = page[-1][0] + 1
                self.tick("leaves", len(page), size)
        self._see(closure, found)
        return found

    def _scan_leaves(self, names: set[str]) -> set[int]:
        keys = [tag_key(name) for name in sorted(names)]
        found: set[int] = set()
        with (self.directory / LEAVES).open("rb") as file:
            for index, entry in enumerate(read_entries(file)):
                if _tagged(entry, index + 1, keys):
                    found.add(index)
        return found

    def _see(self, closure: Closure, indexes: set[int]) -> None:
        if closure.everything:
            return
        ordered = sorted(indexes)
        for first in range(0, len(ordered), PAGE):
            seqs = [index + 1 for index in ordered[first : first + PAGE]]
            for record in self.app.ledger.select_records_at(seqs):
                body = parse_body(record.body)
                # As the verifier will see it: the mentions the bundle opens, none withheld.
                data = without_withheld(resolve_from_shown(body["data"], self._shown(body)))
                closure.see(body["type"], data, body["occurred_at"])

    def _shown(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body's data as the bundle's ``opened`` column will show it."""
        only = self.scope["subject"] if self.scope.get("kind") == "subject" else ""
        keys = _PageKeys(self.app.subject_keys, {})
        return open_data(
            body["type"],
            body["data"],
            UUID(body["stream"]),
            body["stream_version"],
            keys,
            only=only,
        )

    def _write_entries(self, indexes: Sequence[int], size: int) -> int:
        """``events.tsv``: each event in scope with its signature, body and opened values.

        A bundle that opens no one's personal data (every scope but a subject's) has its
        lines built by ``jobs`` worker processes when it is large, a page each, written here
        in order; this process reads the pages from the log."""
        only = self.scope["subject"] if self.scope.get("kind") == "subject" else ""
        pool: ProcessPoolExecutor | None = None
        if not only and self.jobs > 1 and len(indexes) >= LINES_IN_POOL:
            pool = ProcessPoolExecutor(
                self.jobs,
                mp_context=multiprocessing.get_context("spawn"),  # not a copy of a server
                initializer=_start_line_worker,
                initargs=(self.app.subject_keys.mention_key(),),
            )
        pending: deque[Future[bytes]] = deque()
        try:
            with (self.directory / EVENTS).open("wb") as out:
                for page, records in self._pages(indexes, size):
                    if len(records) != len(page):
                        raise ExportError("an event in scope vanished from the log during export")
                    rows: list[tuple[int, bytes, bytes]] = []
                    for index, record in zip(page, records, strict=True):
                        if record.seq != index + 1:
                            raise ExportError(
                                f"the log has no event {index + 1} (read {record.seq})"
                            )
                        rows.append((index, record.signature, record.body))
                    if pool is None:
                        # Only the subject's own data is opened (none in other scopes): its
                        # key is read once a page, not once an event.
                        keys = _PageKeys(
                            self.app.subject_keys,
                            self.app.subject_keys.keys_for([only], create=False) if only else {},
                        )
                        out.write(_event_lines(rows, only, keys))
                    else:
                        pending.append(pool.submit(_lines_of_page, rows))
                        if len(pending) >= 2 * self.jobs:
                            out.write(pending.popleft().result())
                    self.tick("entries", len(page), len(indexes))
                while pending:
                    out.write(pending.popleft().result())
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        return len(indexes)

    def _pages(
        self, indexes: Sequence[int], size: int
    ) -> Iterator[tuple[Sequence[int], list[LogRecord]]]:
        """The records at ``indexes``, a page at a time: read in order when they are the whole
        log, by sequence numbers otherwise."""
        everything = len(indexes) == size
        for first in range(0, len(indexes), PAGE):
            page = indexes[first : first + PAGE]
            if everything:
                records = self.app.ledger.select_records(page[0] + 1, len(page))
            else:
                records = self.app.ledger.select_records_at([i + 1 for i in page])
            yield page, records


class _PageKeys:
    """The subject keys one page of events may open with, read once for the page."""

    def __init__(self, keys: KeySource, found: dict[str, bytes]) -> None:
        self._keys = keys
        self._found = found

    def pseudonym(self, subject_ref: str) -> str:
        return self._keys.pseudonym(subject_ref)

    def keys_for(self, pseudonyms: Iterable[str], *, create: bool) -> dict[str, bytes]:
        if create:
            raise ExportError("an export makes no subject keys")
        return {p: self._found[p] for p in pseudonyms if p in self._found}

    def seal_mention(
        self, pseudonym: str, stream: UUID | str, stream_version: int, path: str
    ) -> str:
        raise ExportError("an export seals nothing")

    def open_mention(self, sealed: str, stream: UUID | str, stream_version: int, path: str) -> str:
        return self._keys.open_mention(sealed, stream, stream_version, path)


class _MentionKeys:
    """What a worker process building lines opens with: the mention key, and no subject's
    key (its bundles open no one's personal data)."""

    def __init__(self, mention_key: bytes) -> None:
        self._mention_key = mention_key

    def pseudonym(self, subject_ref: str) -> str:
        raise ExportError("an export's worker process names no subject")

    def keys_for(self, pseudonyms: Iterable[str], *, create: bool) -> dict[str, bytes]:
        if create:
            raise ExportError("an export makes no subject keys")
        return {}

    def seal_mention(
        self, pseudonym: str, stream: UUID | str, stream_version: int, path: str
    ) -> str:
        raise ExportError("an export seals nothing")

    def open_mention(self, sealed: str, stream: UUID | str, stream_version: int, path: str) -> str:
        if not sealed.startswith(SEALED_PREFIX):
            return sealed
        return open_text(self._mention_key, sealed, mention_aad(stream, stream_version, path))


_line_keys: _MentionKeys | None = None


def _start_line_worker(mention_key: bytes) -> None:
    global _line_keys
    _line_keys = _MentionKeys(mention_key)


def _lines_of_page(rows: Sequence[tuple[int, bytes, bytes]]) -> bytes:
    """Worker: the lines of a page of events, in a bundle that opens no one's data."""
    assert _line_keys is not None, "_start_line_worker was not called"
    return _event_lines(rows, "", _line_keys)


def _event_lines(rows: Sequence[tuple[int, bytes, bytes]], only: str, keys: KeySource) -> bytes:
    """The lines of ``events.tsv`` of (index, signature, body) rows."""
    return b"".join(
        event_line(index, signature, _opened(body, only, keys), body)
        for index, signature, body in rows
    )


def _opened(raw: bytes, only: str, keys: KeySource) -> list[str]:
    """What the report shows for each sealed value of the body's data, in order.

    In a bundle that opens no one's personal data (``only`` empty), an event that mentions no
    one shows the same values as every event of its shape (its type, the kind of its owner,
    where its sealed values are): those are worked out once a shape (:data:`_SHAPES`), unless
    they hold anything of the event itself (a sealed value shown as it is)."""
    if _SEALED not in raw:
        return []
    body = parse_body(raw)
    data = body["data"]
    shape: tuple[Any, ...] | None = None
    if only == "" and not any(name in data for name in MENTION_LISTS) and not mention_paths(data):
        owner = data.get("subject")
        kind = "" if owner == "" else type(owner).__name__
        shape = (body["type"], kind, _sealed_paths(data))
        known = _SHAPES.get(shape)
        if known is not None:
            return list(known)
    shown = open_data(
        body["type"], data, UUID(body["stream"]), body["stream_version"], keys, only=only
    )
    values = opened_values(data, shown)
    if shape is not None and not any(v.startswith(SEALED_PREFIX) for v in values):
        if len(_SHAPES) >= 4096:
            _SHAPES.clear()
        _SHAPES[shape] = tuple(values)
    return values


_SHAPES: dict[tuple[Any, ...], tuple[str, ...]] = {}
"""Shape of an event that mentions no one -> what a bundle opening no one shows for its
sealed values (all of them placeholders such as ``[another subject]``)."""


def _sealed_paths(value: Any, at: tuple[Any, ...] = ()) -> tuple[tuple[Any, ...], ...]:
    """Where ``value`` holds sealed values, in the order :func:`opened_values` meets them."""
    if isinstance(value, str):
        return (at,) if value.startswith(SEALED_PREFIX) else ()
    if isinstance(value, dict):
        return tuple(p for key, item in value.items() for p in _sealed_paths(item, (*at, key)))
    if isinstance(value, list):
        return tuple(p for i, item in enumerate(value) for p in _sealed_paths(item, (*at, i)))
    return ()


_SEALED = SEALED_PREFIX.encode()


def _tagged(entry: bytes, seq: int, keys: Sequence[bytes]) -> bool:
    tags = parse_entry(entry).tags
    return bool(tags) and any(tag(key, seq) in tags for key in keys)


def _zip_directory(directory: Path, target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.iterdir()):
            archive.write(path, f"{directory.name}/{path.name}")
    partial.rename(target)
    shutil.rmtree(directory, ignore_errors=True)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()
