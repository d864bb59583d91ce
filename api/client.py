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

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

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
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.reason_phrase, "detail": response.text}
            raise LedgerAPIError(response.status_code, problem)
        return response

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


def _params(**values: Any) -> dict[str, str]:
    params = {}
    for name, value in values.items():
        if value is None:
            continue
        params[name] = value.isoformat() if isinstance(value, datetime) else str(value)
    return params
