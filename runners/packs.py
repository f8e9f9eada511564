"""Many trials of one linear-probe study in one pass: ``run_pack(config, loss, trials) -> [TrialResult]``.

A pack trains every trial's heads in lock-step (``runners.protocols.pack``) and returns exactly what
:func:`runners.run_trial` returns for each trial on its own: the same metrics within float rounding
(``run_trial``'s linear-probe path *is* a pack of one), the same status, seeds, replicate values and
divergence records. A trial's result never depends on the trials it shared a pack with.

Seeds: a trial's replicate seeds are ``replicate_seeds(trial.seed, replicates)``. When the trials
share their seed (a sweep: the trial seed is the study seed), the pack is (replicates x trials) heads:
one group per replicate seed, fed that seed's batches, its heads in blocks of
``runners.protocols.pack.HEAD_BLOCK``. Otherwise (a seed-noise study: trial k trains with seed + k)
every (trial, replicate) is a group of its own, a block of one head. The layout is the study's, not
the pack's: a lone trial of a seed-noise study must be told (``shared_seed=False``) to compute as it
would among others.

Time: ``seconds`` of a trial is its share of the pack's training (the pack's training time divided by
the number of trials: every trial has the same number of heads, and a head's cost does not depend on
its hyperparameters) plus the time spent scoring that trial's own predictions.

``finetune`` trains the whole network per trial: there ``run_pack`` runs the trials one after another.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import TrialConfig
from .losses import create_loss, loss_class
from .result import TrialResult

__all__ = ["PackTrial", "run_pack"]


@dataclass(frozen=True)
class PackTrial:
    """One trial of a pack: its loss hyperparameters, its seed and, when swept, its lr and weight decay."""

    loss_params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    lr: float | None = None  # None: config.train.lr
    weight_decay: float | None = None  # None: config.train.weight_decay


def run_pack(
    config: TrialConfig,
    loss_name: str,
    trials: Sequence[PackTrial],
    replicates: int = 1,
    shared_seed: bool | None = None,
) -> list[TrialResult]:
    """Train and score every trial of ``trials`` together; one :class:`TrialResult` per trial, in order.

    ``shared_seed`` says whether the study's trials all train with one seed (a sweep); None: whether
    these trials do. A study passes it so that every pack of it, a lone trial's too, has the same layout
    (see the module docstring): the layout moves results by float rounding.

    A trial whose parameters are invalid is returned as ``failed`` with the reason (the others go on);
    a diverged head ends its trial as ``diverged`` with the step and the value, as in ``run_trial``.

    Raises:
        ValueError: unknown loss, bad device or data set, ``replicates < 1``, no trials, or
            ``shared_seed=True`` for trials with different seeds.
    """
    from . import trial as single

    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
        raise ValueError(f"replicates must be a positive integer, got {replicates!r}")
    if not trials:
        raise ValueError("a pack needs at least one trial")
    if shared_seed and len({t.seed for t in trials}) > 1:
        raise ValueError("shared_seed=True, but the trials have different seeds")
    if config.protocol != "linear-probe":
        return [single.run_trial(_with_train(config, t), loss_name, t.loss_params, t.seed, replicates) for t in trials]
    started = time.perf_counter()
    single._apply_threads(config)
    from .device import resolve_device

    device = resolve_device(config.device)
    loss_class(loss_name)  # an unknown loss is the caller's error, not one trial's
    results: list[TrialResult | None] = [None] * len(trials)
    runnable = []
    for i, t in enumerate(trials):
        try:
            params = create_loss(loss_name, **dict(t.loss_params)).params
            _with_train(config, t)  # lr and weight decay checked as TrainConfig checks them
        except ValueError as error:
            results[i] = TrialResult(status="failed", fail_reason=f"ValueError: {error}", seeds=[t.seed])
            continue
        runnable.append((i, t, params))
    if runnable:
        _train_and_score(config, loss_name, runnable, replicates, shared_seed, device, results, started)
    return [r for r in results if r is not None]


def _train_and_score(config, loss_name, runnable, replicates, shared_seed, device, results, started) -> None:
    from . import trial as single
    from .protocols.pack import HEAD_BLOCK, PackHeads, train_pack

    dataset = single.dataset_for(config)
    seeds = [single.replicate_seeds(t.seed, replicates) for _, t, _ in runnable]
    train = config.train
    rates = [
        (train.lr if t.lr is None else t.lr, train.weight_decay if t.weight_decay is None else t.weight_decay)
        for _, t, _ in runnable
    ]
    # Whether lr / weight decay are swept, not whether their values differ: a trial trains the same
    # way (per-head optimiser or torch.optim) whatever pack it lands in.
    swept = any(t.lr is not None or t.weight_decay is not None for _, t, _ in runnable)
    shared = all(s == seeds[0] for s in seeds) if shared_seed is None else shared_seed
    if shared:  # groups = replicate seeds, heads = trials
        cells = [[(j, r) for j in range(len(runnable))] for r in range(replicates)]
        group_seeds = seeds[0]
    else:  # every (trial, replicate) its own group
        cells = [[(j, r)] for j in range(len(runnable)) for r in range(replicates)]
        group_seeds = [seeds[j][r] for j in range(len(runnable)) for r in range(replicates)]
    heads = PackHeads(
        loss=loss_name,
        seeds=group_seeds,
        loss_params=[[runnable[j][2] for j, _ in row] for row in cells],
        lr=[[rates[j][0] for j, _ in row] for row in cells] if swept else None,
        weight_decay=[[rates[j][1] for j, _ in row] for row in cells] if swept else None,
        head_block=HEAD_BLOCK if shared else 1,
    )
    outcomes = train_pack(config, dataset, heads, device)
    by_trial: dict[int, list[Any]] = {j: [None] * replicates for j in range(len(runnable))}
    for g, row in enumerate(cells):
        for t, (j, r) in enumerate(row):
            by_trial[j][r] = outcomes[g][t]
    share = (time.perf_counter() - started) / len(runnable)
    for j, (i, _, _) in enumerate(runnable):
        scoring = time.perf_counter()
        result = single.result_of(dataset, by_trial[j], seeds[j])
        result.seconds = share + time.perf_counter() - scoring
        results[i] = result


def _with_train(config: TrialConfig, trial: PackTrial) -> TrialConfig:
    """``config`` with the trial's own lr and weight decay (validated by ``TrainConfig``)."""
    import dataclasses

    if trial.lr is None and trial.weight_decay is None:
        return config
    train = config.train
    lr = train.lr if trial.lr is None else trial.lr
    weight_decay = train.weight_decay if trial.weight_decay is None else trial.weight_decay
    return dataclasses.replace(config, train=dataclasses.replace(train, lr=lr, weight_decay=weight_decay))


# Chosen by measurement on a 2-core AVX-512 CPU, before blocks. ``python -m benchmarks.trial --tables packs
# --pack-sizes 1 8 32 48 50 64 80 128 200`` (default data, one thread), seconds per trial: 0.867 at
# K = 1, 0.180 at 32, 0.174 at 48, 0.160 at 64, 0.158 at 80, 0.150 at 128, 0.146 at 200; and the
# default 200-trial study end to end (``python -m benchmarks.study``, before the fork server's
# start moved first): 31.8 s at K = 32, 29.4 s at 64, 28.0 s at 128. Larger packs gain little more
# and hold their results (and the progress bar) back for longer. Whole blocks of heads
# (``runners.protocols.pack.HEAD_BLOCK`` = 16): a pack of 50 trains 64 heads. Since blocks cost the
# same in any pack, the cap matters less than a worker's share: two workers split 200 trials 112 + 88.
CPU_PACK_SIZE = 128
CUDA_MEMORY_SHARE = 0.5  # of the free device memory a pack may plan to use
MAX_PACK_SIZE = 1024


def auto_pack_size(
    config: TrialConfig,
    remaining: int,
    feature_dim: int,
    num_classes: int,
    eval_rows: int,
    replicates: int = 1,
    workers: int = 1,
) -> int:
    """The ``--pack-size auto`` size for a linear-probe study with ``remaining`` trials left to claim.

    A worker takes its share of what is left, ``remaining / workers`` (the ``workers`` that share
    it), rounded up to whole blocks of heads (``runners.protocols.pack.HEAD_BLOCK``: a pack's last
    block is padded anyway), so that the workers end together and no block trains padding a
    neighbour could have filled. Then on CPU at most the measured :data:`CPU_PACK_SIZE`; on CUDA
    as many trials as fit in :data:`CUDA_MEMORY_SHARE` of the free memory, from a per-head estimate
    (parameters with their gradient and two optimiser moments, a step's logits and loss
    temporaries, the val/test logits in float32 and float64; each trial has ``replicates`` heads).
    Finetune is always 1. Never more than ``remaining`` (nor less than 1).
    """
    from .protocols.pack import HEAD_BLOCK

    remaining = max(1, int(remaining))
    if config.protocol != "linear-probe":
        return 1
    share = -(-remaining // max(1, int(workers)))
    share = min(remaining, -(-share // HEAD_BLOCK) * HEAD_BLOCK)
    from .device import resolve_device

    device = resolve_device(config.device)
    if device.type != "cuda":
        return min(share, CPU_PACK_SIZE)
    import torch

    train = config.train
    if train.head == "linear":
        weights = feature_dim * num_classes + num_classes
        activations = 0
    else:
        weights = feature_dim * train.mlp_hidden + train.mlp_hidden + train.mlp_hidden * num_classes + num_classes
        activations = 3 * train.batch_size * train.mlp_hidden
    per_head = 4 * (5 * weights + activations + 8 * train.batch_size * num_classes) + 12 * eval_rows * num_classes
    free, _ = torch.cuda.mem_get_info(device)
    fits = int(CUDA_MEMORY_SHARE * free // (per_head * max(1, replicates)))
    if fits >= HEAD_BLOCK:  # whole blocks: a pack's last block is padded to HEAD_BLOCK heads anyway
        fits -= fits % HEAD_BLOCK
    return max(1, min(share, MAX_PACK_SIZE, fits))


def auto_pack_size_for(config: TrialConfig, remaining: int, replicates: int = 1, workers: int = 1) -> int:
    """:func:`auto_pack_size` with the sizes read from the study's data (only loaded for CUDA)."""
    from .device import resolve_device

    if config.protocol != "linear-probe" or resolve_device(config.device).type != "cuda":
        return auto_pack_size(config, remaining, 0, 0, 0, replicates, workers)
    from . import trial as single
    from .protocols.linear_probe import features_for

    features = features_for(config, single.dataset_for(config), resolve_device(config.device))
    rows = features.val.x.shape[0] + features.test.x.shape[0]
    return auto_pack_size(config, remaining, features.dim, features.train.y.shape[1], rows, replicates, workers)
