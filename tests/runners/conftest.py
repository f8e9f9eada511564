"""Tiny trial settings shared by the runners tests: a few hundred 32x32 synthetic images, timm's small
``test_resnet`` (random init, nothing downloaded), one thread, a few epochs.

The data set and embeddings are prepared once per session in a temporary cache, so each trial in the
tests costs only the head's training (well under a second).
"""

from __future__ import annotations

import dataclasses

import pytest

from runners.config import DataConfig, TrainConfig, TrialConfig

TINY_DATA = DataConfig(num_images=240, num_classes=5, imbalance_ratio=4.0, image_size=32, signal_strength=3.0)
TINY_TRAIN = TrainConfig(epochs=4, batch_size=64)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("runners-cache"))


@pytest.fixture(scope="session")
def tiny_config(cache_dir) -> TrialConfig:
    return TrialConfig(
        data=TINY_DATA,
        backbone="test_resnet",
        train=TINY_TRAIN,
        device="cpu",
        cache_dir=cache_dir,
        embed_batch_size=64,
        num_threads=1,
    )


@pytest.fixture(scope="session")
def prepared(tiny_config):
    import runners

    return runners.prepare(tiny_config, progress=False)


@pytest.fixture(scope="session")
def finetune_config(tiny_config) -> TrialConfig:
    return dataclasses.replace(tiny_config, protocol="finetune", train=TrainConfig(epochs=2, batch_size=64, lr=3e-3))
