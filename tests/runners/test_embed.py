"""``python -m runners.embed``: the exported features give a study the same mAP as the built-in linear probe."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import runners
from runners.config import DataConfig
from runners.data import load_dataset
from runners.embed import main

TINY_FLAGS = [
    "--data-num-images",
    "240",
    "--data-num-classes",
    "5",
    "--data-imbalance-ratio",
    "4",
    "--data-image-size",
    "32",
    "--data-signal-strength",
    "3",
]  # fmt: skip  (the flags of tests/runners/conftest.py's TINY_DATA)


def embed_args(tiny_config, out, *extra: str) -> list[str]:
    return [
        "-o", str(out), "--backbone", tiny_config.backbone, "--device", "cpu", "--cache-dir", tiny_config.cache_dir,
        "--batch-size", "64", "--num-threads", "1", "--quiet", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def exported(tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("embed") / "tiny-features.npz"
    assert main(embed_args(tiny_config, out, *TINY_FLAGS)) == 0
    return out


def test_the_file_holds_the_documented_arrays(exported, tiny_config):
    with np.load(exported) as f:
        files = set(f.files)
        info = json.loads(str(f["embedding_info"]))
        names = list(f["class_names"])
        train_x = f["train_features"]
    splits = {f"{s}_{k}" for s in ("train", "val", "test") for k in ("features", "labels")}
    assert files == splits | {"class_names", "embedding_info"}
    dataset = load_dataset(tiny_config.data, tiny_config.cache_dir)
    assert names == dataset.class_names and len(train_x) == len(dataset.train)
    assert info["backbone"] == "test_resnet" and info["checkpoint_sha256"] is None
    assert info["source_fingerprint"] == dataset.fingerprint and info["precision"] == "float32"


def test_a_study_on_the_exported_file_gives_the_built_in_probes_map(exported, tiny_config):
    features_config = dataclasses.replace(tiny_config, data=DataConfig(name="features", path=str(exported)))
    prepared = runners.prepare(features_config, progress=False)
    assert prepared.embedding_key.endswith("/features-file")
    assert prepared.class_names == load_dataset(tiny_config.data, tiny_config.cache_dir).class_names
    assert prepared.dataset.source_info["embedding"]["backbone"] == "test_resnet"
    for loss, params in (("asl", {}), ("ral", {"gamma_neg": 2.0})):
        built_in = runners.run_trial(tiny_config, loss, params, seed=3)
        from_file = runners.run_trial(features_config, loss, params, seed=3)
        assert built_in.status == from_file.status == "complete"
        assert from_file.value == pytest.approx(built_in.value, abs=1e-6)
        assert from_file.test["mAP"] == pytest.approx(built_in.test["mAP"], abs=1e-6)
        np.testing.assert_allclose(from_file.val["per_class_ap"], built_in.val["per_class_ap"], atol=1e-6)


def test_unknown_labels_survive_the_round_trip(tmp_path, tiny_config):
    rng = np.random.default_rng(0)
    data = {}
    for split, n in (("train", 30), ("val", 12), ("test", 12)):
        data[f"{split}_images"] = rng.integers(0, 256, (n, 16, 16), dtype=np.uint8)
        labels = np.stack([np.arange(n) % (c + 2) == 0 for c in range(3)], axis=1).astype(np.float32)
        labels[1, 1] = -1
        data[f"{split}_labels"] = labels
    np.savez(tmp_path / "images.npz", **data)
    out = tmp_path / "out.npz"
    flags = ["--data", "npz", "--data-path", str(tmp_path / "images.npz"), "--data-uncertain", "ignore"]
    assert main(embed_args(tiny_config, out, *flags)) == 0
    source = load_dataset(DataConfig(name="npz", path=str(tmp_path / "images.npz"), uncertain="ignore"), tmp_path)
    back = load_dataset(DataConfig(name="features", path=str(out), uncertain="ignore"), tmp_path)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(back.splits[split].mask, source.splits[split].mask)
        np.testing.assert_array_equal(back.splits[split].labels, source.splits[split].labels)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--data", "features", "--data-path", "x.npz"], "--data features is already embeddings"),
        (["--checkpoint", "missing.pth", *TINY_FLAGS], "checkpoint file .*missing.pth' does not exist"),
        (["--data", "csv"], "the 'csv' data set needs --data-path"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(tmp_path, tiny_config, capsys, flags, message):
    out = tmp_path / "never.npz"
    assert main(embed_args(tiny_config, out, *flags)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m runners.embed: error: ")
    assert __import__("re").search(message, err[0]), err[0]
    assert not out.exists()


def test_output_must_be_an_npz_in_an_existing_folder(tmp_path, tiny_config, capsys):
    assert main(embed_args(tiny_config, tmp_path / "out.txt", *TINY_FLAGS)) == 2
    assert "must end in .npz" in capsys.readouterr().err
    assert main(embed_args(tiny_config, tmp_path / "nowhere" / "out.npz", *TINY_FLAGS)) == 2
    assert "does not exist; create it first" in capsys.readouterr().err
