"""Binary cross-entropy with logits: the baseline every other loss is compared with."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from search_spaces.declare import Space

from .base import MultiLabelLoss, _no_autocast
from .registry import register_loss


@register_loss("bce", space=Space())  # nothing to sweep: the baseline
class BCELoss(MultiLabelLoss):
    r"""BCE: ``-sum[ y log p + (1-y) log(1-p) ]``, p = sigmoid(x), via ``binary_cross_entropy_with_logits``.

    Summed by default like the other losses (so values and timing ratios compare); soft targets in
    [0, 1] are accepted. The mask is passed as BCE's element weight.
    """

    defaults = {"reduction": "sum"}

    def forward(self, logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        x, flat_targets, m = self._prepare(logits, targets, mask)
        with _no_autocast(x):
            loss = F.binary_cross_entropy_with_logits(
                x, flat_targets.to(x.dtype), weight=m, reduction="none" if self.reduction == "none" else "sum"
            )
        return self._reduce(loss, logits, m)
