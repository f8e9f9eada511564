"""End-to-end tests of ``reports.build`` on real SQLite stores (analysis included, nothing mocked)."""

from __future__ import annotations

import html as html_lib
import re
import subprocess
import sys

import matplotlib
import optuna

from reports.build import build_report, files_dir, main

SCRIPT = "<script>alert(1)</script>"
N_BOOT = 100

SECTIONS = ["verdict", "fairness", "distributions", "dispersion", "expected-best", "importance", "failures",
            "tiers", "appendix"]


def section_ids(text: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', text)


def section(text: str, name: str) -> str:
    start = text.index(f'<section id="{name}"')
    return text[start:text.index("</section>", start)]


def test_report_has_every_section_in_order_and_results_beside_it(store, tmp_path):
    url = store({"asl": "asl", "ral": "ral"}, 40)
    out = build_report(url, None, tmp_path / "report.html", n_boot=N_BOOT)
    text = out.read_text(encoding="utf-8")
    assert section_ids(text) == SECTIONS
    verdict = section(text, "verdict")
    assert "ral" in verdict and "asl" in verdict
    # Figures are inline PNGs with alt text and a caption; nothing is fetched.
    images = re.findall(r'<img src="([^"]{0,40})[^"]*" alt="([^"]*)"', text)
    assert len(images) >= 7
    assert all(src.startswith("data:image/png;base64,") and alt.strip() for src, alt in images)
    assert re.search(r"asl: median 0\.\d{3}, quartiles", images[0][1])  # alt text carries the numbers
    assert text.count("<figcaption>") == len(images)
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "<link" not in text and "<script" not in text.lower()
    # The dispersion table shows each study's mean with a bracketed interval, 3 decimals.
    dispersion = section(text, "dispersion")
    assert re.search(r"\d\.\d{3}<br><span class=\"ci\">\[\d\.\d{3}, \d\.\d{3}\]</span>", dispersion)
    # Results are written as data beside the report and linked from the appendix.
    written = sorted(p.name for p in files_dir(out).iterdir())
    assert written, "Analysis.write wrote nothing"
    for name in written:
        assert f'{files_dir(out).name}/{name}' in text


def test_study_name_class_names_and_reasons_are_escaped(hostile_report):
    text = hostile_report.read_text(encoding="utf-8")
    assert SCRIPT not in text
    assert "<script" not in text.lower()
    escaped = html_lib.escape(SCRIPT, quote=False)
    assert f"<th>{escaped}</th>" in section(text, "fairness")  # the study name
    assert f"boom {escaped}" in section(text, "failures")  # a fail reason
    assert f"{escaped}0" in section(text, "appendix")  # a class name, in the stored settings


def test_one_study_builds_and_says_there_is_no_comparison(store, tmp_path):
    url = store({"asl": "asl"}, 20)
    text = build_report(url, None, tmp_path / "one.html", n_boot=N_BOOT).read_text(encoding="utf-8")
    verdict = section(text, "verdict")
    assert "no comparison" in verdict
    assert "python -m study.run --loss ral" in verdict
    assert section_ids(text) == SECTIONS


def test_all_trials_failed_builds_with_notes_instead_of_figures(store, tmp_path):
    url = store({"asl": "asl", "ral": "ral"}, 6, failed=3, diverged=3)
    text = build_report(url, None, tmp_path / "failed.html", n_boot=N_BOOT).read_text(encoding="utf-8")
    assert section_ids(text) == SECTIONS
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


def test_selected_studies_only(store, tmp_path):
    url = store({"asl": "asl", "ral": "ral", "asl-b": "asl"}, 12)
    text = build_report(url, ["asl-b"], tmp_path / "sel.html", n_boot=N_BOOT).read_text(encoding="utf-8")
    fairness = section(text, "fairness")
    assert "<th>asl-b</th>" in fairness and "<th>ral</th>" not in fairness


def test_rcparams_unchanged_by_a_build(store, tmp_path):
    url = store({"asl": "asl", "ral": "ral"}, 20)
    before = dict(matplotlib.rcParams)
    build_report(url, None, tmp_path / "rc.html", n_boot=N_BOOT)
    after = dict(matplotlib.rcParams)
    changed = {k for k in before if repr(before[k]) != repr(after[k])}
    assert not changed


def test_cli_writes_the_report_and_says_where(store, tmp_path, capsys):
    url = store({"asl": "asl", "ral": "ral"}, 15)
    out = tmp_path / "sub" / "cli.html"
    assert main(["--storage", url, "--studies", "asl,ral", "-o", str(out), "--n-boot", str(N_BOOT)]) == 0
    assert out.is_file() and files_dir(out).is_dir()
    assert str(out) in capsys.readouterr().out


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
    code = ("import sys, reports.build, reports.charts, reports.tables, analysis.figures; "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    done = subprocess.run([sys.executable, "-m", "reports.build", "--storage", f"sqlite:///{tmp_path / 'x.db'}"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
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
