"""Multi-label losses with reference parity, finite gradients and near-BCE cost.

``create_loss(name, **params)`` builds one of :func:`available_losses`; every loss is called as
``loss(logits, targets, mask=None)`` on (batch, classes) tensors and returns the summed loss by
default (``reduction="mean"`` or ``"none"`` on request). A new loss is one module of this package,
named after the loss, holding a :class:`MultiLabelLoss` subclass decorated with
``@register_loss("name", space=Space(...))``: it is discovered (``runners.catalogue``), not listed here.
Importing this package imports every discovered loss module and exports its class by name.

Formulas (p = sigmoid(x), p_clip = max(p - clip, 0), q = 1 - p_clip = min(1 - p + clip, 1),
p~ = max(p, eps), q~ = max(q, eps), sums over batch and classes):

- ``bce``: ``-sum[y log p + (1-y) log(1-p)]``.
- ``focal`` (Lin et al. 2017): ``-sum[y (1-p)^gamma log p + (1-y) p^gamma log(1-p)]``.
- ``asl`` (Ridnik et al. 2021): ``-sum[y (1-p)^gamma_pos log p~ + (1-y) p_clip^gamma_neg log q~]``.
- ``hill`` (Zhang et al. 2021): ``sum[-y (1-p_m)^gamma log p_m + (1-y)(lam - p) p^2]``, p_m = sigmoid(x - margin).
- ``ral`` (Park et al. 2023): ``-sum w [y (log p~ + sum_m alpha_m (1-p~)^m)
  + (1-y)(log q~ + sum_n beta_n q~^n)(lam - p) p^2 (lam - q)]``, w = (1-p)^gamma_pos on positives
  and p_clip^gamma_neg on negatives.

Mapping from the released RAL code (kalelpark/RAL, ``Ralloss``) to these names:
``epsilon_pos`` = alpha_1, ``epsilon_pos_pow`` = 2 * alpha_2 (the code multiplies it by 0.5),
``epsilon_neg`` = beta_1, ``lamb`` = lam, ``clip`` = clip (the paper's tau),
``disable_torch_grad_focal_loss=False`` = ``focal_grad="through"``. Released defaults
(epsilon_pos, epsilon_pos_pow, epsilon_neg) = (1.0, -2.5, 0.0) are alpha = (1.0, -1.25), beta = (0.0,).
For ASL, ``disable_torch_grad_focal_loss=True`` (its default) = ``focal_grad="detach"``.

Differences from the released code, by design: gradients are finite everywhere (the derivative of
``0 ** gamma`` is taken as 0 where the released RAL code returns NaN for 0 < gamma_neg < 1), logs of
probabilities are computed from the logits (softplus) where the released code's ``log(sigmoid(x))``
loses precision, and bf16/fp16 logits are computed in float32. Values equal the released code's
(see tests/losses).

Speed: every loss computes its value and closed-form gradient in one forward sweep (``_closed_form``,
eager, chunked through scratch buffers). ASL and RAL also have fused kernels compiled with
``torch.compile`` (``_compiled``); ``LOSSWEEP_COMPILE`` = ``auto`` (default: on CPU, inputs of at least
32768 elements run the ``torch.compile``d kernel and smaller ones the same formula compiled ahead of time
by AOTInductor, ``_packaged``: about 2.3x BCE instead of 3-4x at 256 x 26, for a one-time ~10-25 s
compile per variant kept on disk), ``1`` (``torch.compile`` always) or ``0`` (never compile). A kernel that
fails to compile warns once and falls back to the eager one.
"""

from __future__ import annotations

from .. import catalogue
from ._closed_form import release_workspace
from .base import MultiLabelLoss
from .registry import available_losses, create_loss, loss_class, register_loss

__all__ = [
    "MultiLabelLoss",
    "available_losses",
    "create_loss",
    "loss_class",
    "register_loss",
    "release_workspace",
]

# The package's loss classes (AsymmetricLoss, RobustAsymmetricLoss, ...), importable from here; plugin
# losses (LOSSWEEP_LOSS_MODULES) are imported only when asked for by name.
for _cls in catalogue.builtin_loss_classes():
    globals()[_cls.__name__] = _cls
    __all__.append(_cls.__name__)
del _cls
