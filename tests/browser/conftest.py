"""Fixtures for the browser tests: a real ``consent-ledger serve`` and Debian's chromium, headless,
driven by Playwright, with no network but the loopback address (tests/support/browser.py).

Where chromium is missing the tests fail under CI (``CI`` set: .ci/run installs it) and are
skipped, with the reason, elsewhere. Screenshots go to ``/tmp/consent-ledger-browser/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from ledger.config import Settings, generate_keys
from tests.support.browser import CHROMIUM, DocsServer, OfflinePage, launch_offline
from tests.support.processes import add_client, free_port
from tests.support.serve import serve


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"no chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason + ": CI needs it, and .ci/run installs it")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = launch_offline(playwright, free_port())
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def offline_page(browser: Browser) -> Iterator[OfflinePage]:
    """A fresh page in a context of its own (no cookies or storage from another test)."""
    opened = OfflinePage.open(browser)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsServer]:
    """The API on SQLite (the pages touch no storage), with an admin client."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("docs") / "data")
    generate_keys(settings)
    token = add_client(settings, "docs-admin", "admin")
    with serve(settings, free_port()) as up:
        yield DocsServer(up.url, token)
