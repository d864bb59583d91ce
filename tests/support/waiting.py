"""Waiting in tests for something another thread or process does: one polling loop, bounded,
that fails naming what did not happen (never a fixed sleep, never a timed assertion)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


def wait_until(
    check: Callable[[], T],
    what: str | Callable[[], str],
    seconds: float = 20.0,
    interval: float = 0.05,
) -> T:
    """``check()`` again and again until it returns something true; that result.

    At the deadline the test fails with ``what`` (or what ``what()`` says then: a log's tail,
    the last status). ``check`` may raise an assertion itself (a process that exited)."""
    deadline = time.monotonic() + seconds
    while not (result := check()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {seconds:g} s: {what() if callable(what) else what}")
        time.sleep(interval)
    return result


def answers_healthz(url: str) -> bool:
    """Whether an API at ``url`` answers ``/healthz`` with 200 now (no answer: False)."""
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
