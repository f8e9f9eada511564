"""End-to-end tests of ``reports.build`` on real SQLite stores (analysis included, nothing mocked)."""

from __future__ import annotations

import html as html_lib
import json
import re
import subprocess
import sys

import optuna
import pandas as pd

from reports.build import build_report, files_dir, main

SCRIPT = "<script>alert(1)</script>"
N_BOOT = 100

SECTIONS = [
    "verdict",
    "fairness",
    "distributions",
    "dispersion",
    "expected-best",
    "importance",
    "failures",
    "tiers",
    "appendix",
]


def section_ids(text: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', text)


def section(text: str, name: str) -> str:
    start = text.index(f'<section id="{name}"')
    return text[start : text.index("</section>", start)]


def test_report_has_every_section_in_order_and_results_beside_it(pair_report):
    assert (pair_report.code, pair_report.stderr) == (0, "")
    out = pair_report.output
    assert f"wrote {out}" in pair_report.stdout  # the CLI says where the report went
    text = out.read_text(encoding="utf-8")
    assert section_ids(text) == SECTIONS
    verdict = section(text, "verdict")
    assert "RAL" in verdict and "ASL" in verdict
    assert "unfair comparison" not in verdict.lower()  # the two studies share every setting but the loss
    # Figures are inline PNGs with alt text and a caption; nothing is fetched.
    images = re.findall(r'<img src="([^"]{0,40})[^"]*" alt="([^"]*)"', text)
    assert len(images) >= 7
    assert all(src.startswith("data:image/png;base64,") and alt.strip() for src, alt in images)
    assert re.search(r"ASL \(asl\): median 0\.\d{3}, quartiles", images[0][1])  # alt text carries the numbers
    assert text.count("<figcaption>") == len(images)
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "<link" not in text and "<script" not in text.lower()
    # The dispersion table shows each study's mean with a bracketed interval, 3 decimals.
    dispersion = section(text, "dispersion")
    assert re.search(r"\d\.\d{3}<br><span class=\"ci\">\[\d\.\d{3}, \d\.\d{3}\]</span>", dispersion)
    # Results are written as data beside the report and linked from the appendix.
    written = sorted(p.name for p in files_dir(out).iterdir())
    assert {"analysis.json", "comparisons.csv", "summaries.csv", "trials.csv"} <= set(written)
    for name in written:
        assert f"{files_dir(out).name}/{name}" in text
    trials = pd.read_csv(files_dir(out) / "trials.csv")
    assert sorted(trials["study"].unique()) == ["asl", "ral"] and len(trials) == 60


def test_cli_defaults_to_the_env_store_and_every_study(pair_report):
    # pair_report ran with neither --storage nor --studies; the store came from $LOSSWEEP_STORAGE.
    text = pair_report.output.read_text(encoding="utf-8")
    store = str(pair_report.output.parent.parent / "store.db")
    assert store in section(text, "appendix")
    assert re.findall(r"<th>(asl|ral)</th>", section(text, "fairness")) == ["asl", "ral"]
    assert f"python -m study.dashboard --storage sqlite:///{store}" in section(text, "appendix")


def test_rcparams_unchanged_by_a_build(pair_report):
    assert pair_report.code == 0
    assert pair_report.rc_changed == set()


WORDS = {
    "less sensitive": "less sensitive",
    "more sensitive": "more sensitive",
    "not distinguishable": "not distinguishable on this data",
    "mixed evidence": "Mixed evidence",
    "no verdict": "No verdict",
}


def wording_matches_the_verdict(text: str, files) -> str:
    """The card's words say the analysis's direction; return the direction.

    Where the analysis decides the direction itself (analysis.json carries it with measures, a
    refusal or a p-value), the card must say that. Older analyses decide nothing: the card then
    follows the std ratio's interval, and so does the verdict paragraph.
    """
    verdict = section(text, "verdict")
    comparisons = pd.read_csv(files / "comparisons.csv")
    assert len(comparisons) == 1
    stored = json.loads((files / "analysis.json").read_text())["comparisons"][0]
    headline = re.search(r'<strong class="finding (\w+)">([^<]+)</strong>', verdict)
    assert headline, "no headline above the verdict"
    paragraph = re.search(r'<p class="verdict">(.*?)</p>', verdict, re.S).group(1)
    decided = (
        stored.get("measures")
        or stored.get("refusal")
        or stored.get("p_value") is not None
        or stored.get("direction", "not distinguishable") != "not distinguishable"
    )
    if decided:
        expected = stored["direction"]
    else:
        low, high = comparisons.loc[0, ["std_ratio_low", "std_ratio_high"]]
        expected = "less sensitive" if high < 1 else ("more sensitive" if low > 1 else "not distinguishable")
    assert WORDS[expected] in headline.group(2)
    for other in set(WORDS) - {expected}:
        assert WORDS[other] not in headline.group(2)
    tone = {"less sensitive": "clear", "more sensitive": "clear", "not distinguishable": "unclear"}
    assert headline.group(1) == tone.get(expected, headline.group(1))
    if not decided:
        assert WORDS[expected] in paragraph
        for other in {"less sensitive", "more sensitive", "not distinguishable"} - {expected}:
            assert other not in paragraph
    # The same paragraph states the seed floor and the failure rates.
    assert "seed noise floor" in paragraph and "trials failed (" in paragraph
    return expected


def test_verdict_card_says_the_analysis_direction(pair_report, store, tmp_path):
    clear = wording_matches_the_verdict(pair_report.output.read_text(encoding="utf-8"), files_dir(pair_report.output))
    # Focal and Hill studies, mAP drawn from the same distribution, each sweeping its own hyperparameters:
    # no direction either way (not distinguishable, or refused where the analysis checks the swept sets).
    url = store({"focal": "focal", "hill": "hill", "asl": "asl"}, 15)
    out = tmp_path / "same.html"
    assert main(["--storage", url, "--studies", "focal,hill", "-o", str(out), "--n-boot", str(N_BOOT)]) == 0
    same = wording_matches_the_verdict(out.read_text(encoding="utf-8"), files_dir(out))
    assert clear == "less sensitive" and same in {"not distinguishable", "no verdict"}  # both branches exercised
    # --studies picks only the named studies.
    text = out.read_text(encoding="utf-8")
    assert re.findall(r"<th>(\w+)</th>", section(text, "fairness"))[1:] == ["focal", "hill"]
    assert "<th>asl</th>" not in text


def test_unfair_comparison_is_flagged_and_the_difference_highlighted(hostile_report):
    text = hostile_report.read_text(encoding="utf-8")
    verdict = section(text, "verdict")
    assert "Not a fair comparison" in verdict and "Unfair comparison" in verdict
    head = re.search(r'<p class="card-head">.*?</p>', verdict, re.S).group(0)
    assert '<span class="badge bad">unfair comparison</span>' in head  # the card's header carries it too
    seed_row = re.search(r'<tr class="(\w*)"><td>seed</td><td>0</td><td>1</td></tr>', section(text, "fairness"))
    assert seed_row and seed_row.group(1) == "differs"
    assert re.search(r'<tr class=""><td>sampler</td>', section(text, "fairness"))  # equal settings are not marked
    assert '<span class="badge bad">no</span>' in section(text, "dispersion")


def test_study_name_class_names_and_reasons_are_escaped(hostile_report):
    text = hostile_report.read_text(encoding="utf-8")
    assert SCRIPT not in text
    assert "<script" not in text.lower()
    escaped = html_lib.escape(SCRIPT, quote=False)
    assert f"<th>{escaped}</th>" in section(text, "fairness")  # the study name
    assert f"boom {escaped}" in section(text, "failures")  # a fail reason
    assert f"{escaped}0" in section(text, "appendix")  # a class name, in the stored settings


def test_one_study_builds_and_says_there_is_no_comparison(store, tmp_path):
    url = store({"asl": "asl"}, 10)
    text = build_report(url, None, tmp_path / "one.html", n_boot=N_BOOT).read_text(encoding="utf-8")
    verdict = section(text, "verdict")
    assert "no comparison" in verdict
    assert "python -m study.run --loss ral" in verdict
    assert section_ids(text) == SECTIONS


def test_all_trials_failed_builds_with_notes_instead_of_figures(store, tmp_path):
    url = store({"asl": "asl", "ral": "ral"}, 6, failed=3, diverged=3)
    text = build_report(url, None, tmp_path / "failed.html", n_boot=N_BOOT).read_text(encoding="utf-8")
    assert section_ids(text) == SECTIONS
    verdict = section(text, "verdict")
    assert "asl: no complete trials" in verdict and "ral: no complete trials" in verdict
    assert "cannot be computed" in verdict  # the spread ratio, said in words instead of a number
    assert "not drawn:" in section(text, "distributions")
    # The failures are still counted and placed.
    failures = section(text, "failures")
    assert "diverged: non-finite loss" in failures
    assert "<img" in failures


def test_fewer_than_five_complete_trials_are_flagged(store, tmp_path):
    url = store({"asl": "asl", "ral": "ral"}, 4, failed=0, diverged=0)
    text = build_report(url, None, tmp_path / "few.html", n_boot=N_BOOT).read_text(encoding="utf-8")
    assert "Too few trials to judge" in section(text, "verdict")
    assert text.count('<span class="badge warn">too few</span>') == 2


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("reports.build: error: ")
    assert "Traceback" not in err
    return lines[0]


def test_cli_empty_store_is_a_usage_error(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.storages.RDBStorage(url).remove_session()  # a real store with no studies
    assert main(["--storage", url, "-o", str(tmp_path / "r.html")]) == 2
    assert "holds no studies" in _one_line_error(capsys)
    assert not (tmp_path / "r.html").exists()


def test_cli_missing_store_file_is_a_usage_error(tmp_path, capsys):
    missing = tmp_path / "nope.db"
    assert main(["--storage", f"sqlite:///{missing}", "-o", str(tmp_path / "r.html")]) == 2
    _one_line_error(capsys)
    assert not missing.exists(), "reading a report must not create a store"


def test_cli_unknown_study_names_what_exists(store, tmp_path, capsys):
    url = store({"asl": "asl"}, 5)
    assert main(["--storage", url, "--studies", "ral", "-o", str(tmp_path / "r.html")]) == 2
    line = _one_line_error(capsys)
    assert "ral" in line and "asl" in line


def test_cli_bad_flag_and_password_redaction(capsys):
    assert main(["--no-such-flag"]) == 2
    _one_line_error(capsys)
    assert main(["--storage", "postgresql://me:s3cret@127.0.0.1:1/db", "-o", "/tmp/x.html"]) == 2
    line = _one_line_error(capsys)
    assert "s3cret" not in line


def test_module_runs_as_a_program_and_imports_no_torch(tmp_path):
    code = "import sys, reports.build, reports.charts, reports.tables, analysis.figures; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    done = subprocess.run(
        [sys.executable, "-m", "reports.build", "--storage", f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("reports.build: error: ") and len(done.stderr.strip().splitlines()) == 1


def test_code_spans_escape_before_marking_up():
    from reports.build import code_spans

    out = str(code_spans("run `python -m study.run --loss <ral>` then <b>rebuild</b> `"))
    assert out == ("run <code>python -m study.run --loss &lt;ral&gt;</code> then &lt;b&gt;rebuild&lt;/b&gt; `")


def test_cli_unwritable_output_is_a_usage_error(store, tmp_path, capsys):
    url = store({"asl": "asl"}, 6)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["--storage", url, "-o", str(blocker / "r.html"), "--n-boot", str(N_BOOT)]) == 2
    assert "cannot write the report" in _one_line_error(capsys)


def test_postgres_store_report_never_shows_the_password(postgres_url, tmp_path):
    from sqlalchemy import make_url

    from benchmarks.report import make_store

    password = make_url(postgres_url).password
    make_store(postgres_url, {"asl": "asl", "ral": "ral"}, 12)
    out = build_report(postgres_url, None, tmp_path / "pg.html", n_boot=N_BOOT)
    text = out.read_text(encoding="utf-8")
    assert section_ids(text) == SECTIONS
    assert "postgres:***@127.0.0.1" in section(text, "appendix")
    assert password not in text
    for path in files_dir(out).iterdir():
        assert password not in path.read_text(encoding="utf-8"), path.name
