"""/docs (Swagger UI) and /redoc work on a machine without internet: their files come from the
service (issue 22). Chromium opens them with every request to another host aborted.

The service runs as users start it (``python -m service``, shipped model, CPU); the browser is
Debian's Chromium, as in test_web.py (skipped without it, except under CI).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.service.browser import OUTPUT

RENDER_TIMEOUT_MS = 30_000
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture
def offline(browser):
    """A page whose requests to any host but the service's are aborted; ``page.left`` lists them."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    left: list[str] = []

    def only_local(route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            left.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_local)
    page = context.new_page()
    page.set_default_timeout(RENDER_TIMEOUT_MS)
    page.left = left
    page.blocked = []  # what the pages' Content-Security-Policy refused to load
    page.on("console", lambda m: page.blocked.append(m.text) if "Content Security Policy" in m.text else None)
    yield page
    context.close()


def test_swagger_ui_renders_the_operations_offline(offline, service_url):
    offline.goto(f"{service_url}/docs")
    operation = offline.locator('.opblock-summary-path[data-path="/v1/classify"]')
    operation.wait_for(state="visible")
    assert "AdaFocus video recognition" in offline.text_content(".info .title")
    assert offline.locator('.opblock-summary-path[data-path="/v1/models"]').is_visible()
    operation.click()  # expanded: the upload's file field, from /openapi.json
    offline.locator(".opblock-body").first.wait_for(state="visible")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    offline.screenshot(path=OUTPUT / "docs.png", full_page=True)
    assert offline.left == [] and offline.blocked == []


def test_redoc_renders_the_operations_offline(offline, service_url):
    offline.goto(f"{service_url}/redoc")
    offline.get_by_text("classify an uploaded video with early exit").first.wait_for(state="visible")
    assert offline.get_by_text("classify an uploaded video with early exit").count() >= 1
    assert offline.get_by_text("/v1/models").count() >= 1
    OUTPUT.mkdir(parents=True, exist_ok=True)
    offline.screenshot(path=OUTPUT / "redoc.png", full_page=True)
    assert offline.left == []
    # Only ReDoc's vendor logo (a CDN image it hides when it fails) is refused by the page's policy.
    assert all("logo-mini.svg" in message for message in offline.blocked), offline.blocked
