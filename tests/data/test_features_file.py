"""The features data set: precomputed embeddings in an .npz written with numpy, and every error it must name."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from runners.config import DataConfig, TrialConfig
from runners.data import load_dataset

SIZES = {"train": 40, "val": 12, "test": 12}
DIM, CLASSES = 8, 3


def arrays(splits=("train", "val", "test"), seed: int = 0, prefix: dict[str, str] | None = None) -> dict:
    """Random features; class c is positive on rows with row % (c + 2) == 0, so every split has each."""
    rng = np.random.default_rng(seed)
    out = {}
    for split in splits:
        n, name = SIZES[split], (prefix or {}).get(split, split)
        out[f"{name}_features"] = rng.normal(size=(n, DIM)).astype(np.float32)
        out[f"{name}_labels"] = np.stack([np.arange(n) % (c + 2) == 0 for c in range(CLASSES)], axis=1).astype(
            np.float32
        )
    return out


def save(tmp_path: Path, data: dict, name: str = "features.npz") -> Path:
    path = tmp_path / name
    np.savez(path, **data)
    return path


def load(path: Path, **settings):
    return load_dataset(DataConfig(name="features", path=str(path), **settings), path.parent / "cache")


def test_all_splits_load_with_names_hash_and_record(tmp_path):
    data = arrays()
    path = save(tmp_path, {**data, "class_names": np.array(["Edema", "Mass", "Nodule"])})
    ds = load(path)
    assert ds.class_names == ["Edema", "Mass", "Nodule"] and ds.has_features
    assert [len(ds.train), len(ds.val), len(ds.test)] == [40, 12, 12]
    np.testing.assert_array_equal(ds.val.features, data["val_features"])
    np.testing.assert_array_equal(ds.test.labels, data["test_labels"].astype(np.uint8))
    assert ds.source_info["source"] == "features file"
    assert ds.source_info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "features features.npz: 64 embeddings of 8 dimensions, 3 classes" in ds.description
    assert "splits from the file" in ds.description


def test_fingerprint_is_a_content_hash(tmp_path):
    data = arrays()
    first = load(save(tmp_path, data, "a.npz"))
    np.savez_compressed(tmp_path / "b.npz", **data)  # other bytes, same arrays
    second = load(tmp_path / "b.npz")
    assert first.fingerprint == second.fingerprint and first.source_info["sha256"] != second.source_info["sha256"]
    data["train_features"][0, 0] += 1.0
    assert load(save(tmp_path, data, "c.npz")).fingerprint != first.fingerprint


def test_development_prefix_names_the_validation_split(tmp_path):
    ds = load(save(tmp_path, arrays(prefix={"val": "development"})))
    assert len(ds.val) == 12


def test_missing_splits_are_carved_seeded_and_grouped(tmp_path):
    data = arrays(splits=("train",))
    data["train_features"] = np.random.default_rng(1).normal(size=(40, DIM))
    data["train_labels"] = np.ones((40, CLASSES))
    data["train_labels"][::3, 1] = 0
    groups = np.repeat(np.arange(10), 4)  # 10 patients of 4 images
    path = save(tmp_path, {**data, "train_groups": groups})
    ds = load(path, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert sum(len(s) for s in ds.splits.values()) == 40
    assert "val and test carved from train (seed 3, grouped by train_groups)" in ds.description
    rows = {tuple(r) for r in data["train_features"].astype(np.float32)}
    group_of = {tuple(r): g for r, g in zip(data["train_features"].astype(np.float32), groups, strict=True)}
    seen = {name: {group_of[tuple(r)] for r in split.features} for name, split in ds.splits.items()}
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"]) and not (seen["val"] & seen["test"])
    assert sum(len(split.features) for split in ds.splits.values()) == len(rows)
    again = load(path, val_fraction=0.2, test_fraction=0.2, seed=3)
    np.testing.assert_array_equal(again.val.features, ds.val.features)
    other = load(path, val_fraction=0.2, test_fraction=0.2, seed=4)
    assert not np.array_equal(other.val.features, ds.val.features) or len(other.val) != len(ds.val)


def test_only_test_missing_is_carved_and_val_kept(tmp_path):
    data = arrays(splits=("train", "val"))
    data["train_labels"][:] = 1
    ds = load(save(tmp_path, data), test_fraction=0.25)
    assert len(ds.val) == 12 and len(ds.test) > 0 and len(ds.train) + len(ds.test) == 40
    assert "test carved from train" in ds.description


@pytest.mark.parametrize("policy, mask_known", [("zero", None), ("ignore", False)])
def test_uncertain_labels_minus_one_and_nan(tmp_path, policy, mask_known):
    data = arrays()
    data["train_labels"][1, 0] = -1
    data["train_labels"][3, 2] = np.nan
    ds = load(save(tmp_path, data), uncertain=policy)
    assert ds.train.labels[1, 0] == 0 and ds.train.labels[3, 2] == 0
    if mask_known is None:
        assert ds.train.mask is None
    else:
        assert not ds.train.mask[1, 0] and not ds.train.mask[3, 2] and ds.train.mask.sum() == ds.train.mask.size - 2


def test_features_need_the_linear_probe():
    with pytest.raises(
        ValueError, match=r"--data features holds embeddings, not images: it needs --protocol linear-probe"
    ):
        TrialConfig(data=DataConfig(name="features", path="x.npz"), protocol="finetune")


# ----- errors: each names the file, the array, and the row / column -----


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"features file .*nowhere\.npz' does not exist"):
        load(tmp_path / "nowhere.npz")


def test_not_an_archive(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.npz: not a readable \.npz archive"):
        load(tmp_path / "junk.npz")


def test_parquet_is_refused_with_the_way_out(tmp_path):
    (tmp_path / "f.parquet").write_bytes(b"PAR1")
    with pytest.raises(ValueError, match=r"f\.parquet: parquet features are not read.*numpy\.savez"):
        load(tmp_path / "f.parquet")


def test_missing_train_arrays(tmp_path):
    data = arrays(splits=("val", "test"))
    with pytest.raises(ValueError, match=r"arrays train_features and train_labels not found; the file has"):
        load(save(tmp_path, data))


def test_features_without_labels(tmp_path):
    data = arrays()
    del data["val_labels"]
    with pytest.raises(ValueError, match=r"array\(s\) \['val_labels'\] not found beside val_features"):
        load(save(tmp_path, data))


def test_two_prefixes_for_one_split(tmp_path):
    data = {**arrays(), **arrays(splits=("val",), prefix={"val": "dev"})}
    with pytest.raises(ValueError, match=r"arrays \['dev', 'val'\] all name the val split"):
        load(save(tmp_path, data))


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(40, np.float32), r"train_features has shape \(40,\); expected \(N, D\)"),
        (np.array([["a"] * DIM] * 40), r"train_features must hold numbers"),
    ],
)
def test_bad_feature_arrays(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        load(save(tmp_path, {**arrays(), "train_features": bad}))


def test_nan_feature_names_array_row_and_column(tmp_path):
    data = arrays()
    data["val_features"][5, 3] = np.nan
    data["val_features"][7, 0] = np.inf
    with pytest.raises(ValueError, match=r"val_features row 5, column 3: value nan is not finite \(2 such values\)"):
        load(save(tmp_path, data))


def test_row_count_mismatch(tmp_path):
    data = arrays()
    data["test_labels"] = data["test_labels"][:-1]
    with pytest.raises(ValueError, match=r"test_features has 12 rows but test_labels has 11"):
        load(save(tmp_path, data))


def test_dimension_mismatch_across_splits(tmp_path):
    data = arrays()
    data["val_features"] = data["val_features"][:, :5]
    with pytest.raises(ValueError, match=r"val_features has 5 dimensions but train_features has 8"):
        load(save(tmp_path, data))


def test_label_columns_mismatch_across_splits(tmp_path):
    data = arrays()
    data["test_labels"] = data["test_labels"][:, :2]
    with pytest.raises(ValueError, match=r"test_labels has 2 columns but train_labels has 3"):
        load(save(tmp_path, data))


def test_non_binary_label_names_array_row_and_column(tmp_path):
    data = arrays()
    data["train_labels"][4, 1] = 2
    with pytest.raises(ValueError, match=r"train_labels row 4, column 1: label 2\.0 is not binary"):
        load(save(tmp_path, data))


def test_groups_of_the_wrong_length(tmp_path):
    with pytest.raises(ValueError, match=r"train_groups has shape \(39,\); expected \(40,\)"):
        load(save(tmp_path, {**arrays(), "train_groups": np.arange(39)}))


def test_class_without_positive_in_a_split(tmp_path):
    data = arrays()
    data["val_labels"][:, 2] = 0
    with pytest.raises(ValueError, match=r"class 'class_02' has no positive in the val split"):
        load(save(tmp_path, data))
