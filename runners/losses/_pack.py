"""A loss for a pack of heads: K configurations of one loss evaluated in one call, each with its own hyperparameters.

Why: a sensitivity study trains hundreds of heads that differ only in the loss's hyperparameters and
see the same mini-batches (``runners.protocols.pack``). Evaluating them one by one pays the per-call
cost K times; here the hyperparameters are tensors broadcast over the batch and the classes, so K
heads cost one call of the loss's per-head formula (``head_kernels`` of each loss: plain broadcasting
torch code, compiled like the single-loss fused kernels, see ``_compiled`` and ``_packaged``). The
values are inputs of the compiled code: new hyperparameters never recompile.

Layout: logits ``(batch, classes, heads)``, or ``(groups, batch, classes, heads)`` where each group
is fed its own mini-batches (replicate seeds); targets and mask ``(batch, classes)`` or ``(groups,
batch, classes)``, shared by the heads. Heads are the last, contiguous dimension so that the compiled
loop runs along the heads, which share a target and differ only in their hyperparameters (measured:
about 4x faster than classes-last at 26 classes, where a 26-long inner loop is mostly vector tail).
The result is one loss per head, ``(heads,)`` or ``(groups, heads)``: a head's value and gradient
are those of its own loss on its own logits, equal to
``create_loss(name, **its_params)`` (the same parity with the released code, finite gradients
everywhere; see tests/losses/test_pack.py).

>>> import torch
>>> pack = create_loss_pack("asl", [{"gamma_neg": 2.0}, {"gamma_neg": 4.0, "clip": 0.1}])
>>> pack(torch.zeros(8, 3, 2), torch.ones(8, 3)).shape
torch.Size([2])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ._closed_form import ClosedFormLoss
from ._compiled import pack_kernel_choice
from .base import HeadKernels, MultiLabelLoss, _no_autocast
from .registry import loss_class

__all__ = ["LossPack", "create_loss_pack"]


def create_loss_pack(name: str, heads: Sequence[Mapping[str, Any]] | Sequence[Sequence[Mapping[str, Any]]]) -> LossPack:
    """A :class:`LossPack` of loss ``name``: ``heads`` is one parameter dict per head, or a (groups x heads) grid."""
    return LossPack(name, heads)


class LossPack(nn.Module):
    """``name``'s loss for a pack of heads; see the module docstring for the shapes.

    Every head's parameters are checked as ``create_loss`` checks them (a bad one is a ValueError
    naming the head). ``reduction`` must be the same for all heads: ``"sum"`` (default) or ``"mean"``
    (over the head's batch and classes, or the mask's weight); ``"none"`` is not offered.
    """

    def __init__(self, name: str, heads: Sequence[Mapping[str, Any]] | Sequence[Sequence[Mapping[str, Any]]]) -> None:
        super().__init__()
        cls: type[MultiLabelLoss] = loss_class(name)
        grid = _grid(heads)
        losses = []
        for g, row in enumerate(grid):
            for t, params in enumerate(row):
                try:
                    losses.append(cls(**dict(params)))
                except ValueError as error:
                    where = f"head {t}" if len(grid) == 1 else f"head ({g}, {t})"
                    raise ValueError(f"{where}: {error}") from None
        reductions = {loss.reduction for loss in losses}
        if len(reductions) > 1 or "none" in reductions:
            raise ValueError(
                f"a loss pack needs one reduction for every head, 'sum' or 'mean'; got {sorted(reductions)}"
            )
        self.name = name
        self.reduction = reductions.pop()
        self.shape = (len(grid), len(grid[0]))  # (groups, heads)
        # None for a loss without a per-head formula (a plugin loss, say): each head then runs its own loss.
        self.kernels: HeadKernels | None = cls.head_kernels
        self._losses = losses
        self._rows: dict[tuple[torch.dtype, torch.device], tuple[Tensor, ...]] = {}

    @property
    def params(self) -> list[dict[str, Any]]:
        """Each head's hyperparameters in effect (defaults filled in), groups first."""
        return [loss.params for loss in self._losses]

    def extra_repr(self) -> str:
        return f"{self.name!r}, groups={self.shape[0]}, heads={self.shape[1]}, reduction={self.reduction!r}"

    def rows(self, like: Tensor) -> tuple[Tensor, ...]:
        """The heads' hyperparameters as the kernel's row tensors, each (length, groups, 1, 1, heads), cached."""
        key = (like.dtype, like.device)
        if key not in self._rows:
            groups, heads = self.shape
            per_head = [loss.head_values(like.dtype) for loss in self._losses]
            tensors = []
            for i in range(len(per_head[0])):
                length = max(len(values[i]) for values in per_head)
                # Zero padding leaves a polynomial unchanged (its trailing terms are 0 * u^m).
                table = [tuple(values[i]) + (0.0,) * (length - len(values[i])) for values in per_head]
                rows = torch.tensor(table, dtype=like.dtype).T.reshape(length, groups, 1, 1, heads)
                tensors.append(rows.contiguous().to(like.device))
            self._rows[key] = tuple(tensors)
        return self._rows[key]

    def forward(self, logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        x, y, m, flat = self._prepare(logits, targets, mask)
        groups, heads = self.shape
        if heads == 1 or self.kernels is None:
            # One head per group (a heads-last loop would be one element long), or no per-head formula:
            # each head's loss is its own single loss (its fused kernels, or its eager one).
            cells = [
                self._losses[g * heads + t](x[g, :, :, t], y[g, :, :, 0], None if m is None else m[g, :, :, 0])
                for g in range(groups)
                for t in range(heads)
            ]
            loss = torch.stack(cells).view(groups, heads)
            return loss[0] if flat else loss
        with _no_autocast(x):
            if x.requires_grad and torch.is_grad_enabled():
                loss = ClosedFormLoss.apply(x, y, m, self._compute)
            else:
                loss, _ = self._compute(x, y, m, False)
        if self.reduction == "mean":
            if m is None:
                loss = loss / (x.shape[1] * x.shape[2])
            else:
                loss = loss / m.sum(dim=(1, 2)).clamp_min(torch.finfo(m.dtype).tiny)
        return loss[0] if flat else loss

    def _compute(self, x: Tensor, y: Tensor, m: Tensor | None, want_grad: bool) -> tuple[Tensor, Tensor]:
        """(per-head sums, gradient) from the kernel ``pack_kernel_choice`` names; the formula if it is unavailable.

        The gradient comes with the value whether wanted or not (one kernel variant fewer, as ``base._fused``).
        """
        assert self.kernels is not None  # forward runs the single losses otherwise
        rows = self.rows(x)
        x, y = x.detach(), y.detach()
        m = None if m is None else m.detach()
        choice = pack_kernel_choice(x.device)
        result = None
        if choice == "packaged":
            contiguous = None if m is None else m.contiguous()
            result = self.kernels.packaged(x.contiguous(), y.contiguous(), contiguous, *rows)
        elif choice == "fused":
            result = self.kernels.fused(x, y, m, *rows)
        if result is None:
            with torch.no_grad():
                result = self.kernels.formula(x, y, m, *rows)
        return result

    def _prepare(self, logits: Tensor, targets: Tensor, mask: Tensor | None):
        """4-D logits (float32 or float64), 4-D targets and mask with a head dimension of 1, and whether
        the input was 3-D."""
        label = f"loss pack {self.name!r}"
        if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.dim() not in (3, 4):
            raise ValueError(
                f"{label}: logits must be a float tensor (batch, classes, heads) or (groups, batch, classes, heads)"
            )
        flat = logits.dim() == 3
        x = logits.unsqueeze(0) if flat else logits
        groups, batch, classes, heads = x.shape
        if (groups, heads) != self.shape:
            raise ValueError(
                f"{label}: logits have {groups} group(s) x {heads} head(s), the pack {self.shape[0]} x {self.shape[1]}"
            )
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()  # bf16 / fp16 (autocast): compute in float32
        shared = (batch, classes) if flat else (groups, batch, classes)
        if not isinstance(targets, Tensor) or tuple(targets.shape) != shared:
            got = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
            raise ValueError(f"{label}: targets must be shaped {shared} (shared by the heads), got {got}")
        y = targets.to(x.dtype).reshape(groups, batch, classes, 1)
        m = None
        if mask is not None:
            if not isinstance(mask, Tensor) or tuple(mask.shape) != shared:
                raise ValueError(f"{label}: mask must be shaped {shared} like the targets")
            m = mask.to(device=x.device, dtype=x.dtype).reshape(groups, batch, classes, 1)
        return x, y, m, flat


def _grid(heads: Sequence[Any]) -> list[list[Mapping[str, Any]]]:
    """``heads`` as a non-empty (groups x heads) list of parameter mappings."""
    if isinstance(heads, Mapping) or not isinstance(heads, Sequence) or not heads:
        raise ValueError("a loss pack needs a non-empty list of parameter dicts, one per head (or a grid of them)")
    rows = [list(heads)] if all(isinstance(h, Mapping) for h in heads) else [list(row) for row in heads]
    if any(not row or len(row) != len(rows[0]) or not all(isinstance(h, Mapping) for h in row) for row in rows):
        raise ValueError("a loss pack's grid needs rows of equal length, each a list of parameter dicts")
    return rows
