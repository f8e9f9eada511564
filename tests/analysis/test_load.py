"""load_studies on real SQLite stores."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import optuna
import pandas as pd
import pytest

import analysis.load as load
from analysis import load_studies
from analysis.testing import StudySpec


def test_tidy_frame(make_store):
    url = make_store(
        StudySpec("asl-m", "asl", 40, fail_rate=0.1, diverge_rate=0.1, replicates=2), StudySpec("ral-m", "ral", 30)
    )
    frame, settings = load_studies(url)
    assert list(frame["study"].cat.categories) == ["asl-m", "ral-m"]
    assert (frame.groupby("study", observed=True).size() == pd.Series({"asl-m": 40, "ral-m": 30})).all()
    for col in (
        "study",
        "loss",
        "number",
        "state",
        "status",
        "value",
        "param_gamma_neg",
        "param_clip",
        "val_mAP",
        "val_mAP_tail",
        "test_mAP",
        "fail_reason",
        "seconds",
        "duration",
        "design_index",
        "replicate_values",
    ):
        assert col in frame, col
    assert "val_per_class_ap" not in frame and "seeds" not in frame
    assert set(frame["status"].astype(str)) == {"complete", "diverged", "failed"}
    asl = frame[frame["study"] == "asl-m"]
    done = asl[asl["status"] == "complete"]
    np.testing.assert_allclose(done["value"], done["val_mAP"])
    assert asl.loc[asl["status"] != "complete", "value"].isna().all()
    assert (asl.loc[asl["status"] == "diverged", "state"] == "FAIL").all()
    assert asl.loc[asl["status"] == "diverged", "fail_reason"].str.contains("non-finite").all()
    assert all(len(r) == 2 for r in done["replicate_values"])
    np.testing.assert_allclose(done["value"], [np.mean(r) for r in done["replicate_values"]])
    assert "param_lam" not in frame  # matched mode sweeps only the parameters ASL and RAL share
    assert frame["duration"].ge(0).all() and frame["seconds"].gt(0).all()
    assert settings["asl-m"]["loss"] == "asl" and settings["ral-m"]["config"]["n_trials"] == 30


def test_bulk_reader_matches_optuna_api(make_store):
    url = make_store(StudySpec("asl-m", "asl", 25, diverge_rate=0.2), StudySpec("ral-m", "ral", 25, fail_rate=0.2))
    fast, _ = load_studies(url)
    slow, _, _ = load.read_studies(url, bulk=False)
    pd.testing.assert_frame_equal(fast.drop(columns="replicate_values"), slow.drop(columns="replicate_values"))
    assert fast["replicate_values"].tolist() == slow["replicate_values"].tolist()


def test_selection_and_errors(make_store, tmp_path):
    url = make_store(StudySpec("asl-m", "asl", 5), StudySpec("ral-m", "ral", 5))
    frame, settings = load_studies(url, ["ral-m"])
    assert set(frame["study"].astype(str)) == {"ral-m"} and list(settings) == ["ral-m"]
    with pytest.raises(ValueError, match=r"'nope'.*asl-m, ral-m"):
        load_studies(url, ["nope", "asl-m"])
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.storages.RDBStorage(empty)  # creates the tables, no study
    with pytest.raises(ValueError, match=r"^no studies in sqlite:///"):
        load_studies(empty)


def test_foreign_study_is_loaded(make_store):
    url = make_store(StudySpec("my-focal-run", "focal", 12, lossweep=False))
    frame, loaded, _ = load.read_studies(url)
    # The loss is read from the study's attributes only; a foreign study has none, and its name is not guessed at.
    assert len(frame) == 12 and frame["loss"].iloc[0] == "unknown"
    assert any("not made by lossweep" in m and "'unknown'" in m for m in loaded["my-focal-run"].messages)


def test_running_trials_are_left_out(make_store):
    url = make_store(StudySpec("asl-m", "asl", 6))
    study = optuna.load_study(study_name="asl-m", storage=url)
    study.ask()  # a RUNNING trial
    frame, loaded, _ = load.read_studies(url)
    assert len(frame) == 6 and loaded["asl-m"].n_unfinished == 1
    assert any("still running" in m for m in loaded["asl-m"].messages)


def test_analysis_does_not_import_torch():
    code = (
        "import sys, analysis, analysis.analyse, analysis.importance, analysis.load, analysis.testing, "
        "study.storage, study.errors; bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'runners')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_default_store_from_environment(make_store, monkeypatch):
    url = make_store(StudySpec("asl-m", "asl", 4))
    monkeypatch.setenv("LOSSWEEP_STORAGE", url)
    frame, _ = load_studies(None)
    assert len(frame) == 4


def test_missing_store_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match=r"no lossweep store at sqlite:///.*missing\.db"):
        load_studies(f"sqlite:///{tmp_path / 'missing.db'}")
    with pytest.raises(ValueError, match="store URL"):
        load_studies(42)  # type: ignore[arg-type]


def test_postgres_store_reads_like_sqlite(fresh_database, make_store, tmp_path):
    specs = [
        StudySpec("asl-m", "asl", 20, diverge_rate=0.2, replicates=2),
        StudySpec("ral-m", "ral", 15, fail_rate=0.2),
    ]
    from analysis.testing import build_store

    build_store(fresh_database, specs, seed=1)
    pg, pg_settings = load_studies(fresh_database)
    lite, lite_settings = load_studies(make_store(*specs, seed=1))
    assert pg_settings == lite_settings
    pd.testing.assert_frame_equal(pg.drop(columns="replicate_values"), lite.drop(columns="replicate_values"))
    assert pg["replicate_values"].tolist() == lite["replicate_values"].tolist()
    api, _, _ = load.read_studies(fresh_database, bulk=False)
    pd.testing.assert_frame_equal(pg.drop(columns="replicate_values"), api.drop(columns="replicate_values"))
