"""Ranges shared by several losses' space declarations, the nuisance parameters, and the ``matched`` set.

Ranges are chosen so that (a) the released default lies well inside, (b) they cover what the losses'
own papers explored, and (c) ASL and RAL share *identical* ranges for the parameters they have in common
(``gamma_pos``, ``gamma_neg``, ``clip``), so a difference in their spread of mAP is not a difference in
how far each was pushed. Defaults are not here: each loss class holds its own (ASL gamma_pos = 1,
RAL 0), and :class:`~search_spaces.declare.Space` reads them from it. A range used by one loss only
is declared in that loss's module, next to its class.
"""

from __future__ import annotations

from ._space import ParamSpec
from .declare import INF, Range, Series

# The parameters ASL and RAL share; `matched` mode sweeps only these (see get_space).
MATCHED_PARAMS = ("gamma_pos", "gamma_neg", "clip")

GAMMA_POS = Range(
    "gamma_pos",
    0.0,
    4.0,
    # ASL recommends 0 or 1 (RAL's code uses 0); 4 goes past focal's usual 2 into the regime where
    # easy positives stop contributing. Exponents must stay >= 0.
    doc="focusing exponent on positives, weight (1-p)^gamma_pos; 0 = plain log-likelihood",
    limits=(0.0, INF),
)

GAMMA_NEG = Range(
    "gamma_neg",
    0.0,
    6.0,
    # The ASL paper explores gamma_neg up to about 6 (default 4). Values in (0, 1) are included on
    # purpose: the released RAL code has infinite gradients there, the toolkit's losses must not.
    doc="focusing exponent on negatives, weight p_clip^gamma_neg; larger = easy negatives down-weighted harder",
    limits=(0.0, INF),
)

CLIP = Range(
    "clip",
    0.0,
    0.4,
    # ASL's probability-shift ablation goes up to 0.4 (default 0.05). 0 disables the shift; the
    # shift must stay below 1 or every negative is discarded.
    doc="probability shift (ASL 'clip', RAL tau): negatives with p <= clip contribute nothing",
    limits=(0.0, 1.0),
)

LAM = Range(
    "lam",
    1.1,
    3.0,
    # Starts above 1: lam <= 1 flips the sign of (lam - p) for confident negatives, a legal but
    # pathological region (widen via --space to study it; limits allow lam > 0). Up to 3: past it
    # (lam - p) varies by under 1/3 over p in [0, 1], so lam only rescales the negative term.
    doc="Hill/RAL negative weight (lam - p); must exceed 1 to keep the weight positive",
    limits=(0.0, INF),
)


def polynomial(stem: str, count: str, what: str) -> Series:
    """RAL-style polynomial coefficients ``<stem>_1..<stem>_n`` of ``what`` (``{i}``: the power)."""
    coefficient = Range(
        stem,
        -2.0,
        2.0,
        # Covers the released coefficients (1.0, -1.25, 0.0) with room on both sides, and PolyLoss's
        # (whose Taylor-coefficient idea RAL uses) useful region of the leading coefficient (>= -1,
        # where -1 cancels the leading term). The losses keep finite gradients for |coef| <= 5: the limit.
        doc=f"RAL polynomial coefficient of {what}",
        limits=(-5.0, 5.0),
    )
    return Series(coefficient, count)


NUISANCE = (
    ParamSpec(
        "lr",
        1e-4,
        1e-1,
        True,
        1e-3,
        # Three decades around AdamW's usual 1e-3 (runners.config.TrainConfig.lr): from too slow to
        # learn in a short schedule to the edge of divergence for a linear head.
        doc="optimiser learning rate (runners.config.TrainConfig.lr)",
        limits=(0.0, INF),
    ),
    ParamSpec(
        "weight_decay",
        1e-6,
        1e-1,
        True,
        1e-4,
        # From negligible to strong decoupled decay; TrainConfig's default 1e-4 inside.
        doc="optimiser weight decay (runners.config.TrainConfig.weight_decay)",
        limits=(0.0, INF),
    ),
)
