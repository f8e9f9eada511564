"""The embedding cache: one disk entry per key, shared safely by processes that miss it at the same time."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import time

import numpy as np
import torch

from runners.features import clear_memory_cache, compute_embeddings, embedding_key, load_features

# A child process: waits for the "go" file (so both start embedding together), embeds, prints a digest.
_CHILD = textwrap.dedent(
    """
    import hashlib, os, sys, time
    import numpy as np, torch
    from runners.config import DataConfig
    from runners.data import load_dataset
    from runners.features import compute_embeddings
    torch.set_num_threads(1)
    cache, go, ready = sys.argv[1], sys.argv[2], sys.argv[3]
    dataset = load_dataset(DataConfig(num_images=240, num_classes=5, imbalance_ratio=4.0, image_size=32), cache)
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
    raw = compute_embeddings(dataset, backbone="test_resnet", checkpoint=None, image_size=32, cache_dir=cache,
                             device=torch.device("cpu"), batch_size=16, progress=False)
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(raw[s]).tobytes() for s in ("train", "val", "test")))
    print(digest.hexdigest())
    """
)


def _digest(raw: dict[str, np.ndarray]) -> str:
    return hashlib.sha256(
        b"".join(np.ascontiguousarray(raw[s]).tobytes() for s in ("train", "val", "test"))
    ).hexdigest()


def test_two_processes_missing_the_cache_at_once_do_not_corrupt_it(tmp_path):
    from runners.config import DataConfig
    from runners.data import load_dataset

    cache = tmp_path / "cache"
    go = tmp_path / "go"
    # Generate the data set first so both children start from the same cached images, not a data race.
    dataset = load_dataset(DataConfig(num_images=240, num_classes=5, imbalance_ratio=4.0, image_size=32), cache)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(cache), str(go), str(tmp_path / f"ready{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    # Start barrier: release both only when both have imported torch and loaded the data.
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(c.poll() is None for c in children), "a child failed to start"
        time.sleep(0.05)
    go.touch()
    outputs = [child.communicate(timeout=120) for child in children]
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err[-2000:]
    digests = [out.strip() for out, _ in outputs]
    assert digests[0] == digests[1]

    entries = [p for p in (cache / "embeddings").rglob("output.pkl")]
    assert len(entries) == 1, entries  # one key, one entry: the two writes did not leave two versions
    leftovers = [
        p for p in (cache / "embeddings").rglob("*") if p.is_file() and (".tmp" in p.name or "thread-" in p.name)
    ]
    assert not leftovers

    # This process now reads the entry written by the children: the same bytes, and no recomputation.
    started = time.perf_counter()
    raw = compute_embeddings(
        dataset,
        backbone="test_resnet",
        checkpoint=None,
        image_size=32,
        cache_dir=cache,
        device=torch.device("cpu"),
        progress=False,
    )
    assert _digest(raw) == digests[0]
    assert len(list((cache / "embeddings").rglob("output.pkl"))) == 1
    assert time.perf_counter() - started < 5.0  # a read, not a second embedding pass (generous bound)


def test_cache_key_separates_backbone_image_size_and_checkpoint(tmp_path):
    keys = {
        embedding_key("f" * 64, "test_resnet", None, 32, "float32"),
        embedding_key("f" * 64, "test_resnet", None, 64, "float32"),
        embedding_key("f" * 64, "test_convnext", None, 32, "float32"),
        embedding_key("f" * 64, "test_resnet", "a" * 64, 32, "float32"),
        embedding_key("e" * 64, "test_resnet", None, 32, "float32"),
        embedding_key("f" * 64, "test_resnet", None, 32, "bfloat16"),
    }
    assert len(keys) == 6


def test_loaded_features_are_standardised_on_the_training_split(prepared, tiny_config):
    clear_memory_cache()
    features = load_features(
        prepared.dataset,
        backbone=tiny_config.backbone,
        checkpoint=None,
        image_size=32,
        cache_dir=tiny_config.cache_dir,
        device=torch.device("cpu"),
        progress=False,
    )
    x = features.train.x.double()
    live = x.std(dim=0) > 0  # dead units stay at 0
    assert torch.allclose(x.mean(dim=0), torch.zeros_like(x[0]), atol=1e-5)
    assert torch.allclose(
        x.std(dim=0, unbiased=False)[live], torch.ones(int(live.sum()), dtype=torch.float64), atol=1e-4
    )
    assert features.val.x.shape == (len(prepared.dataset.val), 96)
    assert torch.equal(features.train.y, torch.from_numpy(prepared.dataset.train.labels.astype(np.float32)))
