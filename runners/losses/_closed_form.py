"""Machinery shared by the closed-form losses: chunked evaluation, a scratch workspace, one autograd Function.

Why hand-written instead of plain autograd: the released ASL and RAL code cost 10-13x a BCE in
forward + backward, because autograd records ~40 element-wise operations, each of which allocates a
fresh (batch x classes) tensor (on CPU every fresh tensor also pays page faults) and is replayed in
backward. Here each loss computes its value *and* its closed-form gradient in one forward sweep, in
place, in scratch buffers reused across calls; backward is one in-place multiply. The gradient is
the mathematical one, written so that it stays finite everywhere (the released code's NaN gradients
come from ``0 ** (gamma - 1) * 0``).

ASL and RAL can instead run as one compiled loop (``_compiled``, ``LOSSWEEP_COMPILE``); these eager
kernels are the reference and the fall-back, and the only path for ``reduction="none"``.

On CPU the sweep runs over chunks of ``CPU_CHUNK`` elements so that the ~40 passes over the scratch
buffers hit the cache instead of memory (measured: about 2x faster than whole-tensor passes at
4096 x 1000). On GPUs a chunk is the whole tensor.

A chunk kernel has the signature ``kernel(x, y, mask, grad_out, loss_out) -> Tensor | None``:
``x``, ``y`` (0/1 targets, same dtype) and ``mask`` (weights or None) are 1-D slices; the kernel
writes d(masked sum)/dx into ``grad_out`` when given, the masked per-element losses into
``loss_out`` when given (and returns None), else returns the chunk's masked sum as a 0-d tensor.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import torch
from torch import Tensor

CPU_CHUNK = 1 << 14

ChunkKernel = Callable[[Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None], Tensor | None]


class _Workspace(threading.local):
    """Per-thread scratch buffers, kept between calls so that steady-state training allocates nothing.

    One set per (device, dtype), sized to the largest chunk seen, with views cached per length.
    Thread-local because DataParallel-style replicas call losses from several threads at once.
    Buffers never leave a kernel call: whatever a loss returns is freshly allocated.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        self._views: dict[tuple[torch.device, torch.dtype, int], list[Tensor]] = {}

    def take(self, count: int, like: Tensor) -> list[Tensor]:
        n = like.numel()
        views = self._views.get((like.device, like.dtype, n))
        if views is not None and len(views) >= count:
            return views[:count]
        key = (like.device, like.dtype)
        buffers = self._buffers.get(key, [])
        if not buffers or buffers[0].numel() < n or len(buffers) < count:
            capacity = max([n] + [b.numel() for b in buffers[:1]])
            buffers = [
                torch.empty(capacity, dtype=like.dtype, device=like.device) for _ in range(max(count, len(buffers)))
            ]
            self._buffers[key] = buffers
            self._views = {k: v for k, v in self._views.items() if k[:2] != key}
        if len(self._views) > 8:  # lengths seen: the chunk and the last, short chunk of a few batch sizes
            self._views.clear()
        views = [b[:n] for b in buffers]
        self._views[(like.device, like.dtype, n)] = views
        return views[:count]

    def clear(self) -> None:
        self._buffers.clear()
        self._views.clear()


workspace = _Workspace()


def release_workspace() -> None:
    """Free this thread's scratch buffers (they are re-created on the next call)."""
    workspace.clear()


def _below_autograd():
    """Skip the autograd dispatch layer while kernels run (they never record a graph): ~15% less per-op overhead."""
    guard = getattr(torch._C, "_AutoDispatchBelowAutograd", None)
    return guard() if guard is not None else contextlib.nullcontext()


def evaluate(kernel: ChunkKernel, x: Tensor, y: Tensor, mask: Tensor | None, want_grad: bool, per_element: bool):
    """Run ``kernel`` over ``x`` chunk by chunk.

    Returns (masked sum or flat per-element losses, gradient shaped like x or None).

    ``y`` and ``mask`` have x's shape and dtype; all three are flattened here.
    """
    shape = x.shape
    x, y = x.reshape(-1), y.reshape(-1)
    if mask is not None:
        mask = mask.reshape(-1)
    n = x.numel()
    grad = torch.empty_like(x) if want_grad else None
    losses = torch.empty_like(x) if per_element else None
    step = CPU_CHUNK if x.device.type == "cpu" else max(n, 1)
    with _below_autograd():
        if n <= step:
            total = kernel(x, y, mask, grad, losses)
        else:
            sums = []
            for start in range(0, n, step):
                part = slice(start, start + step)
                sums.append(
                    kernel(
                        x[part],
                        y[part],
                        None if mask is None else mask[part],
                        None if grad is None else grad[part],
                        None if losses is None else losses[part],
                    )
                )
            # Summing kernels (not per_element) return a tensor per chunk.
            total = None if per_element else torch.stack(sums).sum()  # type: ignore[arg-type]
    return (losses if per_element else total), (None if grad is None else grad.view(shape))


class ClosedFormLoss(torch.autograd.Function):
    """Loss value in forward, gradient computed alongside it; backward scales it in place.

    ``compute(x, y, mask, want_grad) -> (loss, gradient)`` is the loss's eager (chunked) or fused kernel.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, mask: Tensor | None, compute: Callable) -> Tensor:
        loss, grad = compute(x, y, mask, True)
        ctx.compute = compute
        ctx.grad = grad
        ctx.save_for_backward(x, y, mask)
        return loss

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        if torch.is_grad_enabled():  # only under create_graph=True; cheaper than @once_differentiable
            raise RuntimeError("runners.losses computes first derivatives only; create_graph=True is not supported")
        grad = ctx.grad
        ctx.grad = None  # handed over to autograd below; a retained graph's second backward recomputes it
        if grad is None:
            x, y, mask = ctx.saved_tensors
            _, grad = ctx.compute(x, y, mask, True)
        if grad_output.dim():  # reduction="none": one weight per element
            grad_output = grad_output.view(grad.shape)
        grad.mul_(grad_output)
        return grad, None, None, None


# --- element-wise building blocks ---------------------------------------------------------------------
# On small tensors (256 x 26) every torch call costs ~1.5 us, and a Python number operand costs ~1 us
# more (it is wrapped into a tensor per call), so the kernels pass cached 0-d tensors for constants,
# prefer fused calls (addcmul, addcdiv, sigmoid_backward) and use the fewest passes per formula.

_CONSTANTS: dict[tuple[float, torch.dtype, torch.device], Tensor] = {}


def constant(value: float, like: Tensor) -> Tensor:
    """A cached 0-d tensor holding ``value`` with ``like``'s dtype and device."""
    key = (value, like.dtype, like.device)
    c = _CONSTANTS.get(key)
    if c is None:
        if len(_CONSTANTS) > 4096:  # a long sweep creates a few per trial
            _CONSTANTS.clear()
        c = _CONSTANTS[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
    return c


def power(base: Tensor, gamma: float, out: Tensor) -> Tensor:
    """``base ** gamma`` into ``out`` for base >= 0, with 0 ** 0 = 1 (as torch.pow in the released code).

    Small integer exponents use multiplications and the rest exp(gamma * log(base)): both are
    several times faster than a generic ``torch.pow`` on CPU, and log(0) = -inf gives exactly 0.
    """
    if gamma == 0:
        return out.fill_(1)
    if gamma == 1:
        return out.copy_(base)
    if gamma == 2:
        return torch.mul(base, base, out=out)
    if gamma == 3:
        return torch.mul(base, base, out=out).mul_(base)
    if gamma == 4:
        torch.mul(base, base, out=out)
        return out.mul_(out)
    # An exponent that underflows in the tensor's dtype would turn log(0) * 0 into NaN: keep it positive.
    gamma = max(gamma, torch.finfo(out.dtype).tiny)
    torch.log(base, out=out)
    return out.mul_(constant(gamma, out)).exp_()


def softplus(x: Tensor, out: Tensor) -> Tensor:
    """``log(1 + exp(x))`` into ``out``, never overflowing (so -log sigmoid(-x) stays finite)."""
    try:
        return torch._C._nn.softplus(x, 1, 40, out=out)  # type: ignore[call-arg]  # the stubs omit out=
    except (AttributeError, TypeError, RuntimeError):  # private API; the public one allocates
        return out.copy_(torch.nn.functional.softplus(x, threshold=40))


def shifted_probability(x: Tensor, p: Tensor, clip: float, pt_out: Tensor, q_out: Tensor) -> tuple[Tensor, Tensor]:
    """ASL's probability shift: ``q = min(1 - p + clip, 1)`` and ``p_clip = 1 - q = max(p - clip, 0)``.

    Computed in the released code's order, ``(1 - p) + clip``: it keeps q's relative precision when
    both 1 - p and clip are small, where ``1 - (p - clip)`` would not. Without a shift
    ``q = sigmoid(-x)`` directly, which keeps all digits for negatives with p close to 1.
    """
    one = constant(1.0, x)
    if clip > 0:
        torch.sub(one, p, out=q_out).add_(constant(clip, x)).clamp_(max=1)
        torch.sub(one, q_out, out=pt_out)
        return pt_out, q_out
    torch.neg(x, out=q_out).sigmoid_()
    return p, q_out


def negative_weight(base: Tensor, gamma: float, y: Tensor, mask: Tensor | None, out: Tensor) -> Tensor:
    """``base ** gamma * (1 - y) * mask`` into ``out``."""
    if gamma == 0:
        torch.sub(constant(1.0, y), y, out=out)
    else:
        power(base, gamma, out=out)
        out.addcmul_(out, y, value=-1)
    if mask is not None:
        out.mul_(mask)
    return out


def positive_weight(base: Tensor | None, gamma: float, y: Tensor, mask: Tensor | None, out: Tensor) -> Tensor:
    """``base ** gamma * y * mask`` into ``out`` (``y`` itself when there is nothing to multiply)."""
    if gamma == 0:
        return y if mask is None else torch.mul(y, mask, out=out)
    if gamma == 1:
        torch.mul(base, y, out=out)  # type: ignore[arg-type]  # base is given when gamma != 0
    else:
        power(base, gamma, out=out).mul_(y)  # type: ignore[arg-type]
    if mask is not None:
        out.mul_(mask)
    return out


_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input


def times_sigmoid_slope_(t: Tensor, p: Tensor) -> Tensor:
    """``t *= p (1 - p)`` in one pass (dp/dx for p = sigmoid(x)), computed as autograd computes it.

    ``1 - p`` is exact for p >= 1/2, so this keeps full relative precision where ``p - p**2`` would
    cancel (p close to 1).
    """
    return _sigmoid_backward(t, p, grad_input=t)


def times_floored_slope_(t: Tensor, p: Tensor, eps: float, tmp: Tensor) -> Tensor:
    """``t *= d max(p, eps) / dx = [p > eps] p (1 - p)``: the slope of the released code's clamp.

    ``threshold`` zeroes p at or below the floor, and p (1 - p) is 0 there: two passes, no bool mask.
    """
    torch.threshold(p, eps, 0, out=tmp)
    return _sigmoid_backward(t, tmp, grad_input=t)


def indicator(t: Tensor, out: Tensor) -> Tensor:
    """``[t > 0]`` as 0/1 floats for ``t >= 0`` (sign is one pass; a bool mask costs two)."""
    return torch.sign(t, out=out)


def trim(coefs: tuple[float, ...]) -> tuple[float, ...]:
    """Drop trailing zero coefficients: the polynomial is the same and costs fewer passes."""
    end = len(coefs)
    while end and coefs[end - 1] == 0:
        end -= 1
    return coefs[:end]


def add_polynomial_(out: Tensor, u: Tensor, coefs: tuple[float, ...], tmp: Tensor) -> Tensor:
    """``out += sum_m coefs[m-1] u**m`` (Horner; no constant term). ``coefs`` must be trimmed."""
    if len(coefs) == 1:
        return out.add_(u, alpha=coefs[0])
    torch.mul(u, constant(coefs[-1], u), out=tmp).add_(constant(coefs[-2], u))
    for c in reversed(coefs[:-2]):
        tmp.mul_(u).add_(constant(c, u))
    return out.addcmul_(tmp, u)


def add_polynomial_slope_(out: Tensor, u: Tensor, coefs: tuple[float, ...], sign: float, tmp: Tensor) -> Tensor:
    """``out += sign * sum_m m coefs[m-1] u**(m-1)``: the derivative of ``add_polynomial_``'s sum."""
    if len(coefs) == 1:
        return out.add_(constant(sign * coefs[0], u))
    if len(coefs) == 2:
        return out.add_(u, alpha=sign * 2 * coefs[1]).add_(constant(sign * coefs[0], u))
    m = len(coefs)
    torch.mul(u, constant(m * coefs[-1], u), out=tmp).add_(constant((m - 1) * coefs[-2], u))
    for j in range(m - 2, 0, -1):
        tmp.mul_(u).add_(constant(j * coefs[j - 1], u))
    return out.add_(tmp, alpha=sign)


def finish_chunk(
    r: Tensor, log_p: Tensor, wpos: Tensor | None, y: Tensor, mask: Tensor | None, loss_out: Tensor | None
) -> Tensor | None:
    """The end of an asymmetric (ASL / RAL) chunk kernel: weight the positive log-likelihood, blend it
    with the negative term ``r`` by the targets, then write per-element losses or return the masked sum."""
    if wpos is not None:
        log_p.mul_(wpos)
    torch.lerp(r, log_p, y, out=r)
    if loss_out is not None:
        torch.neg(r, out=loss_out)
        if mask is not None:
            loss_out.mul_(mask)
        return None
    return (r.sum() if mask is None else torch.dot(r, mask)).neg_()
