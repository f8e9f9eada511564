"""Robust Asymmetric Loss (RAL), Park et al., ICCV 2023 workshop (CVAMD); arXiv:2308.05542."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from search_spaces.declare import Option, Space
from search_spaces.ranges import CLIP, GAMMA_NEG, GAMMA_POS, LAM, polynomial

from ._closed_form import (
    add_polynomial_,
    add_polynomial_slope_,
    constant,
    finish_chunk,
    indicator,
    power,
    shifted_probability,
    times_floored_slope_,
    times_sigmoid_slope_,
    trim,
    workspace,
)
from ._compiled import FusedKernel, asymmetric, fused_gamma, padded
from ._packaged import PackagedKernel
from .base import HeadKernels, MultiLabelLoss, coefficients, focusing_and_shift, shape_lambda
from .registry import register_loss


def fused_ral(
    x: Tensor, y: Tensor, mask: Tensor | None, c: Tensor, alpha: Tensor, beta: Tensor
) -> tuple[Tensor, Tensor]:
    """Summed RAL and its gradient as one element-wise formula, for ``torch.compile`` (see ``_compiled``)."""
    return asymmetric(x, y, mask, c, alpha, beta)


def ral_heads(
    x: Tensor, y: Tensor, mask: Tensor | None, c: Tensor, alpha: Tensor, beta: Tensor
) -> tuple[Tensor, Tensor]:
    """RAL for a pack of heads, each with its own hyperparameters (see ``asl_heads`` and ``pack``)."""
    return asymmetric(x, y, mask, c, alpha, beta)


@register_loss(
    "ral",
    space=Space(
        GAMMA_POS,
        GAMMA_NEG,
        CLIP,
        LAM,
        polynomial("alpha", "n_alpha", "(1-p)^{i} on positives"),
        polynomial("beta", "n_beta", "q^{i} on negatives"),
        # M and N: the released code has M = 2, N = 1. At least 1: a loss_params without an alpha/beta
        # key would mean "the released coefficients", not "none"; one coefficient held at 0 removes the terms.
        options={
            "n_alpha": Option(2, 1, 8, "RAL positive polynomial coefficients (M)"),
            "n_beta": Option(1, 1, 8, "RAL negative polynomial coefficients (N)"),
        },
    ),
)
class RobustAsymmetricLoss(MultiLabelLoss):
    r"""RAL, as the released code computes it (kalelpark/RAL, ``Ralloss`` in ``models/get_optimizer.py``)::

        -sum w [ y (log p~ + sum_m alpha_m (1 - p~)^m)
                 + (1 - y) (log q~ + sum_n beta_n q~^n) (lam - p) p^2 (lam - q) ]

    p = sigmoid(x), p~ = max(p, eps), q = min(1 - p + clip, 1) (clip is the paper's tau),
    q~ = max(q, eps), focusing weight w = (1 - p)^gamma_pos on positives and
    max(p - clip, 0)^gamma_neg on negatives. ``alpha`` (length M >= 0) and ``beta`` (length N >= 0)
    are the Taylor-polynomial coefficients; the released code has M = 2, N = 1 with
    ``epsilon_pos`` = alpha_1, ``epsilon_pos_pow`` = 2 alpha_2 (it multiplies by 0.5) and
    ``epsilon_neg`` = beta_1, so its defaults (1.0, -2.5, 0.0) are alpha = (1.0, -1.25), beta = (0.0,).
    The weights are differentiated (``focal_grad="through"``, the released
    ``disable_torch_grad_focal_loss=False``) with the derivative of ``0 ** gamma`` taken as 0, where
    the released code returns NaN for 0 < gamma_neg < 1.

    Paper: W. Park, I. Park, S. Kim, J. Ryu, "Robust Asymmetric Loss for Multi-Label Long-Tailed
    Learning", ICCV 2023 workshops (CVAMD), arXiv:2308.05542.
    """

    # The hyperparameters, set from ``defaults`` by ``MultiLabelLoss.__init__`` (declared for the type checker).
    gamma_pos: float
    gamma_neg: float
    clip: float
    eps: float
    lam: float
    alpha: tuple[float, ...]
    beta: tuple[float, ...]
    focal_grad: str
    defaults = {
        "gamma_pos": 0.0,
        "gamma_neg": 4.0,
        "clip": 0.05,
        "eps": 1e-8,
        "lam": 1.5,
        "alpha": (1.0, -1.25),
        "beta": (0.0,),
        "focal_grad": "through",
        "reduction": "sum",
    }
    fused_kernel = FusedKernel(fused_ral)
    packaged_kernel = PackagedKernel(fused_ral)
    head_kernels = HeadKernels.of(ral_heads)

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        params = super().check_params(params)
        focusing_and_shift(self, params, "the probability shift tau")
        params["lam"] = shape_lambda(self, params)
        params["alpha"] = coefficients(self, params, "alpha")
        params["beta"] = coefficients(self, params, "beta")
        return params

    def head_values(self, dtype: torch.dtype) -> tuple[tuple[float, ...], ...]:
        through = float(self.focal_grad == "through")
        g_neg, g_pos = fused_gamma(self.gamma_neg, dtype), fused_gamma(self.gamma_pos, dtype)
        return ((g_neg, g_pos, self.clip, self.eps, self.lam, through), padded(self.alpha), padded(self.beta))

    def _chunk(self, x: Tensor, y: Tensor, mask: Tensor | None, grad_out: Tensor | None, loss_out: Tensor | None):
        clip, eps, lam, g_neg, g_pos = self.clip, self.eps, self.lam, self.gamma_neg, self.gamma_pos
        alpha, beta = trim(self.alpha), trim(self.beta)
        through = self.focal_grad == "through"
        p, pt, q, d, a, p2, e, h, w, r, p_floor, u, log_p, wp, k, t = workspace.take(16, x)
        c_lam = constant(lam, x)

        # Negatives: l- = -w A H,  A = log q~ + sum_n beta_n q~^n,  H = E D,  E = (lam - p) p^2,  D = lam - q,
        # w = p_clip^g-.
        torch.sigmoid(x, out=p)
        pt, q = shifted_probability(x, p, clip, pt, q)
        torch.sub(c_lam, q, out=d)  # D uses q before the floor, as released
        q_floor, floor_live = q, None
        if clip < eps:  # q can fall below the floor, where A is constant
            floor_live = (q >= eps).to(x.dtype)
            q_floor = torch.clamp(q, min=eps)
        torch.log(q_floor, out=a)
        if beta:
            add_polynomial_(a, q_floor, beta, tmp=t)
        torch.mul(p, p, out=p2)
        torch.sub(c_lam, p, out=e).mul_(p2)
        torch.mul(e, d, out=h)
        power(pt, g_neg, out=w)
        torch.mul(w, a, out=r).mul_(h)

        # Positives: l+ = -wp B,  B = log p~ + sum_m alpha_m u^m,  u = 1 - p~,  wp = (1 - p)^g+.
        # Both branches are computed on every element and blended as y l+ + (1 - y) l- (lerp): cheaper
        # than gathering the positives, and exact for 0/1 targets because both branches are finite.
        torch.clamp(p, min=eps, out=p_floor)
        torch.sub(constant(1.0, x), p_floor, out=u)
        torch.log(p_floor, out=log_p)
        if alpha:
            add_polynomial_(log_p, u, alpha, tmp=t)
        wpos = power(torch.neg(x, out=t).sigmoid_(), g_pos, out=wp) if g_pos else None

        if grad_out is not None:
            # dl-/dx = -s [ w ((K D + E I) A - A_q I H) + g- R / p_clip ]   (last term: "through")
            #   s = p (1 - p), K = dE/dp = 2 lam p - 3 p^2, A_q = dA/dq, I = [p > clip] (implied by w when g- > 0)
            torch.mul(p, constant(2 * lam, x), out=k).add_(p2, alpha=-3)
            ind = indicator(pt, out=t) if (clip > 0 and g_neg == 0) else None
            if ind is None:
                torch.addcmul(e, k, d, out=k)
            else:
                k.mul_(d).addcmul_(e, ind)
            k.mul_(a)
            if clip > 0:
                if beta or floor_live is not None or ind is not None:
                    a_q = torch.reciprocal(q_floor, out=e)
                    if beta:
                        add_polynomial_slope_(a_q, q_floor, beta, 1.0, tmp=d)
                    if floor_live is not None:
                        a_q.mul_(floor_live)
                    if ind is not None:
                        a_q.mul_(ind)
                    k.addcmul_(a_q, h, value=-1)
                else:
                    k.addcdiv_(h, q_floor, value=-1)
            elif beta:  # the 1/q part of A_q is added after the slope below
                a_q = add_polynomial_slope_(e.zero_(), q_floor, beta, 1.0, tmp=d)
                if floor_live is not None:
                    a_q.mul_(floor_live)
                k.addcmul_(a_q, h, value=-1)
            k.mul_(w)
            if through and g_neg > 0 and clip > 0:
                k.addcdiv_(r, torch.clamp(pt, min=torch.finfo(x.dtype).tiny, out=e), value=g_neg)
            times_sigmoid_slope_(k, p)
            if clip == 0:
                # q = 1 - p: s / q = p and s / p = q exactly, where s / q would cancel for p near 1 in float32
                wh = torch.mul(w, h, out=e)
                if floor_live is not None:
                    wh.mul_(floor_live)
                k.addcmul_(wh, p, value=-1)
                if through and g_neg > 0:
                    k.addcmul_(r, q, value=g_neg)
            # dl+/dx = -(wp dB/dx - g+ wp p B),  dB/dx = [p > eps] p (1 - p) (1 / p - sum_m m alpha_m u^(m-1))
            z = torch.reciprocal(p_floor, out=e)
            if alpha:
                add_polynomial_slope_(z, u, alpha, -1.0, tmp=t)
            times_floored_slope_(z, p, eps, tmp=t)
            if wpos is not None:
                z.mul_(wpos)
                if through:
                    z.addcmul_(torch.mul(wpos, p, out=t), log_p, value=-g_pos)
            torch.lerp(k, z, y, out=grad_out).neg_()
            if mask is not None:
                grad_out.mul_(mask)

        return finish_chunk(r, log_p, wpos, y, mask, loss_out)
