"""A small typed client of the ledger's HTTP API, on httpx.

::

    from api.client import LedgerClient

    with LedgerClient("http://127.0.0.1:8000", token) as ledger:
        receipt = ledger.append({"type": "consent.given", ...})
        answer = ledger.decision("user-10482", "marketing_email", wait_for=receipt.seq)
        if answer.allowed:
            ...

Every error the API answers becomes a :class:`LedgerAPIError` carrying the problem document.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, NoReturn

import httpx


class LedgerAPIError(Exception):
    """The API answered with a problem (RFC 9457): status, title, detail, field errors."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.title = str(problem.get("title", ""))
        self.detail = str(problem.get("detail", ""))
        self.errors: list[dict[str, Any]] = list(problem.get("errors", []))
        super().__init__(f"{status} {self.title}: {self.detail}")


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


class LedgerClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

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

    def append(self, event: Mapping[str, Any]) -> Receipt:
        """Record one event; its receipt once committed (the original one on a retry)."""
        return Receipt(**self._call("POST", "/v1/events", json=dict(event)).json())

    def append_batch(self, events: Sequence[Mapping[str, Any]]) -> list[Receipt]:
        """Record a batch, all or nothing; a receipt per event, in order."""
        body = self._call("POST", "/v1/events", json=[dict(e) for e in events]).json()
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
        params = _params(subject=subject, recipient=recipient, limit=page_size)
        params.update(_params(**{"from": start, "to": end}))
        if violations:
            params["violations"] = "true"
        while True:
            body = self._call("GET", "/v1/disclosures", params=params).json()
            yield from body["items"]
            if body["next_cursor"] is None:
                return
            params["cursor"] = body["next_cursor"]

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


def _params(**values: Any) -> dict[str, str]:
    params = {}
    for name, value in values.items():
        if value is None:
            continue
        params[name] = value.isoformat() if isinstance(value, datetime) else str(value)
    return params
