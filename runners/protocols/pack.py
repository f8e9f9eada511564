"""The linear-probe trainer for a pack: many heads trained in lock-step on the same cached embeddings.

Why: the trials of a sweep share the embeddings, the head's initialisation and the batch order
(common random numbers: every trial uses the study's seed), so K trials are K heads fed the *same*
mini-batches. Trained one after another they waste almost everything: a 256 x 1024 . 1024 x 26
product is far too small to use the cores, and the Python, optimiser and gather costs are paid K
times. Here the heads' weights are stacked so that one gather per epoch and one (batched) matrix
product per step serve every head; the loss is one call on (groups, batch, classes, heads) with each
head's own hyperparameters (``runners.losses._pack``); one optimiser step updates every head.

Layout: a pack is a (groups x heads) grid. A *group* is one seed: its heads start from that seed's
initialisation and see that seed's batch order (replicate seeds are extra groups, shared by every
trial). Each head has its own loss hyperparameters, learning rate and weight decay.

A head's result does not depend on its neighbours: every operation is per head (the loss, the
per-head gradient clipping, the optimiser's per-head learning rate and weight decay), so heads only
share the arithmetic's blocking, which moves results by float rounding, not more. A head whose loss
or prediction turns non-finite is stopped: its outcome is recorded as diverged with the first such
step and value, while the others go on (its columns of the stacked tensors may turn NaN, which no
other head ever reads: every product, loss and update is column-wise per head). Finiteness is checked on the device
and read back once per epoch: the step loop never waits for the device.

The optimisers are written out here (AdamW and Nesterov SGD as ``torch.optim`` computes them) because
``torch.optim`` takes one learning rate and weight decay per parameter group, not per head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..config import TrialConfig
from ..losses import create_loss_pack
from ._training import (
    Diverged,
    Predictions,
    amp_dtype,
    autocast,
    cosine_schedule_factor,
    optimizer_for,
    seed_everything,
)
from .linear_probe import features_for, make_head

ADAM_BETAS = (0.9, 0.999)  # torch.optim.AdamW's defaults, which the single-trial trainer used
ADAM_EPS = 1e-8
SGD_MOMENTUM = 0.9
CLIP_EPS = 1e-6  # as torch.nn.utils.clip_grad_norm_


@dataclass(frozen=True)
class PackHeads:
    """What each head of a (groups x heads) pack trains with.

    ``seeds[g]`` is group g's seed; ``loss_params[g][t]`` is head (g, t)'s loss hyperparameters.
    ``lr[g][t]`` and ``weight_decay[g][t]`` are its learning rate and weight decay when the study
    sweeps them (``--nuisance``); None: every head uses ``config.train``'s.
    """

    loss: str
    seeds: Sequence[int]
    loss_params: Sequence[Sequence[dict[str, Any]]]
    lr: Sequence[Sequence[float]] | None = None
    weight_decay: Sequence[Sequence[float]] | None = None

    @property
    def per_head_rates(self) -> bool:
        return self.lr is not None or self.weight_decay is not None

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.seeds), len(self.loss_params[0])


class _Param:
    """One stacked parameter, its per-head view (groups, *, heads, 1), and whether it is decayed.

    Heads are the innermost index of every stacked tensor (logits come out (groups, batch, classes,
    heads), the layout the loss pack wants), so the view that puts them at dimension 2 is free.
    """

    def __init__(self, tensor: Tensor, heads: int, decay: bool) -> None:
        self.tensor = tensor.requires_grad_(True)
        self.view = (tensor.shape[0], -1, heads, 1)
        self.decay = decay
        self.m = torch.zeros_like(tensor)  # AdamW's first moment, or SGD's momentum buffer
        self.v = torch.zeros_like(tensor)  # AdamW's second moment (unused by SGD)


class StackedHeads:
    """The (groups x heads) stacked weights of ``linear`` or ``mlp`` heads and their forward pass."""

    def __init__(self, kind: str, dim: int, classes: int, hidden: int, seeds: Sequence[int], heads: int, device):
        self.kind, self.groups, self.heads, self.classes = kind, len(seeds), heads, classes
        inits = []
        for seed in seeds:  # each group starts where the single-trial trainer starts for this seed
            seed_everything(seed)
            inits.append(make_head(dim, classes, kind, hidden))

        def stack(get):  # (groups, *shape, heads): the group's copy repeated for every head
            return torch.stack([get(m).unsqueeze(-1).expand(*get(m).shape, heads) for m in inits]).to(device)

        with torch.no_grad():
            if kind == "linear":
                w = stack(lambda m: m.weight.T).reshape(self.groups, dim, classes * heads)
                b = stack(lambda m: m.bias.view(1, classes)).reshape(self.groups, 1, classes * heads)
                self.params = [_Param(w.contiguous(), heads, True), _Param(b.contiguous(), heads, False)]
            else:
                w1 = stack(lambda m: m[0].weight.T).reshape(self.groups, dim, hidden * heads)
                b1 = stack(lambda m: m[0].bias.view(1, hidden)).reshape(self.groups, 1, hidden * heads)
                w2 = stack(lambda m: m[2].weight.T)  # (groups, hidden, classes, heads)
                b2 = stack(lambda m: m[2].bias.view(1, classes))  # (groups, 1, classes, heads)
                self.params = [
                    _Param(w1.contiguous(), heads, True),
                    _Param(b1.contiguous(), heads, False),
                    _Param(w2.contiguous(), heads, True),
                    _Param(b2.contiguous(), heads, False),
                ]

    def __call__(self, x: Tensor) -> Tensor:
        """Logits (groups, batch, classes, heads) for inputs (groups, batch, dim)."""
        g, batch = x.shape[0], x.shape[1]
        if self.kind == "linear":
            w, b = (p.tensor for p in self.params)
            return torch.baddbmm(b, x, w).view(g, batch, self.classes, self.heads)
        w1, b1, w2, b2 = (p.tensor for p in self.params)
        h = torch.relu(torch.baddbmm(b1, x, w1)).view(g, batch, -1, self.heads)
        return torch.einsum("gbht,ghct->gbct", h, w2) + b2


def train_pack(config: TrialConfig, dataset: Any, heads: PackHeads, device: torch.device) -> list[list[Any]]:
    """Train every head of ``heads`` and predict the val and test splits.

    Returns a (groups x heads) grid holding each head's :class:`Predictions`, or the
    :class:`Diverged` that stopped it.
    """
    features = features_for(config, dataset, device)
    train = config.train
    groups, count = heads.shape
    x, y, mask = features.train.x, features.train.y, features.train.mask
    n, classes = x.shape[0], y.shape[1]
    model = StackedHeads(train.head, features.dim, classes, train.mlp_hidden, heads.seeds, count, device)
    loss_fn = create_loss_pack(heads.loss, [list(row) for row in heads.loss_params]).to(device)
    batch_size = min(train.batch_size, n)
    steps_per_epoch = math.ceil(n / batch_size)
    factor = cosine_schedule_factor(train.epochs * steps_per_epoch, train.warmup_epochs * steps_per_epoch)
    if heads.per_head_rates:
        lr = torch.tensor(heads.lr, dtype=torch.float32, device=device).view(groups, 1, count, 1)
        wd = torch.tensor(heads.weight_decay, dtype=torch.float32, device=device).view(groups, 1, count, 1)
        optimizer = _Optimizer(model.params, train, lr, wd)
    else:
        optimizer = _Optimizer(model.params, train, None, None)
    orders = [torch.Generator().manual_seed(seed) for seed in heads.seeds]  # CPU: the same batches on every device
    alive = torch.ones(groups, count, dtype=torch.bool, device=device)
    stopped_step = torch.full((groups, count), -1, dtype=torch.int64, device=device)
    stopped_value = torch.zeros(groups, count, dtype=torch.float32, device=device)
    amp = amp_dtype(device, train.amp)
    amp = amp if amp == torch.bfloat16 else None  # bf16 needs no loss scaling: safe for the product; fp16 is not

    step = 0
    for _ in range(train.epochs):
        # One gather per epoch into shuffled copies (every group its own order), then contiguous slices.
        permutation = torch.stack([torch.randperm(n, generator=order) for order in orders]).to(device)
        flat = permutation.view(-1)
        xs = x.index_select(0, flat).view(groups, n, -1)
        ys = y.index_select(0, flat).view(groups, n, classes)
        ms = None if mask is None else mask.index_select(0, flat).view(groups, n, classes)
        for start in range(0, n, batch_size):
            end = min(start + batch_size, n)
            with autocast(device, amp):
                logits = model(xs[:, start:end])
            losses = loss_fn(logits.float(), ys[:, start:end], None if ms is None else ms[:, start:end]) / (end - start)
            grads = torch.autograd.grad(losses.sum(), [p.tensor for p in model.params])
            with torch.no_grad():
                values = losses.detach()
                finite = torch.isfinite(values)
                newly = alive & ~finite
                stopped_step.masked_fill_(newly, step)
                stopped_value.copy_(torch.where(newly, values, stopped_value))
                alive &= finite
                optimizer.step(clip_per_head(model.params, grads, train.grad_clip), factor(step), step + 1)
            step += 1
        if not bool(alive.any()):  # the one read-back per epoch: stop when every head has diverged
            break

    return _predict(model, features, alive, stopped_step, stopped_value, step)


class _Optimizer:
    """One optimiser step for every head: ``torch.optim`` when the heads share lr and weight decay, else per head.

    Shared (the default: nothing swept): ``torch.optim.AdamW`` (fused) or ``SGD`` over the stacked
    tensors, with the learning rate set per step as ``LambdaLR`` sets it, the single-trial trainer's
    arithmetic. Per head (``--nuisance``): the same update written out with (groups, 1, heads, 1)
    learning-rate and weight-decay tensors, since ``torch.optim`` takes one value per parameter group.
    The choice depends on whether the trials sweep lr and weight decay, never on their values, so a
    trial computes the same way whatever pack it is in.
    """

    def __init__(self, params: list[_Param], train, lr: Tensor | None, wd: Tensor | None) -> None:
        self.params, self.train, self.lr, self.wd = params, train, lr, wd
        self.torch_optimizer = None
        if lr is None:
            decay = [p.tensor for p in params if p.decay]
            no_decay = [p.tensor for p in params if not p.decay]
            self.torch_optimizer = optimizer_for(decay, no_decay, train)

    def step(self, grads: list[Tensor], factor: float, t: int) -> None:
        if self.torch_optimizer is not None:
            for p, g in zip(self.params, grads, strict=True):
                p.tensor.grad = g.view(p.tensor.shape)
            for group in self.torch_optimizer.param_groups:
                group["lr"] = self.train.lr * factor
            self.torch_optimizer.step()
            return
        assert self.lr is not None and self.wd is not None  # per-head mode
        rate = self.lr * factor
        for p, g in zip(self.params, grads, strict=True):
            w = p.tensor.view(p.view)
            m, v = p.m.view(p.view), p.v.view(p.view)
            decay = self.wd if p.decay else None
            if self.train.optimizer == "adamw":
                if decay is not None:
                    w.mul_(1 - rate * decay)
                beta1, beta2 = ADAM_BETAS
                m.lerp_(g, 1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = (v.sqrt() / math.sqrt(1 - beta2**t)).add_(ADAM_EPS)
                w.addcdiv_(m * (rate / (1 - beta1**t)), denom, value=-1)
            else:  # SGD, momentum 0.9, Nesterov, weight decay added to the gradient (as torch.optim.SGD)
                if decay is not None:
                    g = g + decay * w
                if t == 1:
                    m.copy_(g)
                else:
                    m.mul_(SGD_MOMENTUM).add_(g)
                w.sub_(rate * (g + SGD_MOMENTUM * m))


def clip_per_head(params: list[_Param], grads, max_norm: float | None) -> list[Tensor]:
    """The gradients as (groups, *, heads, 1) views, each head's scaled to a norm of at most ``max_norm``
    over all of its parameters (``torch.nn.utils.clip_grad_norm_`` per head)."""
    grads = [g.view(p.view) for p, g in zip(params, grads, strict=True)]
    if max_norm is None:
        return grads
    norm = torch.stack([g.square().sum(dim=(1, 3)) for g in grads]).sum(0).sqrt()
    scale = (max_norm / (norm + CLIP_EPS)).clamp(max=1.0)
    scale = scale.view(scale.shape[0], 1, scale.shape[1], 1)
    return [g * scale for g in grads]


def _predict(model: StackedHeads, features, alive, stopped_step, stopped_value, steps: int) -> list[list[Any]]:
    """Each head's val/test probabilities (float64), or why it diverged."""
    alive_host = alive.cpu().numpy()
    stopped_step_host, stopped_value_host = stopped_step.cpu().numpy(), stopped_value.cpu().numpy()
    splits = {}
    with torch.no_grad():
        for split in ("val", "test"):
            xs = getattr(features, split).x
            logits = model(xs.unsqueeze(0).expand(model.groups, *xs.shape)).double()
            splits[split] = logits.cpu().numpy()  # (groups, n, classes, heads)
    out: list[list[Any]] = []
    for g in range(model.groups):
        row: list[Any] = []
        for t in range(model.heads):
            if not alive_host[g, t]:
                step, value = int(stopped_step_host[g, t]), float(stopped_value_host[g, t])
                row.append(Diverged(f"non-finite loss ({value}) at step {step}", step=step, value=value))
                continue
            outcome: Any = None
            for split in ("val", "test"):
                head = splits[split][g, :, :, t]
                bad = ~np.isfinite(head)
                if bad.any():
                    value = float(head[bad][0])
                    reason = f"non-finite prediction ({value}) on the {split} split after step {steps}"
                    outcome = Diverged(reason, step=steps, value=value)
                    break
            if outcome is None:
                probs = {s: torch.sigmoid(torch.from_numpy(splits[s][g, :, :, t])).numpy() for s in ("val", "test")}
                outcome = Predictions(val=probs["val"], test=probs["test"], steps=steps)
            row.append(outcome)
        out.append(row)
    return out
