"""Fused value + gradient kernels compiled with ``torch.compile``, with a clean fall-back to the eager kernels.

Why: the eager closed-form kernels (``_closed_form``) still make ~40 passes over the data and ~60
dispatcher calls per loss; written as one element-wise formula, inductor turns a loss into a single
vectorised C++ loop (one read of logits and targets, one write of the gradient, the sum fused in).
Measured (``python -m benchmarks.losses``, shared 2-core CPU) at 4096 x 1000: ASL ~1.4-1.7x and RAL
~1.7-1.8x ``BCEWithLogitsLoss`` in forward + backward, against ~2.0x and ~2.8x eager with one thread
(~4x and ~6x with two: the eager kernels' cache-sized chunks run on one thread). At 256 x 26 the
fixed cost of calling a compiled function (~60 us of dynamo guards and wrappers, as much as BCE's
whole forward + backward) eats the gain: there both paths cost ~3.5-4.5x BCE.

``LOSSWEEP_COMPILE`` chooses when the fused kernels are used (read at every call, so tests can set it):

- unset or ``auto`` (default; ``aot`` is a synonym): on CPU, inputs of at least ``FUSED_MIN_ELEMENTS``
  (32768) elements run the ``torch.compile``d kernel, and smaller ones (the 256 x 26 of CXR-LT) the same
  fused formula compiled ahead of time by AOTInductor (``_packaged``: ~4 us per call instead of dynamo's
  ~60 us; each variant compiles once per machine, ~10-25 s, and is kept on disk). CUDA keeps the eager
  kernels (one whole-tensor pass per operation on a GPU, already cheap there; inductor would need Triton);
- ``1``: the ``torch.compile``d kernel for every input on every device; ``0``: never compile (bit for
  bit the eager results).

Only the training hot path is fused: ``reduction="sum"`` or ``"mean"``, with or without a mask,
float32 or float64. ``reduction="none"`` uses the eager kernels.

Cost: the first fused call in a process compiles (10-40 s cold on a busy 2-core machine; a few
seconds when inductor's on-disk cache, ``TORCHINDUCTOR_CACHE_DIR``, already holds the kernel). The
length is compiled unbacked, so no batch size ever recompiles; hyperparameters are kernel inputs, so
no trial recompiles. Variants that do compile separately: loss, dtype, mask or not, and the RAL
polynomial lengths rounded up to even (dynamo keeps 8 per loss; past that it runs the formula
uncompiled, correct but slow, and logs a warning). If compiling or running a fused kernel fails (no C++
compiler, an unsupported torch), a ``RuntimeWarning`` says so once and the process goes on with the
eager kernels.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

ENV_VAR = "LOSSWEEP_COMPILE"
FUSED_MIN_ELEMENTS = 1 << 15  # "auto": below this the compiled call's fixed cost (~60 us) eats the gain
_MODES = {
    "": "auto",
    "auto": "auto",
    "1": "on",
    "on": "on",
    "true": "on",
    "0": "off",
    "off": "off",
    "false": "off",
    "aot": "auto",
}

# A fused kernel: (x, y, mask or None, scalars, polynomial coefficients...) -> (summed loss, gradient), all 1-D.
FusedFunction = Callable[..., tuple[Tensor, Tensor]]


def compile_mode() -> str:
    """``"auto"``, ``"on"`` or ``"off"`` from ``LOSSWEEP_COMPILE``; ValueError naming the variable otherwise."""
    raw = os.environ.get(ENV_VAR, "")
    mode = _MODES.get(raw.strip().lower())
    if mode is None:
        raise ValueError(
            f"environment variable {ENV_VAR}={raw!r} is not understood; set it to 0 (eager kernels), 1 (fused "
            "everywhere), "
            "or auto (compiled kernels on CPU)"
        )
    return mode


def wanted_on(device: torch.device, numel: int) -> bool:
    """Whether the current setting asks for fused kernels for ``numel`` elements on ``device``."""
    return kernel_choice(device, numel) == "fused"


def kernel_choice(device: torch.device, numel: int) -> str:
    """``"fused"`` (torch.compile), ``"packaged"`` (AOTInductor, see ``_packaged``) or ``"eager"`` for this input."""
    mode = compile_mode()
    if mode == "on":
        return "fused"
    if mode == "off" or device.type != "cpu":
        return "eager"
    if numel >= FUSED_MIN_ELEMENTS:
        return "fused"
    # Small CPU batches: ahead-of-time compiled, since dynamo's per-call guards would eat the fused kernel's gain.
    return "packaged" if numel >= 2 else "eager"


def mark_size_free(data: Tensor) -> None:
    """Compile for any length of ``data``: without this, inductor picks its reduction for the length seen
    first and guards on it (``2 <= n <= 4096``), so a large batch after a small one compiles again.
    """
    from torch._dynamo.decorators import mark_unbacked  # imported here: importing dynamo costs a second

    mark_unbacked(data, 0)


class FusedKernel:
    """One loss's fused kernel: compiled on first use, or permanently replaced by ``None`` if that fails.

    ``__call__`` returns ``(summed loss, gradient)`` or ``None``, in which case the caller runs its
    eager kernel. Failures are per kernel and device type: RAL failing to compile for CUDA (no Triton)
    disables neither ASL nor RAL on CPU.
    """

    def __init__(self, function: FusedFunction) -> None:
        self.function = function
        self.failed: dict[str, str] = {}  # device type -> why compiling or running failed there
        self._compiled: FusedFunction | None = None
        self._lock = threading.Lock()

    def _get(self) -> FusedFunction:
        if self._compiled is None:
            with self._lock:
                if self._compiled is None:
                    # dynamic=True: one compile for every batch size (the last, short batch of an epoch included).
                    self._compiled = torch.compile(self.function, dynamic=True, fullgraph=True)
        return self._compiled

    def __call__(self, *args: Tensor | None) -> tuple[Tensor, Tensor] | None:
        device_type = args[0].device.type  # type: ignore[union-attr]  # args[0], the logits, is a tensor
        if device_type in self.failed:
            return None
        try:
            compiled = self._get()
            for data in args[:3]:  # x, y, mask: see mark_size_free
                if data is not None:
                    mark_size_free(data)
            with torch.no_grad():  # a plain inference graph: the gradient is one of its outputs
                return compiled(*args)
        except Exception as error:  # noqa: BLE001 - any failure of the compiler stack means "use eager"
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            self.failed[device_type] = f"{type(error).__name__}: {first_line}"
            warnings.warn(
                f"runners.losses: the fused {self.function.__name__} kernel is unavailable on {device_type} "
                f"({self.failed[device_type]}); using the eager kernels there for the rest of this process "
                f"(set {ENV_VAR}=0 to skip the attempt)",
                RuntimeWarning,
                stacklevel=3,
            )
            return None


_SCALARS: dict[tuple, Tensor] = {}


def scalars(values: tuple[float, ...], like: Tensor, role: str = "") -> Tensor:
    """A cached 1-D tensor of ``values`` in ``like``'s dtype and device (hyperparameters as kernel *inputs*).

    ``role`` keeps two arguments of one call distinct objects even when their values are equal: the
    compiled kernel is specialised on which of its inputs alias each other.
    """
    key = (role, values, like.dtype, like.device)
    tensor = _SCALARS.get(key)
    if tensor is None:
        if len(_SCALARS) > 1024:  # a long sweep creates one per trial
            _SCALARS.clear()
        tensor = _SCALARS[key] = torch.tensor(values, dtype=like.dtype, device=like.device)
    return tensor


def fused_gamma(gamma: float, like: Tensor) -> float:
    """A positive exponent raised to the dtype's smallest normal number, as ``_closed_form.power`` does.

    A subnormal exponent would be flushed to 0 in the tensor (or by the CPU) and turn 0 ** gamma = 0 into 1.
    """
    return max(gamma, torch.finfo(like.dtype).tiny) if gamma > 0 else 0.0


POLY_BLOCK = 2


def padded(coefs: tuple[float, ...]) -> tuple[float, ...]:
    """Coefficients padded with zeros to a multiple of ``POLY_BLOCK`` (at least one block).

    The fused kernels are specialised on the polynomial's length; padding puts the released shape
    (M = 2, N = 1) and every shorter one on one compiled kernel, at the price of a multiply-add or two.
    """
    length = max(POLY_BLOCK, -(-len(coefs) // POLY_BLOCK) * POLY_BLOCK)
    return tuple(coefs) + (0.0,) * (length - len(coefs))


# --- element-wise building blocks of the fused kernels ------------------------------------------------
# Written as plain functional torch code: inductor fuses all of it into one loop, so temporaries are free
# and only transcendental functions cost (each is ~10x a multiply): the helpers share them.


def sigmoid_parts(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(p, 1 - p, log p, log(1 - p))`` for p = sigmoid(x), each to full relative precision.

    One exp and one log for all four (``sigmoid`` plus ``log`` twice would be four transcendentals,
    and ``1 - p`` loses every digit where p is close to 1). ``log(1 + e)`` rather than ``log1p(e)``
    (half the cost): its absolute error stays below one float ulp of 1, as ``log(sigmoid(x))`` in the
    released code.
    """
    e = torch.exp(-x.abs())
    one_plus_e = 1 + e
    r = 1 / one_plus_e
    er = e * r
    nonneg = x >= 0
    log1p_e = torch.log(one_plus_e)
    p = torch.where(nonneg, r, er)
    q = torch.where(nonneg, er, r)
    log_p = -(torch.clamp(-x, min=0) + log1p_e)
    log_q = -(torch.clamp(x, min=0) + log1p_e)
    return p, q, log_p, log_q


def power_from_log(log_base: Tensor, gamma: Tensor) -> Tensor:
    """``base ** gamma`` from ``log(base)``, with 0 ** 0 = 1 (as ``torch.pow``, the released code's choice)."""
    return torch.where(gamma > 0, torch.exp(gamma * log_base), 1.0)


def horner(u: Tensor, coefs: Tensor) -> tuple[Tensor, Tensor]:
    """``(sum_m c_m u^m, sum_m m c_m u^(m-1))`` for m = 1..len(coefs): a polynomial and its slope."""
    n = coefs.shape[0]
    value = coefs[n - 1] * u
    slope = n * coefs[n - 1]
    for m in range(n - 1, 0, -1):
        value = (value + coefs[m - 1]) * u
        slope = slope * u + m * coefs[m - 1]
    return value, slope


def asymmetric(
    x: Tensor, y: Tensor, mask: Tensor | None, c: Tensor, alpha: Tensor | None, beta: Tensor | None
) -> tuple[Tensor, Tensor]:
    """ASL (``alpha`` and ``beta`` None) or RAL: summed loss and gradient; see ``asl.py`` and ``ral.py``.

    ``c`` = (gamma_neg, gamma_pos, clip, eps, lam, through); ``lam`` is unused by ASL and
    ``through`` is 1.0 when the focusing weights are differentiated, else 0.0.
    """
    g_neg, g_pos, clip, eps, lam, through = c[0], c[1], c[2], c[3], c[4], c[5]
    ral = alpha is not None
    p, qx, log_p, log_qx = sigmoid_parts(x)
    s = p * qx  # dp/dx, exact where p (1 - p) would cancel
    log_eps = torch.log(eps)

    # Negatives. q = min(1 - p + clip, 1) as released, computed from the exact 1 - p; p_clip = 1 - q.
    # Without a shift q = 1 - p and p_clip = p exactly (and their logs are the shared ones).
    shifted = clip > 0
    q = torch.clamp(qx + clip, max=1.0)
    pt = torch.where(shifted, 1 - q, p)
    live = pt > 0  # [p > clip]: the shift's slope, and where the weight's slope is not the 0 ** gamma limit
    log_pt = torch.where(shifted, torch.log(pt), log_p)
    q_floor = torch.clamp(q, min=eps)
    log_qf = torch.where(shifted, torch.log(q_floor), torch.clamp(log_qx, min=log_eps))
    above_floor = q >= eps  # where log max(q, eps) moves with q
    w = power_from_log(log_pt, g_neg)
    a, a_q = log_qf, 1 / q_floor  # A(q~) and dA/dq~
    if ral:
        poly, slope = horner(q_floor, beta)  # type: ignore[arg-type]  # RAL passes alpha and beta
        a, a_q = a + poly, a_q + slope
    a_q = torch.where(above_floor & live, a_q, 0.0)  # d q / dx = -s [p > clip]
    if ral:
        # l- = -w A H, H = E D, E = (lam - p) p^2, D = lam - q:
        # dl-/dx = -s [w ((K D + E [p > clip]) A - A_q H) + g- R / p_clip],  K = dE/dp = 2 lam p - 3 p^2
        p2 = p * p
        e = (lam - p) * p2
        d = lam - q
        h = e * d
        r_neg = w * a * h
        dh = (2 * lam * p - 3 * p2) * d + torch.where(live, e, 0.0)
        d_neg = s * (w * (dh * a - a_q * h))
    else:
        # l- = -w log q~:  dl-/dx = -(-s w A_q + g- R s / p_clip)
        r_neg = w * a
        d_neg = -s * w * a_q
    # The weight's slope g- p_clip^(g- - 1) s, taken as 0 where p_clip = 0 (finite for 0 < g- < 1).
    d_neg = d_neg + through * g_neg * torch.where(live, r_neg * s / torch.where(live, pt, 1.0), 0.0)

    # Positives: l+ = -wp B, B = log p~ + sum_m alpha_m u^m, u = 1 - p~, wp = (1 - p)^g+;
    # dB/dx = [p > eps] (s / p - s sum_m m alpha_m u^(m-1)),  dwp/dx = -g+ wp p.
    above_eps = p > eps
    b = torch.clamp(log_p, min=log_eps)
    db = qx  # s / p
    if ral:
        u = torch.where(above_eps, qx, 1 - eps)  # 1 - max(p, eps), exact where p is close to 1
        poly, slope = horner(u, alpha)  # type: ignore[arg-type]  # ral: alpha is not None
        b, db = b + poly, db - s * slope
    db = torch.where(above_eps, db, 0.0)
    wp = power_from_log(log_qx, g_pos)
    r_pos = wp * b
    d_pos = wp * db - through * g_pos * p * r_pos

    value = torch.lerp(r_neg, r_pos, y)  # y l+ + (1 - y) l-, negated below; exact for 0/1 targets
    grad = -torch.lerp(d_neg, d_pos, y)
    if mask is not None:
        value, grad = value * mask, grad * mask
    return -value.sum(), grad
