"""``linear-probe``: train a linear (or small MLP) head on cached frozen-backbone embeddings.

The embeddings live in memory as standardised tensors (:func:`runners.features.load_features`), so a
trial is only the head's optimisation: mini-batches are index slices of those tensors, not a
DataLoader, which would cost more than the head itself at this size. The head is trained for a fixed
number of epochs and scored once at the end: selecting an epoch on the validation split would make the
objective optimistic and differently so for each loss.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..config import TrialConfig
from ..features import embedding_settings, load_features
from ._training import (
    Predictions,
    batch_loss,
    clip_gradients,
    cosine_schedule,
    make_optimizer,
    probabilities,
    seed_everything,
)


def make_head(in_features: int, num_classes: int, kind: str = "linear", hidden: int = 256) -> nn.Module:
    """A linear classifier, or a one-hidden-layer MLP (``Linear -> ReLU -> Linear``)."""
    if kind == "linear":
        return nn.Linear(in_features, num_classes)
    if kind == "mlp":
        if hidden < 1:
            raise ValueError(f"mlp_hidden must be a positive integer, got {hidden}")
        return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))
    raise ValueError(f"unknown head {kind!r}; use 'linear' or 'mlp'")


def features_for(config: TrialConfig, dataset: Any, device: torch.device, progress: bool = False):
    """The trial's standardised embeddings (disk cache, then per-process memory; computed on a miss)."""
    return load_features(dataset, device=device, progress=progress, **embedding_settings(config))


def run(config: TrialConfig, dataset: Any, loss_fn: nn.Module, seed: int, device: torch.device) -> Predictions:
    """Train a fresh head with ``loss_fn`` from ``seed`` and predict the val and test splits.

    Raises :class:`~runners.protocols._training.Diverged` on a non-finite loss or prediction.
    """
    # No progress bar here: runners.prepare embeds (with a bar) before the workers start.
    features = features_for(config, dataset, device)
    train = config.train
    seed_everything(seed)
    head = make_head(features.dim, features.train.y.shape[1], train.head, train.mlp_hidden).to(device)
    optimizer = make_optimizer(head, train)
    x, y, mask = features.train.x, features.train.y, features.train.mask
    n = x.shape[0]
    batch_size = min(train.batch_size, n)
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = train.epochs * steps_per_epoch
    schedule = cosine_schedule(optimizer, total_steps, train.warmup_epochs * steps_per_epoch)
    order = torch.Generator().manual_seed(seed)  # CPU generator: the same permutations on every device

    step = 0
    head.train()
    for _ in range(train.epochs):
        # One gather per epoch into shuffled copies, then contiguous slices: half the cost of
        # gathering every mini-batch separately, and the same batches.
        permutation = torch.randperm(n, generator=order).to(device)
        xs, ys = x.index_select(0, permutation), y.index_select(0, permutation)
        ms = None if mask is None else mask.index_select(0, permutation)
        for start in range(0, n, batch_size):
            end = start + batch_size
            loss = batch_loss(loss_fn, head(xs[start:end]), ys[start:end], None if ms is None else ms[start:end], step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(head, train.grad_clip)
            optimizer.step()
            schedule.step()
            step += 1

    head.eval()
    with torch.inference_mode():
        val = probabilities(head(features.val.x), "val", step)
        test = probabilities(head(features.test.x), "test", step)
    return Predictions(val=val, test=test, steps=step)
