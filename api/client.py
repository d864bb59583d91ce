"""A typed client of the ledger's HTTP API, on httpx.

::

    from api.client import LedgerClient

    with LedgerClient("http://127.0.0.1:8000", token, signing_key=seed) as ledger:
        receipt = ledger.append({"type": "consent.given", ...})
        answer = ledger.decision("user-10482", "marketing_email", wait_for=receipt.seq)
        if answer.allowed:
            ...
        ledger.check_receipt(receipt, verifier_keys)  # in a signed checkpoint, by proof

Every error the API answers becomes a :class:`LedgerAPIError` carrying the problem document.
Writes are safe to resend, because the ledger answers an event id it holds with its original
receipt: the client resends the same body when the ledger pushes back (``503`` with
``Retry-After``) or the connection fails, ``retries`` times. With ``signing_key`` (the 32-byte
Ed25519 seed of a key registered with ``consent-ledger clients set-key``) every write is signed
(``Content-Signature``), as the ledger then requires.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import httpx
import orjson
from nacl.signing import SigningKey

from ledger.verifier.bundle import MANIFEST, BundleError, BundleFiles
from ledger.verifier.checkpoint import open_checkpoint
from ledger.verifier.entry import entry_hash, key_id_for, signature_is_valid
from ledger.verifier.merkle import leaf_hash, verify_inclusion
from ledger.verifier.note import parse_verifier_key

RETRY_AFTER_CAP = 30.0
"""The longest a client waits before resending, whatever ``Retry-After`` says."""


class LedgerAPIError(Exception):
    """The API answered with a problem (RFC 9457): status, title, detail, field errors."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.title = str(problem.get("title", ""))
        self.detail = str(problem.get("detail", ""))
        self.errors: list[dict[str, Any]] = list(problem.get("errors", []))
        self.problem = dict(problem)
        super().__init__(f"{status} {self.title}: {self.detail}")


class ReceiptCheckError(Exception):
    """A receipt does not check out against the log; the message says which part failed."""


class NotYetCoveredError(ReceiptCheckError):
    """The receipt's event is in the log but no signed checkpoint covers it yet: ask again
    after the next checkpoint (the signer signs every half second while events arrive)."""


@dataclass(frozen=True)
class Receipt:
    seq: int
    leaf_index: int
    event_id: str
    event_hash: str
    signature: str
    key_id: str
    recorded_at: str
    duplicate: bool


@dataclass(frozen=True)
class Decision:
    subject: str
    purpose: str
    allowed: bool
    status: str | None
    dpv_status: str | None
    decided_by_seq: int | None
    policy_version: str | None
    since: str | None


@dataclass(frozen=True)
class InclusionProof:
    """Leaf ``index`` is in the tree of ``size`` leaves: the audit path, hashes bottom-up.

    Check with ``ledger.verifier.merkle.verify_inclusion(index, size, leaf_hash, proof, root)``
    against the root of a checkpoint you verified (``checkpoint``, when the API chose the size).
    """

    index: int
    size: int
    leaf_hash: bytes
    proof: list[bytes]
    checkpoint: str | None
    """The signed note of the latest checkpoint, when no size was asked for."""


@dataclass(frozen=True)
class ConsistencyProof:
    """The tree of ``size1`` leaves is a prefix of that of ``size2``: RFC 9162 hashes.

    Empty when ``size1`` is 0 or equals ``size2``. Check with
    ``ledger.verifier.merkle.verify_consistency(size1, size2, proof, root1, root2)``.
    """

    size1: int
    size2: int
    proof: list[bytes]
    checkpoint: str | None
    """The signed note of the latest checkpoint, when no ``to`` size was asked for."""


@dataclass(frozen=True)
class LogEntry:
    """One leaf: the signed entry bytes (the leaf input), the body it commits to, signature."""

    index: int
    entry: bytes
    body: bytes
    signature: bytes
    key_id: str


@dataclass(frozen=True)
class ReceiptCheck:
    """What :meth:`LedgerClient.check_receipt` established, each against the trusted key."""

    seq: int
    leaf_index: int
    checkpoint_size: int
    """The signed checkpoint whose tree the event is proven to be in."""
    checkpoint: str
    """Its signed note: keep it, and later ask for a consistency proof from its size."""


class LedgerClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        signing_key: bytes | None = None,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if retries < 0:
            raise ValueError(
                f"retries is how many times a write is resent: 0 or more, not {retries}"
            )
        self._signer = None if signing_key is None else SigningKey(signing_key)
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )
        self._retries = retries
        self._sleep = sleep

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            self._raise(response)
        return response

    @staticmethod
    def _raise(response: httpx.Response) -> NoReturn:
        try:
            problem = response.json()
        except ValueError:
            problem = {"title": response.reason_phrase, "detail": response.text}
        raise LedgerAPIError(response.status_code, problem)

    def _write(self, path: str, payload: Any) -> httpx.Response:
        """POST ``payload`` (signed when the client has a key), resending the same bytes when
        the ledger pushes back or the connection fails; the ledger's event ids make a resend
        of something already committed answer its original receipts."""
        body = orjson.dumps(payload)
        headers = {"Content-Type": "application/json"}
        if self._signer is not None:
            signature = self._signer.sign(body).signature
            headers["Content-Signature"] = "ed25519=" + base64.b64encode(signature).decode()
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            try:
                response = self._http.post(path, content=body, headers=headers)
            except httpx.TransportError:
                if last:
                    raise
                self._sleep(min(RETRY_AFTER_CAP, 0.2 * 2**attempt))
                continue
            if response.status_code == 503 and not last:
                self._sleep(_retry_after(response, attempt))
                continue
            if response.status_code >= 400:
                self._raise(response)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def append(self, event: Mapping[str, Any]) -> Receipt:
        """Record one event; its receipt once committed (the original one on a retry)."""
        return Receipt(**self._write("/v1/events", dict(event)).json())

    def append_batch(self, events: Sequence[Mapping[str, Any]]) -> list[Receipt]:
        """Record a batch, all or nothing; a receipt per event, in order."""
        body = self._write("/v1/events", [dict(e) for e in events]).json()
        return [Receipt(**r) for r in body["receipts"]]

    def record_incident(self, facts: Sequence[Mapping[str, Any]]) -> list[Receipt]:
        """Record incident facts (``incident.*`` only; scope ``incidents:manage``), all or
        nothing; a receipt per fact, in order."""
        body = self._write("/v1/incidents", [dict(f) for f in facts]).json()
        return [Receipt(**r) for r in body["receipts"]]

    def event(self, seq: int) -> dict[str, Any]:
        body: dict[str, Any] = self._call("GET", f"/v1/events/{seq}").json()
        return body

    def decision(
        self,
        subject: str,
        purpose: str,
        *,
        at: datetime | None = None,
        wait_for: int | None = None,
    ) -> Decision:
        """May ``purpose`` be used for ``subject`` now (or at ``at``)?"""
        params = _params(subject=subject, purpose=purpose, at=at, wait_for=wait_for)
        return Decision(**self._call("GET", "/v1/consent/decision", params=params).json())

    def consent_receipt(self, seq: int, purpose: str | None = None) -> dict[str, Any]:
        """The consent receipt of the fact at ``seq`` (scope ``receipts:read``; the read is
        recorded with ``purpose``): keep it as JSON and check it with ``python -m
        ledger.verifier receipt FILE --key KEY``."""
        path = f"/v1/consent/receipts/{seq}"
        body: dict[str, Any] = self._call("GET", path, params=_params(purpose=purpose)).json()
        return body

    def consent_state(
        self, subject: str, *, at: datetime | None = None, wait_for: int | None = None
    ) -> dict[str, Any]:
        params = _params(subject=subject, at=at, wait_for=wait_for)
        body: dict[str, Any] = self._call("GET", "/v1/consent/state", params=params).json()
        return body

    def disclosures(
        self,
        *,
        subject: str | None = None,
        recipient: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        violations: bool = False,
        page_size: int = 500,
    ) -> Iterator[dict[str, Any]]:
        """Every matching disclosure row, following the API's cursors."""
        params = _disclosure_params(subject, recipient, start, end, violations, page_size)
        while True:
            body = self._call("GET", "/v1/disclosures", params=params).json()
            yield from body["items"]
            if body["next_cursor"] is None:
                return
            params["cursor"] = body["next_cursor"]

    def disclosures_csv(
        self,
        *,
        subject: str | None = None,
        recipient: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        violations: bool = False,
        page_size: int = 500,
    ) -> Iterator[str]:
        """The same rows as :meth:`disclosures`, as CSV lines (the header once, first),
        following the API's cursors page after page."""
        params = _disclosure_params(subject, recipient, start, end, violations, page_size)
        params["format"] = "csv"
        header_sent = False
        while True:
            response = self._call("GET", "/v1/disclosures", params=params)
            lines = response.text.splitlines()
            if lines and not header_sent:
                yield lines[0]
                header_sent = True
            yield from lines[1:]
            following = _next_cursor(response)
            if not following:
                return
            params["cursor"] = following

    def history(self, subject: str) -> dict[str, Any]:
        """Everything the log holds about a subject (their access request, GDPR 15): their
        events in log order, each with its signature; other people stay sealed."""
        body: dict[str, Any] = self._call(
            "GET", "/v1/subjects/history", params=_params(subject=subject)
        ).json()
        return body

    def requests(
        self, *, overdue: bool = False, subject: str | None = None
    ) -> list[dict[str, Any]]:
        """The data-subject request register, due dates computed now."""
        params = _params(subject=subject)
        if overdue:
            params["overdue"] = "true"
        body: list[dict[str, Any]] = self._call("GET", "/v1/requests", params=params).json()
        return body

    def incidents(self) -> list[dict[str, Any]]:
        """The incident register, deadlines computed now."""
        body: list[dict[str, Any]] = self._call("GET", "/v1/incidents").json()
        return body

    def incident(self, incident_id: str) -> dict[str, Any]:
        """One incident, its deadlines and subjects (``subjects_by_rule`` when its assessment
        selects them by a rule)."""
        body: dict[str, Any] = self._call("GET", f"/v1/incidents/{incident_id}").json()
        return body

    def start_export(
        self,
        scope: Mapping[str, Any],
        purpose: str,
        *,
        answers_request: str | None = None,
    ) -> dict[str, Any]:
        """Start a bundle of ``scope`` (``{"kind": "subject", "subject_ref": ...}``,
        ``recipient``/``recipient_id``, ``incident``/``incident_id``, ``period`` with ``from``
        and ``to``, or ``all``; scope ``exports:create``) made for ``purpose``; the job (its
        ``id`` for :meth:`export_status`). Not resent on failure: each call is a new job."""
        payload: dict[str, Any] = {"scope": dict(scope), "purpose": purpose}
        if answers_request is not None:
            payload["answers_request"] = answers_request
        body: dict[str, Any] = self._call("POST", "/v1/exports", json=payload).json()
        return body

    def export_status(self, job_id: str) -> dict[str, Any]:
        """An export job: ``state`` (queued, running, done, failed, expired), ``progress``,
        and once done its ``manifest_sha256``, ``bytes`` and ``expires_at``."""
        body: dict[str, Any] = self._call("GET", f"/v1/exports/{job_id}").json()
        return body

    def download_export(self, job_id: str, path: Path) -> str:
        """Stream a done export's bundle to ``path`` (a new file; written beside it and moved
        into place once whole); the SHA-256 of its ``manifest.json``, checked against the
        digest the ledger recorded (the ``ETag``). Verify it with ``python -m ledger.verifier
        PATH --key KEY``."""
        if path.exists():
            raise FileExistsError(f"{path} exists already; choose a new path")
        partial = path.with_name(path.name + ".partial")
        with self._http.stream("GET", f"/v1/exports/{job_id}/bundle") as response:
            if response.status_code >= 400:
                response.read()
                self._raise(response)
            expected = response.headers.get("etag", "").strip('"')
            with partial.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        try:
            with BundleFiles(partial).open(MANIFEST) as manifest:
                digest = hashlib.sha256(manifest.read()).hexdigest()
        except BundleError:
            partial.unlink()
            raise
        if digest != expected:
            partial.unlink()
            raise BundleError(
                MANIFEST, f"the download's manifest is {digest}, the ledger recorded {expected}"
            )
        partial.replace(path)
        return digest

    def health(self) -> bool:
        """Whether the API answers (``/healthz``)."""
        return self._http.get("/healthz").status_code == 200

    def ready(self) -> dict[str, Any]:
        """Storage and read models (``/readyz``): ``status`` is ``ready`` or ``degraded``
        (naming the read model stopped at an event); raises while not ready."""
        body: dict[str, Any] = self._call("GET", "/readyz").json()
        return body

    def metrics(self) -> str:
        """Prometheus metrics (scope ``admin``)."""
        return self._call("GET", "/metrics").text

    def check_receipt(self, receipt: Receipt, verifier_keys: str | Sequence[str]) -> ReceiptCheck:
        """Check a receipt against the log with the verifier keys you trust (from the ledger's
        operator, out of band; not from :meth:`verifier_keys`; after a key rotation, every
        key, old and new): the entry at the receipt's leaf hashes to its ``event_hash`` and
        carries its signature, which verifies under the trusted key the receipt names; the
        latest signed checkpoint verifies under a trusted key; and an inclusion proof puts the
        entry in that checkpoint's tree. Raises :class:`ReceiptCheckError` naming what
        failed, :class:`NotYetCoveredError` when no checkpoint covers it yet."""
        texts = [verifier_keys] if isinstance(verifier_keys, str) else list(verifier_keys)
        trusted = [parse_verifier_key(text) for text in texts]
        if not trusted:
            raise ReceiptCheckError("no verifier key was given to trust")
        signer = next((v for v in trusted if key_id_for(v.public_key) == receipt.key_id), None)
        index = receipt.leaf_index
        try:
            found = list(self.entries(index, index + 1))
        except LedgerAPIError as exc:
            if exc.status != 404:
                raise
            found = []
        if len(found) != 1 or found[0].index != index:
            raise ReceiptCheckError(f"the log has no entry at leaf {index}")
        entry = found[0]
        if entry_hash(entry.entry).hex() != receipt.event_hash:
            raise ReceiptCheckError(f"the entry at leaf {index} is not the one the receipt names")
        if base64.b64decode(receipt.signature) != entry.signature:
            raise ReceiptCheckError("the log keeps another signature than the receipt's")
        if signer is None:
            raise ReceiptCheckError(f"no trusted key has the receipt's key id {receipt.key_id}")
        if not signature_is_valid(entry.entry, entry.signature, signer.public_key):
            raise ReceiptCheckError("the entry's signature does not verify under its key")
        note = self._http.get("/v1/checkpoint")
        if note.status_code == 404:
            raise NotYetCoveredError("the ledger has signed no checkpoint yet")
        if note.status_code >= 400:
            self._raise(note)
        try:
            checkpoint = open_checkpoint(note.text, trusted[0].name, trusted)
        except ValueError as exc:
            raise ReceiptCheckError(f"the checkpoint does not verify: {exc}") from None
        if checkpoint.size <= index:
            raise NotYetCoveredError(
                f"the latest checkpoint covers {checkpoint.size} leaves, not leaf {index} yet"
            )
        proof = self.inclusion_proof(index, checkpoint.size)
        try:
            verify_inclusion(
                index, checkpoint.size, leaf_hash(entry.entry), proof.proof, checkpoint.root_hash
            )
        except ValueError as exc:
            raise ReceiptCheckError(f"the inclusion proof fails: {exc}") from None
        return ReceiptCheck(receipt.seq, index, checkpoint.size, note.text)

    def checkpoint(self) -> str:
        """The latest signed checkpoint (a C2SP signed note): verify it before trusting it."""
        return self._call("GET", "/v1/checkpoint").text

    def verifier_keys(self) -> list[str]:
        """The checkpoints' verifier keys (``<origin>+<hash>+<key>``); compare them with the
        keys you were given out of band before trusting them."""
        return self._call("GET", "/v1/keys").text.splitlines()

    def inclusion_proof(self, index: int, size: int | None = None) -> InclusionProof:
        """The proof that leaf ``index`` (a receipt's ``leaf_index``) is in the tree of ``size``
        leaves; without ``size``, in the latest checkpoint's tree, returned with the proof."""
        params = _params(index=index, size=size)
        body = self._call("GET", "/v1/proofs/inclusion", params=params).json()
        return InclusionProof(
            index=body["index"],
            size=body["size"],
            leaf_hash=base64.b64decode(body["leaf_hash"]),
            proof=[base64.b64decode(h) for h in body["proof"]],
            checkpoint=body.get("checkpoint"),
        )

    def consistency_proof(self, size1: int, size2: int | None = None) -> ConsistencyProof:
        """The proof that the tree of ``size1`` leaves is a prefix of that of ``size2``; without
        ``size2``, of the latest checkpoint's tree, returned with the proof."""
        params = _params(**{"from": size1, "to": size2})
        body = self._call("GET", "/v1/proofs/consistency", params=params).json()
        return ConsistencyProof(
            size1=body["from"],
            size2=body["to"],
            proof=[base64.b64decode(h) for h in body["proof"]],
            checkpoint=body.get("checkpoint"),
        )

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[LogEntry]:
        """The entries with ``start <= index < end`` (to the end of the log without ``end``),
        following the API's pages."""
        following: int | None = start
        while following is not None and (end is None or following < end):
            response = self._http.get("/v1/entries", params=_params(start=following, end=end))
            if response.status_code == 404 and following > start:
                return  # the log ends here
            if response.status_code >= 400:
                self._raise(response)
            body = response.json()
            for item in body["entries"]:
                yield LogEntry(
                    index=item["index"],
                    entry=base64.b64decode(item["entry"]),
                    body=base64.b64decode(item["body"]),
                    signature=base64.b64decode(item["signature"]),
                    key_id=item["key_id"],
                )
            following = body["next"]


def _disclosure_params(
    subject: str | None,
    recipient: str | None,
    start: datetime | None,
    end: datetime | None,
    violations: bool,
    page_size: int,
) -> dict[str, str]:
    """The query of a disclosure history read (``from``/``to`` are Python keywords)."""
    params = _params(subject=subject, recipient=recipient, limit=page_size)
    params.update(_params(**{"from": start, "to": end}))
    if violations:
        params["violations"] = "true"
    return params


def _retry_after(response: httpx.Response, attempt: int) -> float:
    """Seconds to wait before resending: the answer's ``Retry-After`` (seconds), else a
    doubling back-off; never more than :data:`RETRY_AFTER_CAP`."""
    try:
        wait = float(response.headers.get("retry-after", ""))
    except ValueError:
        wait = 0.2 * 2**attempt
    return max(0.0, min(RETRY_AFTER_CAP, wait))


def _next_cursor(response: httpx.Response) -> str | None:
    """The cursor of the next page from an RFC 8288 ``Link: <...>; rel="next"``, if any."""
    link = response.links.get("next")
    if link is None:
        return None
    cursor = httpx.URL(str(link["url"])).params.get("cursor")
    return None if cursor is None else str(cursor)


def _params(**values: Any) -> dict[str, str]:
    params = {}
    for name, value in values.items():
        if value is None:
            continue
        params[name] = value.isoformat() if isinstance(value, datetime) else str(value)
    return params
