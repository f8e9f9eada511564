"""Declarative hyperparameter search spaces, one per loss (no torch here: the study's parent process imports it).

>>> from search_spaces import get_space
>>> space = get_space("ral", "matched")
>>> space.names
('gamma_pos', 'gamma_neg', 'clip')
>>> sorted(space.fixed)
['alpha_1', 'alpha_2', 'beta_1', 'lam']

Modes:

- ``full``: every hyperparameter of the loss is swept.
- ``matched``: only the parameters ASL and RAL share (``gamma_pos``, ``gamma_neg``, ``clip``), with the
  same ranges for both, the rest held at their defaults, so that a difference in spread between the
  two losses is not just a difference in dimension. For other losses it is the subset of those three
  they have: none for ``bce``, ``focal`` and ``hill`` (their parameters are named and act differently),
  so there ``matched`` sweeps nothing from the loss (like ``seeds``, plus lr/weight_decay when
  ``nuisance``).
- ``seeds``: nothing is swept; every parameter is held at its default. This is the seed-noise-floor
  study (trials differ only by seed), so it refuses ``nuisance=True``.

``nuisance=True`` adds the optimiser's ``lr`` and ``weight_decay`` (log scale) after the loss's parameters.
"""

from __future__ import annotations

import os

from . import _losses
from ._losses import MATCHED_PARAMS, NUISANCE, register
from ._overrides import apply as _apply_overrides
from ._space import NUISANCE_PARAMS, ParamSpec, SearchSpace

__all__ = [
    "LOSSES",
    "MATCHED_PARAMS",
    "MODES",
    "NUISANCE_PARAMS",
    "ParamSpec",
    "SearchSpace",
    "get_space",
    "register",
]

LOSSES: tuple[str, ...] = _losses.registered()
MODES: tuple[str, ...] = ("full", "matched", "seeds")


def get_space(
    loss: str,
    mode: str = "full",
    *,
    nuisance: bool = False,
    n_alpha: int = 2,
    n_beta: int = 1,
    overrides: str | os.PathLike | None = None,
) -> SearchSpace:
    """The search space of ``loss`` in ``mode``.

    Args:
        loss: one of :data:`LOSSES` (or a loss added with :func:`register`).
        mode: one of :data:`MODES` (see the module docstring).
        nuisance: also sweep ``lr`` and ``weight_decay``.
        n_alpha, n_beta: number of RAL polynomial coefficients on positives / negatives (M, N, 1 to 8);
            the released code has M = 2, N = 1. Other losses accept only the defaults.
        overrides: a TOML file changing ranges, scales, defaults, or holding parameters fixed; it is
            applied before the mode picks what to sweep, so its ``default`` is also the held value.
    """
    if mode not in MODES:
        raise ValueError(f"unknown search-space mode {mode!r}; choose one of {', '.join(MODES)}")
    for name, n in (("n_alpha", n_alpha), ("n_beta", n_beta)):
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 8:
            # At least 1: a loss_params without an alpha/beta key would mean "the released
            # coefficients", not "none"; a single coefficient held at 0 removes the terms instead.
            raise ValueError(f"{name} must be an integer from 1 to 8, got {n!r}")
    if mode == "seeds" and nuisance:
        raise ValueError(
            "the 'seeds' mode holds every hyperparameter at its default to measure seed noise; drop nuisance "
            "(--nuisance)"
        )

    specs = _losses.build(loss, n_alpha, n_beta) + (NUISANCE if nuisance else ())
    user_fixed: dict[str, float] = {}
    if overrides is not None:
        applied = _apply_overrides(overrides, loss, specs)
        specs, user_fixed = applied.specs, applied.fixed

    def is_swept(spec: ParamSpec) -> bool:
        if spec.name in user_fixed:
            return False
        if mode == "full":
            return True
        if mode == "matched":
            return spec.name in MATCHED_PARAMS or spec.name in NUISANCE_PARAMS
        return False  # seeds

    swept = tuple(s for s in specs if is_swept(s))
    fixed = {s.name: user_fixed.get(s.name, s.default) for s in specs if not is_swept(s)}
    return SearchSpace(loss=loss, mode=mode, nuisance=bool(nuisance), params=swept, fixed=fixed)
