"""Plain transcriptions of the released loss implementations, kept as the yardstick for ours.

Each class repeats, operation for operation, the forward pass of the code that produced its paper, so
that ``tests/losses`` can check parity (values and autograd gradients) and ``benchmarks.losses`` can
time the released code against ``runners.losses``. They are deliberately *not* optimised and keep
the released code's numerical behaviour, NaN gradients included: that is what they are for.

Sources (as transcribed, see ``docs`` of each class):

- ``AsymmetricLoss``: Alibaba-MIIL/ASL, ``src/loss_functions/losses.py`` (Ridnik et al., ICCV 2021).
- ``Ralloss``: kalelpark/RAL, ``models/get_optimizer.py`` (Park et al., ICCV CVAMD 2023).
- ``Hill``: xinyu1205/robust-loss-mlml, ``src/loss_functions/losses.py`` (Zhang et al., 2021).
- ``FocalLoss``: the sigmoid focal loss of Lin et al. (2017) as torchvision writes it
  (``torchvision.ops.sigmoid_focal_loss`` without the alpha balance), the loss the others build on.
- ``PolynomialRal``: RAL with any number of coefficients, written from DESIGN.md's formula in the
  same plain style; for M = 2, N = 1 it equals ``Ralloss`` (checked in the tests).

Every class returns the summed loss, as the released code does; ``elementwise`` gives the
per-element terms (used to check masking).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class AsymmetricLoss(nn.Module):
    """ASL as released: ``-sum[y log(max(p, eps)) (1-p)^g+ + (1-y) log(max(q, eps)) (1-q)^g-]``."""

    def __init__(self, gamma_neg=4, gamma_pos=1, clip=0.05, eps=1e-8, disable_torch_grad_focal_loss=True):
        super().__init__()
        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip
        self.disable_torch_grad_focal_loss = disable_torch_grad_focal_loss
        self.eps = eps

    def elementwise(self, x, y):
        x_sigmoid = torch.sigmoid(x)
        xs_pos = x_sigmoid
        xs_neg = 1 - x_sigmoid
        if self.clip is not None and self.clip > 0:
            xs_neg = (xs_neg + self.clip).clamp(max=1)
        los_pos = y * torch.log(xs_pos.clamp(min=self.eps))
        los_neg = (1 - y) * torch.log(xs_neg.clamp(min=self.eps))
        loss = los_pos + los_neg
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            if self.disable_torch_grad_focal_loss:
                torch.set_grad_enabled(False)
            pt0 = xs_pos * y
            pt1 = xs_neg * (1 - y)
            pt = pt0 + pt1
            one_sided_gamma = self.gamma_pos * y + self.gamma_neg * (1 - y)
            one_sided_w = torch.pow(1 - pt, one_sided_gamma)
            if self.disable_torch_grad_focal_loss:
                torch.set_grad_enabled(True)
            loss *= one_sided_w
        return -loss

    def forward(self, x, y):
        return self.elementwise(x, y).sum()


class Ralloss(nn.Module):
    """RAL as released (``Ralloss``), with its own coefficient names.

    ``epsilon_pos`` = alpha_1, ``epsilon_pos_pow`` = 2 * alpha_2 (the code multiplies it by 0.5),
    ``epsilon_neg`` = beta_1, ``lamb`` = lambda. The focusing weights are not detached.
    """

    def __init__(
        self,
        gamma_neg=4,
        gamma_pos=0,
        clip=0.05,
        eps=1e-8,
        lamb=1.5,
        epsilon_neg=0.0,
        epsilon_pos=1.0,
        epsilon_pos_pow=-2.5,
        disable_torch_grad_focal_loss=False,
    ):
        super().__init__()
        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip
        self.disable_torch_grad_focal_loss = disable_torch_grad_focal_loss
        self.eps = eps
        self.epsilon_pos = epsilon_pos
        self.epsilon_neg = epsilon_neg
        self.epsilon_pos_pow = epsilon_pos_pow
        self.margin = 1.0
        self.lamb = lamb

    def elementwise(self, x, y):
        x_sigmoid = torch.sigmoid(x)
        xs_pos = x_sigmoid
        xs_neg = 1 - x_sigmoid
        if self.clip is not None and self.clip > 0:
            xs_neg = (xs_neg + self.clip).clamp(max=1)
        los_pos = y * (
            torch.log(xs_pos.clamp(min=self.eps))
            + self.epsilon_pos * (1 - xs_pos.clamp(min=self.eps))
            + self.epsilon_pos_pow * 0.5 * torch.pow(1 - xs_pos.clamp(min=self.eps), 2)
        )
        los_neg = (
            (1 - y)
            * (torch.log(xs_neg.clamp(min=self.eps)) + self.epsilon_neg * (xs_neg.clamp(min=self.eps)))
            * (self.lamb - x_sigmoid)
            * x_sigmoid**2
            * (self.lamb - xs_neg)
        )
        loss = los_pos + los_neg
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            if self.disable_torch_grad_focal_loss:
                torch.set_grad_enabled(False)
            pt0 = xs_pos * y
            pt1 = xs_neg * (1 - y)
            pt = pt0 + pt1
            one_sided_gamma = self.gamma_pos * y + self.gamma_neg * (1 - y)
            one_sided_w = torch.pow(1 - pt, one_sided_gamma)
            if self.disable_torch_grad_focal_loss:
                torch.set_grad_enabled(True)
            loss *= one_sided_w
        return -loss

    def forward(self, x, y):
        return self.elementwise(x, y).sum()


class PolynomialRal(nn.Module):
    """RAL with coefficient sequences ``alpha`` (length M) and ``beta`` (length N), in the released style.

    ``-sum w [y (log p~ + sum_m alpha_m (1-p~)^m) + (1-y) (log q~ + sum_n beta_n q~^n)(lam-p) p^2 (lam-q)]``
    with the released clamps (p~ = max(p, eps), q~ = max(q, eps), q = min(1-p+clip, 1)).
    """

    def __init__(
        self,
        gamma_neg=4.0,
        gamma_pos=0.0,
        clip=0.05,
        eps=1e-8,
        lam=1.5,
        alpha: Sequence[float] = (1.0, -1.25),
        beta: Sequence[float] = (0.0,),
        detach=False,
    ):
        super().__init__()
        self.gamma_neg, self.gamma_pos, self.clip, self.eps, self.lam = gamma_neg, gamma_pos, clip, eps, lam
        self.alpha, self.beta, self.detach = tuple(alpha), tuple(beta), detach

    def elementwise(self, x, y):
        x_sigmoid = torch.sigmoid(x)
        xs_pos = x_sigmoid
        xs_neg = 1 - x_sigmoid
        if self.clip > 0:
            xs_neg = (xs_neg + self.clip).clamp(max=1)
        p_clamped = xs_pos.clamp(min=self.eps)
        q_clamped = xs_neg.clamp(min=self.eps)
        poly_pos = torch.log(p_clamped)
        for m, a in enumerate(self.alpha, start=1):
            poly_pos = poly_pos + a * torch.pow(1 - p_clamped, m)
        poly_neg = torch.log(q_clamped)
        for n, b in enumerate(self.beta, start=1):
            poly_neg = poly_neg + b * torch.pow(q_clamped, n)
        los_pos = y * poly_pos
        los_neg = (1 - y) * poly_neg * (self.lam - x_sigmoid) * x_sigmoid**2 * (self.lam - xs_neg)
        loss = los_pos + los_neg
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.detach):
                pt = xs_pos * y + xs_neg * (1 - y)
                one_sided_gamma = self.gamma_pos * y + self.gamma_neg * (1 - y)
                one_sided_w = torch.pow(1 - pt, one_sided_gamma)
            loss = loss * one_sided_w
        return -loss

    def forward(self, x, y):
        return self.elementwise(x, y).sum()


class Hill(nn.Module):
    """Hill as released: ``sum[-y (1-p_m)^g log p_m + (1-y)(lam - p) p^2]``, p_m = sigmoid(x - margin)."""

    def __init__(self, lamb: float = 1.5, margin: float = 1.0, gamma: float = 2.0, reduction: str = "sum"):
        super().__init__()
        self.lamb = lamb
        self.margin = margin
        self.gamma = gamma
        self.reduction = reduction

    def elementwise(self, logits, targets):
        logits_margin = logits - self.margin
        pred_pos = torch.sigmoid(logits_margin)
        pred_neg = torch.sigmoid(logits)
        pt = (1 - pred_pos) * targets + (1 - targets)
        focal_weight = pt**self.gamma
        los_pos = targets * torch.log(pred_pos)
        los_neg = (1 - targets) * -(self.lamb - pred_neg) * pred_neg**2
        loss = -(los_pos + los_neg)
        loss *= focal_weight
        return loss

    def forward(self, logits, targets):
        loss = self.elementwise(logits, targets)
        return loss.mean() if self.reduction == "mean" else loss.sum()


class FocalLoss(nn.Module):
    """Sigmoid focal loss ``-sum[y (1-p)^g log p + (1-y) p^g log(1-p)]`` in torchvision's form."""

    def __init__(self, gamma: float = 2.0):
        super().__init__()
        self.gamma = gamma

    def elementwise(self, inputs, targets):
        p = torch.sigmoid(inputs)
        ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
        p_t = p * targets + (1 - p) * (1 - targets)
        return ce_loss * ((1 - p_t) ** self.gamma)

    def forward(self, inputs, targets):
        return self.elementwise(inputs, targets).sum()


class BCEWithLogits(nn.Module):
    """``torch.nn.BCEWithLogitsLoss(reduction="sum")``, the unit the benchmark's ratios are measured in."""

    def elementwise(self, inputs, targets):
        return F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")

    def forward(self, inputs, targets):
        return F.binary_cross_entropy_with_logits(inputs, targets, reduction="sum")


def released(name: str, **params) -> nn.Module:
    """The transcription of ``name`` built from ``runners.losses`` parameter names (alpha/beta mapped).

    RAL with the released shape (len(alpha) <= 2, len(beta) <= 1) maps onto ``Ralloss``'s own names;
    longer sequences use :class:`PolynomialRal`.
    """
    focal_grad = params.pop("focal_grad", None)
    params.pop("reduction", None)
    if name == "bce":
        return BCEWithLogits()
    if name == "focal":
        return FocalLoss(**params)
    if name == "hill":
        lam = params.pop("lam", 1.5)
        return Hill(lamb=lam, **params)
    if name == "asl":
        detach = focal_grad != "through"
        return AsymmetricLoss(disable_torch_grad_focal_loss=detach, **params)
    if name == "ral":
        alpha = tuple(params.pop("alpha", (1.0, -1.25)))
        beta = tuple(params.pop("beta", (0.0,)))
        detach = focal_grad == "detach"
        if len(alpha) <= 2 and len(beta) <= 1:
            alpha = alpha + (0.0,) * (2 - len(alpha))
            beta = beta + (0.0,) * (1 - len(beta))
            lam = params.pop("lam", 1.5)
            return Ralloss(
                lamb=lam,
                epsilon_pos=alpha[0],
                epsilon_pos_pow=2.0 * alpha[1],
                epsilon_neg=beta[0],
                disable_torch_grad_focal_loss=detach,
                **params,
            )
        return PolynomialRal(alpha=alpha, beta=beta, detach=detach, **params)
    raise ValueError(f"no transcription for loss {name!r}")
