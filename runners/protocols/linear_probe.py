"""``linear-probe``: train a linear (or small MLP) head on cached frozen-backbone embeddings.

The embeddings live in memory as standardised tensors (:func:`runners.features.load_features`), so a
trial is only the head's optimisation: mini-batches are index slices of those tensors, not a
DataLoader, which would cost more than the head itself at this size. The training loop is the pack
trainer's (``pack``), which trains many heads in lock-step; a single trial is a pack of one. The
head is trained for a fixed number of epochs and scored once at the end: selecting an epoch on the
validation split would make the objective optimistic and differently so for each loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import TrialConfig
from ..features import embedding_settings, load_features
from ..losses import MultiLabelLoss
from ._training import Diverged, Predictions


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

    One trainer serves every linear probe: this is a pack of one head (``runners.protocols.pack``).
    Raises :class:`~runners.protocols._training.Diverged` on a non-finite loss or prediction.
    """
    from .pack import PackHeads, train_pack

    if not isinstance(loss_fn, MultiLabelLoss):
        raise ValueError(
            f"the linear probe trains with a runners.losses loss (create_loss), got {type(loss_fn).__name__}"
        )
    heads = PackHeads(loss=loss_fn.name, seeds=[seed], loss_params=[[loss_fn.params]])
    (outcome,) = train_pack(config, dataset, heads, device)[0]
    if isinstance(outcome, Diverged):
        raise outcome
    return outcome
