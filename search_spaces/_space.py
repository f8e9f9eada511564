"""The search-space types: one swept hyperparameter (:class:`ParamSpec`) and a loss's space (:class:`SearchSpace`).

A space is pure data (JSON round-trip through :meth:`SearchSpace.to_dict`) so that it can be stored in
the study's attributes and read back by ``analysis`` without importing torch or the runners.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

# Training hyperparameters a "nuisance" study sweeps next to the loss's own. They go to the
# optimiser (runners.config.TrainConfig), never to the loss.
NUISANCE_PARAMS = ("lr", "weight_decay")

# Format version of SearchSpace.to_dict(); bump when its keys change meaning.
SPACE_FORMAT = 1


@dataclass(frozen=True)
class ParamSpec:
    """One hyperparameter: its sampling range, scale, the released code's default, and why.

    ``limits`` are the hard bounds a user override may not leave (e.g. exponents must be >= 0, the
    RAL polynomial coefficients stay in [-5, 5] where the losses keep finite gradients); ``low`` and
    ``high`` are the default sampling range inside them.
    """

    name: str
    low: float
    high: float
    log: bool
    default: float
    doc: str
    limits: tuple[float, float] = (-math.inf, math.inf)

    def __post_init__(self) -> None:
        # Normalise TOML/JSON ints to floats so equal specs compare equal.
        for attr in ("low", "high", "default"):
            object.__setattr__(self, attr, float(getattr(self, attr)))
        object.__setattr__(self, "limits", (float(self.limits[0]), float(self.limits[1])))
        problem = self.problem()
        if problem:
            raise ValueError(f"parameter {self.name!r}: {problem}")

    def problem(self) -> str | None:
        """What is wrong with this spec, in words a user can act on, or None."""
        if not all(math.isfinite(v) for v in (self.low, self.high, self.default)):
            return "low, high and default must be finite numbers"
        if self.low >= self.high:
            return (
                f"low ({self.low:g}) must be smaller than high ({self.high:g}); to hold it at one value use 'fixed "
                "= ...'"
            )
        if self.log and self.low <= 0:
            return f"a log-scale range needs low > 0 (got low = {self.low:g}); use 'log = false' or a positive low"
        lo, hi = self.limits
        if self.low < lo or self.high > hi:
            return f"range [{self.low:g}, {self.high:g}] leaves the allowed [{lo:g}, {hi:g}]"
        if not self.low <= self.default <= self.high:
            return f"default {self.default:g} lies outside the range [{self.low:g}, {self.high:g}]"
        return None

    def from_unit(self, u: float) -> float:
        """Map u in [0, 1] to the range: linearly, or geometrically when ``log``."""
        if u <= 0.0:  # exact ends: exp(log(low)) is not always low
            return self.low
        if u >= 1.0:
            return self.high
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            value = math.exp(lo + u * (hi - lo))
        else:
            value = self.low + u * (self.high - self.low)
        return min(max(value, self.low), self.high)  # guard float round-off at the ends

    def distribution(self) -> optuna.distributions.FloatDistribution:
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "default": self.default,
            "doc": self.doc,
            # JSON has no infinity: an unbounded side is written as null.
            "limits": [v if math.isfinite(v) else None for v in self.limits],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParamSpec:
        d = dict(d)
        limits = d.pop("limits", None)
        lo, hi = limits if limits is not None else (None, None)  # null: unbounded on that side
        return cls(limits=(-math.inf if lo is None else float(lo), math.inf if hi is None else float(hi)), **d)


@dataclass(frozen=True)
class SearchSpace:
    """The hyperparameters a study sweeps for one loss, and the values it holds fixed.

    ``params`` are swept, in declaration order (the loss's own parameters in the order of its
    declaration, then ``lr`` and ``weight_decay`` when ``nuisance``); that order is the column order of
    :meth:`from_unit` designs and :meth:`grid`. ``fixed`` maps every held parameter to its value;
    ``params`` and ``fixed`` are disjoint and together cover every parameter of the loss.
    """

    loss: str
    mode: str
    nuisance: bool
    params: tuple[ParamSpec, ...]
    fixed: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "fixed", {k: float(v) for k, v in self.fixed.items()})
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"search space for {self.loss!r} names a parameter twice: {names}")
        both = set(names) & set(self.fixed)
        if both:
            raise ValueError(f"search space for {self.loss!r}: {sorted(both)} both swept and fixed")

    # -- views -------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Names of the swept parameters, in order."""
        return tuple(p.name for p in self.params)

    @property
    def dim(self) -> int:
        return len(self.params)

    def __getitem__(self, name: str) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """Optuna distributions of the swept parameters (for ``trial.suggest_float`` / ``study.ask``)."""
        return {p.name: p.distribution() for p in self.params}

    def defaults(self) -> dict[str, float]:
        """The released code's default of every swept parameter (the study's reference point)."""
        return {p.name: p.default for p in self.params}

    # -- designs -----------------------------------------------------------------------------
    def from_unit(self, u: Sequence[float] | np.ndarray) -> dict[str, float]:
        """Map a point of the unit cube [0, 1]^d (e.g. a scrambled Sobol point) to parameter values.

        Coordinate i goes to ``params[i]``: linearly, or geometrically on log-scale parameters, so a
        uniform design on the cube is uniform in the parameter's sampling scale.
        """
        point = np.asarray(u, dtype=float).reshape(-1)
        if point.shape[0] != self.dim:
            raise ValueError(
                f"a point of the {self.loss!r} space needs {self.dim} coordinates {self.names}, got {point.shape[0]}"
            )
        if not np.all((point >= 0.0) & (point <= 1.0)):
            raise ValueError(f"unit-cube coordinates must lie in [0, 1], got {point.tolist()}")
        return {p.name: p.from_unit(float(x)) for p, x in zip(self.params, point, strict=True)}

    def grid_axes(self, n_points: int) -> dict[str, list[float]]:
        """Per-parameter grid values, the form ``optuna.samplers.GridSampler`` takes.

        Every axis gets the same number of levels k = max(2, round(n_points ** (1/d))), so the full
        grid has k**d points (the closest equal-levels grid to ``n_points``; at least 2 levels so each
        axis reaches both ends of its range). Levels are evenly spaced on the parameter's scale
        (geometric on log axes) and include ``low`` and ``high``.
        """
        if int(n_points) < 1:
            raise ValueError(f"a grid needs at least 1 point, got {n_points}")
        if self.dim == 0:
            return {}
        k = max(2, int(round(int(n_points) ** (1.0 / self.dim))))
        levels = np.linspace(0.0, 1.0, k)
        return {p.name: [p.from_unit(float(t)) for t in levels] for p in self.params}

    def grid(self, n_points: int) -> list[dict[str, float]]:
        """The full-factorial grid of :meth:`grid_axes` (k**d points, ~``n_points``), last axis fastest.

        A space that sweeps nothing has a one-point grid (``[{}]``).
        """
        axes = self.grid_axes(n_points)
        if not axes:
            return [{}]
        names = list(axes)
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(axes[n] for n in names))]

    # -- handing values to the runners -------------------------------------------------------
    def _all_values(self, values: dict[str, float]) -> dict[str, float]:
        unknown = set(values) - set(self.names) - set(self.fixed)
        if unknown:
            raise ValueError(
                f"unknown hyperparameters {sorted(unknown)} for the {self.loss!r} space; it has "
                f"{list(self.names) + list(self.fixed)}"
            )
        missing = [n for n in self.names if n not in values]
        if missing:
            raise ValueError(f"missing values for swept hyperparameters {missing} of the {self.loss!r} space")
        merged = dict(self.fixed)
        merged.update({k: float(v) for k, v in values.items()})
        return merged

    def loss_params(self, values: dict[str, float]) -> dict[str, Any]:
        """Keyword arguments for ``runners.losses.create_loss(loss, **kwargs)``.

        Merges ``fixed`` with ``values`` (values win), folds ``alpha_1..alpha_M`` and
        ``beta_1..beta_N`` into ``alpha=(...)`` and ``beta=(...)`` tuples (in index order), and drops
        the training hyperparameters ``lr`` and ``weight_decay``.
        """
        merged = self._all_values(values)
        kwargs: dict[str, Any] = {}
        series: dict[str, dict[int, float]] = {}
        for name, value in merged.items():
            if name in NUISANCE_PARAMS:
                continue
            stem, _, index = name.rpartition("_")
            if stem in ("alpha", "beta") and index.isdigit():
                series.setdefault(stem, {})[int(index)] = value
            else:
                kwargs[name] = value
        for stem in ("alpha", "beta"):
            if stem in series:
                kwargs[stem] = tuple(series[stem][i] for i in sorted(series[stem]))
        return kwargs

    def train_overrides(self, values: dict[str, float]) -> dict[str, float]:
        """``{"lr": ..., "weight_decay": ...}`` for whichever of them the space sweeps or fixes, else ``{}``."""
        merged = self._all_values(values)
        return {name: merged[name] for name in NUISANCE_PARAMS if name in merged}

    # -- storage -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (stored as the study's ``search_space`` attribute)."""
        return {
            "format": SPACE_FORMAT,
            "loss": self.loss,
            "mode": self.mode,
            "nuisance": self.nuisance,
            "params": [p.to_dict() for p in self.params],
            "fixed": dict(self.fixed),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchSpace:
        fmt = d.get("format", SPACE_FORMAT)
        if fmt != SPACE_FORMAT:
            raise ValueError(
                f"search space format {fmt} is not supported by this lossweep (expects {SPACE_FORMAT}); "
                "upgrade lossweep"
            )
        return cls(
            loss=str(d["loss"]),
            mode=str(d["mode"]),
            nuisance=bool(d["nuisance"]),
            params=tuple(ParamSpec.from_dict(p) for p in d["params"]),
            fixed={str(k): float(v) for k, v in d.get("fixed", {}).items()},
        )
