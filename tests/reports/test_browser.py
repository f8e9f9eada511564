"""The report in a real headless Chromium: renders cleanly, fetches nothing, verdict first."""

from __future__ import annotations


def test_report_renders_in_chromium_without_errors_or_network(chromium, hostile_report):
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    console_errors, page_errors, network, dialogs = [], [], [], []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    def guard(route):
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            network.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.on("requestfailed", lambda r: network.append(f"failed: {r.url}"))
    page.goto(hostile_report.resolve().as_uri(), wait_until="load")

    assert console_errors == [] and page_errors == []
    assert network == [], f"the report tried to fetch {network}"
    assert dialogs == [], "a script from the store ran"

    images = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight, e.alt])"
    )
    assert len(images) >= 7
    for complete, width, height, alt in images:
        assert complete and width > 0 and height > 0 and alt.strip()
    svgs = page.eval_on_selector_all(
        "svg", "els => els.map(e => [e.getBoundingClientRect().width, e.getBoundingClientRect().height])"
    )
    assert all(w > 0 and h > 0 for w, h in svgs)

    first = page.eval_on_selector("main section", "s => [s.id, s.querySelector('h2').textContent]")
    assert first == ["verdict", "Verdict"]
    assert page.locator("#verdict .verdict").count() >= 1
    assert page.locator("#verdict .verdict").first.inner_text().strip()
    headline = page.locator("#verdict .headline").first
    assert headline.is_visible() and "sensitiv" in headline.inner_text()
    # The study name is shown as text, not interpreted as markup.
    assert "<script>alert(1)</script>" in page.locator("#fairness").inner_text()
    page.close()


def test_failure_aware_report_with_cards_renders_every_figure(chromium, filled_analysis, tmp_path):
    """The report of an analysis with every new field filled: cards, measure tables, two-panel figures."""
    from reports.build import render

    path = tmp_path / "filled.html"
    path.write_text(render(filled_analysis), encoding="utf-8")
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.resolve().as_uri(), wait_until="load")
    assert errors == []
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth, e.alt])")
    assert len(images) >= 8 and all(done and width > 0 and alt.strip() for done, width, alt in images)
    cards = page.locator("#verdict article.card")
    assert cards.count() == 2
    first = cards.first
    assert "primary" in first.locator(".role-badge").inner_text().lower()
    assert "matched space: γ⁺, γ⁻, τ" in first.inner_text()
    assert first.locator("table.measures tbody tr").count() == 4
    assert first.locator(".finding").is_visible()
    # Nothing in the page is wider than the viewport (tables scroll inside their own box).
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 1280
    page.close()
