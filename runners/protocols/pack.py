"""The linear-probe trainer for a pack: many heads trained in lock-step on the same cached embeddings.

Why: the trials of a sweep share the embeddings, the head's initialisation and the batch order
(common random numbers: every trial uses the study's seed), so K trials are K heads fed the *same*
mini-batches. Trained one after another they waste almost everything: a 256 x 1024 . 1024 x 26
product is far too small to use the cores, and the Python, optimiser and gather costs are paid K
times. Here one gather per epoch and a few matrix products per step serve every head; the loss is
one call on (blocks, batch, classes, heads per block) with each head's own hyperparameters
(``runners.losses._pack``, the blocks as its groups); one optimiser step updates every head.

Layout: a pack is a (groups x heads) grid. A *group* is one seed: its heads start from that seed's
initialisation and see that seed's batch order (replicate seeds are extra groups, shared by every
trial). Each head has its own loss hyperparameters, learning rate and weight decay.

Same answer whatever the pack, bit for bit on CPU: a group's heads are trained in *blocks* of
``head_block`` heads (:data:`HEAD_BLOCK`; a pack pads its last block with copies of its first head,
trained and thrown away). Every matrix product (one batch entry of a group's batched product),
reduction and optimiser update runs on one block's own slice, whose shape does not depend on the
number of heads, so a head computes exactly the same operations on the same shapes in a pack of 1
or of 200. It matters: BLAS picks its kernel, and with
it the order of a sum, from the matrix sizes, and the odd ill-conditioned configuration (small
gamma_neg, large shift) amplifies that last-bit difference into a 0.01 change of mAP after 500
steps. The loss is the one call that spans blocks, each block one of its groups; its compiled loop
runs along a block's heads, each lane one head's own arithmetic, in one whole vector (16 float32
lanes). A seed-noise study (every trial its own seed) has one head per group: its blocks are single
heads (``head_block=1``), each its own single loss.

A head whose loss or prediction turns non-finite is stopped: its outcome is recorded as diverged
with the first such step and value, while the others go on (its columns may turn NaN, which no
other head ever reads: every product, loss and update is per head). Finiteness is checked on the
device and read back once per epoch: the step loop never waits for the device.

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
from torch import Tensor, nn

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

# Heads per block. 16 float32 lanes fill an AVX-512 vector of the loss kernel, and at 16 the
# products are as fast per head as one product over 128 heads (measured, 2 cores: ~12.3 s for a
# 128-head default pack either way, against ~13.4 s with blocks of 8). The price: a pack of one
# trains a whole block (about 3x the time of a lone head).
HEAD_BLOCK = 16
ADAM_BETAS = (0.9, 0.999)  # torch.optim.AdamW's defaults, which the single-trial trainer used
ADAM_EPS = 1e-8
SGD_MOMENTUM = 0.9
CLIP_EPS = 1e-6  # as torch.nn.utils.clip_grad_norm_


@dataclass(frozen=True)
class PackHeads:
    """What each head of a (groups x heads) pack trains with.

    ``seeds[g]`` is group g's seed; ``loss_params[g][t]`` is head (g, t)'s loss hyperparameters.
    ``lr[g][t]`` and ``weight_decay[g][t]`` are its learning rate and weight decay when the study
    sweeps them (``--nuisance``); None: every head uses ``config.train``'s. ``head_block`` is the
    heads per block (see the module docstring): it must be the same for every pack of a study.
    """

    loss: str
    seeds: Sequence[int]
    loss_params: Sequence[Sequence[dict[str, Any]]]
    lr: Sequence[Sequence[float]] | None = None
    weight_decay: Sequence[Sequence[float]] | None = None
    head_block: int = HEAD_BLOCK

    def __post_init__(self) -> None:
        if isinstance(self.head_block, bool) or not isinstance(self.head_block, int) or self.head_block < 1:
            raise ValueError(f"head_block must be a positive integer, got {self.head_block!r}")

    @property
    def per_head_rates(self) -> bool:
        return self.lr is not None or self.weight_decay is not None

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.seeds), len(self.loss_params[0])

    @property
    def blocks_per_group(self) -> int:
        return math.ceil(self.shape[1] / self.head_block)

    def by_block(self, table: Sequence[Sequence[Any]]) -> list[list[Any]]:
        """A (groups x heads) table as one row of ``head_block`` values per block, groups first; a group's
        last block is filled up with copies of the group's first head."""
        padded_width = self.blocks_per_group * self.head_block
        out = []
        for row in table:
            padded = list(row) + [row[0]] * (padded_width - len(row))
            out += [padded[i : i + self.head_block] for i in range(0, padded_width, self.head_block)]
        return out

    def block_of(self, group: int, head: int) -> tuple[int, int]:
        """(block, lane) of head ``head`` of group ``group``."""
        block, lane = divmod(head, self.head_block)
        return group * self.blocks_per_group + block, lane


class _Param:
    """One tensor of a group's blocks, ``(blocks, *shape)``, and whether it is decayed.

    Heads are the innermost index, so ``per_head`` views it as (blocks, rows, width) for free:
    ``[i, :, t]`` is head t of block i's part of the parameter, and ``[i]`` is block i's own
    contiguous slice, the unit of every reduction (see :func:`clip_per_head`).
    """

    def __init__(self, tensor: Tensor, width: int, decay: bool) -> None:
        self.tensor = tensor.requires_grad_(True)
        self.width = width
        self.decay = decay

    @property
    def blocks(self) -> int:
        return self.tensor.shape[0]

    def per_head(self, tensor: Tensor) -> Tensor:
        return tensor.view(self.blocks, -1, self.width)


@dataclass
class _Group:
    """Every block of one group (seed): its parameters, each stacked over the blocks."""

    group: int
    params: list[_Param]


class StackedHeads:
    """The blocks of ``linear`` or ``mlp`` heads of a pack (``PackHeads``) and their forward pass.

    A group's blocks are one batch of a batched product (``baddbmm``): every block's product is
    the same-shaped matrix product whatever the number of blocks (checked bit for bit by the
    tests), one call for all of them (measured ~15 % faster than a product per block).
    """

    def __init__(self, kind: str, dim: int, classes: int, hidden: int, heads: PackHeads, device: torch.device) -> None:
        self.kind, self.classes, self.width = kind, classes, heads.head_block
        self.groups: list[_Group] = []
        for group, seed in enumerate(heads.seeds):  # each group starts where the single-trial trainer starts
            seed_everything(seed)
            init = make_head(dim, classes, kind, hidden)
            self.groups.append(_Group(group, self._group_params(init, heads.blocks_per_group, device)))
        self.blocks = len(heads.seeds) * heads.blocks_per_group

    def _group_params(self, init: nn.Module, blocks: int, device: torch.device) -> list[_Param]:
        width = self.width

        def repeat(t: Tensor, *shape: int) -> Tensor:  # the group's initial value for each head, heads last
            heads = t.detach().unsqueeze(-1).expand(*t.shape, width).reshape(*shape)
            return heads.unsqueeze(0).expand(blocks, *heads.shape).contiguous().to(device)

        linears = [m for m in init.modules() if isinstance(m, nn.Linear)]  # [Linear] or [Linear, Linear]
        first, last = linears[0], linears[-1]
        params = [
            _Param(repeat(first.weight.T, first.in_features, -1), width, True),
            _Param(repeat(first.bias, 1, -1), width, False),
        ]
        if self.kind == "mlp":
            params += [
                _Param(repeat(last.weight.T, last.in_features, self.classes, width), width, True),
                _Param(repeat(last.bias, 1, self.classes, width), width, False),
            ]
        return params

    @property
    def params(self) -> list[_Param]:
        """Every group's tensors, group after group."""
        return [p for group in self.groups for p in group.params]

    def __call__(self, x: Tensor) -> Tensor:
        """Logits (blocks, batch, classes, width) for inputs (groups, batch, dim), groups' blocks in order:
        the blocks are the loss pack's groups."""
        logits = [self._forward(group, x[group.group]) for group in self.groups]
        out = logits[0] if len(logits) == 1 else torch.cat(logits)
        return out.view(self.blocks, x.shape[1], self.classes, self.width)

    def _forward(self, group: _Group, x: Tensor) -> Tensor:
        """One group's logits (blocks, batch, classes * width) for its inputs (batch, dim)."""
        w, b = group.params[0].tensor, group.params[1].tensor
        inputs = x.unsqueeze(0).expand(w.shape[0], *x.shape)  # every block reads the group's batch
        if self.kind == "linear":
            return torch.baddbmm(b, inputs, w)
        w2, b2 = (p.tensor for p in group.params[2:])
        h = torch.relu(torch.baddbmm(b, inputs, w)).view(w.shape[0], x.shape[0], -1, self.width)
        return (torch.einsum("kbht,khct->kbct", h, w2) + b2).flatten(2)


def train_pack(config: TrialConfig, dataset: Any, heads: PackHeads, device: torch.device) -> list[list[Any]]:
    """Train every head of ``heads`` and predict the val and test splits.

    Returns a (groups x heads) grid holding each head's :class:`Predictions`, or the
    :class:`Diverged` that stopped it.
    """
    features = features_for(config, dataset, device)
    train = config.train
    groups, width = len(heads.seeds), heads.head_block
    x, y, mask = features.train.x, features.train.y, features.train.mask
    n, classes = x.shape[0], y.shape[1]
    model = StackedHeads(train.head, features.dim, classes, train.mlp_hidden, heads, device)
    blocks, per_group = model.blocks, heads.blocks_per_group
    loss_fn = create_loss_pack(heads.loss, heads.by_block(heads.loss_params)).to(device)
    batch_size = min(train.batch_size, n)
    steps_per_epoch = math.ceil(n / batch_size)
    factor = cosine_schedule_factor(train.epochs * steps_per_epoch, train.warmup_epochs * steps_per_epoch)
    rates = None
    if heads.per_head_rates:
        assert heads.lr is not None and heads.weight_decay is not None
        # (groups, blocks, 1, width): group g's rows broadcast over each of its (blocks, rows, width) tensors
        lr, wd = (
            torch.tensor(heads.by_block(table), dtype=torch.float32, device=device).view(groups, per_group, 1, width)
            for table in (heads.lr, heads.weight_decay)
        )
        rates = [(lr[g], wd[g]) for g, group in enumerate(model.groups) for _ in group.params]
    optimizer = _Optimizer(model.params, train, rates)
    orders = [torch.Generator().manual_seed(seed) for seed in heads.seeds]  # CPU: the same batches on every device
    block_groups = torch.arange(groups, device=device).repeat_interleave(per_group)
    real = torch.zeros(blocks, width, dtype=torch.bool)  # the heads that are trials, not padding
    for g in range(groups):
        for t in range(heads.shape[1]):
            real[heads.block_of(g, t)] = True
    real = real.to(device)
    alive = torch.ones(blocks, width, dtype=torch.bool, device=device)
    stopped_step = torch.full((blocks, width), -1, dtype=torch.int64, device=device)
    stopped_value = torch.zeros(blocks, width, dtype=torch.float32, device=device)
    amp = amp_dtype(device, train.amp)
    amp = amp if amp == torch.bfloat16 else None  # bf16 needs no loss scaling: safe for the product; fp16 is not

    step = 0
    for _ in range(train.epochs):
        # One gather per epoch into shuffled copies (every group its own order), then contiguous slices.
        permutation = torch.stack([torch.randperm(n, generator=order) for order in orders]).to(device)
        flat = permutation.view(-1)
        xs = x.index_select(0, flat).view(groups, n, -1)
        # the targets (and mask) of each block: its group's
        ys = y.index_select(0, flat).view(groups, n, classes).index_select(0, block_groups)
        ms = None if mask is None else mask.index_select(0, flat).view(groups, n, classes)[block_groups]
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
                optimizer.step(clip_per_head(model.groups, grads, train.grad_clip), factor(step), step + 1)
            step += 1
        if not bool((alive & real).any()):  # the one read-back per epoch: stop when every trial's head diverged
            break

    return _predict(model, features, heads, alive, stopped_step, stopped_value, step)


class _Optimizer:
    """One optimiser step for every head: ``torch.optim`` when the heads share lr and weight decay, else per head.

    Shared (the default: nothing swept): ``torch.optim.AdamW`` (fused) or ``SGD`` over the blocks'
    tensors, with the learning rate set per step as ``LambdaLR`` sets it, the single-trial trainer's
    arithmetic. Per head (``--nuisance``): the same update written out with each tensor's (1, width)
    learning-rate and weight-decay rows, since ``torch.optim`` takes one value per parameter group.
    The choice depends on whether the trials sweep lr and weight decay, never on their values, so a
    trial computes the same way whatever pack it is in.
    """

    def __init__(self, params: list[_Param], train, rates: list[tuple[Tensor, Tensor]] | None) -> None:
        self.params, self.train, self.rates = params, train, rates
        self.torch_optimizer = None
        if rates is None:
            decay = [p.tensor for p in params if p.decay]
            no_decay = [p.tensor for p in params if not p.decay]
            self.torch_optimizer = optimizer_for(decay, no_decay, train)
        else:  # per-head state: AdamW's first moment or SGD's momentum buffer, and AdamW's second moment
            self.m = [p.per_head(torch.zeros_like(p.tensor)) for p in params]
            self.v = [p.per_head(torch.zeros_like(p.tensor)) if train.optimizer == "adamw" else None for p in params]

    def step(self, grads: list[Tensor], factor: float, t: int) -> None:
        if self.torch_optimizer is not None:
            for p, g in zip(self.params, grads, strict=True):
                p.tensor.grad = g.view(p.tensor.shape)
            for group in self.torch_optimizer.param_groups:
                group["lr"] = self.train.lr * factor
            self.torch_optimizer.step()
            return
        assert self.rates is not None  # per-head mode
        for p, g, (lr, wd), m, v in zip(self.params, grads, self.rates, self.m, self.v, strict=True):
            rate = lr * factor
            w = p.per_head(p.tensor)
            decay = wd if p.decay else None
            if v is not None:  # AdamW
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


def clip_per_head(groups: list[_Group], grads: Sequence[Tensor], max_norm: float | None) -> list[Tensor]:
    """The gradients as per-head (blocks, rows, width) views, each head's scaled to a norm of at most
    ``max_norm`` over all of its parameters (``torch.nn.utils.clip_grad_norm_`` per head), block by block."""
    params = [p for group in groups for p in group.params]
    # contiguous: the mlp's einsum hands back a permuted gradient, which the fused AdamW would misread
    views = [p.per_head(g.contiguous()) for p, g in zip(params, grads, strict=True)]
    if max_norm is None:
        return views
    clipped: list[Tensor] = []
    for group in groups:
        mine = views[len(clipped) : len(clipped) + len(group.params)]
        # One block at a time: a reduction over one block's contiguous slice sums in the same order
        # whatever the number of blocks (over all blocks at once, torch may split the sum by threads).
        norm = torch.stack(
            [torch.stack([g[i].square().sum(dim=0) for g in mine]).sum(dim=0) for i in range(mine[0].shape[0])]
        ).sqrt()
        scale = (max_norm / (norm + CLIP_EPS)).clamp(max=1.0).unsqueeze(1)  # (blocks, 1, width)
        clipped += [g * scale for g in mine]
    return clipped


def _predict(model: StackedHeads, features, heads: PackHeads, alive, stopped_step, stopped_value, steps: int):
    """Each head's val/test probabilities (float64), or why it diverged: a (groups x heads) grid."""
    alive_host = alive.cpu().numpy()
    stopped_step_host, stopped_value_host = stopped_step.cpu().numpy(), stopped_value.cpu().numpy()
    splits = {}
    with torch.no_grad():
        for split in ("val", "test"):
            xs = getattr(features, split).x
            logits = model(xs.unsqueeze(0).expand(len(heads.seeds), *xs.shape)).double()
            splits[split] = logits.cpu().numpy()  # (blocks, n, classes, width)
    out: list[list[Any]] = []
    groups, count = heads.shape
    for g in range(groups):
        row: list[Any] = []
        for t in range(count):
            where = heads.block_of(g, t)
            if not alive_host[where]:
                step, value = int(stopped_step_host[where]), float(stopped_value_host[where])
                row.append(Diverged(f"non-finite loss ({value}) at step {step}", step=step, value=value))
                continue
            block, lane = where
            outcome: Any = None
            for split in ("val", "test"):
                head = splits[split][block, :, :, lane]
                bad = ~np.isfinite(head)
                if bad.any():
                    value = float(head[bad][0])
                    reason = f"non-finite prediction ({value}) on the {split} split after step {steps}"
                    outcome = Diverged(reason, step=steps, value=value)
                    break
            if outcome is None:
                probs = {
                    s: torch.sigmoid(torch.from_numpy(splits[s][block, :, :, lane])).numpy() for s in ("val", "test")
                }
                outcome = Predictions(val=probs["val"], test=probs["test"], steps=steps)
            row.append(outcome)
        out.append(row)
    return out
