"""Sigmoid focal loss, Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from search_spaces.declare import INF, Range, Space

from ._closed_form import power, softplus, workspace
from .base import MultiLabelLoss, real
from .registry import register_loss


@register_loss(
    "focal",
    space=Space(
        Range(
            "gamma",
            0.0,
            5.0,
            # Lin et al. (2017) ablate gamma in {0, 0.1, 0.2, 0.5, 1, 2, 5}; 0 is BCE.
            doc="focusing exponent, weight (1-p_t)^gamma on both positives and negatives",
            limits=(0.0, INF),
        )
    ),
)
class FocalLoss(MultiLabelLoss):
    r"""Focal loss: ``-sum[ y (1-p)^gamma log p + (1-y) p^gamma log(1-p) ]``, p = sigmoid(x).

    The logs are computed as ``-softplus(-x)`` and ``-softplus(x)``, exact for any logit (torchvision's
    ``sigmoid_focal_loss`` without the alpha balance computes the same through BCE-with-logits).
    ``gamma = 0`` is BCE. The weights are differentiated by default (``focal_grad="through"``, as in
    the paper and torchvision), with the derivative of ``0 ** gamma`` taken as 0 so that 0 < gamma < 1
    keeps finite gradients.

    Paper: T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollar, "Focal Loss for Dense Object
    Detection", ICCV 2017.
    """

    # The hyperparameters, set from ``defaults`` by ``MultiLabelLoss.__init__`` (declared for the type checker).
    gamma: float
    focal_grad: str
    defaults = {"gamma": 2.0, "focal_grad": "through", "reduction": "sum"}

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        params = super().check_params(params)
        params["gamma"] = real(self, params, "gamma", low=0.0, why="a focusing exponent; 0 gives BCE")
        return params

    def _chunk(self, x: Tensor, y: Tensor, mask: Tensor | None, grad_out: Tensor | None, loss_out: Tensor | None):
        # Focal loss is symmetric under (x, y) -> (-x, 1 - y): with z = x (1 - 2y), the logit of the wrong
        # answer, every element is  l = sigmoid(z)^gamma softplus(z)  and  dl/dx = (1 - 2y) dl/dz.
        gamma = self.gamma
        z, p_wrong, nll, w, t = workspace.take(5, x)
        torch.addcmul(x, x, y, value=-2, out=z)
        torch.sigmoid(z, out=p_wrong)
        softplus(z, out=nll)
        power(p_wrong, gamma, out=w)
        if mask is not None:
            w.mul_(mask)
        if grad_out is not None:
            # dl/dz = w (p + gamma (1 - p) softplus(z))   (second term: focal_grad="through")
            g = torch.mul(w, p_wrong, out=grad_out)
            if self.focal_grad == "through" and gamma > 0:
                one_minus_p = torch.mul(p_wrong, -1, out=t).add_(1).mul_(w)
                g.addcmul_(one_minus_p, nll, value=gamma)
            g.addcmul_(g, y, value=-2)
        if loss_out is not None:
            torch.mul(w, nll, out=loss_out)
            return None
        return torch.dot(w, nll)
