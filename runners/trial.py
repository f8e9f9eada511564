"""One trial end to end: ``prepare`` the shared inputs once, then ``run_trial`` one loss configuration.

``study.run`` calls :func:`prepare` in the parent process before any worker starts, so the data set is
generated (or read and checked) and the linear-probe embeddings are computed and written to the disk
cache exactly once; workers then find both cached. :func:`run_trial` is what each worker calls per
trial: it never raises for a configuration that diverges (that is a result: ``status="diverged"``),
only for an invalid configuration (``ValueError``) or a genuine bug, which the worker records as a
failed trial.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import metrics
from .config import TrialConfig
from .data import MultiLabelDataset, load_dataset
from .device import resolve_device
from .losses import create_loss
from .lru import LRUCache
from .protocols import Diverged, Predictions, get_protocol
from .result import SCALAR_METRICS, TrialResult

__all__ = ["Prepared", "prepare", "run_trial", "replicate_seeds"]

_DATASET_CACHE_SIZE = 2  # data sets kept per process; a worker normally needs one
_datasets: LRUCache[MultiLabelDataset] = LRUCache(_DATASET_CACHE_SIZE)


WORKER_BASE_BYTES = 512 << 20  # a worker's torch and Python, without its data (RSS measured on CPU)


@dataclass
class Prepared:
    """What :func:`prepare` built, and the facts about it a study records in its attributes."""

    dataset: MultiLabelDataset
    device: torch.device
    fingerprint: str  # identity of the data set (its generation settings or file contents)
    class_names: list[str]
    train_positives: np.ndarray  # (C,) known training positives per class
    description: str
    embedding_key: str | None  # linear-probe: identity of the cached embeddings; finetune: None
    feature_dim: int | None  # linear-probe: width of the embeddings
    data_seconds: float  # loading or generating the data set (near 0 when cached)
    embed_seconds: float  # computing or reading the embeddings (0 for finetune)

    def worker_memory_bytes(self) -> int:
        """About what one worker process holds of its own: torch and Python (~0.5 GiB measured on CPU)
        plus, for the linear probe, the embeddings of every split in float32, as read and standardised."""
        rows = sum(len(split) for split in self.dataset.splits.values())
        return WORKER_BASE_BYTES + (2 * 4 * rows * self.feature_dim if self.feature_dim else 0)


def prepare(config: TrialConfig, progress: bool = True) -> Prepared:
    """Load (or generate and cache) the data set and, for ``linear-probe``, compute the embedding cache.

    Run it once before starting workers: they then read both from ``config.cache_dir`` instead of
    each computing them. Raises ``ValueError`` for a bad device, data source, backbone or checkpoint,
    so a study fails before its first trial rather than in every trial.
    """
    _apply_threads(config)
    device = resolve_device(config.device)
    started = time.perf_counter()
    dataset = dataset_for(config)
    data_seconds = time.perf_counter() - started
    key = dim = None
    started = time.perf_counter()
    if config.protocol == "linear-probe":
        from .protocols.linear_probe import features_for

        features = features_for(config, dataset, device, progress=progress)
        key, dim = features.key, features.dim
    else:
        from .backbones import create_backbone

        get_protocol(config.protocol)  # an unknown protocol fails here, not in every trial
        create_backbone(config.backbone, config.checkpoint)  # checks name and checkpoint up front
    return Prepared(
        dataset=dataset,
        device=device,
        fingerprint=dataset.fingerprint,
        class_names=list(dataset.class_names),
        train_positives=np.asarray(dataset.train_positives, dtype=np.int64),
        description=dataset.description,
        embedding_key=key,
        feature_dim=dim,
        data_seconds=data_seconds,
        embed_seconds=time.perf_counter() - started if config.protocol == "linear-probe" else 0.0,
    )


def run_trial(
    config: TrialConfig,
    loss_name: str,
    loss_params: Mapping[str, Any],
    seed: int,
    replicates: int = 1,
) -> TrialResult:
    """Train and score one loss configuration, over ``replicates`` seeds derived from ``seed``.

    Returns a :class:`TrialResult` whose ``value`` is the validation mAP averaged over replicates.
    Scalar metrics are averaged over replicates, per-class AP element-wise; each replicate's
    validation mAP is in ``replicate_values``. A non-finite loss or prediction in any replicate ends
    the trial with ``status="diverged"``, the step and the value. On CPU the same arguments give the
    same result bit for bit, and the result a sweep's study stores for them (a linear probe is a pack
    of one; a seed-noise study's trial is ``run_pack(..., shared_seed=False)``, see ``runners.packs``).

    Raises:
        ValueError: unknown loss or parameter, bad device or data set, ``replicates < 1``.
    """
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
        raise ValueError(f"replicates must be a positive integer, got {replicates!r}")
    started = time.perf_counter()
    _apply_threads(config)
    device = resolve_device(config.device)
    loss_fn = create_loss(loss_name, **dict(loss_params)).to(device)
    if config.protocol == "linear-probe":  # one trainer: a single trial is a pack of one
        from .packs import PackTrial, run_pack

        (result,) = run_pack(config, loss_name, [PackTrial(loss_params, seed)], replicates)
        result.seconds = time.perf_counter() - started
        return result
    run_protocol = get_protocol(config.protocol)
    dataset = dataset_for(config)
    seeds = replicate_seeds(seed, replicates)
    outcomes: list[Predictions | Diverged] = []
    for replicate_seed in seeds:
        try:
            outcomes.append(run_protocol(config, dataset, loss_fn, replicate_seed, device))
        except Diverged as diverged:
            outcomes.append(diverged)
            break  # the trial's result: the later replicates would not change it
    result = result_of(dataset, outcomes, seeds)
    result.seconds = time.perf_counter() - started
    return result


def result_of(dataset: MultiLabelDataset, outcomes: Sequence[Predictions | Diverged], seeds: list[int]) -> TrialResult:
    """A trial's result from its replicates' outcomes in seed order: the first divergence ends it, else
    the metrics averaged over the replicates (``seconds`` is left to the caller)."""
    val_runs: list[dict[str, Any]] = []
    test_runs: list[dict[str, Any]] = []
    for replicate_seed, outcome in zip(seeds, outcomes, strict=False):
        if isinstance(outcome, Diverged):
            return TrialResult(
                status="diverged",
                seeds=seeds,
                replicate_values=[run["mAP"] for run in val_runs],
                fail_reason=f"diverged: {outcome.reason}" + (f" (seed {replicate_seed})" if len(seeds) > 1 else ""),
                diverged_step=outcome.step,
                diverged_value=outcome.value,
            )
        val, test = _score(dataset, outcome)
        val_runs.append(val)
        test_runs.append(test)
    val_mean, test_mean = average_metrics(val_runs), average_metrics(test_runs)
    value = val_mean["mAP"]
    result = TrialResult(
        status="complete",
        value=float(value),
        val=val_mean,
        test=test_mean,
        seeds=seeds,
        replicate_values=[float(run["mAP"]) for run in val_runs],
    )
    if not np.isfinite(value):  # cannot happen with a checked data set; guard the objective anyway
        result.status, result.value = "failed", None
        result.fail_reason = "validation mAP is undefined (no class has a validation positive)"
    return result


def replicate_seeds(seed: int, replicates: int) -> list[int]:
    """``seed`` itself, then ``replicates - 1`` seeds derived from it with NumPy's SeedSequence.

    The first replicate uses ``seed`` unchanged, so a 1-replicate trial and the first replicate of an
    R-replicate trial agree; the others are well-separated 31-bit streams (not seed+1, seed+2, which
    would overlap with neighbouring trials' seeds).
    """
    derived = [
        int(np.random.SeedSequence([int(seed), r]).generate_state(1, dtype=np.uint32)[0] >> 1)
        for r in range(1, replicates)
    ]
    return [int(seed), *derived]


def average_metrics(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean of each scalar metric over replicates, element-wise mean of per-class AP (None stays None).

    Non-scalar entries (class groups, counts) are the same in every replicate and taken from the first.
    """
    out = dict(runs[0])
    for name in SCALAR_METRICS:
        out[name] = float(np.mean([float(run[name]) for run in runs]))
    per_class = np.array([[np.nan if v is None else v for v in run["per_class_ap"]] for run in runs], dtype=np.float64)
    out["per_class_ap"] = [None if np.isnan(v) else float(v) for v in per_class.mean(axis=0)]
    return out


def dataset_for(config: TrialConfig) -> MultiLabelDataset:
    """The trial's data set, loaded once per process (``load_dataset`` reads its own disk cache)."""
    key = (config.data, os.path.abspath(config.cache_dir))
    return _datasets.get_or_make(key, lambda: load_dataset(config.data, config.cache_dir))


def _score(dataset: MultiLabelDataset, predictions: Predictions) -> tuple[dict[str, Any], dict[str, Any]]:
    positives = dataset.train_positives
    val = metrics.compute(dataset.val.labels, predictions.val, positives, dataset.val.mask)
    test = metrics.compute(dataset.test.labels, predictions.test, positives, dataset.test.mask)
    return val, test


def _apply_threads(config: TrialConfig) -> None:
    # set_num_threads is process-wide; only call it when it changes something (it is not free).
    if config.num_threads and torch.get_num_threads() != config.num_threads:
        torch.set_num_threads(config.num_threads)
