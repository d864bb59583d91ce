"""/docs (Swagger UI) and /redoc (ReDoc) in headless chromium with no network but loopback: each
lists every operation of the OpenAPI document and loads nothing from anywhere else; Swagger's
Authorize button sends the token."""

from __future__ import annotations

import httpx
from fastapi.openapi.docs import get_swagger_ui_html
from playwright.sync_api import expect

from tests.support.browser import DocsServer, OfflinePage, is_loopback

METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})


def operations(url: str) -> dict[str, tuple[str, str]]:
    """The served OpenAPI document's operations: operationId -> (METHOD, path)."""
    document = httpx.get(f"{url}/openapi.json", timeout=30).json()
    return {
        operation["operationId"]: (method.upper(), path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_swagger_ui_lists_every_operation_with_the_network_cut_off(
    docs_server: DocsServer, offline_page: OfflinePage
) -> None:
    page = offline_page.page
    page.goto(f"{docs_server.url}/docs")
    append = page.locator(".opblock-post:has(.opblock-summary-path[data-path='/v1/events'])")
    expect(append).to_be_visible()
    expect(append).to_contain_text("POST")
    shown = page.locator(".opblock").evaluate_all(
        """blocks => blocks.map(block => [
            block.querySelector(".opblock-summary-method").textContent.trim(),
            block.querySelector(".opblock-summary-path").dataset.path,
        ])"""
    )
    assert {(method, path) for method, path in shown} == set(operations(docs_server.url).values())
    expect(page.get_by_role("button", name="Authorize")).to_be_visible()
    offline_page.screenshot("docs")
    assert offline_page.outside.urls == []
    assert offline_page.csp_violations() == []


def test_redoc_lists_every_operation_with_the_network_cut_off(
    docs_server: DocsServer, offline_page: OfflinePage
) -> None:
    page = offline_page.page
    page.goto(f"{docs_server.url}/redoc")
    expect(page.locator("h2", has_text="Append one event").first).to_be_visible()
    menu = page.locator("li[data-item-id*='operation/']")
    expect(menu.first).to_be_attached()
    ids = menu.evaluate_all("items => items.map(item => item.dataset.itemId)")
    listed = {item_id.rpartition("/")[2] for item_id in ids}
    assert listed == set(operations(docs_server.url))
    offline_page.screenshot("redoc")
    assert offline_page.outside.urls == []
    # Only ReDoc's "API docs by Redocly" logo, on another host, is refused by the page's policy:
    # every file of its own loaded.
    assert all(not is_loopback(url) for url in offline_page.csp_violations())


def test_swagger_authorize_sends_the_bearer_token(
    docs_server: DocsServer, offline_page: OfflinePage
) -> None:
    """A person pastes a token into Authorize, tries GET /metrics (admin only) and gets 200."""
    page = offline_page.page
    page.goto(f"{docs_server.url}/docs")
    page.get_by_role("button", name="Authorize").click()
    dialog = page.locator(".modal-ux")
    expect(dialog).to_contain_text("bearer")
    dialog.locator("input").fill(docs_server.admin_token)
    dialog.locator("button.authorize").click()  # its label: "Apply credentials"
    expect(dialog.locator("h6")).to_have_text("Authorized")
    dialog.locator("button.btn-done").click()
    metrics = page.locator(".opblock-get:has(.opblock-summary-path[data-path='/metrics'])")
    metrics.locator(".opblock-summary").click()
    metrics.get_by_role("button", name="Try it out").click()
    metrics.get_by_role("button", name="Execute").click()
    answer = metrics.locator(".live-responses-table .response")
    expect(answer.locator(".response-col_status")).to_have_text("200")
    expect(answer).to_contain_text("ledger_head")
    answer.scroll_into_view_if_needed()
    offline_page.screenshot("docs-authorized")
    assert offline_page.outside.urls == []


def test_the_guard_sees_a_page_that_loads_its_assets_from_a_cdn(
    docs_server: DocsServer, offline_page: OfflinePage
) -> None:
    """FastAPI's default docs page, which loads Swagger UI from a CDN, served from loopback:
    the guard records those requests, and the page lists nothing (what /docs did offline)."""
    page = offline_page.page
    default = bytes(get_swagger_ui_html(openapi_url="/openapi.json", title="default").body)
    page.route(
        f"{docs_server.url}/cdn-docs",
        lambda route: route.fulfill(body=default, content_type="text/html"),
    )
    page.goto(f"{docs_server.url}/cdn-docs")
    assert offline_page.outside.urls
    assert not any(is_loopback(url) for url in offline_page.outside.urls)
    assert page.locator(".opblock").count() == 0
