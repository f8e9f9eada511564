"""RAL's eager kernel compiled with TorchScript, for small inputs where per-call overhead dominates.

Why: at 256 x 26 (6656 elements) the element-wise work of RAL's ~45 passes costs ~40 us, the
Python around them (argument parsing, ``out=`` keywords, helper calls, cached constants) ~75 us.
The TorchScript interpreter calls the same ATen kernels without the Python layer: about half the
per-call overhead (measured: 40 chained in-place multiplies on 8 elements, 44 us Python vs 25 us
scripted). No fusion is involved (this torch has no CPU fuser backend); the operations, their order
and so the results are those of ``RobustAsymmetricLoss._chunk`` (``ral.py``), which stays the reference.

``torch.jit.script`` is deprecated in favour of ``torch.compile``, whose ~60 us guard cost per call
is what makes it lose at this size; the kernel is scripted lazily on first use, with that
FutureWarning silenced, and a failure to script falls back to the Python kernel (warning once).
"""

from __future__ import annotations

import threading
import warnings
from typing import Callable, List, Optional

import torch
from torch import Tensor


def _power(base: Tensor, gamma: float, out: Tensor, tiny: float) -> Tensor:
    """``_closed_form.power``: base ** gamma for base >= 0, with 0 ** 0 = 1."""
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
    torch.log(base, out=out)
    return out.mul_(max(gamma, tiny)).exp_()


def _add_polynomial_(out: Tensor, u: Tensor, coefs: List[float], tmp: Tensor) -> Tensor:
    """``_closed_form.add_polynomial_``."""
    if len(coefs) == 1:
        return out.add_(u, alpha=coefs[0])
    torch.mul(u, coefs[-1], out=tmp).add_(coefs[-2])
    for i in range(len(coefs) - 3, -1, -1):
        tmp.mul_(u).add_(coefs[i])
    return out.addcmul_(tmp, u)


def _add_polynomial_slope_(out: Tensor, u: Tensor, coefs: List[float], sign: float, tmp: Tensor) -> Tensor:
    """``_closed_form.add_polynomial_slope_``."""
    if len(coefs) == 1:
        return out.add_(sign * coefs[0])
    if len(coefs) == 2:
        return out.add_(u, alpha=sign * 2 * coefs[1]).add_(sign * coefs[0])
    m = len(coefs)
    torch.mul(u, m * coefs[-1], out=tmp).add_((m - 1) * coefs[-2])
    for j in range(m - 2, 0, -1):
        tmp.mul_(u).add_(j * coefs[j - 1])
    return out.add_(tmp, alpha=sign)


def ral_kernel(x: Tensor, y: Tensor, mask: Optional[Tensor], grad_out: Optional[Tensor], loss_out: Optional[Tensor],
               buffers: List[Tensor], one: Tensor, lam_t: Tensor, clip: float, eps: float, lam: float, g_neg: float, g_pos: float,
               alpha: List[float], beta: List[float], through: bool, tiny: float) -> Optional[Tensor]:
    """``RobustAsymmetricLoss._chunk`` line for line (see there for the formulas); 16 scratch ``buffers``;
    ``one`` and ``lam_t`` are 0-d tensors of x's dtype (a tensor operand is cheaper than a number)."""
    p, pt, q, d, a, p2, e, h, w, r, p_floor, u, log_p, wp, k, t = (
        buffers[0], buffers[1], buffers[2], buffers[3], buffers[4], buffers[5], buffers[6], buffers[7],
        buffers[8], buffers[9], buffers[10], buffers[11], buffers[12], buffers[13], buffers[14], buffers[15])

    torch.sigmoid(x, out=p)
    if clip > 0:  # _closed_form.shifted_probability
        torch.sub(one, p, out=q).add_(clip).clamp_(max=1.0)
        torch.sub(one, q, out=pt)
    else:
        torch.neg(x, out=q).sigmoid_()
        pt = p
    torch.sub(lam_t, q, out=d)
    q_floor = q
    floor_live: Optional[Tensor] = None
    if clip < eps:
        floor_live = (q >= eps).to(x.dtype)
        q_floor = torch.clamp(q, min=eps)
    torch.log(q_floor, out=a)
    if len(beta) > 0:
        _add_polynomial_(a, q_floor, beta, t)
    torch.mul(p, p, out=p2)
    torch.sub(lam_t, p, out=e).mul_(p2)
    torch.mul(e, d, out=h)
    _power(pt, g_neg, w, tiny)
    torch.mul(w, a, out=r).mul_(h)

    torch.clamp(p, min=eps, out=p_floor)
    torch.sub(one, p_floor, out=u)
    torch.log(p_floor, out=log_p)
    if len(alpha) > 0:
        _add_polynomial_(log_p, u, alpha, t)
    wpos: Optional[Tensor] = None
    if g_pos != 0:
        wpos = _power(torch.neg(x, out=t).sigmoid_(), g_pos, wp, tiny)

    if grad_out is not None:
        torch.mul(p, 2 * lam, out=k).add_(p2, alpha=-3.0)
        ind: Optional[Tensor] = None
        if clip > 0 and g_neg == 0:
            ind = torch.sign(pt, out=t)
        if ind is None:
            torch.addcmul(e, k, d, out=k)
        else:
            k.mul_(d).addcmul_(e, ind)
        k.mul_(a)
        if clip > 0:
            if len(beta) > 0 or floor_live is not None or ind is not None:
                a_q = torch.reciprocal(q_floor, out=e)
                if len(beta) > 0:
                    _add_polynomial_slope_(a_q, q_floor, beta, 1.0, d)
                if floor_live is not None:
                    a_q.mul_(floor_live)
                if ind is not None:
                    a_q.mul_(ind)
                k.addcmul_(a_q, h, value=-1.0)
            else:
                k.addcdiv_(h, q_floor, value=-1.0)
        elif len(beta) > 0:
            a_q = _add_polynomial_slope_(e.zero_(), q_floor, beta, 1.0, d)
            if floor_live is not None:
                a_q.mul_(floor_live)
            k.addcmul_(a_q, h, value=-1.0)
        k.mul_(w)
        if through and g_neg > 0 and clip > 0:
            k.addcdiv_(r, torch.clamp(pt, min=tiny, out=e), value=g_neg)
        torch.ops.aten.sigmoid_backward(k, p, grad_input=k)
        if clip == 0:
            wh = torch.mul(w, h, out=e)
            if floor_live is not None:
                wh.mul_(floor_live)
            k.addcmul_(wh, p, value=-1.0)
            if through and g_neg > 0:
                k.addcmul_(r, q, value=g_neg)
        z = torch.reciprocal(p_floor, out=e)
        if len(alpha) > 0:
            _add_polynomial_slope_(z, u, alpha, -1.0, t)
        torch.threshold(p, eps, 0.0, out=t)
        torch.ops.aten.sigmoid_backward(z, t, grad_input=z)
        if wpos is not None:
            z.mul_(wpos)
            if through:
                z.addcmul_(torch.mul(wpos, p, out=t), log_p, value=-g_pos)
        torch.lerp(k, z, y, out=grad_out).neg_()
        if mask is not None:
            grad_out.mul_(mask)

    if wpos is not None:
        log_p.mul_(wpos)
    torch.lerp(r, log_p, y, out=r)
    if loss_out is not None:
        torch.neg(r, out=loss_out)
        if mask is not None:
            loss_out.mul_(mask)
        return None
    if mask is None:
        return r.sum().neg_()
    return torch.dot(r, mask).neg_()


_lock = threading.Lock()
_scripted: dict[str, Optional[Callable]] = {}


def scripted(name: str, function: Callable) -> Optional[Callable]:
    """``function`` compiled with ``torch.jit.script`` (once per process), or None if scripting failed."""
    if name in _scripted:
        return _scripted[name]
    with _lock:
        if name not in _scripted:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # deprecation notice of torch.jit.script
                    _scripted[name] = torch.jit.script(function)
            except Exception as error:  # noqa: BLE001 - any scripting failure means "use the Python kernel"
                warnings.warn(f"runners.losses: TorchScript kernel {name!r} unavailable ({type(error).__name__}: {error}); "
                              "using the Python kernel", RuntimeWarning, stacklevel=3)
                _scripted[name] = None
    return _scripted[name]
