"""Export bundles: their files, and the offline check a regulator runs on one.

A bundle is a directory (or a .zip of one) holding:

``checkpoint``     the C2SP signed note of the log at size N the bundle is proven against
``keys``           the ledger's verifier keys (C2SP form), one a line
``leaves.bin``     the entries (Merkle leaves) 0 .. N-1 of the log, one after another: they
                   carry no personal data and link nothing, and let the verifier rebuild the
                   root and see which entries are tagged for the bundle's scope
``entries.jsonl``  the events of the scope, in log order: index, entry, body and signature
                   (base64), the inclusion proof against the checkpoint, the event decoded
``report.html``    the report for people, and its CSV files
``manifest.json``  format, scope, checkpoint, counts, the settings the report used, and the
                   SHA-256 of every other file

:func:`verify_bundle` checks, in this order, and stops at the first failure, naming it:
the manifest's digests; the checkpoint's signature under a key the regulator trusts (and its
consistency with a checkpoint the regulator holds already); every leaf, and the root they
make; every event (its entry is the leaf at its index, by its inclusion proof; the ledger's
signature; the body its entry commits to; the tags of the scopes its body concerns; the
decoded event says what the body says); completeness (every leaf tagged for a scope of the
bundle is there in full, and nothing else); the report (rendered again from the events, it
is byte for byte the bundle's).

Standard library and PyNaCl only: a regulator runs this without the server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ledger.verifier.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from ledger.verifier.entry import (
    EntryError,
    key_id_for,
    parse_body,
    parse_entry,
    read_entries,
    signature_is_valid,
)
from ledger.verifier.merkle import CompactRange, MerkleError, leaf_hash, verify_inclusion
from ledger.verifier.note import NoteError, Verifier, parse_verifier_key
from ledger.verifier.report import ReportError, ReportEvent, write_report
from ledger.verifier.scopes import Closure, ScopeError, scopes_of, tag, tag_key, tags_for

BUNDLE_FORMAT = "consent-ledger-bundle/1"
MANIFEST = "manifest.json"
CHECKPOINT = "checkpoint"
KEYS = "keys"
LEAVES = "leaves.bin"
ENTRIES = "entries.jsonl"
REQUIRED_FILES = (CHECKPOINT, KEYS, LEAVES, ENTRIES)
SEALED_PREFIX = "sealed:v1:"


class BundleError(ValueError):
    """The bundle fails a check; the message names the check and what failed."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check


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


# -- the entries file ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleEntry:
    index: int
    entry: bytes
    body: bytes
    signature: bytes
    key_id: str
    proof: list[bytes]
    event: dict[str, Any]


def entry_line(
    index: int,
    entry: bytes,
    body: bytes,
    signature: bytes,
    key_id: str,
    proof: Sequence[bytes],
    event: Mapping[str, Any],
) -> bytes:
    """One line of ``entries.jsonl`` (the exporter writes what the verifier reads)."""
    line = {
        "index": index,
        "entry": _b64(entry),
        "body": _b64(body),
        "signature": _b64(signature),
        "key_id": key_id,
        "proof": [_b64(h) for h in proof],
        "event": event,
    }
    return json.dumps(line, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def read_bundle_entries(file: IO[bytes]) -> Iterator[BundleEntry]:
    for number, raw in enumerate(file, start=1):
        where = f"line {number}"
        try:
            obj = json.loads(raw)
            yield BundleEntry(
                index=_int(obj["index"]),
                entry=_unb64(obj["entry"]),
                body=_unb64(obj["body"]),
                signature=_unb64(obj["signature"]),
                key_id=str(obj["key_id"]),
                proof=[_unb64(h) for h in obj["proof"]],
                event=dict(obj["event"]),
            )
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise BundleError(ENTRIES, f"{where} is not a bundle entry: {exc!r}") from None


def report_events(files: BundleFiles) -> Callable[[], Iterator[ReportEvent]]:
    """The events of ``entries.jsonl`` as the report reads them (read again at each call)."""

    def events() -> Iterator[ReportEvent]:
        with files.open(ENTRIES) as file:
            for number, raw in enumerate(file, start=1):
                try:
                    line = json.loads(raw)
                    index, shown = _int(line["index"]), line["event"].get("data", {})
                    body = parse_body(_unb64(line["body"]))
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise BundleError(ENTRIES, f"line {number}: {exc!r}") from None
                yield ReportEvent(
                    seq=index + 1,
                    type=body["type"],
                    occurred_at=body["occurred_at"],
                    recorded_at=body["recorded_at"],
                    event_id=body["event_id"],
                    backdated=body["backdated"],
                    data=body["data"],
                    shown=shown,
                )

    return events


def render_report(
    manifest: Mapping[str, Any], checkpoint_text: str, files: BundleFiles, directory: Path
) -> list[str]:
    """The report files for the bundle's events, written into ``directory``."""
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
    )


# -- verification --------------------------------------------------------------------------------


def verify_bundle(
    path: Path,
    trusted: Sequence[Verifier],
    previous: str | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> BundleReport:
    """Check a bundle; raise :class:`BundleError` naming the first failure."""
    files = BundleFiles(path)
    try:
        return _Verification(files, trusted, previous, progress).run()
    finally:
        files.close()


class _Verification:
    def __init__(
        self,
        files: BundleFiles,
        trusted: Sequence[Verifier],
        previous: str | None,
        progress: Callable[[str, int], None] | None,
    ) -> None:
        if not trusted:
            raise BundleError("keys", "no verifier key was given to trust")
        self.files = files
        self.trusted = list(trusted)
        self.previous = previous
        self.progress = progress or (lambda _what, _n: None)
        self.report = BundleReport()

    def ok(self, line: str) -> None:
        self.report.checked.append(line)

    def run(self) -> BundleReport:
        manifest = self.check_manifest()
        checkpoint, checkpoint_text = self.check_checkpoint(manifest)
        older = self.check_previous(checkpoint)
        keys = self.entry_keys(checkpoint.origin)
        closure = Closure(manifest["scope"])
        present = self.check_entries(checkpoint, keys, closure)
        names: set[str] = set()
        while new := closure.grow():
            names |= new
        required = self.check_leaves(checkpoint, older, names, closure.everything)
        self.check_complete(present, required, names, closure.everything)
        self.check_report(manifest, checkpoint_text)
        return self.report

    # -- each check ---------------------------------------------------------------------------

    def check_manifest(self) -> dict[str, Any]:
        try:
            manifest = json.loads(self.files.read_text(MANIFEST))
        except json.JSONDecodeError as exc:
            raise BundleError(MANIFEST, f"is not JSON: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
            raise BundleError(MANIFEST, f"is not a {BUNDLE_FORMAT} manifest")
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

    def check_entries(
        self, checkpoint: Checkpoint, keys: Mapping[str, bytes], closure: Closure
    ) -> set[int]:
        present: set[int] = set()
        last = -1
        with self.files.open(ENTRIES) as file:
            for item in read_bundle_entries(file):
                where = f"entry {item.index}"
                if item.index <= last:
                    raise BundleError(
                        where, f"comes after entry {last}: entries are out of order or repeated"
                    )
                last = item.index
                body = self.check_entry(item, checkpoint, keys, where)
                closure.see(body["type"], body["data"], body["occurred_at"])
                present.add(item.index)
                self.progress("entries", 1)
        self.report.entries = len(present)
        self.ok(
            f"entries: {len(present)} events, each in the log at its index (inclusion proof), "
            "signed by the ledger, its body as signed, its tags those of its scopes"
        )
        return present

    def check_entry(
        self, item: BundleEntry, checkpoint: Checkpoint, keys: Mapping[str, bytes], where: str
    ) -> dict[str, Any]:
        if not 0 <= item.index < checkpoint.size:
            raise BundleError(where, f"is outside the checkpoint's tree of size {checkpoint.size}")
        try:
            verify_inclusion(
                item.index, checkpoint.size, leaf_hash(item.entry), item.proof, checkpoint.root_hash
            )
        except MerkleError as exc:
            raise BundleError(
                where, f"its inclusion proof does not lead to the checkpoint's root ({exc})"
            ) from None
        try:
            entry = parse_entry(item.entry)
        except EntryError as exc:
            raise BundleError(where, str(exc)) from None
        if entry.seq != item.index + 1:
            raise BundleError(where, f"holds the entry of seq {entry.seq}")
        key = keys.get(entry.key_id)
        if key is None:
            raise BundleError(where, f"is signed by key {entry.key_id}, which no key file names")
        if not signature_is_valid(item.entry, item.signature, key):
            raise BundleError(where, "its signature does not verify")
        if hashlib.sha256(item.body).digest() != entry.body_sha256:
            raise BundleError(where, "its body is not the one its entry commits to")
        try:
            body = parse_body(item.body)
        except EntryError as exc:
            raise BundleError(where, str(exc)) from None
        scopes = scopes_of(body["type"], body["data"], body["occurred_at"])
        if tuple(tags_for(scopes, entry.seq)) != entry.tags:
            raise BundleError(where, "its tags are not those of the scopes its body concerns")
        problem = shown_problem(body, item.event)
        if problem is not None:
            raise BundleError(where, f"the decoded event differs from the signed body: {problem}")
        return body

    def check_leaves(
        self, checkpoint: Checkpoint, older: Checkpoint | None, names: set[str], everything: bool
    ) -> set[int]:
        keys = {name: tag_key(name) for name in sorted(names)}
        required: set[int] = set()
        tree = CompactRange()
        if older is not None and older.size == 0:
            self._check_older(tree, older)
        with self.files.open(LEAVES) as file:
            try:
                for raw in read_entries(file):
                    index = tree.size
                    try:
                        entry = parse_entry(raw)
                    except EntryError as exc:
                        raise BundleError(LEAVES, f"leaf {index}: {exc}") from None
                    if entry.seq != index + 1:
                        raise BundleError(
                            LEAVES, f"leaf {index} holds the entry of seq {entry.seq}"
                        )
                    if everything:
                        required.add(index)
                    elif entry.tags:
                        tags = set(entry.tags)
                        if any(tag(key, entry.seq) in tags for key in keys.values()):
                            required.add(index)
                    tree.append(leaf_hash(raw))
                    if older is not None and tree.size == older.size:
                        self._check_older(tree, older)
                    if tree.size % 4096 == 0:
                        self.progress("leaves", 4096)
            except EntryError as exc:
                raise BundleError(LEAVES, str(exc)) from None
        if tree.size != checkpoint.size:
            raise BundleError(LEAVES, f"holds {tree.size} leaves, the checkpoint {checkpoint.size}")
        if tree.root() != checkpoint.root_hash:
            raise BundleError(LEAVES, "the leaves do not make the checkpoint's root")
        self.ok(f"leaves: {tree.size} entries make the checkpoint's root")
        if older is not None:
            self.ok(f"consistency: the checkpoint of size {older.size} you hold is a prefix")
        return required

    def _check_older(self, tree: CompactRange, older: Checkpoint) -> None:
        if tree.root() != older.root_hash:
            raise BundleError(
                "previous checkpoint",
                f"the log's first {older.size} entries do not make its root: the ledger "
                "showed you another history",
            )

    def check_complete(
        self, present: set[int], required: set[int], names: set[str], everything: bool
    ) -> None:
        missing = sorted(required - present)
        if missing:
            raise BundleError(
                "completeness",
                f"entry {missing[0]} is tagged for the bundle's scope but is not in it "
                f"({len(missing)} missing)",
            )
        extra = sorted(present - required)
        if extra:
            raise BundleError(
                "completeness", f"entry {extra[0]} is in the bundle but not in its scope"
            )
        what = "every entry of the log" if everything else f"{len(names)} scope names"
        self.ok(f"completeness: every entry tagged for {what} is in the bundle, nothing else")

    def check_report(self, manifest: Mapping[str, Any], checkpoint_text: str) -> None:
        stated = sorted(manifest.get("report_files", []))
        with tempfile.TemporaryDirectory(prefix="consent-ledger-verify-") as scratch:
            try:
                written = render_report(manifest, checkpoint_text, self.files, Path(scratch))
            except (ReportError, EntryError, ScopeError) as exc:
                raise BundleError("report", f"cannot be rendered from the events: {exc}") from None
            if written != stated:
                raise BundleError("report", f"the bundle holds {stated}, the events make {written}")
            for name in written:
                expected = (Path(scratch) / name).read_bytes()
                with self.files.open(name) as file:
                    held = file.read()
                if held != expected:
                    raise BundleError(
                        name, f"does not follow from the events: {_first_diff(held, expected)}"
                    )
        self.ok(f"report: {', '.join(written)} follow from the events, byte for byte")


def shown_problem(body: Mapping[str, Any], event: Mapping[str, Any]) -> str | None:
    """Why the decoded event disagrees with the signed body, or None.

    Every field must be the body's, except sealed personal data, which the decoded event
    shows opened (or withheld); the proof covers its ciphertext.
    """
    for name in ("type", "occurred_at", "recorded_at", "event_id", "stream", "stream_version"):
        if event.get(name) != body.get(name):
            return f"{name} is {event.get(name)!r}, signed {body.get(name)!r}"
    return _data_problem(body["data"], event.get("data"), "data")


def _data_problem(signed: Any, shown: Any, path: str) -> str | None:
    if isinstance(signed, str) and signed.startswith(SEALED_PREFIX):
        return None if isinstance(shown, str) else f"{path} is not text"
    if isinstance(signed, dict):
        if not isinstance(shown, dict):
            return f"{path} is not an object"
        signed_keys, shown_keys = set(signed), set(shown)
        if signed_keys != shown_keys:
            return f"{path} has fields {sorted(shown_keys)}, signed {sorted(signed_keys)}"
        for key in sorted(signed_keys):
            problem = _data_problem(signed[key], shown[key], f"{path}.{key}")
            if problem is not None:
                return problem
        return None
    if isinstance(signed, list):
        if not isinstance(shown, list) or len(shown) != len(signed):
            return f"{path} is not the signed list"
        for index, (a, b) in enumerate(zip(signed, shown, strict=True)):
            problem = _data_problem(a, b, f"{path}[{index}]")
            if problem is not None:
                return problem
        return None
    return None if signed == shown else f"{path} is {shown!r}, signed {signed!r}"


def _first_diff(held: bytes, expected: bytes) -> str:
    held_lines = held.decode(errors="replace").splitlines()
    want_lines = expected.decode(errors="replace").splitlines()
    for number, (a, b) in enumerate(zip(held_lines, want_lines, strict=False), start=1):
        if a != b:
            return f"line {number} reads {a[:120]!r}, the events give {b[:120]!r}"
    return f"it has {len(held_lines)} lines, the events give {len(want_lines)}"


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _unb64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError("base64 text expected")
    return base64.b64decode(value, validate=True)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{value!r} is not an integer")
    return value
