"""Design points, trial seeds, and the claim protocol that hands each design index to one worker.

A study of ``N`` trials evaluates the design indices ``0 .. N-1``. For the non-adaptive samplers the
point of index ``k`` is a function of ``(seed, k)`` only -- row ``k`` of a scrambled Sobol sequence
(``qmc``), a uniform draw from a generator seeded with ``(seed, k)`` (``random``), or point ``k`` of
the space's full-factorial grid (``grid``) -- so no point repeats and the same seed gives the same
points whatever the number of workers and however their timing interleaves. (Optuna's QMCSampler
keeps its position in a non-atomic counter and repeats points under parallel workers; a seeded
RandomSampler in every process repeats the same sequence.) ``tpe`` takes its first
``TPE_STARTUP`` points from the ``random`` design, then asks Optuna's TPESampler.

Claim protocol (the invariant the exact budget rests on)
--------------------------------------------------------
Every lossweep trial carries the user attribute ``design_index``. An index ``k < N`` is

* *finished* when a trial holding it is COMPLETE, or FAIL with ``status == "diverged"`` (a result);
* *held* when a trial holding it is RUNNING (stale trials are failed first, see below);
* *exhausted* when it has failed ``max_retries + 1`` times for reasons other than an interruption;
* *free* otherwise -- never tried, or its earlier attempts failed (error, killed worker, Ctrl-C).

A worker claims the lowest free index while holding the study's **claim lock**, and inside the same
critical section it sweeps stale trials (``optuna.storages.fail_stale_trials``), creates the RUNNING
trial with its parameters, and records its first heartbeat. Invariant: *at any time each index is
held or finished by at most one trial*, because reading the ledger and creating the trial happen
under one lock; hence a study ends with exactly one finished trial per index -- ``N`` finished
trials -- and no trial is ever created beyond the budget (a worker that finds no free index creates
nothing: it waits while other workers hold indices, which may still fail and need a retry, and stops
when none does). A retry of index ``k`` re-derives its parameters from ``k`` (for ``tpe`` it copies
the failed attempt's parameters), so a killed trial is re-run with the same parameters.

Why a lock rather than a lock-free claim in the trial table: "create a trial, write the index you
want, re-read, the smaller trial number wins" is unsafe -- the larger trial can re-read before the
smaller one has written and both run the same index -- and any correct variant (a bakery-style
protocol) still creates surplus trials at the end of the budget that Optuna cannot delete. The lock
is PostgreSQL's own (``pg_advisory_lock``), which the server releases when a worker's connection
dies, and a file lock next to the SQLite file (released by the OS
when the process dies; SQLite ignores ``SELECT ... FOR UPDATE``, so the database cannot serve). The
critical section is a few short statements, so the lock is not a bottleneck.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import optuna
from optuna.trial import TrialState

from search_spaces import SearchSpace

SAMPLERS = ("qmc", "random", "tpe", "grid")
TPE_STARTUP = 10  # Optuna's default n_startup_trials: the first points of a TPE study are random
DESIGN_INDEX_ATTR = "design_index"
INTERRUPTED = "interrupted"


def trial_seed(space: SearchSpace, seed: int, design_index: int) -> int:
    """The training seed of design index ``k``.

    When the space sweeps at least one parameter, every trial uses the study seed (common random
    numbers: the spread of mAP is due to the hyperparameters alone). When it sweeps none (``bce``,
    or mode ``seeds``) trial ``k`` uses ``seed + k``: that study measures the seed-noise floor.
    """
    return int(seed) if space.dim > 0 else int(seed) + int(design_index)


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
    _sobol: np.ndarray | None = field(default=None, init=False, repr=False)
    _grid: list[dict[str, float]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.sampler == "grid":
            check_grid_budget(self.space, self.n_trials)

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
        if self._sobol is None or k >= len(self._sobol):
            from scipy.stats import qmc

            m = max(1, math.ceil(math.log2(max(k + 1, self.n_trials, 2))))
            self._sobol = qmc.Sobol(self.space.dim, scramble=True, seed=self.seed).random_base2(m)
        row = np.clip(self._sobol[k], 0.0, 1.0)
        return row


# -- the ledger of design indices --------------------------------------------------------------


class TrialLike(Protocol):
    """What the ledger reads of a trial: an Optuna FrozenTrial, or the lighter study.trial_store.TrialRow."""

    # Read-only properties, so that frozen dataclasses (TrialRow) match too.
    @property
    def number(self) -> int: ...
    @property
    def state(self) -> TrialState: ...
    @property
    def user_attrs(self) -> dict[str, Any]: ...


# The ledger hands back the trials it was given, of their own type (FrozenTrial or TrialRow).
T = TypeVar("T", bound=TrialLike)


def is_diverged(trial: TrialLike) -> bool:
    return trial.state == TrialState.FAIL and trial.user_attrs.get("status") == "diverged"


def is_finished(trial: TrialLike) -> bool:
    """A result: COMPLETE, or a diverged FAIL. Other FAILs are errors and are retried."""
    return trial.state == TrialState.COMPLETE or is_diverged(trial)


def counts_as_attempt(trial: TrialLike) -> bool:
    """A failed attempt that counts against the retry bound (an interruption by the user does not)."""
    return (
        trial.state == TrialState.FAIL and not is_diverged(trial) and trial.user_attrs.get("fail_reason") != INTERRUPTED
    )


@dataclass
class Ledger(Generic[T]):
    """Which design indices are finished, held, exhausted or free, read from the study's trials."""

    n_trials: int
    max_retries: int
    finished: dict[int, T] = field(default_factory=dict)
    running: dict[int, T] = field(default_factory=dict)
    attempts: Counter = field(default_factory=Counter)
    previous: dict[int, T] = field(default_factory=dict)  # the last failed attempt per index

    @classmethod
    def from_trials(cls, trials: Sequence[T], n_trials: int, max_retries: int) -> Ledger[T]:
        ledger: Ledger[T] = cls(n_trials=n_trials, max_retries=max_retries)
        for t in trials:
            k = t.user_attrs.get(DESIGN_INDEX_ATTR)
            if not isinstance(k, int):
                continue  # not a lossweep trial
            if is_finished(t):
                ledger.finished.setdefault(k, t)
            elif t.state == TrialState.RUNNING:
                ledger.running[k] = t
            elif t.state == TrialState.FAIL:
                if counts_as_attempt(t):
                    ledger.attempts[k] += 1
                ledger.previous[k] = t
        return ledger

    def exhausted(self) -> list[int]:
        return sorted(
            k for k, n in self.attempts.items() if n > self.max_retries and k not in self.finished and k < self.n_trials
        )

    def n_finished(self) -> int:
        return sum(1 for k in self.finished if k < self.n_trials)

    def next_free(self) -> int | None:
        """The lowest index below the budget that is neither finished, held nor exhausted."""
        for k in range(self.n_trials):
            if k in self.finished or k in self.running:
                continue
            if self.attempts[k] > self.max_retries:
                continue
            return k
        return None

    def held_by_others(self) -> bool:
        return any(k < self.n_trials for k in self.running)


# -- the claim lock ----------------------------------------------------------------------------


def _lock_key(study_name: str) -> int:
    digest = hashlib.sha256(f"lossweep-claim:{study_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)  # a signed bigint, as pg_advisory_lock takes


@contextlib.contextmanager
def claim_lock(storage: optuna.storages.RDBStorage, study_name: str, timeout: float = 600.0) -> Iterator[None]:
    """Mutual exclusion among every worker of ``study_name``, on every machine sharing the store.

    See the module docstring for why. The lock dies with its holder: the server ends a dead
    connection's advisory lock; the OS releases a dead process's file lock.
    """
    import sqlalchemy

    engine = storage.engine
    dialect = engine.dialect.name
    if dialect == "sqlite":
        import filelock

        database = engine.url.database
        if not database or database == ":memory:":
            raise ValueError(
                "an in-memory SQLite store cannot be shared by worker processes; give a file, e.g. sqlite:///lossweep.db"
            )
        with filelock.FileLock(str(Path(database).resolve()) + ".lock", timeout=timeout):
            yield
        return
    if dialect != "postgresql":
        raise ValueError(f"lossweep workers need SQLite or PostgreSQL storage, not {dialect!r}")
    acquire, release = "SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"
    params: dict[str, Any] = {"key": _lock_key(study_name)}
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(acquire), params)
        connection.commit()
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text(release), params)
            connection.commit()
