"""Hill loss, Zhang et al., "Simple and Robust Loss Design for Multi-Label Learning with Missing Labels", 2021."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from search_spaces.declare import INF, Range, Space
from search_spaces.ranges import LAM

from ._closed_form import power, softplus, times_sigmoid_slope_, workspace
from ._compiled import fused_gamma, power_from_log, sigmoid_parts, total
from .base import HeadKernels, MultiLabelLoss, real, shape_lambda
from .registry import register_loss


def hill_heads(x: Tensor, y: Tensor, mask: Tensor | None, c: Tensor) -> tuple[Tensor, Tensor]:
    """Hill for a pack of heads, ``c`` = (lam, margin, gamma, through): the eager kernel's formula, broadcast."""
    lam, margin, gamma, through = c[0], c[1], c[2], c[3]
    p = torch.sigmoid(x)
    negative = (lam - p) * p * p
    d_negative = (2 * lam * p - 3 * p * p) * (p * (1 - p))
    # With v = margin - x: sigmoid(v) = 1 - p_m, and softplus(v) = -log p_m.
    one_minus_pm, p_m, log_one_minus_pm, log_pm = sigmoid_parts(margin - x)
    nll = -log_pm
    wp = power_from_log(log_one_minus_pm, gamma)
    value = torch.lerp(negative, wp * nll, y)
    grad = torch.lerp(d_negative, -wp * (one_minus_pm + through * gamma * p_m * nll), y)
    if mask is not None:
        value, grad = value * mask, grad * mask
    return total(value), grad


@register_loss(
    "hill",
    space=Space(
        LAM,
        Range(
            "margin",
            0.0,
            2.0,
            # 0 removes the margin (a focal-like positive term); 2 keeps the default 1 centred. A negative
            # margin would reward positives that are already confident, so limits start at 0.
            doc="logit margin on positives, p_m = sigmoid(x - margin)",
            limits=(0.0, INF),
        ),
        Range(
            "gamma",
            0.0,
            4.0,
            # Same role as ASL's gamma_pos (focal weight on positives); the same [0, 4] range.
            doc="focusing exponent on positives, weight (1-p_m)^gamma",
            limits=(0.0, INF),
        ),
    ),
)
class HillLoss(MultiLabelLoss):
    r"""Hill: ``sum[ -y (1-p_m)^gamma log p_m + (1-y) (lam - p) p^2 ]``, p = sigmoid(x), p_m = sigmoid(x - margin).

    Positives get focal loss with a logit margin; negatives the Hill-shaped ``(lam - p) p^2``, which
    down-weights confident negatives (likely missing positives). Defaults are the released ``Hill``
    (xinyu1205/robust-loss-mlml): lam = 1.5, margin = 1, gamma = 2, weights differentiated
    (``focal_grad="through"``); ``log p_m`` is ``-softplus(margin - x)``, exact where the released
    ``log(sigmoid(.))`` underflows.

    Paper: Y. Zhang, Y. Cheng, X. Huang, F. Wen, R. Feng, Y. Li, Y. Guo, "Simple and Robust Loss Design
    for Multi-Label Learning with Missing Labels", arXiv:2112.07368, 2021.
    """

    # The hyperparameters, set from ``defaults`` by ``MultiLabelLoss.__init__`` (declared for the type checker).
    lam: float
    margin: float
    gamma: float
    focal_grad: str
    defaults = {"lam": 1.5, "margin": 1.0, "gamma": 2.0, "focal_grad": "through", "reduction": "sum"}
    head_kernels = HeadKernels.of(hill_heads)

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        params = super().check_params(params)
        params["lam"] = shape_lambda(self, params)
        params["margin"] = real(self, params, "margin")
        params["gamma"] = real(self, params, "gamma", low=0.0, why="a focusing exponent; 0 turns focusing off")
        return params

    def head_values(self, dtype: torch.dtype) -> tuple[tuple[float, ...], ...]:
        through = float(self.focal_grad == "through")
        return ((self.lam, self.margin, fused_gamma(self.gamma, dtype), through),)

    def _chunk(self, x: Tensor, y: Tensor, mask: Tensor | None, grad_out: Tensor | None, loss_out: Tensor | None):
        lam, margin, gamma = self.lam, self.margin, self.gamma
        p, e, wn, v, one_minus_pm, nll, wp, t = workspace.take(8, x)

        # Negatives: l- = wn (lam - p) p^2,  wn = (1 - y) mask.
        torch.sigmoid(x, out=p)
        torch.mul(p, -1, out=e).add_(lam).mul_(p).mul_(p)
        torch.mul(y, -1, out=wn).add_(1)
        if mask is not None:
            wn.mul_(mask)

        # Positives: l+ = wp softplus(margin - x),  wp = (1 - p_m)^gamma y mask,  1 - p_m = sigmoid(margin - x).
        torch.mul(x, -1, out=v).add_(margin)
        torch.sigmoid(v, out=one_minus_pm)
        softplus(v, out=nll)
        power(one_minus_pm, gamma, out=wp).mul_(y)
        if mask is not None:
            wp.mul_(mask)

        if grad_out is not None:
            # dl-/dx = wn (2 lam p - 3 p^2) p (1 - p);  dl+/dx = -wp ((1 - p_m) + gamma p_m softplus(margin - x))
            g = torch.mul(p, 2 * lam, out=grad_out).addcmul_(p, p, value=-3)
            times_sigmoid_slope_(g, p).mul_(wn)
            g.addcmul_(wp, one_minus_pm, value=-1)
            if self.focal_grad == "through" and gamma > 0:
                p_margin = torch.neg(v, out=t).sigmoid_().mul_(wp)
                g.addcmul_(p_margin, nll, value=-gamma)

        torch.mul(wn, e, out=t)
        t.addcmul_(wp, nll)
        if loss_out is not None:
            loss_out.copy_(t)
            return None
        return t.sum()
