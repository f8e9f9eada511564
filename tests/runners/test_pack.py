"""Packs: many linear-probe trials trained in lock-step give each trial the result it gets alone."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import runners
from runners.config import DataConfig, TrainConfig, TrialConfig
from runners.packs import PackTrial, run_pack

TOL = 1e-4


def ral_points(count: int, seed: int = 0) -> list[dict]:
    """``count`` RAL configurations spread over the default search space (uniform draws)."""
    rng = np.random.default_rng(seed)
    return [
        {
            "gamma_pos": float(rng.uniform(0, 4)),
            "gamma_neg": float(rng.uniform(0, 6)),
            "clip": float(rng.uniform(0, 0.4)),
            "lam": float(rng.uniform(1.1, 3)),
            "alpha": (float(rng.uniform(-2, 2)), float(rng.uniform(-2, 2))),
            "beta": (float(rng.uniform(-2, 2)),),
        }
        for _ in range(count)
    ]


def assert_same(a, b, tol=TOL):
    assert a.status == b.status, (a.fail_reason, b.fail_reason)
    if a.status == "complete":
        assert abs(a.value - b.value) <= tol, (a.value, b.value)
        np.testing.assert_allclose(
            np.array(a.val["per_class_ap"], dtype=float), np.array(b.val["per_class_ap"], dtype=float), atol=tol
        )
        assert abs(a.test["mAP"] - b.test["mAP"]) <= tol
        np.testing.assert_allclose(a.replicate_values, b.replicate_values, atol=tol)
    assert a.seeds == b.seeds


def assert_identical(a, b):
    """The same result bit for bit: everything a study stores but the time."""
    stored_a, stored_b = a.user_attrs(), b.user_attrs()
    stored_a.pop("seconds"), stored_b.pop("seconds")
    assert stored_a == stored_b, (a.value, b.value)


def reference_train(config, dataset, loss_name, params, seed):
    """The single-trial trainer as it was before packs: nn.Linear / MLP, torch.optim, LambdaLR, clip_grad_norm_.

    An independent implementation the pack trainer must agree with (it replaces this loop).
    """
    from runners.losses import create_loss
    from runners.protocols._training import cosine_schedule, make_optimizer, seed_everything
    from runners.protocols.linear_probe import features_for, make_head

    features = features_for(config, dataset, torch.device("cpu"))
    train = config.train
    loss_fn = create_loss(loss_name, **params)
    seed_everything(seed)
    head = make_head(features.dim, features.train.y.shape[1], train.head, train.mlp_hidden)
    optimizer = make_optimizer(head, train)
    x, y = features.train.x, features.train.y
    n = x.shape[0]
    batch = min(train.batch_size, n)
    per_epoch = math.ceil(n / batch)
    schedule = cosine_schedule(optimizer, train.epochs * per_epoch, train.warmup_epochs * per_epoch)
    order = torch.Generator().manual_seed(seed)
    for _ in range(train.epochs):
        permutation = torch.randperm(n, generator=order)
        xs, ys = x[permutation], y[permutation]
        for start in range(0, n, batch):
            loss = (
                loss_fn(head(xs[start : start + batch]), ys[start : start + batch]) / xs[start : start + batch].shape[0]
            )
            optimizer.zero_grad()
            loss.backward()
            if train.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(head.parameters(), train.grad_clip)
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        val = torch.sigmoid(head(features.val.x).double()).numpy()
    return runners.trial.metrics.compute(dataset.val.labels, val, dataset.train_positives, dataset.val.mask)["mAP"]


@pytest.mark.parametrize(
    "train",
    [
        TrainConfig(epochs=4, batch_size=64),
        TrainConfig(epochs=4, batch_size=64, optimizer="sgd", lr=0.05, grad_clip=0.5, warmup_epochs=1),
        TrainConfig(epochs=4, batch_size=64, head="mlp", mlp_hidden=16, grad_clip=0.2, weight_decay=0.01),
    ],
    ids=["linear-adamw", "linear-sgd-clip-warmup", "mlp-adamw-clip"],
)
def test_a_pack_of_one_is_the_plain_torch_optim_trainer(tiny_config, prepared, train):
    config = dataclasses.replace(tiny_config, train=train)
    params = {"gamma_neg": 2.0, "clip": 0.1}
    expected = reference_train(config, prepared.dataset, "ral", params, seed=5)
    (packed,) = run_pack(config, "ral", [PackTrial(params, seed=5)])
    single = runners.run_trial(config, "ral", params, seed=5)
    assert abs(packed.value - expected) <= TOL, (packed.value, expected)
    assert_same(packed, single, tol=0.0)  # run_trial is a pack of one


@pytest.fixture(scope="module")
def full_size_config(tmp_path_factory) -> TrialConfig:
    """Embeddings of the default job's sizes (1024 dimensions, 26 long-tailed classes, batches of 256),
    where BLAS picks its kernels by the number of heads (the tiny data set is below that)."""
    folder = tmp_path_factory.mktemp("full-size")
    rng = np.random.default_rng(0)
    dim, classes = 1024, 26
    prior = np.geomspace(0.3, 0.01, classes)
    signal = rng.normal(size=(classes, dim)).astype(np.float32) * 0.3
    arrays = {}
    for split, n in (("train", 768), ("val", 256), ("test", 256)):
        labels = (rng.random((n, classes)) < prior).astype(np.float32)
        labels[np.arange(classes), np.arange(classes)] = 1  # every class has a positive in every split
        arrays[f"{split}_features"] = rng.normal(size=(n, dim)).astype(np.float32) + labels @ signal
        arrays[f"{split}_labels"] = labels
    np.savez(folder / "features.npz", **arrays)
    return TrialConfig(
        data=DataConfig(name="features", path=str(folder / "features.npz")),
        train=TrainConfig(epochs=2, batch_size=256),
        device="cpu",
        cache_dir=str(folder / "cache"),
    )


def check_pack_invariance(config: TrialConfig, single_every: int) -> list:
    """Each of 200 RAL trials: the same result bit for bit in a pack of 200, in packs of 37, among other
    neighbours at other positions, and alone (every ``single_every``-th)."""
    trials = [PackTrial(p, seed=3) for p in ral_points(200)]
    whole = run_pack(config, "ral", trials)
    chunked = [r for i in range(0, 200, 37) for r in run_pack(config, "ral", trials[i : i + 37])]
    shuffled = run_pack(config, "ral", trials[::-1][:50])
    singles = [run_pack(config, "ral", [t])[0] for t in trials[::single_every]]
    assert len(whole) == len(chunked) == 200
    assert {r.status for r in whole} == {"complete"}
    assert len({round(r.value, 6) for r in whole}) > 20  # the design points really differ
    for a, b in zip(whole, chunked, strict=True):
        assert_identical(a, b)
    for a, b in zip(whole[::-1][:50], shuffled, strict=True):
        assert_identical(a, b)
    for a, b in zip(whole[::single_every], singles, strict=True):
        assert_identical(a, b)
    return whole


@pytest.mark.parametrize("threads", [1, 2])
def test_the_result_does_not_depend_on_the_pack_bit_for_bit_at_full_size(full_size_config, threads):
    """K = 1, 37 and 200 at the default job's sizes: identical bit for bit. (The issue asks for 1e-4, but a
    last-bit difference is what an ill-conditioned trial amplifies past it: 0.011 of mAP on the default
    job before the heads were trained in blocks, which this test caught as unequal singles.)"""
    config = dataclasses.replace(full_size_config, num_threads=threads)
    check_pack_invariance(config, single_every=20)
    # a seed-noise study: a seed per trial, every trial a group of one head
    by_seed = run_pack(config, "ral", [PackTrial({}, seed=s) for s in range(12)], shared_seed=False)
    for s in (0, 7, 11):
        assert_identical(by_seed[s], run_pack(config, "ral", [PackTrial({}, seed=s)], shared_seed=False)[0])
    assert len({r.value for r in by_seed}) == 12


def test_the_result_does_not_depend_on_the_number_of_threads(full_size_config):
    """One worker with two threads or two workers with one (``--workers auto`` on a 2-core CPU): the
    same results bit for bit, in a pack and alone, for a sweep and for a seed-noise study."""
    trials = [PackTrial(p, seed=0) for p in ral_points(40)]
    by_seed = [PackTrial({}, seed=s) for s in range(3)]
    runs = {}
    for threads in (1, 2):
        config = dataclasses.replace(full_size_config, num_threads=threads)
        runs[threads] = (
            run_pack(config, "ral", trials)
            + run_pack(config, "ral", trials[5:6])
            + run_pack(config, "ral", by_seed, shared_seed=False)
        )
    assert len({r.value for r in runs[1]}) > 20
    for a, b in zip(runs[1], runs[2], strict=True):
        assert_identical(a, b)


def test_the_result_does_not_depend_on_the_pack_bit_for_bit(tiny_config, prepared):
    """K = 1, 37 and 200 on the tiny data set; a trial's time is its share of the pack."""
    config = dataclasses.replace(tiny_config, train=TrainConfig(epochs=2, batch_size=64))
    whole = check_pack_invariance(config, single_every=9)
    assert all(r.seconds > 0 for r in whole)


def test_a_diverging_head_is_recorded_while_the_others_go_on(tiny_config, prepared):
    """Per-head learning rates: the absurd one diverges (step and value), the others match their own runs."""
    config = dataclasses.replace(tiny_config, train=TrainConfig(epochs=3, batch_size=64, optimizer="sgd"))
    rates = [1e-3, 1e30, 3e-2]
    results = run_pack(config, "bce", [PackTrial({}, seed=0, lr=lr) for lr in rates])
    diverged = results[1]
    assert diverged.status == "diverged" and diverged.value is None
    assert isinstance(diverged.diverged_step, int) and 0 <= diverged.diverged_step < 9
    assert not math.isfinite(diverged.diverged_value) and "non-finite" in diverged.fail_reason
    alone = runners.run_trial(
        dataclasses.replace(config, train=dataclasses.replace(config.train, lr=1e30)), "bce", {}, 0
    )
    assert (alone.status, alone.diverged_step, alone.fail_reason) == (
        "diverged",
        diverged.diverged_step,
        diverged.fail_reason,
    )
    for lr, result in zip(rates[::2], results[::2], strict=True):
        own = dataclasses.replace(config, train=dataclasses.replace(config.train, lr=lr))
        assert_same(result, runners.run_trial(own, "bce", {}, seed=0))
        assert_identical(result, run_pack(config, "bce", [PackTrial({}, seed=0, lr=lr)])[0])  # the diverged head aside
    assert results[0].value != results[2].value


def test_per_head_weight_decay_and_learning_rate_match_their_own_runs(tiny_config, prepared):
    config = dataclasses.replace(tiny_config, train=TrainConfig(epochs=3, batch_size=64))
    nuisance = [(1e-3, 0.0), (1e-2, 0.1), (3e-3, 1e-4)]
    results = run_pack(config, "asl", [PackTrial({}, seed=2, lr=lr, weight_decay=wd) for lr, wd in nuisance])
    for (lr, wd), result in zip(nuisance, results, strict=True):
        own = dataclasses.replace(config, train=dataclasses.replace(config.train, lr=lr, weight_decay=wd))
        assert_same(result, runners.run_trial(own, "asl", {}, seed=2))  # torch.optim's arithmetic, not per head
        assert_identical(result, run_pack(config, "asl", [PackTrial({}, seed=2, lr=lr, weight_decay=wd)])[0])
    assert len({r.value for r in results}) == 3


def test_replicates_are_heads_and_seeds_mode_trials_are_groups(tiny_config, prepared):
    config = dataclasses.replace(tiny_config, train=TrainConfig(epochs=2, batch_size=64))
    points = ral_points(4, seed=1)
    packed = run_pack(config, "ral", [PackTrial(p, seed=4) for p in points], replicates=3)
    for p, result in zip(points, packed, strict=True):
        assert result.seeds == runners.replicate_seeds(4, 3) and len(result.replicate_values) == 3
        assert_identical(result, runners.run_trial(config, "ral", p, seed=4, replicates=3))
        # each replicate is the trial trained alone from that seed
        for seed, value in zip(result.seeds, result.replicate_values, strict=True):
            assert runners.run_trial(config, "ral", p, seed=seed).value == value
    # seeds mode: one configuration, a seed per trial; a lone trial of such a study is laid out alike
    by_seed = run_pack(config, "ral", [PackTrial({}, seed=s) for s in (0, 1, 2)], replicates=2)
    for s, result in zip((0, 1, 2), by_seed, strict=True):
        assert_identical(result, run_pack(config, "ral", [PackTrial({}, seed=s)], replicates=2, shared_seed=False)[0])
        assert_same(result, runners.run_trial(config, "ral", {}, seed=s, replicates=2))  # blocks of 16, not 1
    with pytest.raises(ValueError, match="different seeds"):
        run_pack(config, "ral", [PackTrial({}, seed=s) for s in (0, 1)], shared_seed=True)


def test_an_invalid_trial_fails_alone_and_bad_calls_are_refused(tiny_config, prepared):
    results = run_pack(
        tiny_config, "asl", [PackTrial({}, 0), PackTrial({"gamma_neg": -1.0}, 0), PackTrial({}, 0, lr=-1)]
    )
    assert [r.status for r in results] == ["complete", "failed", "failed"]
    assert "gamma_neg" in results[1].fail_reason and "lr" in results[2].fail_reason
    with pytest.raises(ValueError, match="unknown loss"):
        run_pack(tiny_config, "nope", [PackTrial({}, 0)])
    with pytest.raises(ValueError, match="replicates"):
        run_pack(tiny_config, "asl", [PackTrial({}, 0)], replicates=0)
    with pytest.raises(ValueError, match="at least one"):
        run_pack(tiny_config, "asl", [])


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_per_head_clipping_and_mlp_heads_do_not_depend_on_the_pack(tiny_config, prepared, head):
    train = TrainConfig(epochs=3, batch_size=64, head=head, mlp_hidden=16, grad_clip=0.05, optimizer="sgd", lr=0.05)
    config = dataclasses.replace(tiny_config, train=train)
    trials = [PackTrial(p, seed=6) for p in ral_points(5, seed=2)]
    packed = run_pack(config, "ral", trials)
    for trial, result in zip(trials, packed, strict=True):
        assert_identical(result, run_pack(config, "ral", [trial])[0])
        assert abs(result.value - reference_train(config, prepared.dataset, "ral", trial.loss_params, 6)) <= TOL


def test_a_workers_memory_is_its_runtime_and_its_copy_of_the_embeddings(prepared):
    from runners.trial import WORKER_BASE_BYTES

    rows = sum(len(split) for split in prepared.dataset.splits.values())
    assert prepared.feature_dim and rows > 100
    assert prepared.worker_memory_bytes() == WORKER_BASE_BYTES + 8 * rows * prepared.feature_dim


def test_auto_pack_size_on_cpu_and_for_finetune(tiny_config):
    from runners.packs import CPU_PACK_SIZE, auto_pack_size

    assert auto_pack_size(tiny_config, 1000, 96, 5, 100) == CPU_PACK_SIZE
    assert CPU_PACK_SIZE % 16 == 0  # whole float32 AVX-512 vectors of heads (see runners.packs)
    assert auto_pack_size(tiny_config, 3, 96, 5, 100) == 3  # never more than what is left
    assert auto_pack_size(tiny_config, 0, 96, 5, 100) == 1
    assert auto_pack_size(dataclasses.replace(tiny_config, protocol="finetune"), 1000, 96, 5, 100) == 1
    # a worker's share of what is left, in whole blocks of 16 heads: two workers split 200 trials 112 + 88
    # (7 and 6 blocks: the second takes 48, then 32, then the last 8), never more than what is left
    share = [auto_pack_size(tiny_config, n, 96, 5, 100, workers=2) for n in (200, 88, 40, 8, 1000)]
    assert share == [112, 48, 32, 8, CPU_PACK_SIZE]
    assert auto_pack_size(tiny_config, 30, 96, 5, 100, workers=3) == 16
    assert auto_pack_size(tiny_config, 5, 96, 5, 100, workers=4) == 5
