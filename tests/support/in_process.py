"""The HTTP app in this process: its lifespan run on an event loop in a thread, called
synchronously through httpx's ASGI transport (no server, no port)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI

T = TypeVar("T")


class InProcess:
    """The app, its lifespan included, on an event loop in a thread; called synchronously."""

    def __init__(self, app: FastAPI) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="asgi", daemon=True)
        self.thread.start()
        self.lifespan = app.router.lifespan_context(app)
        self.run(self.lifespan.__aenter__())
        transport = httpx.ASGITransport(app=app)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://ledger")

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.run(self.client.get(path, **kwargs))

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.run(self.client.post(path, **kwargs))

    def close(self) -> None:
        try:
            self.run(self.client.aclose())
            self.run(self.lifespan.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
            self.loop.close()
