"""Typed clients of the ledger's HTTP API, on httpx: ``LedgerClient`` (sync) and
``AsyncLedgerClient`` (asyncio), with the same methods.

::

    from api.client import LedgerClient

    with LedgerClient("http://127.0.0.1:8000", token, signing_key=seed) as ledger:
        receipt = ledger.append({"type": "consent.given", ...})
        answer = ledger.decision("user-10482", "marketing_email", wait_for=receipt.seq)
        if answer.allowed:
            ...
        for row in ledger.iter_disclosures(recipient="rcp-adbridge"):  # every page
            ...
        ledger.check_receipt(receipt, verifier_keys)  # in a signed checkpoint, by proof

    async with AsyncLedgerClient(url, token) as ledger:
        receipt = await ledger.append(event)
        async for entry in ledger.iter_entries(receipt.leaf_index):
            ...

Every error the API answers becomes a :class:`LedgerAPIError` carrying the problem document.
Writes are safe to resend, because the ledger answers an event id it holds with its original
receipt: a client resends the same body when the ledger pushes back (``503`` with
``Retry-After``) or the connection fails, ``retries`` times. With ``signing_key`` (the 32-byte
Ed25519 seed of a key registered with ``consent-ledger clients set-key``) every write is signed
(``Content-Signature``), as the ledger then requires.

With ``reads_url`` (the address of a ``serve --role reads`` beside the API: docs/operations.md,
Reads in processes of their own) every GET but those of the export jobs goes there, and every
write to ``base_url``; a reads process answers a write ``421``, so none is ever sent to it.

What each method asks and how it reads the answer is written once, in api/client_calls.py;
the two classes here only run those steps, one with ``httpx.Client`` and ``time.sleep``, the
other with ``httpx.AsyncClient`` and ``asyncio.sleep``. Their methods are :class:`Blocking`,
:class:`BlockingPages`, :class:`Awaited` and :class:`AwaitedPages` descriptors over the same
``LedgerCalls`` functions, so the two method lists cannot differ in anything but their names.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, cast, overload

import httpx

from api.client_calls import (
    RETRY_AFTER_CAP,
    Ask,
    Call,
    Exchange,
    Item,
    LedgerCalls,
    Pages,
    Pause,
    Step,
)
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
)

__all__ = [
    "RETRY_AFTER_CAP",
    "AsyncLedgerClient",
    "ConsistencyProof",
    "Decision",
    "InclusionProof",
    "LedgerAPIError",
    "LedgerCalls",
    "LedgerClient",
    "LogEntry",
    "NotYetCoveredError",
    "Receipt",
    "ReceiptCheck",
    "ReceiptCheckError",
]

P = ParamSpec("P")
T = TypeVar("T")


class _Method(Generic[P, T]):
    """A client method made of a ``LedgerCalls`` function: its name, docstring and signature
    (``inspect.signature`` follows ``__wrapped__``)."""

    def __init__(self, operation: Callable[Concatenate[LedgerCalls, P], T]) -> None:
        self.operation = operation
        functools.update_wrapper(cast(Any, self), operation)


class Blocking(_Method[P, Call[T]]):
    """``LedgerClient.<operation>(...)``: the result."""

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, client: LedgerClient, owner: type[Any]) -> Callable[P, T]: ...
    def __get__(self, client: LedgerClient | None, owner: type[Any]) -> Any:
        return self if client is None else functools.partial(self.__call__, client)

    def __call__(self, client: LedgerClient, *args: P.args, **kwargs: P.kwargs) -> T:
        return client.run(self.operation(client.calls, *args, **kwargs))


class BlockingPages(_Method[P, Pages[T]]):
    """``LedgerClient.iter_<rows>(...)``: an iterator over every row, page after page."""

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, client: LedgerClient, owner: type[Any]) -> Callable[P, Iterator[T]]: ...
    def __get__(self, client: LedgerClient | None, owner: type[Any]) -> Any:
        return self if client is None else functools.partial(self.__call__, client)

    def __call__(self, client: LedgerClient, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return client.iterate(self.operation(client.calls, *args, **kwargs))


class Awaited(_Method[P, Call[T]]):
    """``await AsyncLedgerClient.<operation>(...)``: the result."""

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(
        self, client: AsyncLedgerClient, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, client: AsyncLedgerClient | None, owner: type[Any]) -> Any:
        return self if client is None else functools.partial(self.__call__, client)

    async def __call__(self, client: AsyncLedgerClient, *args: P.args, **kwargs: P.kwargs) -> T:
        return await client.run(self.operation(client.calls, *args, **kwargs))


class AwaitedPages(_Method[P, Pages[T]]):
    """``async for row in AsyncLedgerClient.iter_<rows>(...)``: every row, page after page."""

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(
        self, client: AsyncLedgerClient, owner: type[Any]
    ) -> Callable[P, AsyncIterator[T]]: ...
    def __get__(self, client: AsyncLedgerClient | None, owner: type[Any]) -> Any:
        return self if client is None else functools.partial(self.__call__, client)

    def __call__(
        self, client: AsyncLedgerClient, *args: P.args, **kwargs: P.kwargs
    ) -> AsyncIterator[T]:
        return client.iterate(self.operation(client.calls, *args, **kwargs))


READ_METHODS = frozenset({"GET", "HEAD"})
WRITER_PATHS = ("/v1/exports",)
"""Reads that only the API (the writer) answers: the export jobs run there."""


class _ClientBase:
    """What both clients hold: the calls (signing key, retries) and the httpx settings."""

    def __init__(
        self,
        base_url: str,
        token: str,
        timeout: float,
        signing_key: bytes | None,
        retries: int,
        reads_url: str | None = None,
    ) -> None:
        self.calls = LedgerCalls(signing_key=signing_key, retries=retries)
        self.http_options: dict[str, Any] = {
            "base_url": base_url,
            "headers": {"Authorization": f"Bearer {token}"},
            "timeout": timeout,
        }
        self.reads_options = (
            None if reads_url is None else self.http_options | {"base_url": reads_url}
        )

    @staticmethod
    def is_read(step: Ask) -> bool:
        """Whether ``step`` may go to a reads process (``reads_url``)."""
        return step.method.upper() in READ_METHODS and not step.path.startswith(WRITER_PATHS)


class LedgerClient(_ClientBase):
    """The ledger's API, blocking. ``transport`` and ``sleep`` are for tests (a flaky
    connection, no real waiting)."""

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
        reads_url: str | None = None,
    ) -> None:
        super().__init__(base_url, token, timeout, signing_key, retries, reads_url)
        self._http = httpx.Client(transport=transport, **self.http_options)
        self._reads = (
            None
            if self.reads_options is None
            else httpx.Client(transport=transport, **self.reads_options)
        )
        self._sleep = sleep

    append = Blocking(LedgerCalls.append)
    append_batch = Blocking(LedgerCalls.append_batch)
    record_incident = Blocking(LedgerCalls.record_incident)
    start_export = Blocking(LedgerCalls.start_export)
    event = Blocking(LedgerCalls.event)
    decision = Blocking(LedgerCalls.decision)
    consent_state = Blocking(LedgerCalls.consent_state)
    consent_receipt = Blocking(LedgerCalls.consent_receipt)
    history = Blocking(LedgerCalls.history)
    requests = Blocking(LedgerCalls.requests)
    incidents = Blocking(LedgerCalls.incidents)
    incident = Blocking(LedgerCalls.incident)
    notices = Blocking(LedgerCalls.notices)
    acknowledge_notice = Blocking(LedgerCalls.acknowledge_notice)
    export_status = Blocking(LedgerCalls.export_status)
    download_export = Blocking(LedgerCalls.download_export)
    health = Blocking(LedgerCalls.health)
    ready = Blocking(LedgerCalls.ready)
    metrics = Blocking(LedgerCalls.metrics)
    checkpoint = Blocking(LedgerCalls.checkpoint)
    verifier_keys = Blocking(LedgerCalls.verifier_keys)
    inclusion_proof = Blocking(LedgerCalls.inclusion_proof)
    consistency_proof = Blocking(LedgerCalls.consistency_proof)
    check_receipt = Blocking(LedgerCalls.check_receipt)
    check_consent_receipt = Blocking(LedgerCalls.check_consent_receipt)
    iter_disclosures = BlockingPages(LedgerCalls.iter_disclosures)
    disclosures_csv = BlockingPages(LedgerCalls.disclosures_csv)
    iter_affected = BlockingPages(LedgerCalls.iter_affected)
    iter_entries = BlockingPages(LedgerCalls.iter_entries)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        if self._reads is not None:
            self._reads.close()

    def _perform(self, step: Step) -> httpx.Response | None:
        if isinstance(step, Pause):
            self._sleep(step.seconds)
            return None
        if isinstance(step, Ask):
            http = self._reads if self._reads is not None and self.is_read(step) else self._http
            return http.request(**step.arguments())
        with self._http.stream("GET", step.path) as response:  # a Download
            if response.status_code >= 400:
                response.read()
                return response
            with step.into.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        return response

    def _drive(self, exchange: Exchange[Any]) -> Iterator[Any]:
        """Perform the exchange's steps, giving its rows as they come."""
        while (step := exchange.step()) is not None:
            if isinstance(step, Item):
                yield step.value
                continue
            try:
                exchange.reply(self._perform(step))
            except httpx.TransportError as exc:
                exchange.fail(exc)

    def run(self, call: Call[T]) -> T:
        """Run an operation of ``LedgerCalls`` to its result."""
        exchange = Exchange(call)
        for _ in self._drive(exchange):
            raise AssertionError("an operation with one result gave a row")
        return exchange.result

    def iterate(self, pages: Pages[T]) -> Iterator[T]:
        """Run a paged read of ``LedgerCalls``, giving its rows as they come."""
        yield from self._drive(Exchange(pages))


class AsyncLedgerClient(_ClientBase):
    """The ledger's API for asyncio: the methods of :class:`LedgerClient`, awaited, and its
    paged reads as async iterators."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        signing_key: bytes | None = None,
        retries: int = 3,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        reads_url: str | None = None,
    ) -> None:
        super().__init__(base_url, token, timeout, signing_key, retries, reads_url)
        self._http = httpx.AsyncClient(transport=transport, **self.http_options)
        self._reads = (
            None
            if self.reads_options is None
            else httpx.AsyncClient(transport=transport, **self.reads_options)
        )
        self._sleep = sleep

    append = Awaited(LedgerCalls.append)
    append_batch = Awaited(LedgerCalls.append_batch)
    record_incident = Awaited(LedgerCalls.record_incident)
    start_export = Awaited(LedgerCalls.start_export)
    event = Awaited(LedgerCalls.event)
    decision = Awaited(LedgerCalls.decision)
    consent_state = Awaited(LedgerCalls.consent_state)
    consent_receipt = Awaited(LedgerCalls.consent_receipt)
    history = Awaited(LedgerCalls.history)
    requests = Awaited(LedgerCalls.requests)
    incidents = Awaited(LedgerCalls.incidents)
    incident = Awaited(LedgerCalls.incident)
    notices = Awaited(LedgerCalls.notices)
    acknowledge_notice = Awaited(LedgerCalls.acknowledge_notice)
    export_status = Awaited(LedgerCalls.export_status)
    download_export = Awaited(LedgerCalls.download_export)
    health = Awaited(LedgerCalls.health)
    ready = Awaited(LedgerCalls.ready)
    metrics = Awaited(LedgerCalls.metrics)
    checkpoint = Awaited(LedgerCalls.checkpoint)
    verifier_keys = Awaited(LedgerCalls.verifier_keys)
    inclusion_proof = Awaited(LedgerCalls.inclusion_proof)
    consistency_proof = Awaited(LedgerCalls.consistency_proof)
    check_receipt = Awaited(LedgerCalls.check_receipt)
    check_consent_receipt = Awaited(LedgerCalls.check_consent_receipt)
    iter_disclosures = AwaitedPages(LedgerCalls.iter_disclosures)
    disclosures_csv = AwaitedPages(LedgerCalls.disclosures_csv)
    iter_affected = AwaitedPages(LedgerCalls.iter_affected)
    iter_entries = AwaitedPages(LedgerCalls.iter_entries)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._reads is not None:
            await self._reads.aclose()

    async def _perform(self, step: Step) -> httpx.Response | None:
        if isinstance(step, Pause):
            await self._sleep(step.seconds)
            return None
        if isinstance(step, Ask):
            http = self._reads if self._reads is not None and self.is_read(step) else self._http
            return await http.request(**step.arguments())
        async with self._http.stream("GET", step.path) as response:  # a Download
            if response.status_code >= 400:
                await response.aread()
                return response
            with step.into.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
        return response

    async def _drive(self, exchange: Exchange[Any]) -> AsyncIterator[Any]:
        """Perform the exchange's steps, giving its rows as they come."""
        while (step := exchange.step()) is not None:
            if isinstance(step, Item):
                yield step.value
                continue
            try:
                exchange.reply(await self._perform(step))
            except httpx.TransportError as exc:
                exchange.fail(exc)

    async def run(self, call: Call[T]) -> T:
        """Run an operation of ``LedgerCalls`` to its result."""
        exchange = Exchange(call)
        async for _ in self._drive(exchange):
            raise AssertionError("an operation with one result gave a row")
        return exchange.result

    def iterate(self, pages: Pages[T]) -> AsyncIterator[T]:
        """Run a paged read of ``LedgerCalls``, giving its rows as they come."""
        return self._drive(Exchange(pages))
