"""The read-only dashboard still works in a real browser: headless Chromium renders the study list."""

from __future__ import annotations

import os
import shutil

import pytest

sync_api = pytest.importorskip("playwright.sync_api")


def _chromium() -> str:
    path = os.environ.get("LOSSWEEP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        if os.environ.get("LOSSWEEP_REQUIRE_SERVERS") == "1":
            pytest.fail("headless Chromium required (LOSSWEEP_REQUIRE_SERVERS=1) but none found")
        pytest.skip("no Chromium installed")
    return path


def test_browser_shows_the_study_and_a_refused_delete(store, dashboard):
    dash = dashboard("--storage", store, "--quiet")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(dash.base + "/dashboard")
            page.get_by_text("asl-demo").first.wait_for(timeout=60_000)
            # The page's own fetch of a mutating route is refused by the middleware.
            status = page.evaluate("async () => (await fetch('/api/studies/1', {method: 'DELETE'})).status")
            assert status == 403
            page.reload()
            page.get_by_text("asl-demo").first.wait_for(timeout=60_000)
        finally:
            browser.close()
