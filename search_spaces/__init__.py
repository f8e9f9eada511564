"""Declarative hyperparameter search spaces, one per loss, declared beside the loss's class.

A loss declares its space in its own module (``@register_loss(name, space=Space(...))``, see
:mod:`search_spaces.declare`): the ranges only, the defaults read from the loss class. The losses
are found by the catalogue (``runners.catalogue``). Importing this package needs only optuna;
:func:`get_space` imports the one loss module it is asked about (and with it torch), because that
is where the defaults live. A *stored* space (:meth:`SearchSpace.from_dict`, what ``analysis`` and
``reports`` read) never needs torch.

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
``options`` shape a space that declares them, e.g. RAL's polynomial lengths
``get_space("ral", options={"n_alpha": 3})``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ._flags import add_option_flags
from ._overrides import apply as _apply_overrides
from ._space import NUISANCE_PARAMS, ParamSpec, SearchSpace
from .declare import Option, Range, Series, Space
from .ranges import MATCHED_PARAMS, NUISANCE

__all__ = [
    "MATCHED_PARAMS",
    "MODES",
    "NUISANCE_PARAMS",
    "Option",
    "ParamSpec",
    "Range",
    "SearchSpace",
    "add_option_flags",
    "Series",
    "Space",
    "get_space",
    "loss_names",
    "space_options",
]

MODES: tuple[str, ...] = ("full", "matched", "seeds")


def loss_names() -> tuple[str, ...]:
    """Every loss with a space, from the catalogue (torch-free: no loss module is imported)."""
    from runners.catalogue import loss_names as names

    return names()


def space_options(loss: str) -> dict[str, Option]:
    """The options ``loss``'s space declares (imports the loss's module)."""
    from runners.catalogue import space_declaration

    return dict(space_declaration(loss).options)


def get_space(
    loss: str,
    mode: str = "full",
    *,
    nuisance: bool = False,
    options: Mapping[str, object] | None = None,
    overrides: str | os.PathLike | None = None,
) -> SearchSpace:
    """The search space of ``loss`` in ``mode``.

    Args:
        loss: one of :func:`loss_names`.
        mode: one of :data:`MODES` (see the module docstring).
        nuisance: also sweep ``lr`` and ``weight_decay``.
        options: values of the options the loss's space declares (:func:`space_options`), e.g. RAL's
            ``n_alpha`` / ``n_beta`` (numbers of polynomial coefficients, 1 to 8); unset ones take
            the declared defaults, and an option the space does not declare is refused.
        overrides: a TOML file changing ranges, scales, defaults, or holding parameters fixed; it is
            applied before the mode picks what to sweep, so its ``default`` is also the held value.
    """
    if mode not in MODES:
        raise ValueError(f"unknown search-space mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "seeds" and nuisance:
        raise ValueError(
            "the 'seeds' mode holds every hyperparameter at its default to measure seed noise; drop nuisance "
            "(--nuisance)"
        )
    from runners.catalogue import space_specs  # the loss's module: its class holds the defaults

    specs = space_specs(loss, dict(options or {})) + (NUISANCE if nuisance else ())
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
