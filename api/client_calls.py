"""Every operation of the ledger's API as the requests it makes and how it reads the answers,
without any I/O of its own (sans-I/O), so the sync and the async client run the same code.

An operation is a generator. It yields the steps it needs, :class:`Ask` (send this request,
give me the response; a connection failure is thrown back into the generator), :class:`Pause`
(wait before resending) and :class:`Download` (stream the body into a file), and returns its
result; a paged read also yields :class:`Item` s, one per row, as it goes. ``LedgerClient``
runs the steps with ``httpx.Client`` and ``time.sleep``, ``AsyncLedgerClient`` with
``httpx.AsyncClient`` and ``asyncio.sleep`` (api/client.py); what is asked, retried, followed
and checked is written once, here.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
import orjson
from nacl.signing import SigningKey

from api.client_types import (
    ConsistencyProof,
    Decision,
    InclusionProof,
    LedgerAPIError,
    LogEntry,
    NotYetCoveredError,
    Receipt,
    ReceiptCheck,
    ReceiptCheckError,
    from_body,
)
from ledger.verifier.bundle import MANIFEST, BundleError, BundleFiles
from ledger.verifier.checkpoint import Checkpoint, CheckpointError, parse_checkpoint
from ledger.verifier.entry import (
    EntryError,
    entry_hash,
    key_id_for,
    parse_entry,
    signature_is_valid,
)
from ledger.verifier.merkle import MerkleError, leaf_hash, verify_inclusion
from ledger.verifier.note import NoteError, Verifier, open_note, parse_verifier_key
from ledger.verifier.receipt import ReceiptReport, check_consistency, check_receipt

T = TypeVar("T")

RETRY_AFTER_CAP = 30.0
"""The longest a client waits before resending, whatever ``Retry-After`` says."""


@dataclass(frozen=True)
class Ask:
    """Send this request (relative to the client's base URL, with its token); the response,
    body read. A connection failure (``httpx.TransportError``) is raised at the ``yield``."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def arguments(self) -> dict[str, Any]:
        """The arguments of ``httpx.Client.request`` (and of ``httpx.AsyncClient``'s)."""
        return {
            "method": self.method,
            "url": self.path,
            "params": self.params,
            "content": self.content,
            "headers": self.headers,
        }


@dataclass(frozen=True)
class Download:
    """Send this GET and stream a successful body into ``into`` (an error's body is read
    instead); the response."""

    path: str
    into: Path


@dataclass(frozen=True)
class Pause:
    """Wait ``seconds`` before going on."""

    seconds: float


@dataclass(frozen=True)
class Item(Generic[T]):
    """One row of a paged read, handed to the caller as it comes."""

    value: T


Step: TypeAlias = Ask | Download | Pause
Call: TypeAlias = Generator[Step, Any, T]
"""An operation with one result: its steps, then it returns the result."""
Pages: TypeAlias = Generator[Step | Item[T], Any, None]
"""A paged read: its steps and its rows, page after page, until the last."""


class Exchange(Generic[T]):
    """One run of an operation: it hands out the operation's steps (and rows) one at a time
    and takes back each step's reply, or the connection failure to raise inside it; once the
    operation ends, ``step()`` is None and ``result`` is what it returned. The clients drive
    it, each with its own I/O."""

    def __init__(self, operation: Generator[Step | Item[Any], Any, T]) -> None:
        self._operation = operation
        self._reply: Any = None
        self._failure: httpx.TransportError | None = None
        self.result: T

    def step(self) -> Step | Item[Any] | None:
        reply, failure = self._reply, self._failure
        self._reply, self._failure = None, None
        try:
            if failure is not None:
                return self._operation.throw(failure)
            return self._operation.send(reply)
        except StopIteration as done:
            self.result = done.value
            return None

    def reply(self, value: Any) -> None:
        self._reply = value

    def fail(self, failure: httpx.TransportError) -> None:
        self._failure = failure


def checked(response: httpx.Response) -> httpx.Response:
    """The response, unless it is an error: then :class:`LedgerAPIError` with its problem."""
    if response.status_code < 400:
        return response
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        problem = {"title": response.reason_phrase, "detail": response.text}
    raise LedgerAPIError(response.status_code, problem)


def trusted_keys(verifier_keys: str | Sequence[str]) -> list[Verifier]:
    """The verifier keys (``<origin>+<hash>+<key>``) a receipt check trusts; at least one."""
    texts = [verifier_keys] if isinstance(verifier_keys, str) else list(verifier_keys)
    if not texts:
        raise ReceiptCheckError("no verifier key was given to trust")
    try:
        return [parse_verifier_key(text) for text in texts]
    except NoteError as exc:
        raise ReceiptCheckError(f"a verifier key does not parse: {exc}") from None


class LedgerCalls:
    """The operations. Write paths sign their exact body with ``signing_key`` and resend the
    same bytes up to ``retries`` times on push-back (``503``) or a lost connection."""

    def __init__(self, *, signing_key: bytes | None = None, retries: int = 3) -> None:
        if retries < 0:
            raise ValueError(
                f"retries is how many times a write is resent: 0 or more, not {retries}"
            )
        self._signer = None if signing_key is None else SigningKey(signing_key)
        self._retries = retries

    # -- asking ----------------------------------------------------------------------------

    @staticmethod
    def _get(path: str, **params: Any) -> Call[httpx.Response]:
        response: httpx.Response = yield Ask("GET", path, _params(**params))
        return checked(response)

    def _json(self, path: str, **params: Any) -> Call[Any]:
        response = yield from self._get(path, **params)
        return response.json()

    def _write(self, path: str, payload: Any) -> Call[httpx.Response]:
        """POST ``payload`` (signed when there is a key), resending the same bytes when the
        ledger pushes back or the connection fails; the ledger's event ids make a resend of
        something already committed answer its original receipts."""
        body = orjson.dumps(payload)
        headers = {"Content-Type": "application/json"}
        if self._signer is not None:
            signature = self._signer.sign(body).signature
            headers["Content-Signature"] = "ed25519=" + base64.b64encode(signature).decode()
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            try:
                response: httpx.Response = yield Ask("POST", path, content=body, headers=headers)
            except httpx.TransportError:
                if last:
                    raise
                yield Pause(min(RETRY_AFTER_CAP, 0.2 * 2**attempt))
                continue
            if response.status_code == 503 and not last:
                yield Pause(_retry_after(response, attempt))
                continue
            return checked(response)
        raise AssertionError("unreachable: the last attempt returns or raises")

    # -- writes ----------------------------------------------------------------------------

    def append(self, event: Mapping[str, Any]) -> Call[Receipt]:
        """Record one event; its receipt once committed (the original one on a retry)."""
        response = yield from self._write("/v1/events", dict(event))
        return from_body(Receipt, response.json())

    def append_batch(self, events: Sequence[Mapping[str, Any]]) -> Call[list[Receipt]]:
        """Record a batch, all or nothing; a receipt per event, in order."""
        response = yield from self._write("/v1/events", [dict(e) for e in events])
        return [from_body(Receipt, r) for r in response.json()["receipts"]]

    def record_incident(self, facts: Sequence[Mapping[str, Any]]) -> Call[list[Receipt]]:
        """Record incident facts (``incident.*`` only; scope ``incidents:manage``), all or
        nothing; a receipt per fact, in order."""
        response = yield from self._write("/v1/incidents", [dict(f) for f in facts])
        return [from_body(Receipt, r) for r in response.json()["receipts"]]

    def start_export(
        self, scope: Mapping[str, Any], purpose: str, *, answers_request: str | None = None
    ) -> Call[dict[str, Any]]:
        """Start a bundle of ``scope`` (``{"kind": "subject", "subject_ref": ...}``,
        ``recipient``/``recipient_id``, ``incident``/``incident_id``, ``period`` with ``from``
        and ``to``, or ``all``; scope ``exports:create``) made for ``purpose``; the job (its
        ``id`` for ``export_status``). Not resent on failure: each call is a new job."""
        payload: dict[str, Any] = {"scope": dict(scope), "purpose": purpose}
        if answers_request is not None:
            payload["answers_request"] = answers_request
        headers = {"Content-Type": "application/json"}
        response = yield Ask("POST", "/v1/exports", content=orjson.dumps(payload), headers=headers)
        body: dict[str, Any] = checked(response).json()
        return body

    # -- reads -----------------------------------------------------------------------------

    def event(self, seq: int, *, purpose: str | None = None) -> Call[dict[str, Any]]:
        """The event at ``seq``, its personal data opened (the read is recorded, with
        ``purpose`` when given)."""
        body: dict[str, Any] = yield from self._json(f"/v1/events/{_segment(seq)}", purpose=purpose)
        return body

    def decision(
        self,
        subject: str,
        purpose: str,
        *,
        at: datetime | None = None,
        wait_for: int | None = None,
    ) -> Call[Decision]:
        """May ``purpose`` be used for ``subject`` now (or at ``at``)? ``wait_for`` a receipt's
        seq answers only once the read model has it (read your writes)."""
        body = yield from self._json(
            "/v1/consent/decision", subject=subject, purpose=purpose, at=at, wait_for=wait_for
        )
        return from_body(Decision, body)

    def consent_state(
        self, subject: str, *, at: datetime | None = None, wait_for: int | None = None
    ) -> Call[dict[str, Any]]:
        """The subject's consent per purpose, now or at ``at``."""
        body: dict[str, Any] = yield from self._json(
            "/v1/consent/state", subject=subject, at=at, wait_for=wait_for
        )
        return body

    def consent_receipt(self, seq: int, purpose: str | None = None) -> Call[dict[str, Any]]:
        """The consent receipt of the fact at ``seq`` (scope ``receipts:read``; the read is
        recorded with ``purpose``): keep it as JSON, check it with
        ``check_consent_receipt`` or ``python -m ledger.verifier receipt FILE --key KEY``."""
        body: dict[str, Any] = yield from self._json(
            f"/v1/consent/receipts/{_segment(seq)}", purpose=purpose
        )
        return body

    def history(self, subject: str) -> Call[dict[str, Any]]:
        """Everything the log holds about a subject (their access request, GDPR 15): their
        events in log order, each with its signature; other people stay sealed."""
        body: dict[str, Any] = yield from self._json("/v1/subjects/history", subject=subject)
        return body

    def requests(
        self, *, overdue: bool = False, subject: str | None = None
    ) -> Call[list[dict[str, Any]]]:
        """The data-subject request register, due dates computed now."""
        body: list[dict[str, Any]] = yield from self._json(
            "/v1/requests", subject=subject, overdue="true" if overdue else None
        )
        return body

    def incidents(self) -> Call[list[dict[str, Any]]]:
        """The incident register, deadlines computed now."""
        body: list[dict[str, Any]] = yield from self._json("/v1/incidents")
        return body

    def incident(self, incident_id: str) -> Call[dict[str, Any]]:
        """One incident, its deadlines and subjects (``subjects_by_rule`` when its assessment
        selects them by a rule)."""
        body: dict[str, Any] = yield from self._json(f"/v1/incidents/{_segment(incident_id)}")
        return body

    def notices(
        self, *, overdue: bool | None = None, recipient_id: str | None = None
    ) -> Call[dict[str, Any]]:
        """The register of notices to recipients (GDPR 19): ``notices`` owed, delivered or
        acknowledged (only the ``overdue`` ones, or only those not, when given; one
        recipient's), and ``overdue_after_hours``."""
        flag = None if overdue is None else str(overdue).lower()
        body: dict[str, Any] = yield from self._json(
            "/v1/notices", overdue=flag, recipient_id=recipient_id
        )
        return body

    def acknowledge_notice(self, notice_id: str) -> Call[dict[str, Any]]:
        """Acknowledge a notice owed to this client's recipient (a client named for the
        recipient, scope ``notices:ack``): ``acknowledged_seq`` and the ledger's ``receipt``.
        A second acknowledgement is a ``409``."""
        response: httpx.Response = yield Ask("POST", f"/v1/notices/{_segment(notice_id)}/ack")
        body: dict[str, Any] = checked(response).json()
        return body

    def export_status(self, job_id: str) -> Call[dict[str, Any]]:
        """An export job: ``state`` (queued, running, done, failed, expired), ``progress``,
        and once done its ``manifest_sha256``, ``bytes`` and ``expires_at``."""
        body: dict[str, Any] = yield from self._json(f"/v1/exports/{_segment(job_id)}")
        return body

    def download_export(self, job_id: str, path: Path) -> Call[str]:
        """Stream a done export's bundle to ``path`` (a new file; written beside it and moved
        into place once whole); the SHA-256 of its ``manifest.json``, checked against the
        digest the ledger recorded (the ``ETag``). Verify it with ``python -m ledger.verifier
        PATH --key KEY``."""
        if path.exists():
            raise FileExistsError(f"{path} exists already; choose a new path")
        partial = path.with_name(path.name + ".partial")
        try:
            response: httpx.Response = yield Download(
                f"/v1/exports/{_segment(job_id)}/bundle", partial
            )
        except httpx.TransportError:
            partial.unlink(missing_ok=True)  # cut off: nothing half-written stays
            raise
        checked(response)
        expected = response.headers.get("etag", "").strip('"')
        try:
            with BundleFiles(partial).open(MANIFEST) as manifest:
                digest = hashlib.sha256(manifest.read()).hexdigest()
            if digest != expected:
                raise BundleError(
                    MANIFEST, f"the download's manifest is {digest}, the ledger recorded {expected}"
                )
        except BundleError:
            partial.unlink()
            raise
        partial.replace(path)
        return digest

    def health(self) -> Call[bool]:
        """Whether the API answers (``/healthz``)."""
        response: httpx.Response = yield Ask("GET", "/healthz")
        return response.status_code == 200

    def ready(self) -> Call[dict[str, Any]]:
        """Storage and read models (``/readyz``): ``status`` is ``ready`` or ``degraded``
        (naming the read model stopped at an event); raises while not ready."""
        body: dict[str, Any] = yield from self._json("/readyz")
        return body

    def metrics(self) -> Call[str]:
        """Prometheus metrics (scope ``admin``)."""
        response = yield from self._get("/metrics")
        return response.text

    def checkpoint(self) -> Call[str]:
        """The latest signed checkpoint (a C2SP signed note): verify it before trusting it."""
        response = yield from self._get("/v1/checkpoint")
        return response.text

    def verifier_keys(self) -> Call[list[str]]:
        """The checkpoints' verifier keys (``<origin>+<hash>+<key>``); compare them with the
        keys you were given out of band before trusting them."""
        response = yield from self._get("/v1/keys")
        return response.text.splitlines()

    def inclusion_proof(self, index: int, size: int | None = None) -> Call[InclusionProof]:
        """The proof that leaf ``index`` (a receipt's ``leaf_index``) is in the tree of ``size``
        leaves; without ``size``, in the latest checkpoint's tree, returned with the proof."""
        body = yield from self._json("/v1/proofs/inclusion", index=index, size=size)
        return InclusionProof(
            index=body["index"],
            size=body["size"],
            leaf_hash=base64.b64decode(body["leaf_hash"]),
            proof=[base64.b64decode(h) for h in body["proof"]],
            checkpoint=body.get("checkpoint"),
        )

    def consistency_proof(self, size1: int, size2: int | None = None) -> Call[ConsistencyProof]:
        """The proof that the tree of ``size1`` leaves is a prefix of that of ``size2``; without
        ``size2``, of the latest checkpoint's tree, returned with the proof."""
        body = yield from self._json("/v1/proofs/consistency", **{"from": size1, "to": size2})
        return ConsistencyProof(
            size1=body["from"],
            size2=body["to"],
            proof=[base64.b64decode(h) for h in body["proof"]],
            checkpoint=body.get("checkpoint"),
        )

    # -- paged reads -----------------------------------------------------------------------

    def iter_disclosures(
        self,
        *,
        subject: str | None = None,
        recipient: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        violations: bool = False,
        page_size: int = 500,
    ) -> Pages[dict[str, Any]]:
        """Every matching disclosure row, page after page: each next page is asked with the
        same filters and the answer's ``next_cursor`` (the cursor of its ``Link: rel="next"``
        when the body has none), until a page names no next one."""
        params = _disclosure_query(subject, recipient, start, end, violations)
        params["limit"] = str(page_size)
        while True:
            response: httpx.Response = yield Ask("GET", "/v1/disclosures", dict(params))
            body = checked(response).json()
            for row in body["items"]:
                yield Item(row)
            following = body.get("next_cursor") or _link_cursor(response)
            if not following:
                return
            params["cursor"] = following

    def disclosures_csv(
        self,
        *,
        subject: str | None = None,
        recipient: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        violations: bool = False,
    ) -> Pages[str]:
        """The same rows as :meth:`iter_disclosures`, as CSV lines (the header once, first).
        The API answers every row in one streamed answer; a ``Link: rel="next"``, should an
        answer carry one, is followed with the same filters."""
        params = _disclosure_query(subject, recipient, start, end, violations)
        params["format"] = "csv"
        header_sent = False
        while True:
            response: httpx.Response = yield Ask("GET", "/v1/disclosures", dict(params))
            lines = csv_lines(checked(response).text)
            if lines and not header_sent:
                yield Item(lines[0])
                header_sent = True
            for line in lines[1:]:
                yield Item(line)
            following = _link_cursor(response)
            if not following:
                return
            params["cursor"] = following

    def iter_affected(
        self, incident_id: str, purpose: str, *, page_size: int = 100
    ) -> Pages[dict[str, Any]]:
        """The people an incident affects, opened to notify them (scope
        ``incidents:identify``): ``subject``, ``subject_ref``, ``contact``, ``named``,
        ``by_rule``, ``erased``. Each page is recorded as a read, with ``purpose``, before it
        is answered, so ask for the pages you will use."""
        params = _params(purpose=purpose, limit=page_size)
        path = f"/v1/incidents/{_segment(incident_id)}/affected"
        while True:
            body = yield from self._json(path, **params)
            for person in body["items"]:
                yield Item(person)
            if not body.get("next_cursor"):
                return
            params["cursor"] = body["next_cursor"]

    def _entries_page(self, start: int, end: int | None) -> Call[tuple[list[LogEntry], int | None]]:
        """One page of entries from ``start`` (``[]`` when the log ends before it) and where
        the next page starts (None at ``end``)."""
        response: httpx.Response = yield Ask("GET", "/v1/entries", _params(start=start, end=end))
        if response.status_code == 404:
            return [], None  # at or past the end of the log
        body = checked(response).json()
        entries = [
            LogEntry(
                index=item["index"],
                entry=base64.b64decode(item["entry"]),
                body=base64.b64decode(item["body"]),
                signature=base64.b64decode(item["signature"]),
                key_id=item["key_id"],
            )
            for item in body["entries"]
        ]
        following: int | None = body["next"]
        return entries, following

    def iter_entries(self, start: int = 0, end: int | None = None) -> Pages[LogEntry]:
        """The entries with ``start <= index < end`` (to the end of the log without ``end``),
        following the API's pages; none when ``start`` is past the log's end."""
        following: int | None = start
        while following is not None and (end is None or following < end):
            entries, following = yield from self._entries_page(following, end)
            for entry in entries:
                yield Item(entry)

    # -- checks ----------------------------------------------------------------------------

    def check_receipt(
        self, receipt: Receipt, verifier_keys: str | Sequence[str]
    ) -> Call[ReceiptCheck]:
        """Check a receipt against the log with the verifier keys you trust (from the ledger's
        operator, out of band; not from ``verifier_keys()``; after a key rotation, every
        key, old and new), with the ledger.verifier functions a regulator runs: the entry at
        the receipt's leaf is the receipt's (its hash is ``event_hash``, it says ``seq`` and
        ``key_id``) and carries its signature, which verifies under the trusted key the receipt
        names; the latest signed checkpoint verifies under a trusted key; and the inclusion
        proof the API gives for that checkpoint's size puts the entry in its tree. Raises
        :class:`ReceiptCheckError` naming what failed, :class:`NotYetCoveredError` when no
        checkpoint covers it yet."""
        trusted = trusted_keys(verifier_keys)
        index = receipt.leaf_index
        entries, _ = yield from self._entries_page(index, index + 1)
        if len(entries) != 1 or entries[0].index != index:
            raise ReceiptCheckError(f"the log has no entry at leaf {index}")
        entry = entries[0]
        _check_entry(receipt, entry, trusted)
        response: httpx.Response = yield Ask("GET", "/v1/checkpoint")
        if response.status_code == 404:
            raise NotYetCoveredError("the ledger has signed no checkpoint yet")
        note = checked(response).text
        checkpoint = _trusted_checkpoint(note, trusted)
        if checkpoint.size <= index:
            raise NotYetCoveredError(
                f"the latest checkpoint covers {checkpoint.size} leaves, not leaf {index} yet"
            )
        proof = yield from self.inclusion_proof(index, checkpoint.size)
        try:
            verify_inclusion(
                index, checkpoint.size, leaf_hash(entry.entry), proof.proof, checkpoint.root_hash
            )
        except MerkleError as exc:
            raise ReceiptCheckError(f"the inclusion proof fails: {exc}") from None
        return ReceiptCheck(receipt.seq, index, checkpoint.size, note)

    def check_consent_receipt(
        self, receipt: Mapping[str, Any], verifier_keys: str | Sequence[str]
    ) -> Call[ReceiptReport]:
        """Check a consent receipt (``consent_receipt``'s answer, either form) as ``python -m
        ledger.verifier receipt`` does (ledger.verifier.receipt, every check), then ask the
        ledger for a consistency proof from the receipt's checkpoint to its latest one and
        check that too: the entry is still in the log the ledger signs today. The report lists
        each check; raises ``ledger.verifier.receipt.ReceiptError`` naming the one that
        failed."""
        trusted = trusted_keys(verifier_keys)
        report = check_receipt(receipt, trusted)
        answer = yield from self._json("/v1/proofs/consistency", **{"from": report.tree_size})
        check_consistency(report, receipt, answer, trusted)
        return report


def _check_entry(receipt: Receipt, entry: LogEntry, trusted: Sequence[Verifier]) -> None:
    """The entry is the one the receipt names, signed as it says, under a trusted key."""
    if entry_hash(entry.entry).hex() != receipt.event_hash:
        raise ReceiptCheckError(f"the entry at leaf {entry.index} is not the one the receipt names")
    try:
        parsed = parse_entry(entry.entry)
    except EntryError as exc:
        raise ReceiptCheckError(f"the entry at leaf {entry.index} does not parse: {exc}") from None
    if parsed.seq != receipt.seq or parsed.key_id != receipt.key_id:
        raise ReceiptCheckError(
            f"the entry says seq {parsed.seq} and key {parsed.key_id}, the receipt "
            f"seq {receipt.seq} and key {receipt.key_id}"
        )
    if base64.b64decode(receipt.signature) != entry.signature:
        raise ReceiptCheckError("the log keeps another signature than the receipt's")
    signer = next((v for v in trusted if key_id_for(v.public_key) == receipt.key_id), None)
    if signer is None:
        raise ReceiptCheckError(f"no trusted key has the receipt's key id {receipt.key_id}")
    if not signature_is_valid(entry.entry, entry.signature, signer.public_key):
        raise ReceiptCheckError("the entry's signature does not verify under its key")


def _trusted_checkpoint(note: str, trusted: Sequence[Verifier]) -> Checkpoint:
    """The checkpoint in ``note``, once a trusted key's signature on it verifies (then parsed),
    of a log one of the trusted keys is named for."""
    try:
        checkpoint = parse_checkpoint(open_note(note, trusted).text)
    except (NoteError, CheckpointError) as exc:
        raise ReceiptCheckError(f"the checkpoint does not verify: {exc}") from None
    if checkpoint.origin not in {v.name for v in trusted}:
        raise ReceiptCheckError(f"the checkpoint is of {checkpoint.origin}, no trusted log")
    return checkpoint


def _disclosure_query(
    subject: str | None,
    recipient: str | None,
    start: datetime | None,
    end: datetime | None,
    violations: bool,
) -> dict[str, str]:
    """The query of a disclosure read (``from``/``to`` are Python keywords)."""
    params = _params(subject=subject, recipient=recipient, **{"from": start, "to": end})
    if violations:
        params["violations"] = "true"
    return params


def csv_lines(text: str) -> list[str]:
    """The lines of a CSV answer, split at its line ends (``\n``, or ``\r\n``) only: a value
    may hold U+2028 or U+0085, which ``str.splitlines`` would split a row at."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return lines[:-1] if lines and not lines[-1] else lines


def _retry_after(response: httpx.Response, attempt: int) -> float:
    """Seconds to wait before resending: the answer's ``Retry-After`` (seconds), else a
    doubling back-off; never more than :data:`RETRY_AFTER_CAP`."""
    try:
        wait = float(response.headers.get("retry-after", ""))
    except ValueError:
        wait = 0.2 * 2**attempt
    if wait != wait:  # NaN
        wait = 0.2 * 2**attempt
    return max(0.0, min(RETRY_AFTER_CAP, wait))


def _link_cursor(response: httpx.Response) -> str | None:
    """The cursor of the next page from an RFC 8288 ``Link: <...>; rel="next"``, if any."""
    link = response.links.get("next")
    if link is None:
        return None
    cursor = httpx.URL(str(link["url"])).params.get("cursor")
    return None if cursor is None else str(cursor)


def _segment(value: object) -> str:
    """``value`` as one path segment: percent-encoded, so that an id holding ``/``, ``?``,
    ``#`` or being ``..`` names that id and never another route (another route might record
    a read, or open someone's data)."""
    text = quote(str(value), safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text


def _params(**values: Any) -> dict[str, str]:
    """Query parameters: those given (None left out), times in ISO 8601 with their offset."""
    params = {}
    for name, value in values.items():
        if value is None:
            continue
        params[name] = value.isoformat() if isinstance(value, datetime) else str(value)
    return params
