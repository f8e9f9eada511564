"""Design points and trial seeds: point ``k`` of a study is a pure function of ``(sampler, seed, k)``.

A study of ``N`` trials evaluates the design indices ``0 .. N-1``. For the non-adaptive samplers the
point of index ``k`` is a function of ``(seed, k)`` only -- row ``k`` of a scrambled Sobol sequence
(``qmc``), a uniform draw from a generator seeded with ``(seed, k)`` (``random``), or point ``k`` of
the space's full-factorial grid (``grid``) -- so no point repeats and the same seed gives the same
points whatever the number of workers and however their timing interleaves. (Optuna's QMCSampler
keeps its position in a non-atomic counter and repeats points under parallel workers; a seeded
RandomSampler in every process repeats the same sequence.) ``tpe`` takes its first
``TPE_STARTUP`` points from the ``random`` design, then asks Optuna's TPESampler.

The claim protocol that hands each index to exactly one worker is ``study.claims``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from search_spaces import SearchSpace

SAMPLERS = ("qmc", "random", "tpe", "grid")
TPE_STARTUP = 10  # Optuna's default n_startup_trials: the first points of a TPE study are random


def shares_seed(space: SearchSpace) -> bool:
    """Whether every trial of a study over ``space`` trains with the study seed (see :func:`trial_seed`)."""
    return space.dim > 0


def trial_seed(space: SearchSpace, seed: int, design_index: int) -> int:
    """The training seed of design index ``k``.

    When the space sweeps at least one parameter, every trial uses the study seed (common random
    numbers: the spread of mAP is due to the hyperparameters alone). When it sweeps none (``bce``,
    or mode ``seeds``) trial ``k`` uses ``seed + k``: that study measures the seed-noise floor.
    """
    return int(seed) if shares_seed(space) else int(seed) + int(design_index)


def grid_levels(space: SearchSpace, n_trials: int) -> int | None:
    """Levels per axis of the grid that ``--trials n_trials`` asks for (None for a 0-d space)."""
    axes = space.grid_axes(n_trials)
    return len(next(iter(axes.values()))) if axes else None


def check_grid_budget(space: SearchSpace, n_trials: int) -> None:
    """A grid study evaluates its full grid exactly once: ``--trials`` must be a grid size."""
    if space.dim == 0:
        return
    levels = grid_levels(space, n_trials)
    assert levels is not None
    size = levels**space.dim
    if size != n_trials:
        options = sorted({max(2, levels - 1) ** space.dim, size, (levels + 1) ** space.dim})
        raise ValueError(
            f"--sampler grid over the {space.dim} swept parameters of {space.loss!r} has k**{space.dim} "
            f"points; --trials {n_trials} is not one of them: use --trials " + " or ".join(map(str, options))
        )


@dataclass
class Design:
    """Point ``k`` of a study's design, a pure function of ``(sampler, seed, k)``."""

    space: SearchSpace
    sampler: str
    seed: int
    n_trials: int
    # The qmc rows when another process has drawn them (:meth:`sobol_rows`); drawn on first use otherwise.
    sobol: np.ndarray | None = field(default=None, repr=False, compare=False)
    _grid: list[dict[str, float]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.sampler == "grid":
            check_grid_budget(self.space, self.n_trials)
        if self.sobol is not None and (self.sobol.ndim != 2 or self.sobol.shape[1] != self.space.dim):
            raise ValueError(f"sobol rows must be shaped (n, {self.space.dim}), got {self.sobol.shape}")

    def sobol_rows(self) -> np.ndarray | None:
        """The Sobol rows behind every qmc point of the budget (None for the other samplers).

        Why: drawing them imports scipy.stats (~0.8 s). The parent process draws them while the
        workers' fork server is still importing torch, and hands them to the workers' designs.
        """
        if self.sampler != "qmc" or self.space.dim == 0:
            return None
        self._sobol_row(self.n_trials - 1)
        return self.sobol

    def point(self, k: int) -> dict[str, float] | None:
        """Parameter values of index ``k``; None where the adaptive sampler (``tpe``) must propose."""
        if k < 0:
            raise ValueError(f"design index must be >= 0, got {k}")
        if self.space.dim == 0:
            return {}
        if self.sampler == "qmc":
            return self.space.from_unit(self._sobol_row(k))
        if self.sampler == "random" or (self.sampler == "tpe" and k < TPE_STARTUP):
            return self.space.from_unit(np.random.default_rng([self.seed, k]).random(self.space.dim))
        if self.sampler == "grid":
            if self._grid is None:
                self._grid = self.space.grid(self.n_trials)
            return dict(self._grid[k])
        return None  # tpe beyond its random start-up

    def _sobol_row(self, k: int) -> np.ndarray:
        # A scrambled Sobol sequence is prefix-stable: the first 2**m rows do not depend on how many
        # are drawn, so row k depends on (seed, k) only and raising --trials on resume keeps rows.
        if self.sobol is None or k >= len(self.sobol):
            from scipy.stats import qmc

            m = max(1, math.ceil(math.log2(max(k + 1, self.n_trials, 2))))
            self.sobol = qmc.Sobol(self.space.dim, scramble=True, seed=self.seed).random_base2(m)
        row = np.clip(self.sobol[k], 0.0, 1.0)
        return row
