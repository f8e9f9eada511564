"""The synthetic data set: statistics measured on the generated output, determinism, and the disk cache."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import average_precision_score

from runners.config import DataConfig
from runners.data import load_dataset, synthetic
from runners.data.cxr_lt import CLASS_COUNTS, CLASS_NAMES, TRAIN_IMAGES
from runners.data.synthetic import class_names, class_positive_counts, generate, split_sizes

SMALL = dict(num_classes=6, num_images=400, image_size=16, imbalance_ratio=20.0, labels_per_image=1.5)


@pytest.fixture(scope="module")
def small() -> dict[str, np.ndarray]:
    return generate(DataConfig(**SMALL))


def test_default_configuration_is_cxr_lt_like():
    """The 26 CXR-LT 2023 classes with their real training prevalences, scaled to 6,000 images."""
    cfg = DataConfig()
    counts = class_positive_counts(cfg)
    assert class_names(cfg) == list(CLASS_NAMES) and len(counts) == 26
    real = np.array([n for _, n in CLASS_COUNTS])
    np.testing.assert_allclose(counts, real * cfg.num_images / TRAIN_IMAGES, atol=0.5)  # rounding only
    assert counts.max() / counts.min() == pytest.approx(164, rel=0.05)  # 89,140 / 543 = 164
    assert counts.sum() / cfg.num_images == pytest.approx(2.40, abs=0.01)
    assert np.argmax(counts) == CLASS_NAMES.index("Support Devices")
    assert np.argmin(counts) == CLASS_NAMES.index("Pneumoperitoneum")
    assert sum(split_sizes(cfg).values()) == 6000
    assert (cfg.image_size, cfg.missing_rate) == (64, 0.2)


def test_generated_default_set_has_real_names_and_every_class_in_every_split(tmp_path):
    ds = load_dataset(DataConfig(), tmp_path)
    assert ds.class_names == list(CLASS_NAMES)
    for split in ds.splits.values():
        assert split.positives.min() >= 1, split.name
    clean = np.concatenate([ds.train.clean_labels, ds.val.labels, ds.test.labels])
    assert clean.sum(axis=1).mean() == pytest.approx(2.40, abs=0.01)
    assert "CXR-LT 2023 classes and priors" in ds.description


def test_fewer_classes_keep_head_and_tail_with_real_names():
    names = class_names(DataConfig(num_classes=6))
    assert len(names) == 6 and set(names) <= set(CLASS_NAMES)
    assert "Support Devices" in names and "Pneumoperitoneum" in names  # the head and the rarest class
    assert names == [n for n in CLASS_NAMES if n in names]  # in the challenge's column order


def test_output_shapes_and_types(small):
    assert small["train_images"].shape == (280, 16, 16) and small["train_images"].dtype == np.uint8
    assert small["val_images"].shape == (60, 16, 16) and small["test_images"].shape == (60, 16, 16)
    assert small["train_labels"].shape == (280, 6)
    assert 20 < small["train_images"].std() < 100  # a textured picture, not a blank or saturated one


def test_imbalance_and_labels_per_image_measured_on_the_output(small):
    clean = np.concatenate([small["train_clean_labels"], small["val_labels"], small["test_labels"]])
    positives = clean.sum(axis=0, dtype=np.int64)
    assert positives.max() / positives.min() == pytest.approx(20.0, rel=0.05)
    # Reshaping keeps the CXR-LT order of the classes by frequency.
    real = np.array([dict(CLASS_COUNTS)[n] for n in class_names(DataConfig(**SMALL))])
    np.testing.assert_array_equal(np.argsort(-positives, kind="stable"), np.argsort(-real, kind="stable"))
    assert clean.sum(axis=1).mean() == pytest.approx(1.5, abs=0.1)
    for split in ("val", "test"):
        assert small[f"{split}_labels"].sum(axis=0).min() >= 1, f"a class has no positive in {split}"


def test_missing_positives_only_in_training_labels(small):
    observed, clean = small["train_labels"], small["train_clean_labels"]
    assert np.all(observed <= clean), "dropping positives must never add one"
    dropped = 1 - observed.sum() / clean.sum()
    assert dropped == pytest.approx(0.2, abs=0.03)
    assert observed.sum(axis=0).min() >= 1
    # Val and test keep every positive they were allotted: with the clean training labels they add up
    # to the per-class counts the generator aims for.
    total = sum(small[k].sum(0, dtype=np.int64) for k in ("train_clean_labels", "val_labels", "test_labels"))
    np.testing.assert_array_equal(total, class_positive_counts(DataConfig(**SMALL)))


def test_same_seed_same_bytes_other_seed_other_data(small):
    again = generate(DataConfig(**SMALL))
    assert again.keys() == small.keys()
    for key in small:
        assert small[key].tobytes() == again[key].tobytes(), key
    other = generate(DataConfig(**SMALL, seed=1))
    assert not np.array_equal(other["train_images"], small["train_images"])
    assert not np.array_equal(other["train_labels"], small["train_labels"])


def test_classes_have_learnable_signatures_and_signal_strength_sets_difficulty():
    """A linear model on raw pixels finds the classes (AP above the chance level, which is the class
    prevalence), and more easily with stronger signal."""

    def val_map_and_chance(strength: float) -> tuple[float, float]:
        data = generate(DataConfig(**SMALL, signal_strength=strength, missing_rate=0.0))
        x_train = data["train_images"].reshape(len(data["train_images"]), -1) / 255.0
        x_val = data["val_images"].reshape(len(data["val_images"]), -1) / 255.0
        scores = Ridge(alpha=10.0).fit(x_train, data["train_labels"].astype(float)).predict(x_val)
        y_val = data["val_labels"]
        aps = [average_precision_score(y_val[:, c], scores[:, c]) for c in range(y_val.shape[1])]
        return float(np.mean(aps)), float(y_val.mean(axis=0).mean())

    (strong, chance), (faint, _) = val_map_and_chance(3.0), val_map_and_chance(0.2)
    assert strong > chance + 0.1
    assert strong > faint + 0.1


def test_cache_hit_skips_generation(tmp_path, monkeypatch):
    cfg = DataConfig(**SMALL)
    first = load_dataset(cfg, tmp_path)
    files = list((tmp_path / "synthetic").glob("*.npz"))
    assert [f.stem for f in files] == [first.fingerprint]

    def refuse(_cfg):
        raise AssertionError("generate() was called although the cache holds this configuration")

    monkeypatch.setattr(synthetic, "generate", refuse)
    second = load_dataset(cfg, tmp_path)
    np.testing.assert_array_equal(second.train.images, first.train.images)
    np.testing.assert_array_equal(second.train.clean_labels, first.train.clean_labels)
    assert second.fingerprint == first.fingerprint
    # Another setting is another data set: another fingerprint and another file.
    with pytest.raises(AssertionError, match="generate"):
        load_dataset(DataConfig(**SMALL, missing_rate=0.1), tmp_path)


def test_damaged_cache_file_is_regenerated(tmp_path):
    cfg = DataConfig(**SMALL)
    first = load_dataset(cfg, tmp_path)
    path = tmp_path / "synthetic" / f"{first.fingerprint}.npz"
    path.write_bytes(b"truncated")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = load_dataset(cfg, tmp_path)
    assert any("unreadable" in str(w.message) for w in caught)
    np.testing.assert_array_equal(again.val.labels, first.val.labels)
    assert path.stat().st_size > 1000


def test_a_small_set_still_has_every_class_in_every_split():
    # 200 images: the rarest classes would get 0.4 positives; the floor gives each split one.
    data = generate(DataConfig(num_images=200, image_size=16))
    for split in ("train", "val", "test"):
        assert data[f"{split}_labels"].sum(axis=0).min() >= 1, split


def test_too_many_labels_for_the_images_is_a_clear_error():
    with pytest.raises(ValueError, match=r"synthetic: the head class would need \d+ positives among 100 images"):
        generate(DataConfig(num_images=100, image_size=16, labels_per_image=30.0))


def test_more_classes_than_cxr_lt_is_refused():
    with pytest.raises(ValueError, match=r"num_classes must be in 2\.\.26"):
        DataConfig(num_classes=27)
