"""Fixtures of the Studio tests: a real ``actionpp studio`` server (headless, offscreen VTK) and Debian's Chromium
driven by Playwright. Helpers and constants live in ``studio_web_testing``; the tests run in the web virtualenv
(``make test-web``) and skip, with the reason, elsewhere."""

from __future__ import annotations

import pytest
from studio_web_testing import CHROMIUM, CHROMIUM_ARGS, TINY_ENGINE, StudioServer, requireBrowser, requireWeb


@pytest.fixture
def studio(tmp_path):
    """A Studio on 127.0.0.1 over 4 tiny cardiac phantoms (2 labeled), training with tiny engine flags."""
    requireWeb()
    server = StudioServer(tmp_path / "work", "--engine-args", TINY_ENGINE)
    yield server
    server.stop()


@pytest.fixture
def browser():
    requireBrowser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
