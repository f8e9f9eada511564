"""``reports.build --publish``: the verdict in each study's optuna-dashboard note, on SQLite and PostgreSQL."""

from __future__ import annotations

import optuna
import pytest
from optuna_dashboard import get_note

from benchmarks.report import make_store
from reports.build import main
from reports.publish import md, md_prose

N_BOOT = 50


def notes(url: str) -> dict[str, str]:
    return {
        s.study_name: get_note(optuna.load_study(study_name=s.study_name, storage=url))
        for s in optuna.get_all_study_summaries(url)
    }


def note_attrs(url: str, name: str) -> dict:
    storage = optuna.storages.RDBStorage(url)
    try:
        attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(name))
    finally:
        storage.engine.dispose()
    return {k: v for k, v in attrs.items() if k.startswith("dashboard:note")}


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reports.build: error: ") and "Traceback" not in err, err
    return lines[0]


def test_publish_writes_each_note_names_the_objective_and_replaces_on_republish(tmp_path, capsys):
    url = make_store(f"sqlite:///{tmp_path / 'store.db'}", {"asl": "asl", "ral": "ral"}, 20)
    args = ["--storage", url, "-o", str(tmp_path / "r.html"), "--n-boot", str(N_BOOT), "--publish"]
    assert main(args) == 0
    assert "published each study's verdict" in capsys.readouterr().out
    first = notes(url)
    assert set(first) == {"asl", "ral"}
    for name, body in first.items():
        assert body.startswith("## lossweep verdict")
        assert "RAL vs ASL" in body and "sensitiv" in body  # the comparison's direction in words
        assert f"## This study: {name}" in body and "trials complete" in body
        assert optuna.load_study(study_name=name, storage=url).metric_names == ["val mAP"]
    report = (tmp_path / "r.html").read_text(encoding="utf-8")
    words = first["ral"].split("**")[1]  # the bold direction line of the card
    assert words in report  # the note says what the report says
    before = note_attrs(url, "ral")
    assert main(args) == 0
    after = note_attrs(url, "ral")
    assert len(after) == len(before)  # replaced, not appended
    assert after["dashboard:note_ver"] == before["dashboard:note_ver"] + 1
    second = notes(url)
    strip = lambda body: body.rsplit("_Published", 1)[0]  # noqa: E731 - the time stamp changes
    assert {k: strip(v) for k, v in second.items()} == {k: strip(v) for k, v in first.items()}


def test_publish_without_the_flag_leaves_the_store_alone(tmp_path):
    url = make_store(f"sqlite:///{tmp_path / 'store.db'}", {"asl": "asl", "ral": "ral"}, 8)
    assert main(["--storage", url, "-o", str(tmp_path / "r.html"), "--n-boot", str(N_BOOT)]) == 0
    assert notes(url) == {"asl": "", "ral": ""}
    assert optuna.load_study(study_name="asl", storage=url).metric_names is None


def test_note_markdown_escapes_what_comes_from_the_store():
    assert md("<script>*x*|") == r"\<script\>\*x\*\|"
    assert (
        md_prose("run `python -m study.run --loss <ral>` for *x*")
        == r"run `python -m study.run --loss <ral>` for \*x\*"
    )


def test_bad_delta_is_a_usage_error(tmp_path, capsys):
    url = make_store(f"sqlite:///{tmp_path / 'store.db'}", {"asl": "asl"}, 5)
    assert main(["--storage", url, "-o", str(tmp_path / "r.html"), "--delta", "1.5"]) == 2
    assert "--delta must be between 0 and 1" in one_line(capsys)


def test_publish_on_postgres_and_a_read_only_database_is_one_line(fresh_password_database, tmp_path, capsys):
    import sqlalchemy
    import sqlalchemy.exc
    from sqlalchemy import make_url

    url = make_url(fresh_password_database).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    password = make_url(url).password
    make_store(url, {"asl": "asl", "ral": "ral"}, 12)
    args = ["--storage", url, "-o", str(tmp_path / "pg.html"), "--n-boot", str(N_BOOT), "--publish"]
    assert main(args) == 0
    capsys.readouterr()
    assert all(body.startswith("## lossweep verdict") for body in notes(url).values())
    # Make the database read-only for every new session: analysis still reads it, the notes cannot be written.
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"ALTER DATABASE {make_url(url).database} SET default_transaction_read_only = on")
    engine.dispose()
    before = notes(url)
    assert main(args) == 2
    line = one_line(capsys)
    assert "cannot publish the verdict" in line and "read-only" in line
    assert password not in line
    assert notes(url) == before
    refused = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError)
    with pytest.raises(refused):  # the database really refuses writes (the test can fail)
        optuna.create_study(storage=url, study_name="x")


def test_delta_reaches_the_analysis_or_the_report_says_it_was_not_used(tmp_path):
    """``--delta`` goes to ``analysis.analyse`` where it takes one; an older analysis is told to the reader."""
    import inspect

    from analysis import analyse
    from reports.build import _analyse

    url = make_store(f"sqlite:///{tmp_path / 'store.db'}", {"asl": "asl", "ral": "ral"}, 8)
    result = _analyse(url, None, n_boot=N_BOOT, delta=0.05)
    unused = any("--delta 0.05 was not used" in m for m in result.messages)
    assert unused == ("delta" not in inspect.signature(analyse).parameters)
    default = _analyse(url, None, n_boot=N_BOOT, delta=0.01)
    assert not any("--delta" in m for m in default.messages)
