"""The base class every loss shares: hyperparameter checking, input checking, reductions, masking.

A loss subclass declares ``defaults`` (every hyperparameter with the released code's default),
checks its own values in ``check_params`` and computes in ``_chunk`` (the eager value-and-gradient
kernel, see ``_closed_form``); ``head_values`` and ``head_kernels`` give it a fused kernel and a
per-head kernel for packs (``runners.losses._pack``). Inputs
are validated here once, so that every loss accepts the same call:
``loss(logits, targets, mask=None)`` with float logits of any shape, 0/1 targets of the same shape
(soft targets blend the positive and negative terms linearly) and an optional mask broadcastable to it
(0 = the element contributes nothing; float masks weight).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ._closed_form import ClosedFormLoss, evaluate
from ._compiled import FusedKernel, kernel_choice, scalars
from ._packaged import PackagedKernel

REDUCTIONS = ("sum", "mean", "none")
FOCAL_GRADS = ("detach", "through")


@dataclass(frozen=True)
class HeadKernels:
    """A loss's per-head formula (for packs) and its two compiled forms, each built on first use.

    ``formula(x, y, mask, *rows) -> (per-head sums, gradient)`` is plain broadcasting torch code on
    (groups, batch, classes, heads) logits, (groups, batch, classes, 1) targets and mask, and rows
    shaped (length, groups, 1, 1, heads): run as it is, it is the eager kernel.
    """

    formula: Callable[..., tuple[Tensor, Tensor]]
    fused: FusedKernel
    packaged: PackagedKernel

    @classmethod
    def of(cls, formula: Callable[..., tuple[Tensor, Tensor]]) -> HeadKernels:
        return cls(formula, FusedKernel(formula, size_free=False), PackagedKernel(formula, packed=True))


class MultiLabelLoss(nn.Module):
    """A multi-label loss on logits; subclasses set ``defaults`` and implement ``_chunk``.

    ``reduction``: ``"sum"`` (the released code's choice and the default), ``"mean"`` (divided by the
    number of elements, or by the mask's total weight when a mask is given) or ``"none"``.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {"reduction": "sum"}
    reduction: str  # set from ``defaults`` by ``__init__``, like every subclass's hyperparameters
    # Optional fused (torch.compile) kernel for the summed loss; see ``_compiled``. Losses without one
    # always use their eager ``_chunk``.
    fused_kernel: ClassVar[FusedKernel | None] = None
    # The same fused function compiled ahead of time, for small CPU batches under LOSSWEEP_COMPILE=aot (``_packaged``).
    packaged_kernel: ClassVar[PackagedKernel | None] = None
    # The per-head formula and its compiled forms, for packs of heads with their own hyperparameters.
    head_kernels: ClassVar[HeadKernels | None] = None

    def __init__(self, **params: Any) -> None:
        super().__init__()
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            valid = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
            raise ValueError(
                f"{self._label()} got unknown parameter(s) {', '.join(unknown)}; valid parameters (defaults): {valid}"
            )
        checked = self.check_params({**self.defaults, **params})
        self._params = checked
        for key, value in checked.items():
            setattr(self, key, value)

    # --- hyperparameters ------------------------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        """The hyperparameters in effect, defaults filled in (a copy)."""
        return dict(self._params)

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Validate and normalise ``params``; subclasses extend this and call ``super()``."""
        params["reduction"] = choice(self, params, "reduction", REDUCTIONS)
        if "focal_grad" in params:
            params["focal_grad"] = choice(self, params, "focal_grad", FOCAL_GRADS)
        return params

    @classmethod
    def _label(cls) -> str:
        return f"loss {cls.name!r}" if cls.name else cls.__name__

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._params.items())

    # --- computing ------------------------------------------------------------------------------
    def forward(self, logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        x, y, m = self._prepare(logits, targets, mask)
        compute = self._eager
        if self.fused_kernel is not None and self.reduction != "none":
            choice = kernel_choice(x.device, x.numel())
            if choice == "fused":
                compute = self._fused
            elif choice == "packaged" and self.packaged_kernel is not None:
                compute = self._packaged
        with _no_autocast(x):
            if x.requires_grad and torch.is_grad_enabled():
                loss = ClosedFormLoss.apply(x, y, m, compute)
            else:
                loss, _ = compute(x, y, m, False)
        return self._reduce(loss, logits, m)

    def _eager(self, x: Tensor, y: Tensor, m: Tensor | None, want_grad: bool) -> tuple[Tensor, Tensor | None]:
        """(summed or per-element loss, gradient or None) from the chunked eager kernel ``_chunk``."""
        return evaluate(self._chunk, x, y, m, want_grad, self.reduction == "none")

    def _fused(self, x: Tensor, y: Tensor, m: Tensor | None, want_grad: bool) -> tuple[Tensor, Tensor | None]:
        """(summed loss, gradient) from the fused kernel; the eager kernel if it is unavailable.

        The gradient is computed even when not wanted (``no_grad`` evaluation): one kernel variant
        fewer to compile, for the price of one written tensor.
        """
        # Detached: inputs that require grad would be a second compiled variant, with a slower call.
        flat_mask = None if m is None else m.detach().reshape(-1)
        result = self.fused_kernel(  # type: ignore[misc]  # only chosen for a class with one
            x.detach().reshape(-1), y.detach().reshape(-1), flat_mask, *self._fused_inputs(x)
        )
        if result is None:
            return self._eager(x, y, m, want_grad)
        total, grad = result
        return total, grad.view(x.shape)

    def _packaged(self, x: Tensor, y: Tensor, m: Tensor | None, want_grad: bool) -> tuple[Tensor, Tensor | None]:
        """(summed loss, gradient) from the ahead-of-time compiled kernel; the eager kernel if it is unavailable.

        As ``_fused``, the gradient is computed even when not wanted. Inputs are made contiguous: the
        library was compiled for dense 1-D inputs.
        """
        flat_mask = None if m is None else m.detach().reshape(-1).contiguous()
        result = self.packaged_kernel(  # type: ignore[misc]  # only chosen for a class with one
            x.detach().reshape(-1).contiguous(), y.detach().reshape(-1).contiguous(), flat_mask, *self._fused_inputs(x)
        )
        if result is None:
            return self._eager(x, y, m, want_grad)
        total, grad = result
        return total, grad.view(x.shape)

    def _fused_inputs(self, like: Tensor) -> tuple[Tensor, ...]:
        """The hyperparameters as tensors (``like``'s dtype and device), the fused kernel's last arguments."""
        # The index as role: two equal rows (alpha = beta) must stay distinct inputs (see ``scalars``).
        return tuple(scalars(row, like, str(i)) for i, row in enumerate(self.head_values(like.dtype)))

    def head_values(self, dtype: torch.dtype) -> tuple[tuple[float, ...], ...]:
        """The hyperparameters as rows of numbers, the fused and per-head kernels' last arguments.

        One row per kernel argument (e.g. ASL: one row of scalars; RAL: scalars, alpha, beta). A pack
        pads each row with zeros to the longest head's, which must leave the loss unchanged.
        """
        return ()

    def _chunk(
        self, x: Tensor, y: Tensor, mask: Tensor | None, grad_out: Tensor | None, loss_out: Tensor | None
    ) -> Tensor | None:
        """Value and gradient on one chunk; see ``runners.losses._closed_form``."""
        raise NotImplementedError

    def _reduce(self, loss: Tensor, logits: Tensor, m: Tensor | None) -> Tensor:
        if self.reduction == "none":
            return loss.view(logits.shape)
        if self.reduction == "mean":
            if m is None:
                return loss / logits.numel()
            return loss / m.sum().clamp_min(torch.finfo(m.dtype).tiny)  # an all-zero mask gives 0, not NaN
        return loss

    def _prepare(self, logits: Tensor, targets: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Float logits (float64 stays float64, others compute in float32), targets and mask in the same
        dtype and shape."""
        if not isinstance(logits, Tensor) or not logits.is_floating_point():
            raise ValueError(f"{self._label()}: logits must be a floating-point tensor, got {_describe(logits)}")
        if not isinstance(targets, Tensor):
            raise ValueError(f"{self._label()}: targets must be a tensor of 0/1 labels, got {type(targets).__name__}")
        if targets.shape != logits.shape:
            raise ValueError(
                f"{self._label()}: targets shape {tuple(targets.shape)} must equal logits shape {tuple(logits.shape)}"
            )
        if targets.device != logits.device:
            raise ValueError(
                f"{self._label()}: targets are on {targets.device} but logits on {logits.device}; move them to "
                "one device"
            )
        x = logits
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()  # bf16 / fp16 (autocast): compute in float32, return float32
        # Targets are not checked for 0/1 values: that would cost a pass over them per call. Soft targets
        # blend the positive and negative terms linearly (y l+ + (1 - y) l-).
        y = targets.to(x.dtype)
        m = None
        if mask is not None:
            if not isinstance(mask, Tensor):
                raise ValueError(f"{self._label()}: mask must be a bool or float tensor, got {type(mask).__name__}")
            try:
                torch.broadcast_shapes(mask.shape, logits.shape)
            except RuntimeError:
                raise ValueError(
                    f"{self._label()}: mask shape {tuple(mask.shape)} does not broadcast to logits shape "
                    f"{tuple(logits.shape)}"
                ) from None
            m = mask.to(device=x.device, dtype=x.dtype).expand(logits.shape)
        return x, y, m


# --- parameter checks (shared by the losses) --------------------------------------------------------
def real(
    loss: MultiLabelLoss,
    params: dict[str, Any],
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    why: str = "",
) -> float:
    """``params[name]`` as a finite float within the given bounds, or a ValueError saying which."""
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{loss._label()}: {name} must be a finite number, got {value!r}")
    value = float(value)
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        left = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        right = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        interval = f"{left or '(-inf'}, {right or 'inf)'}"
        raise ValueError(f"{loss._label()}: {name} must be in {interval}, got {value!r}" + (f" ({why})" if why else ""))
    return value


def focusing_and_shift(loss: MultiLabelLoss, params: dict[str, Any], clip_name: str) -> None:
    """Check ASL's and RAL's shared hyperparameters in place: the two focusing exponents, the
    probability shift (``clip_name`` says what the loss's paper calls it) and the log's floor."""
    for name in ("gamma_pos", "gamma_neg"):
        params[name] = real(loss, params, name, low=0.0, why="a focusing exponent; 0 turns focusing off")
    params["clip"] = real(loss, params, "clip", low=0.0, high=1.0, high_open=True, why=f"{clip_name}; 0 turns it off")
    params["eps"] = real(
        loss, params, "eps", low=0.0, high=1.0, low_open=True, high_open=True, why="the floor of the clamped log"
    )


def shape_lambda(loss: MultiLabelLoss, params: dict[str, Any]) -> float:
    """Hill's and RAL's λ of the (λ − p) negative factor: positive; λ <= 1 is legal but pathological."""
    return real(
        loss,
        params,
        "lam",
        low=0.0,
        low_open=True,
        why="lam <= 1 already flips the sign of (lam - p) for confident negatives",
    )


def coefficients(loss: MultiLabelLoss, params: dict[str, Any], name: str) -> tuple[float, ...]:
    """``params[name]`` as a tuple of finite floats (any length, empty allowed)."""
    value = params[name]
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, (Sequence, torch.Tensor))
        and not hasattr(value, "__iter__")
    ):
        raise ValueError(f"{loss._label()}: {name} must be a sequence of numbers such as (1.0, -1.25), got {value!r}")
    out = []
    for i, c in enumerate(list(value)):
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not math.isfinite(float(c)):
            raise ValueError(f"{loss._label()}: {name}[{i}] must be a finite number, got {c!r}")
        out.append(float(c))
    return tuple(out)


def choice(loss: MultiLabelLoss, params: dict[str, Any], name: str, options: Sequence[str]) -> str:
    value = params[name]
    if value not in options:
        raise ValueError(f"{loss._label()}: {name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def _describe(obj: Any) -> str:
    return f"a {obj.dtype} tensor" if isinstance(obj, Tensor) else type(obj).__name__


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def _no_autocast(x: Tensor):
    """Losses compute in the logits' float precision even inside an autocast region."""
    device_type = x.device.type
    if device_type in ("cpu", "cuda") and _autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()
