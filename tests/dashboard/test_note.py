"""The verdict that ``reports.build --publish`` writes is what the shared dashboard shows next to the trials."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna_dashboard import get_note

from benchmarks.report import make_store
from reports.build import main


@pytest.fixture
def published(tmp_path):
    """A store with ASL and RAL studies whose notes carry the published verdict; (url, {study: note})."""
    url = make_store(f"sqlite:///{tmp_path / 'published.db'}", {"asl": "asl", "ral": "ral"}, 15)
    assert main(["--storage", url, "-o", str(tmp_path / "r.html"), "--n-boot", "50", "--publish"]) == 0
    bodies = {name: get_note(optuna.load_study(study_name=name, storage=url)) for name in ("asl", "ral")}
    assert all(bodies.values())
    return url, bodies


def _direction(body: str) -> str:
    """The card's direction line, the words a reader looks for."""
    return body.split("**")[1]


def test_dashboard_api_serves_the_published_note(published, dashboard):
    url, bodies = published
    dash = dashboard("--storage", url, "--quiet")
    ids = {s["study_name"]: s["study_id"] for s in dash.studies()}
    for name, body in bodies.items():
        status, raw = dash.request("GET", f"/api/studies/{ids[name]}")
        assert status == 200
        detail = json.loads(raw)
        assert detail["note"]["body"] == body and detail["note"]["version"] == 1
        assert "RAL vs ASL" in detail["note"]["body"]
        assert detail["objective_names"] == ["val mAP"]  # shown instead of "Objective 0"


def test_dashboard_study_page_shows_the_verdict_in_chromium(published, dashboard, chromium):
    url, bodies = published
    dash = dashboard("--storage", url, "--quiet")
    study_id = {s["study_name"]: s["study_id"] for s in dash.studies()}["ral"]
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{dash.base}/dashboard/studies/{study_id}/note")
        # The study's Note page renders it as Markdown: its headline and the card's direction line appear as text.
        page.get_by_text("lossweep verdict").first.wait_for(timeout=60_000)
        page.get_by_text(_direction(bodies["ral"])).first.wait_for(timeout=60_000)
        page.get_by_text("This study: ral").first.wait_for(timeout=60_000)
    finally:
        page.close()
    assert errors == []
