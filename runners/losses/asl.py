"""Asymmetric Loss (ASL), Ridnik et al., "Asymmetric Loss For Multi-Label Classification", ICCV 2021."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from search_spaces.declare import Space
from search_spaces.ranges import CLIP, GAMMA_NEG, GAMMA_POS

from ._closed_form import (
    finish_chunk,
    indicator,
    power,
    shifted_probability,
    times_floored_slope_,
    times_sigmoid_slope_,
    workspace,
)
from ._compiled import FusedKernel, asymmetric, fused_gamma, scalars
from ._packaged import PackagedKernel
from .base import MultiLabelLoss, real
from .registry import register_loss


def fused_asl(x: Tensor, y: Tensor, mask: Tensor | None, c: Tensor) -> tuple[Tensor, Tensor]:
    """Summed ASL and its gradient as one element-wise formula, for ``torch.compile`` (see ``_compiled``)."""
    return asymmetric(x, y, mask, c, None, None)


@register_loss("asl", space=Space(GAMMA_POS, GAMMA_NEG, CLIP))
class AsymmetricLoss(MultiLabelLoss):
    r"""ASL: ``-sum[ y (1-p)^g+ log max(p, eps) + (1-y) p_clip^g- log max(q, eps) ]``.

    p = sigmoid(x), p_clip = max(p - clip, 0), q = 1 - p_clip = min(1 - p + clip, 1) (the released
    code's form). Negatives with p <= clip contribute nothing. Defaults are the released
    ``AsymmetricLoss`` (Alibaba-MIIL/ASL): gamma_pos = 1, gamma_neg = 4, clip = 0.05, eps = 1e-8 and
    focusing weights detached from the graph (``focal_grad="detach"``, the released
    ``disable_torch_grad_focal_loss=True``); ``"through"`` differentiates them too, with the
    derivative of ``0 ** gamma`` taken as 0 (finite for every gamma >= 0).

    Paper: T. Ridnik et al., "Asymmetric Loss For Multi-Label Classification", ICCV 2021.
    """

    # The hyperparameters, set from ``defaults`` by ``MultiLabelLoss.__init__`` (declared for the type checker).
    gamma_pos: float
    gamma_neg: float
    clip: float
    eps: float
    focal_grad: str
    defaults = {
        "gamma_pos": 1.0,
        "gamma_neg": 4.0,
        "clip": 0.05,
        "eps": 1e-8,
        "focal_grad": "detach",
        "reduction": "sum",
    }
    fused_kernel = FusedKernel(fused_asl)
    packaged_kernel = PackagedKernel(fused_asl)

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        params = super().check_params(params)
        params["gamma_pos"] = real(self, params, "gamma_pos", low=0.0, why="a focusing exponent; 0 turns focusing off")
        params["gamma_neg"] = real(self, params, "gamma_neg", low=0.0, why="a focusing exponent; 0 turns focusing off")
        params["clip"] = real(
            self, params, "clip", low=0.0, high=1.0, high_open=True, why="a probability shift; 0 turns it off"
        )
        params["eps"] = real(
            self, params, "eps", low=0.0, high=1.0, low_open=True, high_open=True, why="the floor of the clamped log"
        )
        return params

    def _fused_inputs(self, like: Tensor) -> tuple[Tensor, ...]:
        values = (
            fused_gamma(self.gamma_neg, like),
            fused_gamma(self.gamma_pos, like),
            self.clip,
            self.eps,
            0.0,
            float(self.focal_grad == "through"),
        )
        return (scalars(values, like),)

    def _chunk(self, x: Tensor, y: Tensor, mask: Tensor | None, grad_out: Tensor | None, loss_out: Tensor | None):
        clip, eps, g_neg, g_pos = self.clip, self.eps, self.gamma_neg, self.gamma_pos
        through = self.focal_grad == "through"
        p, pt, q, log_q, w, r, p_floor, log_p, wp, k, t = workspace.take(11, x)

        # Negatives: l- = -w log q~,  w = p_clip^g-.
        torch.sigmoid(x, out=p)
        pt, q = shifted_probability(x, p, clip, pt, q)
        q_floor, floor_live = q, None
        if clip < eps:  # q can fall below the floor, where log max(q, eps) is constant
            floor_live = (q >= eps).to(x.dtype)
            q_floor = torch.clamp(q, min=eps)
        torch.log(q_floor, out=log_q)
        power(pt, g_neg, out=w)
        torch.mul(w, log_q, out=r)

        # Positives: l+ = -wp log p~,  wp = (1 - p)^g+. Blended as y l+ + (1 - y) l- (see RAL).
        torch.clamp(p, min=eps, out=p_floor)
        torch.log(p_floor, out=log_p)
        wpos = power(torch.neg(x, out=t).sigmoid_(), g_pos, out=wp) if g_pos else None

        if grad_out is not None:
            # dl-/dx = s (w / q [p > clip] [q >= eps] - g- (w log q) / p_clip)   (second term: "through")
            # dl+/dx = -(wp [p > eps] s / p - g+ wp p log p~)                   (second term: "through")
            if clip > 0:
                kn = torch.div(w, q_floor, out=k)
                if g_neg == 0:  # w = 1 there: q is constant (= 1) where p <= clip
                    kn.mul_(indicator(pt, out=t))
                if floor_live is not None:
                    kn.mul_(floor_live)
                if through and g_neg > 0:
                    kn.addcdiv_(r, torch.clamp(pt, min=torch.finfo(x.dtype).tiny, out=t), value=-g_neg)
                times_sigmoid_slope_(kn, p)
            else:  # q = 1 - p: s / q = p and s / p = q exactly (s / q cancels for p near 1 in float32)
                kn = torch.mul(w, p, out=k)
                if floor_live is not None:
                    kn.mul_(floor_live)
                if through and g_neg > 0:
                    kn.addcmul_(r, q, value=-g_neg)
            z = times_floored_slope_(torch.reciprocal(p_floor, out=t), p, eps, tmp=p_floor)
            if wpos is not None:
                z.mul_(wpos)
                if through:
                    z.addcmul_(torch.mul(wpos, p, out=p_floor), log_p, value=-g_pos)
            torch.lerp(kn, z.neg_(), y, out=grad_out)
            if mask is not None:
                grad_out.mul_(mask)

        return finish_chunk(r, log_p, wpos, y, mask, loss_out)
