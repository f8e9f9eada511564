"""The npz data set: MedMNIST-style archives written with numpy, and every error it must name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runners.config import DataConfig
from runners.data import load_dataset

SIZES = {"train": 10, "val": 6, "test": 6}


def arrays(rgb: bool = False, classes: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Random images; labels where class c is positive on rows with row % (c + 2) == 0 (every split has each)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in SIZES.items():
        shape = (n, 12, 14, 3) if rgb else (n, 12, 14)
        out[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        out[f"{split}_labels"] = np.stack([(np.arange(n) % (c + 2) == 0) for c in range(classes)], axis=1).astype(
            np.uint8
        )
    return out


def save(tmp_path: Path, data: dict[str, np.ndarray], name: str = "set.npz", compressed: bool = False) -> Path:
    path = tmp_path / name
    (np.savez_compressed if compressed else np.savez)(path, **data)
    return path


def load(path: Path, tmp_path: Path, **settings):
    return load_dataset(DataConfig(name="npz", path=str(path), **settings), tmp_path / "cache")


def test_gray_archive_loads_with_default_class_names(tmp_path):
    data = arrays()
    ds = load(save(tmp_path, data), tmp_path)
    assert ds.class_names == ["class_00", "class_01", "class_02"]
    assert [len(ds.train), len(ds.val), len(ds.test)] == [10, 6, 6]
    np.testing.assert_array_equal(ds.val.images, data["val_images"])
    np.testing.assert_array_equal(ds.test.labels, data["test_labels"])
    assert ds.train.mask is None and ds.train.image(3).shape == (12, 14)
    assert "npz set.npz: 22 images of 12x14, 3 classes" in ds.description


def test_rgb_single_channel_and_class_names(tmp_path):
    ds = load(save(tmp_path, arrays(rgb=True)), tmp_path)
    assert ds.train.images.shape == (10, 12, 14, 3)
    data = arrays()
    data = {k: (v[..., None] if k.endswith("images") else v) for k, v in data.items()}
    data["class_names"] = np.array(["atelectasis", "cardiomegaly", "effusion"])
    ds = load(save(tmp_path, data, "named.npz"), tmp_path)
    assert ds.train.images.shape == (10, 12, 14)
    assert ds.class_names == ["atelectasis", "cardiomegaly", "effusion"]


def test_uncertain_labels_follow_the_policy(tmp_path):
    data = arrays()
    data["train_labels"] = data["train_labels"].astype(np.float32)
    data["train_labels"][1, 0] = -1
    data["train_labels"][2, 1] = np.nan
    path = save(tmp_path, data)
    ignored = load(path, tmp_path, uncertain="ignore")
    assert ignored.train.mask[1, 0] == 0 and ignored.train.mask[2, 1] == 0 and ignored.train.mask.sum() == 28
    ones = load(path, tmp_path, uncertain="one")
    assert ones.train.labels[1, 0] == 1 and ones.train.labels[2, 1] == 1 and ones.train.mask is None


def test_fingerprint_is_a_content_hash(tmp_path):
    data = arrays()
    first = load(save(tmp_path, data), tmp_path).fingerprint
    assert load(save(tmp_path, data, "copy.npz", compressed=True), tmp_path).fingerprint == first
    changed = dict(data, val_labels=data["val_labels"].copy())
    changed["val_labels"][1, 2] = 1
    assert load(save(tmp_path, changed, "changed.npz"), tmp_path).fingerprint != first
    pixel = dict(data, test_images=data["test_images"].copy())
    pixel["test_images"][0, 0, 0] ^= 1
    assert load(save(tmp_path, pixel, "pixel.npz"), tmp_path).fingerprint != first
    assert load(save(tmp_path, arrays(seed=1), "other.npz"), tmp_path).fingerprint != first


# ----- errors: each names the file and the array (row / column for labels) -----


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"absent\.npz' does not exist"):
        load(tmp_path / "absent.npz", tmp_path)


def test_missing_array(tmp_path):
    data = arrays()
    del data["val_labels"]
    with pytest.raises(ValueError, match=r"set\.npz: array\(s\) \['val_labels'\] not found"):
        load(save(tmp_path, data), tmp_path)


def test_not_an_archive(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match=r"text\.npz: not a readable \.npz archive"):
        load(tmp_path / "text.npz", tmp_path)


def test_non_binary_label_names_array_row_and_column(tmp_path):
    data = arrays()
    data["test_labels"][4, 1] = 2
    with pytest.raises(ValueError, match=r"set\.npz: test_labels row 4, column 1: label 2 is not binary"):
        load(save(tmp_path, data), tmp_path)


def test_multi_class_labels_get_a_hint(tmp_path):
    data = arrays()
    for split, n in SIZES.items():
        data[f"{split}_labels"] = (np.arange(n) % 4)[:, None]
    with pytest.raises(ValueError, match=r"train_labels row 2, column 0.*one class index per image"):
        load(save(tmp_path, data), tmp_path)


def test_float_images_are_refused(tmp_path):
    data = arrays()
    data["val_images"] = data["val_images"] / 255.0
    with pytest.raises(ValueError, match=r"set\.npz: val_images must hold 8-bit pixels"):
        load(save(tmp_path, data), tmp_path)


def test_image_and_label_counts_must_match(tmp_path):
    data = arrays()
    data["train_images"] = data["train_images"][:9]
    with pytest.raises(ValueError, match=r"train_images has 9 images but train_labels has 10 rows"):
        load(save(tmp_path, data), tmp_path)


def test_label_columns_must_match_across_splits(tmp_path):
    data = arrays()
    data["val_labels"] = data["val_labels"][:, :2]
    with pytest.raises(ValueError, match=r"val_labels has 2 columns but train_labels has 3"):
        load(save(tmp_path, data), tmp_path)


def test_class_without_positive_in_a_split(tmp_path):
    data = arrays()
    data["test_labels"][:, 2] = 0
    with pytest.raises(ValueError, match=r"set\.npz: class 'class_02' has no positive in the test split"):
        load(save(tmp_path, data), tmp_path)


def test_fewer_than_two_classes(tmp_path):
    with pytest.raises(ValueError, match=r"set\.npz: found 1 class\(es\).*>= 2"):
        load(save(tmp_path, arrays(classes=1)), tmp_path)
