"""Headless chromium for tests, with no network but the loopback address (tests/browser/).

The network is cut three ways, so that a page that reaches out is seen and never served: every
request of the browser context passes :class:`OutsideRequests`, which lets ``127.0.0.1``
through and records and aborts anything else; chromium resolves no name but ``127.0.0.1``
(``--host-resolver-rules``); and its proxy is a port nothing listens on, loopback bypassed.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Route

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's chromium (.ci/run installs it); Playwright downloads no browser of its own."""
SCREENSHOTS = Path(tempfile.gettempdir()) / "consent-ledger-browser"
"""Where the tests leave their screenshots, for a person to look at."""
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
"""Where the console's tests keep the screenshots its documentation shows, when
:data:`KEEP_SCREENSHOTS` is set (else beside the others, so a test run leaves the tree as it
was: each run's pages differ in their times and pseudonyms)."""
KEEP_SCREENSHOTS = "KEEP_CONSOLE_SCREENSHOTS"
LOOPBACK = "127.0.0.1"
HOSTLESS_SCHEMES = frozenset({"data", "blob", "about"})
"""URLs that name no host: a page's own inline data, never a request on the network."""

_RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(event.blockedURI || event.violatedDirective);
});
"""


def is_loopback(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in HOSTLESS_SCHEMES or parts.hostname == LOOPBACK


@dataclass(frozen=True)
class DocsServer:
    """A running API (tests/browser/conftest.py) and an admin token for it."""

    url: str
    admin_token: str


@dataclass
class OutsideRequests:
    """Every request the browser made for anything but the loopback address, each aborted."""

    urls: list[str] = field(default_factory=list)

    def handle(self, route: Route) -> None:
        url = route.request.url
        if is_loopback(url):
            route.continue_()
            return
        self.urls.append(url)
        route.abort("internetdisconnected")


def launch_offline(playwright: Playwright, dead_port: int) -> Browser:
    """Chromium, headless, resolving no name but the loopback address, its proxy ``dead_port``
    on the loopback address (nothing may listen there)."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        args=[f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {LOOPBACK}"],
        proxy={"server": f"http://{LOOPBACK}:{dead_port}", "bypass": LOOPBACK},
    )


@dataclass
class OfflinePage:
    """A page in a context of its own, every request of which :attr:`outside` watches, and
    every Content-Security-Policy violation of which it records."""

    context: BrowserContext
    page: Page
    outside: OutsideRequests

    @classmethod
    def open(cls, browser: Browser) -> OfflinePage:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        outside = OutsideRequests()
        context.route("**/*", outside.handle)
        context.add_init_script(_RECORD_VIOLATIONS)
        return cls(context, context.new_page(), outside)

    def csp_violations(self) -> list[str]:
        """What the page's Content-Security-Policy blocked: URLs, or the directive for inline
        code."""
        found: Any = self.page.evaluate("window.cspViolations")
        return [str(item) for item in found]

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.context.close()


def keep_screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot of ``page`` as ``<name>.png``: in ``docs/console/`` (which the
    console's documentation shows) when ``KEEP_CONSOLE_SCREENSHOTS=1``, else in
    :data:`SCREENSHOTS`."""
    folder = DOCS_SCREENSHOTS if os.environ.get(KEEP_SCREENSHOTS) else SCREENSHOTS / "console"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
