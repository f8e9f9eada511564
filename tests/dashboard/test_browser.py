"""The read-only dashboard still works in a real browser: headless Chromium renders the study list."""

from __future__ import annotations


def test_browser_shows_the_study_and_a_refused_delete(store, dashboard, chromium):
    dash = dashboard("--storage", store, "--quiet")
    page = chromium.new_page()
    page.set_default_timeout(300_000)  # generous: a busy machine renders slowly; waits end on the state
    try:
        page.goto(dash.base + "/dashboard")
        page.get_by_text("asl-demo").first.wait_for()
        # The page's own fetch of a mutating route is refused by the middleware.
        status = page.evaluate("async () => (await fetch('/api/studies/1', {method: 'DELETE'})).status")
        assert status == 403
        page.reload()
        page.get_by_text("asl-demo").first.wait_for()
    finally:
        page.close()
