"""The CXR-LT files as the challenge ships them: train.csv, development.csv and test.csv beside a
``files/pNN/pSUBJECT/sSTUDY/DICOM.jpg`` tree, metadata columns first, then one 0/1 column per class.

Loaded in-process for the details, and once as a real study (``python -m study.run`` in a subprocess)
with no flags beyond ``--data csv --data-path DIR``.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image

from runners.config import DataConfig
from runners.data import load_dataset

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["Atelectasis", "Cardiomegaly", "Pleural Effusion", "Support Devices"]
METADATA = ["dicom_id", "subject_id", "study_id", "ViewPosition"]
SUBJECTS = {"train": 12, "development": 4, "test": 4}  # two studies of one image each per subject


def write_official(root: Path, path_column: str = "path", files: tuple[str, ...] = tuple(SUBJECTS)) -> Path:
    """The official layout under ``root``; returns ``root``. Class c is positive on rows r with
    (r + c) % 2 == 0, so every class has positives (and negatives) in every file."""
    rng = np.random.default_rng(0)
    subject = 10000032
    for name in files:
        rows = []
        for _ in range(SUBJECTS[name]):
            subject += 7
            for k in range(2):
                study, dicom = 50414267 + 100 * subject % 99991 + k, f"{rng.integers(16**8):08x}-{k}"
                rel = f"files/p{str(subject)[:2]}/p{subject}/s{study}/{dicom}.jpg"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (40, 36), dtype=np.uint8), "L").save(root / rel)
                r = len(rows)
                rows.append(
                    {"dicom_id": dicom, "subject_id": subject, "study_id": study,
                     "ViewPosition": ["PA", "AP", "LATERAL"][r % 3], path_column: rel,
                     **{c: int((r + j) % 2 == 0) for j, c in enumerate(CLASSES)}}
                )  # fmt: skip
        with open(root / f"{name}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return root


def load(path: str | Path, cache: Path, **settings):
    return load_dataset(DataConfig(name="csv", path=str(path), **settings), cache)


def edit_cell(path: Path, row: int, column: str, value: str) -> None:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    rows[row][column] = value
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize("path_column", ["path", "fpath"])
def test_folder_of_three_files_gives_the_splits_from_their_names(tmp_path, path_column):
    root = write_official(tmp_path / "cxr-lt", path_column)
    ds = load(root, tmp_path / "cache")
    assert ds.class_names == CLASSES
    assert [len(ds.train), len(ds.val), len(ds.test)] == [24, 8, 8]  # development.csv is the validation split
    assert "split from the file names" in ds.description
    assert ds.source_info["path_column"] == path_column and ds.source_info["group_column"] == "subject_id"
    assert ds.source_info["metadata_columns"] == [
        "dicom_id", "subject_id (group)", "study_id", "ViewPosition", f"{path_column} (image)"
    ]  # fmt: skip
    assert Path(ds.val.paths[0]).is_relative_to(root / "files")
    summary = ds.summary()
    assert "4 classes: Atelectasis, Cardiomegaly, Pleural Effusion, Support Devices" in summary
    assert "left out as metadata: dicom_id, subject_id (group), study_id, ViewPosition" in summary


def test_comma_separated_files_and_other_split_names(tmp_path):
    root = write_official(tmp_path)
    os.rename(root / "development.csv", root / "valid_labels.csv")
    os.rename(root / "train.csv", root / "cxr-lt_train.csv")  # the split as a word of the name
    ds = load(f"{root / 'cxr-lt_train.csv'},{root / 'valid_labels.csv'},{root / 'test.csv'}", tmp_path / "cache")
    assert [len(ds.train), len(ds.val), len(ds.test)] == [24, 8, 8]


def test_without_development_file_validation_is_carved_keeping_patients_whole(tmp_path):
    root = write_official(tmp_path, files=("train", "test"))
    ds = load(f"{root / 'train.csv'},{root / 'test.csv'}", tmp_path / "cache", val_fraction=0.2)
    assert len(ds.val) > 0 and len(ds.test) == 8 and len(ds.train) + len(ds.val) == 24
    assert "validation carved from train (seed 0, grouped by 'subject_id')" in ds.description
    patient = {split: {Path(p).parts[-3] for p in s.paths} for split, s in ds.splits.items()}
    assert not patient["train"] & patient["val"]


def test_group_column_none_turns_grouping_off(tmp_path):
    root = write_official(tmp_path, files=("train", "test"))
    ds = load(f"{root / 'train.csv'},{root / 'test.csv'}", tmp_path / "cache", group_column=None)
    assert "grouped" not in ds.description and ds.source_info["group_column"] is None


@pytest.mark.parametrize("typo", ["2", "yes"])
def test_a_label_typo_is_an_error_naming_column_rows_and_values_never_a_dropped_class(tmp_path, typo):
    root = write_official(tmp_path)
    edit_cell(root / "development.csv", 2, "Cardiomegaly", typo)
    edit_cell(root / "test.csv", 5, "Cardiomegaly", "1.5")
    with pytest.raises(ValueError) as error:
        load(root, tmp_path / "cache")
    message = str(error.value)
    assert "column 'Cardiomegaly' looks like a label column (38 of 40 non-empty cells are 1, 0 or -1)" in message
    assert f"development.csv row 3 (line 4) '{typo}', test.csv row 6 (line 7) '1.5'" in message
    assert "--data-label-columns" in message


def test_a_label_column_missing_from_one_file(tmp_path):
    root = write_official(tmp_path)
    with open(root / "test.csv") as f:
        rows = list(csv.DictReader(f))
    with open(root / "test.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[c for c in rows[0] if c != "Support Devices"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ValueError, match=r"label column 'Support Devices' is missing from test\.csv"):
        load(root, tmp_path / "cache")


def test_a_file_whose_name_gives_no_split(tmp_path):
    root = write_official(tmp_path)
    os.rename(root / "test.csv", root / "holdout.csv")
    with pytest.raises(ValueError, match=r"cannot tell the split of holdout\.csv from the file name"):
        load(root, tmp_path / "cache")


def test_no_image_column_found(tmp_path):
    root = write_official(tmp_path, "image")
    with pytest.raises(ValueError, match=r"no image path column \(looked for 'path' or 'fpath'\)"):
        load(root, tmp_path / "cache")
    assert len(load(root, tmp_path / "cache", path_column="image").train) == 24


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: the folder holds no \.csv manifest"):
        load(tmp_path / "empty", tmp_path / "cache")


# ----- a real study on the official layout -----


def run_study(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("LOSSWEEP_STORAGE", None)
    return subprocess.run(
        [sys.executable, "-m", "study.run", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
def test_a_study_runs_on_the_official_layout_with_only_data_flags(tmp_path):
    root = write_official(tmp_path / "cxr-lt")
    result = run_study(["--loss", "asl", "--trials", "2", "--data", "csv", "--data-path", str(root)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "classes  4 classes: Atelectasis, Cardiomegaly, Pleural Effusion, Support Devices" in result.stdout
    assert "left out as metadata: dicom_id, subject_id (group), study_id, ViewPosition, path (image)" in result.stdout
    study = optuna.load_study(
        study_name="asl-cxr-lt-linear-probe-full", storage=f"sqlite:///{tmp_path / 'lossweep.db'}"
    )
    assert study.user_attrs["class_names"] == CLASSES
    source = study.user_attrs["data_source"]
    assert source["source"] == "csv" and source["num_classes"] == 4 and len(source["files"]) == 3
    assert "split from the file names" in source["description"] and "24/8/8" in source["description"]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and all(0 < t.value <= 1 for t in done)


@pytest.mark.slow
def test_bad_input_is_one_line_exit_2_and_no_store(tmp_path):
    root = write_official(tmp_path / "cxr-lt")
    edit_cell(root / "train.csv", 4, "Atelectasis", "yes")
    result = run_study(["--loss", "asl", "--trials", "2", "--data", "csv", "--data-path", str(root)], tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "column 'Atelectasis' looks like a label column" in lines[0], result.stderr
    assert "train.csv row 5 (line 6) 'yes'" in lines[0]
    assert not (tmp_path / "lossweep.db").exists()

    features = tmp_path / "features.npz"
    x = np.zeros((20, 4), np.float32)
    x[3, 1] = np.nan
    np.savez(features, train_features=x, train_labels=np.eye(20, 3))
    result = run_study(["--loss", "asl", "--trials", "2", "--data", "features", "--data-path", str(features)], tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "train_features row 3, column 1: value nan is not finite" in result.stderr
    assert not (tmp_path / "lossweep.db").exists()
    result = run_study(
        [
            "--loss",
            "asl",
            "--trials",
            "2",
            "--data",
            "features",
            "--data-path",
            str(features),
            "--protocol",
            "finetune",
        ],
        tmp_path,
    )
    assert result.returncode == 2 and "needs --protocol linear-probe" in result.stderr
    assert json.dumps(result.stderr.strip().splitlines()[:1])  # one line
    assert not (tmp_path / "lossweep.db").exists()


def test_a_study_of_listed_files_is_named_after_their_folder_and_resumes_where_the_files_lie_elsewhere():
    from runners.config import TrialConfig
    from study.config import StudyConfig, setting_differences

    def config(path: str) -> StudyConfig:
        return StudyConfig(loss="asl", n_trials=2, trial=TrialConfig(data=DataConfig(name="csv", path=path)))

    here = config("/data/cxr-lt/train.csv,/data/cxr-lt/development.csv,/data/cxr-lt/test.csv")
    assert here.default_study_name() == "asl-cxr-lt-linear-probe-full"
    # Another machine of a cluster with the same files (same data_fingerprint) under another folder.
    there = config("/mnt/cxr-lt/train.csv,/mnt/cxr-lt/development.csv,/mnt/cxr-lt/test.csv")
    stored = {"config": here.to_dict(), "data_fingerprint": "abc"}
    assert setting_differences(stored, {"config": there.to_dict(), "data_fingerprint": "abc"}) == []
    assert setting_differences(stored, {"config": there.to_dict(), "data_fingerprint": "def"})
