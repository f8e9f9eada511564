"""runners.prepare / runners.run_trial on tiny synthetic data with the linear-probe protocol."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import runners
from runners.config import TrainConfig
from runners.losses import available_losses


def test_prepare_reports_the_data_set_and_fills_the_embedding_cache(prepared, tiny_config, cache_dir):
    from pathlib import Path

    dataset = prepared.dataset
    assert prepared.fingerprint == dataset.fingerprint and len(prepared.fingerprint) == 64
    assert len(prepared.class_names) == tiny_config.data.num_classes
    assert list(prepared.train_positives) == list(dataset.train.labels.sum(axis=0))
    assert prepared.feature_dim == 96  # test_resnet's pooled width
    assert "test_resnet" in prepared.embedding_key and "32px" in prepared.embedding_key
    assert any(p.name == "output.pkl" for p in (Path(cache_dir) / "embeddings").rglob("*"))


@pytest.mark.parametrize("loss", sorted(available_losses()))
def test_every_loss_completes_with_recorded_metrics(tiny_config, prepared, loss):
    result = runners.run_trial(tiny_config, loss, {}, seed=7)
    assert result.status == "complete", result.fail_reason
    assert result.value == result.val["mAP"] and 0.0 < result.value <= 1.0
    assert result.seeds == [7] and result.replicate_values == [result.value]
    assert len(result.val["per_class_ap"]) == len(result.test["per_class_ap"]) == tiny_config.data.num_classes
    assert np.isfinite([result.test["mAP"], result.val["mAUC"], result.val["mAP_tail"]]).all()
    assert result.seconds > 0
    json.dumps(result.user_attrs(), allow_nan=False)  # what the worker stores must be plain JSON


def test_the_head_learns_more_than_chance(tiny_config, prepared):
    # Chance AP of a class is its prevalence; a trained probe on the easy tiny set must clearly beat it.
    chance = float(prepared.dataset.val.labels.mean(axis=0).mean())
    config = dataclasses.replace(tiny_config, train=TrainConfig(epochs=20, batch_size=64, lr=3e-3))
    values = [runners.run_trial(config, "bce", {}, seed=s).value for s in (0, 1)]
    assert min(values) > chance + 0.05, (values, chance)


def test_same_seed_repeats_bit_for_bit_and_another_seed_differs(tiny_config, prepared):
    from runners.features import clear_memory_cache

    first = runners.run_trial(tiny_config, "ral", {}, seed=11)
    clear_memory_cache()  # the repeat reads the embeddings back from disk
    again = runners.run_trial(tiny_config, "ral", {}, seed=11)
    other = runners.run_trial(tiny_config, "ral", {}, seed=12)
    assert again.value == first.value
    assert again.val["per_class_ap"] == first.val["per_class_ap"]
    assert again.test["mAP"] == first.test["mAP"]
    assert other.value != first.value


def test_replicates_use_derived_seeds_and_average(tiny_config, prepared):
    single = runners.run_trial(tiny_config, "asl", {"gamma_neg": 2.0}, seed=5)
    result = runners.run_trial(tiny_config, "asl", {"gamma_neg": 2.0}, seed=5, replicates=3)
    assert result.status == "complete"
    assert result.seeds[0] == 5 and len(set(result.seeds)) == 3
    assert result.seeds == runners.replicate_seeds(5, 3)  # deterministic from the trial seed
    assert result.replicate_values[0] == single.value
    assert len(set(result.replicate_values)) == 3
    assert result.value == pytest.approx(np.mean(result.replicate_values), abs=1e-12)
    assert result.test["mAP"] != single.test["mAP"]  # test metrics are averaged too
    per_class = [v for v in result.val["per_class_ap"] if v is not None]
    assert np.mean(per_class) == pytest.approx(result.value, abs=1e-12)


@pytest.mark.parametrize("loss", ["bce", "ral"])
def test_absurd_learning_rate_is_a_diverged_result_not_an_exception(tiny_config, prepared, loss):
    config = dataclasses.replace(tiny_config, train=TrainConfig(epochs=3, batch_size=64, lr=1e30, optimizer="sgd"))
    result = runners.run_trial(config, loss, {}, seed=0, replicates=2)
    assert result.status == "diverged"
    assert result.value is None
    assert isinstance(result.diverged_step, int) and 0 <= result.diverged_step < 3 * 3
    assert not math.isfinite(result.diverged_value)
    assert "non-finite" in result.fail_reason
    attrs = result.user_attrs()
    assert attrs["status"] == "diverged" and attrs["diverged_step"] == result.diverged_step
    assert attrs["diverged_value"] in ("nan", "inf", "-inf")


def test_mlp_head_and_gradient_clipping_run(tiny_config, prepared):
    plain = runners.run_trial(tiny_config, "bce", {}, seed=3)
    config = dataclasses.replace(
        tiny_config,
        train=TrainConfig(epochs=4, batch_size=64, head="mlp", mlp_hidden=32, grad_clip=0.1, warmup_epochs=1),
    )
    result = runners.run_trial(config, "bce", {}, seed=3)
    assert result.status == "complete" and result.value != plain.value


@pytest.mark.parametrize(
    ("change", "call", "match"),
    [
        ({}, dict(loss_name="nope", loss_params={}), "nope"),
        ({}, dict(loss_name="asl", loss_params={"gamma_neg": -1.0}), "gamma_neg"),
        ({}, dict(loss_name="asl", loss_params={"not_a_param": 1.0}), "not_a_param"),
        ({}, dict(loss_name="asl", loss_params={}, replicates=0), "replicates"),
        ({"device": "gpu"}, dict(loss_name="asl", loss_params={}), "unknown device"),
        ({"backbone": "no_such_net"}, dict(loss_name="asl", loss_params={}), "no_such_net"),
    ],
)
def test_bad_settings_raise_value_error_naming_them(tiny_config, change, call, match):
    from runners.features import clear_memory_cache

    clear_memory_cache()  # make the backbone name matter even after other tests cached features
    config = dataclasses.replace(tiny_config, **change)
    with pytest.raises(ValueError, match=match):
        runners.run_trial(config, seed=0, **call)


def test_replicate_seeds_are_stable_and_distinct():
    assert runners.replicate_seeds(3, 1) == [3]
    seeds = runners.replicate_seeds(3, 4)
    assert seeds == runners.replicate_seeds(3, 4) and seeds[0] == 3 and len(set(seeds)) == 4
    assert all(0 <= s < 2**31 for s in seeds)
    assert runners.replicate_seeds(4, 4)[1:] != seeds[1:]
