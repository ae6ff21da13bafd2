"""Fixtures of the browser tests (test_web.py, test_docs_offline.py): the service as users start
it, and Chromium (tests/service/browser.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.service.browser import chromium, running_service


@pytest.fixture(scope="module")
def service_url() -> Iterator[str]:
    """The URL of ``python -m service`` on the shipped model, once ready (one per test module)."""
    with running_service() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """A Playwright browser on Debian's Chromium (skips without it, except under CI)."""
    with chromium() as browser:
        yield browser
