"""One declaration per loss: its hyperparameters, default sampling ranges and the released code's defaults.

Adding a loss's space is one declaration (a tuple of :class:`ParamSpec`, or a function of
``(n_alpha, n_beta)`` for losses with a variable number of coefficients) plus one :func:`register` call.
The parameter names are the keyword arguments of ``runners.losses.create_loss`` (``alpha_i`` /
``beta_i`` are folded into ``alpha=`` / ``beta=`` tuples by :meth:`SearchSpace.loss_params`).

Ranges are chosen so that (a) the released default lies well inside, (b) they cover what the losses'
own papers explored, and (c) ASL and RAL share *identical* ranges for the parameters they have in common
(``gamma_pos``, ``gamma_neg``, ``clip``), so a difference in their spread of mAP is not a difference in
how far each was pushed. Defaults of shared parameters still differ per loss (ASL gamma_pos = 1, RAL 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ._space import ParamSpec

INF = math.inf

# A space declaration: fixed parameters, or a function of (n_alpha, n_beta) for RAL-like losses.
Declaration = tuple[ParamSpec, ...] | Callable[[int, int], tuple[ParamSpec, ...]]

_REGISTRY: dict[str, Declaration] = {}

# The parameters ASL and RAL share; `matched` mode sweeps only these (see get_space).
MATCHED_PARAMS = ("gamma_pos", "gamma_neg", "clip")

# Released RAL coefficient defaults (kalelpark/RAL, models/get_optimizer.py): epsilon_pos = 1.0,
# epsilon_pos_pow = -2.5 multiplied by 0.5 (so alpha_2 = -1.25), epsilon_neg = 0.0.
RAL_ALPHA_DEFAULT = (1.0, -1.25)
RAL_BETA_DEFAULT = (0.0,)


def register(loss: str, declaration: Declaration) -> None:
    """Make ``get_space(loss, ...)`` know a loss. Names must be ``create_loss`` keyword arguments."""
    if not loss or not loss.isidentifier():
        raise ValueError(f"loss name must be an identifier, got {loss!r}")
    _REGISTRY[loss] = declaration


def declaration(loss: str) -> Declaration:
    try:
        return _REGISTRY[loss]
    except KeyError:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(_REGISTRY)}") from None


def registered() -> tuple[str, ...]:
    return tuple(_REGISTRY)


# --- parameters shared by ASL and RAL: one range, per-loss defaults ------------------------------
def _gamma_pos(default: float) -> ParamSpec:
    return ParamSpec(
        "gamma_pos",
        0.0,
        4.0,
        False,
        default,
        # ASL recommends 0 or 1 (RAL's code uses 0); 4 goes past focal's usual 2 into the regime where
        # easy positives stop contributing. Exponents must stay >= 0.
        doc="focusing exponent on positives, weight (1-p)^gamma_pos; 0 = plain log-likelihood",
        limits=(0.0, INF),
    )


def _gamma_neg(default: float) -> ParamSpec:
    return ParamSpec(
        "gamma_neg",
        0.0,
        6.0,
        False,
        default,
        # The ASL paper explores gamma_neg up to about 6 (default 4). Values in (0, 1) are included on
        # purpose: the released RAL code has infinite gradients there, the toolkit's losses must not.
        doc="focusing exponent on negatives, weight p_clip^gamma_neg; larger = easy negatives down-weighted harder",
        limits=(0.0, INF),
    )


def _clip(default: float) -> ParamSpec:
    return ParamSpec(
        "clip",
        0.0,
        0.4,
        False,
        default,
        # ASL's probability-shift ablation goes up to 0.4 (default 0.05). 0 disables the shift; the
        # shift must stay below 1 or every negative is discarded.
        doc="probability shift (ASL 'clip', RAL tau): negatives with p <= clip contribute nothing",
        limits=(0.0, 1.0),
    )


def _lam(default: float) -> ParamSpec:
    return ParamSpec(
        "lam",
        1.1,
        3.0,
        False,
        default,
        # Starts above 1: lam <= 1 flips the sign of (lam - p) for confident negatives, a legal but
        # pathological region (widen via --space to study it; limits allow lam > 0). Up to 3: past it
        # (lam - p) varies by under 1/3 over p in [0, 1], so lam only rescales the negative term.
        doc="Hill/RAL negative weight (lam - p); must exceed 1 to keep the weight positive",
        limits=(0.0, INF),
    )


def _poly(stem: str, index: int, default: float, what: str) -> ParamSpec:
    return ParamSpec(
        f"{stem}_{index}",
        -2.0,
        2.0,
        False,
        default,
        # Covers the released coefficients (1.0, -1.25, 0.0) with room on both sides, and PolyLoss's
        # (whose Taylor-coefficient idea RAL uses) useful region of the leading coefficient (>= -1,
        # where -1 cancels the leading term). The losses keep finite gradients for |coef| <= 5: the limit.
        doc=f"RAL polynomial coefficient of {what}",
        limits=(-5.0, 5.0),
    )


# --- declarations -------------------------------------------------------------------------------
BCE: tuple[ParamSpec, ...] = ()

FOCAL = (
    ParamSpec(
        "gamma",
        0.0,
        5.0,
        False,
        2.0,
        # Lin et al. (2017) ablate gamma in {0, 0.1, 0.2, 0.5, 1, 2, 5}; 0 is BCE.
        doc="focusing exponent, weight (1-p_t)^gamma on both positives and negatives",
        limits=(0.0, INF),
    ),
)

ASL = (_gamma_pos(1.0), _gamma_neg(4.0), _clip(0.05))

HILL = (
    _lam(1.5),
    ParamSpec(
        "margin",
        0.0,
        2.0,
        False,
        1.0,
        # 0 removes the margin (a focal-like positive term); 2 keeps the default 1 centred. A negative
        # margin would reward positives that are already confident, so limits start at 0.
        doc="logit margin on positives, p_m = sigmoid(x - margin)",
        limits=(0.0, INF),
    ),
    ParamSpec(
        "gamma",
        0.0,
        4.0,
        False,
        2.0,
        # Same role as ASL's gamma_pos (focal weight on positives); the same [0, 4] range.
        doc="focusing exponent on positives, weight (1-p_m)^gamma",
        limits=(0.0, INF),
    ),
)


def ral(n_alpha: int = 2, n_beta: int = 1) -> tuple[ParamSpec, ...]:
    """RAL with M = ``n_alpha`` positive and N = ``n_beta`` negative polynomial coefficients.

    Coefficients beyond the released ones default to 0, which leaves the loss unchanged; fewer than
    the released ones truncate the polynomial (the defaults then no longer reproduce the paper).
    """
    alpha = [
        _poly(
            "alpha", m + 1, RAL_ALPHA_DEFAULT[m] if m < len(RAL_ALPHA_DEFAULT) else 0.0, f"(1-p)^{m + 1} on positives"
        )
        for m in range(n_alpha)
    ]
    beta = [
        _poly("beta", n + 1, RAL_BETA_DEFAULT[n] if n < len(RAL_BETA_DEFAULT) else 0.0, f"q^{n + 1} on negatives")
        for n in range(n_beta)
    ]
    return (_gamma_pos(0.0), _gamma_neg(4.0), _clip(0.05), _lam(1.5), *alpha, *beta)


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


def build(loss: str, n_alpha: int, n_beta: int) -> tuple[ParamSpec, ...]:
    """The loss's parameters in declaration order, honouring ``n_alpha`` / ``n_beta`` where they apply."""
    decl = declaration(loss)
    if callable(decl):
        return tuple(decl(n_alpha, n_beta))
    if (n_alpha, n_beta) != (2, 1):
        raise ValueError(f"n_alpha / n_beta set the number of RAL polynomial coefficients; the {loss!r} loss has none")
    return tuple(decl)


register("bce", BCE)
register("focal", FOCAL)
register("asl", ASL)
register("hill", HILL)
register("ral", ral)
