"""The csv data set: a manifest plus real PNG/JPEG files written with Pillow, and every error it must name."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runners.config import DataConfig
from runners.data import load_dataset
from runners.data.csv_manifest import read_image, seeded_split

LABEL_NAMES = ["effusion", "nodule", "edema"]


def load(path: Path, cache_dir: Path, **settings):
    return load_dataset(DataConfig(name="csv", path=str(path), **settings), cache_dir)


def test_column_split_auto_detects_labels_and_keeps_rows(manifest, cache_dir, tmp_path):
    ds = load(manifest(), cache_dir)
    # 'age' (numbers) and 'patient' (text) are not labels; the three 0/1 columns are, in file order.
    assert ds.class_names == LABEL_NAMES
    assert [len(ds.train), len(ds.val), len(ds.test)] == [6, 3, 3]
    expected = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 0], [1, 0, 1], [0, 1, 1]], np.uint8)
    np.testing.assert_array_equal(ds.train.labels, expected)
    assert ds.train.mask is None
    assert ds.val.paths[0] == os.fspath(tmp_path / "images" / "img06.png")
    assert ds.train_positives.tolist() == [3, 3, 4]
    assert "split from column 'split'" in ds.description and "6/3/3" in ds.description


def test_images_are_read_gray_or_rgb_at_their_own_size(manifest, cache_dir, tmp_path):
    ds = load(manifest(), cache_dir)
    gray, rgb = ds.train.image(0), ds.train.image(1)
    assert gray.dtype == np.uint8 and gray.shape == (16, 20)
    assert rgb.dtype == np.uint8 and rgb.shape == (16, 21, 3)
    # PNG is lossless: the pixels written are the pixels read.
    np.testing.assert_array_equal(gray, np.asarray(Image.open(tmp_path / "images" / "img00.png")))


def test_development_is_a_validation_split_name(manifest, cache_dir):
    ds = load(manifest(split=["train"] * 6 + ["development"] * 3 + ["test"] * 3), cache_dir)
    assert [len(ds.train), len(ds.val), len(ds.test)] == [6, 3, 3]


def test_label_columns_by_name_set_the_class_order(manifest, cache_dir):
    ds = load(manifest(), cache_dir, label_columns=("edema", "effusion"))
    assert ds.class_names == ["edema", "effusion"]
    assert ds.train.labels[:, 0].tolist() == [1, 1, 0, 0, 1, 1]


@pytest.mark.parametrize(
    "policy, value_row0, value_row3, mask_row0, mask_row3",
    [("zero", 0, 0, None, None), ("one", 1, 1, None, None), ("ignore", 0, 0, False, False)],
)
def test_uncertain_policy(manifest, cache_dir, policy, value_row0, value_row3, mask_row0, mask_row3):
    nodule = [-1, 1, 1, "", 0, 1, 1, 0, 0, 1, 1, 0]  # row 0: -1 (hedged), row 3: empty (not mentioned)
    ds = load(manifest(nodule=nodule), cache_dir, uncertain=policy)
    assert ds.train.labels[0, 1] == value_row0 and ds.train.labels[3, 1] == value_row3
    if mask_row0 is None:
        assert ds.train.mask is None
    else:
        assert ds.train.mask[0, 1] == mask_row0 and ds.train.mask[3, 1] == mask_row3
        assert ds.train.mask.sum() == ds.train.mask.size - 2
        assert ds.val.mask is None or ds.val.mask.all()
    expected_nodule_positives = {"zero": 3, "one": 5, "ignore": 3}[policy]
    assert ds.train_positives[1] == expected_nodule_positives


def test_fingerprint_is_stable_and_tracks_labels_policy_and_files(manifest, cache_dir, tmp_path, image_file):
    path = manifest()
    first = load(path, cache_dir).fingerprint
    assert load(path, cache_dir).fingerprint == first
    # The same files under another root (a copy on another machine) keep the fingerprint.
    shutil.copytree(tmp_path / "images", tmp_path / "copy" / "images")
    assert load(path, cache_dir, image_root=str(tmp_path / "copy")).fingerprint == first
    # A replaced image of another size changes it.
    image_file(tmp_path / "images" / "img02.png", size=(40, 40), seed=99)
    replaced = load(path, cache_dir).fingerprint
    assert replaced != first
    # So does a label; the uncertain policy does when it changes the resolved labels (-1 read as 0 is
    # the data set the original 0 gave, so that one keeps the fingerprint: the inputs are the same).
    restored = load(manifest(), cache_dir).fingerprint
    assert restored == first
    flipped = load(manifest(nodule=[1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0]), cache_dir).fingerprint
    assert flipped not in (first, replaced)
    uncertain = [-1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0]
    assert load(manifest(nodule=uncertain), cache_dir, uncertain="zero").fingerprint == first
    assert load(manifest(nodule=uncertain), cache_dir, uncertain="one").fingerprint == flipped
    assert load(manifest(nodule=uncertain), cache_dir, uncertain="ignore").fingerprint not in (first, flipped)


def test_seeded_split_keeps_groups_whole_and_follows_fractions():
    groups = np.repeat(np.arange(200), np.random.default_rng(1).integers(1, 6, 200)).astype(str)
    codes = seeded_split(len(groups), 0.2, 0.1, seed=3, groups=groups)
    for g in np.unique(groups):
        assert len(np.unique(codes[groups == g])) == 1, f"group {g} was split"
    shares = np.bincount(codes, minlength=3) / len(codes)
    assert abs(shares[1] - 0.2) < 0.03 and abs(shares[2] - 0.1) < 0.03
    np.testing.assert_array_equal(codes, seeded_split(len(groups), 0.2, 0.1, seed=3, groups=groups))
    assert not np.array_equal(codes, seeded_split(len(groups), 0.2, 0.1, seed=4, groups=groups))
    rows = seeded_split(1000, 0.15, 0.15, seed=0)
    assert np.bincount(rows).tolist() == [700, 150, 150]


def dense_labels() -> dict[str, list[int]]:
    # Every patient (two consecutive rows) has a positive of every class, so any grouped split is valid.
    return {"effusion": [1] * 12, "nodule": [1, 0] * 6, "edema": [0, 1] * 6}


def test_csv_without_split_column_is_split_by_seed_and_group(manifest, cache_dir):
    path = manifest(split=None, **dense_labels())
    ds = load(path, cache_dir, group_column="patient", val_fraction=0.25, test_fraction=0.25, seed=5)
    assert "seeded split (seed 5, grouped by 'patient')" in ds.description
    assert len(ds.train) + len(ds.val) + len(ds.test) == 12
    folders = {name: {Path(p).name for p in split.paths} for name, split in ds.splits.items()}
    patient_of = {f"img{i:02d}": i // 2 for i in range(12)}
    by_split = {name: {patient_of[f[:5]] for f in files} for name, files in folders.items()}
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
    again = load(path, cache_dir, group_column="patient", val_fraction=0.25, test_fraction=0.25, seed=5)
    assert again.val.paths == ds.val.paths


def test_train_test_only_column_gets_a_validation_split_from_train(manifest, cache_dir):
    ds = load(manifest(split=["train"] * 9 + ["test"] * 3, **dense_labels()), cache_dir, val_fraction=0.25)
    assert len(ds.test) == 3 and len(ds.val) == 3 and len(ds.train) == 6
    assert "validation carved from train" in ds.description


def test_16_bit_and_rgba_images_are_read(tmp_path):
    deep = np.linspace(0, 4000, 12 * 10).reshape(10, 12).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    gray = read_image(tmp_path / "deep.png")
    assert gray.dtype == np.uint8 and gray.min() == 0 and gray.max() == 255
    assert np.all(np.diff(gray.astype(int).ravel()) >= 0)  # windowing keeps the order of intensities
    Image.new("RGBA", (5, 4), (10, 20, 30, 128)).save(tmp_path / "alpha.png")
    rgb = read_image(tmp_path / "alpha.png")
    assert rgb.shape == (4, 5, 3) and rgb[0, 0].tolist() == [10, 20, 30]


# ----- errors: each names the file, row or column -----


def test_missing_manifest(tmp_path, cache_dir):
    with pytest.raises(ValueError, match=r"nowhere\.csv.*does not exist"):
        load(tmp_path / "nowhere.csv", cache_dir)


def test_missing_path_column(manifest, cache_dir):
    with pytest.raises(ValueError, match=r"manifest\.csv: column 'file' \(image path\) not found"):
        load(manifest(), cache_dir, path_column="file")


def test_missing_label_column(manifest, cache_dir):
    with pytest.raises(ValueError, match=r"manifest\.csv: column 'fracture' \(label\) not found"):
        load(manifest(), cache_dir, label_columns=("edema", "fracture"))


@pytest.mark.parametrize("bad", [2, "yes", 0.5])
def test_non_binary_label_names_row_and_column(manifest, cache_dir, bad):
    nodule = [0, 1, 1, 0, bad, 1, 1, 0, 0, 1, 1, 0]
    with pytest.raises(
        ValueError, match=rf"manifest\.csv: row 5 \(line 6\), column 'nodule': label '{bad}' is not binary"
    ):
        load(manifest(nodule=nodule), cache_dir, label_columns=tuple(LABEL_NAMES))


def test_missing_image_names_the_file_and_row(manifest, cache_dir, tmp_path):
    path = manifest()
    (tmp_path / "images" / "img03.jpg").unlink()
    (tmp_path / "images" / "img07.jpg").unlink()
    with pytest.raises(
        ValueError, match=r"row 4 \(line 5\), column 'path': image file .*img03\.jpg' does not exist \(2 of 12"
    ):
        load(path, cache_dir)


def test_unreadable_image_is_found_before_any_decoding(manifest, cache_dir, tmp_path):
    path = manifest()
    load(path, cache_dir)  # passes, and is remembered: the damaged file below must still be caught
    (tmp_path / "images" / "img05.jpg").write_bytes(b"this is not a JPEG")
    with pytest.raises(ValueError, match=r"row 6 \(line 7\), column 'path': image file .*img05\.jpg' is unreadable"):
        load(path, cache_dir)
    with pytest.raises(ValueError, match=r"cannot read image .*img05\.jpg"):
        read_image(tmp_path / "images" / "img05.jpg")


def test_class_without_positive_in_a_split(manifest, cache_dir):
    edema = [1, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 1]  # no edema among the val rows 6..8
    with pytest.raises(ValueError, match=r"manifest\.csv: class 'edema' has no positive in the val split"):
        load(manifest(edema=edema), cache_dir)


def test_fewer_than_two_classes(manifest, cache_dir):
    with pytest.raises(ValueError, match=r"manifest\.csv: found 1 class\(es\) \['edema'\].*>= 2"):
        load(manifest(), cache_dir, label_columns=("edema",))


def test_no_label_column_found(manifest, cache_dir):
    with pytest.raises(ValueError, match=r"manifest\.csv: no label columns found"):
        load(manifest(effusion=None, nodule=None, edema=None), cache_dir)


def test_bad_split_value(manifest, cache_dir):
    split = ["train"] * 6 + ["holdout"] + ["val"] * 2 + ["test"] * 3
    with pytest.raises(
        ValueError,
        match=r"row 7 \(line 8\), column 'split': split 'holdout' is not train, val \(dev, development, valid\)",
    ):
        load(manifest(split=split), cache_dir)


def test_split_column_without_test_rows_gets_a_test_split_from_train(manifest, cache_dir):
    ds = load(manifest(split=["train"] * 9 + ["val"] * 3, **dense_labels()), cache_dir, test_fraction=0.25)
    assert [len(ds.train), len(ds.val), len(ds.test)] == [6, 3, 3]
    assert "test carved from train" in ds.description


def test_split_column_without_train_rows(manifest, cache_dir):
    with pytest.raises(ValueError, match=r"leaves the train split empty; give some rows 'train' in column 'split'"):
        load(manifest(split=["val"] * 6 + ["test"] * 6), cache_dir)


def test_empty_path_cell(manifest, cache_dir):
    paths = [f"images/img{i:02d}{'.png' if i % 2 == 0 else '.jpg'}" for i in range(12)]
    paths[2] = ""
    with pytest.raises(ValueError, match=r"row 3 \(line 4\), column 'path' \(image path\) is empty"):
        load(manifest(path=paths), cache_dir)


def test_missing_group_column(manifest, cache_dir):
    with pytest.raises(ValueError, match=r"column 'subject_id' \(group\) not found"):
        load(manifest(split=None), cache_dir, group_column="subject_id")


def test_image_root_that_is_not_a_folder(manifest, cache_dir, tmp_path):
    with pytest.raises(ValueError, match=r"image root .*elsewhere' is not a folder"):
        load(manifest(), cache_dir, image_root=str(tmp_path / "elsewhere"))


def test_many_rows_are_checked_in_threads_and_reported_in_row_order(tmp_path, cache_dir, image_file, csv_file):
    rows = []
    for i in range(300):
        image_file(tmp_path / f"{i}.png", size=(4, 4), value=i % 256)
        rows.append({"path": f"{i}.png", "a": int(i % 3 == 0), "b": int(i % 3 == 1)})
    path = csv_file(tmp_path / "big.csv", rows)
    ds = load(path, cache_dir)
    assert sum(len(s) for s in ds.splits.values()) == 300
    for i in (250, 120):
        (tmp_path / f"{i}.png").unlink()
    with pytest.raises(ValueError, match=r"row 121 \(line 122\).*120\.png' does not exist \(2 of 300"):
        load(path, cache_dir)
