"""Result types of an analysis: what ``analysis.analyse`` returns and ``reports`` renders.

Plain dataclasses and pandas frames, no torch, so a report can be built on any machine that can
read the store.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a 95 % confidence interval (NaN bounds where none can be computed)."""

    value: float
    low: float = math.nan
    high: float = math.nan

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def excludes(self, x: float) -> bool:
        """Whether the interval lies entirely on one side of ``x`` (e.g. a std ratio excluding 1)."""
        return self.has_ci and (self.low > x or self.high < x)

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass
class StudySummary:
    """Dispersion of validation mAP over the trials of one study."""

    name: str
    loss: str
    space_mode: str
    n_trials: int  # every finished trial (complete + failed + diverged)
    n_complete: int
    n_failed: int  # failed for a reason other than divergence
    n_diverged: int
    enough: bool  # at least MIN_TRIALS complete trials: below that the numbers are shown but flagged
    stats: dict[str, Estimate]  # keys: mean, std, iqr, worst_decile, min, max, best
    failure_rate: Estimate  # Wilson interval; failed + diverged over finished
    divergence_rate: Estimate  # Wilson interval
    tier_std: dict[str, Estimate] = field(default_factory=dict)  # head / medium / tail: std of val mAP_<tier>
    seed_floor_std: float | None = None  # std of the default configuration over seeds, where measured
    hp_to_seed_ratio: Estimate | None = None  # stats["std"] / seed_floor_std
    # Value a diverged trial takes in every failure-aware statistic (e.g. the split's chance-level mAP).
    floor_value: float = math.nan
    # ``stats`` are failure-aware (diverged trials enter at floor_value); these are over survivors only.
    survivor_stats: dict[str, Estimate] = field(default_factory=dict)
    # Variance components of a config x seed design (keys "hp", "seed", "interaction"), where R >= 2.
    variance_components: dict[str, Estimate] = field(default_factory=dict)
    n_replicates: int = 1
    sampler: str = ""
    swept: tuple[str, ...] = ()  # the swept hyperparameters, in declaration order
    floor_source: str = ""  # where floor_value comes from (chance-level mAP, or the lowest complete mAP)


@dataclass
class Difference:
    """One setting on which two compared studies differ."""

    setting: str
    value_a: Any
    value_b: Any


@dataclass
class Measure:
    """One face of robustness on a verdict card: both studies' values and their contrast.

    ``contrast`` is b - a (``kind="difference"``) or b / a (``kind="ratio"``) with its 95 % interval;
    ``better`` names the study ("a" or "b") that is more robust on this measure when the test is
    significant after any adjustment, else None.
    """

    key: str  # "spread", "divergence_rate", "near_best", "tunability", "aubc", "variance_hp", ...
    name: str  # words for the reader, e.g. "near-best fraction (δ = 0.01)"
    value_a: float
    value_b: float
    contrast: Estimate
    kind: str = "difference"  # "difference" | "ratio"
    higher_is_more_robust: bool = True
    p_value: float = math.nan
    better: str | None = None
    primary: bool = False  # the measure the directional verdict rests on
    method: str = ""  # the interval / test method, e.g. "permutation test of log MAD ratio"


@dataclass
class Comparison:
    """Study ``b`` (e.g. RAL) against study ``a`` (e.g. ASL)."""

    a: str
    b: str
    std_ratio: Estimate  # std(b) / std(a), bootstrap CI
    brown_forsythe_stat: float
    brown_forsythe_p: float
    p_b_beats_a: Estimate  # P(random trial of b > random trial of a), ties count half
    mean_diff: Estimate  # mean(b) - mean(a)
    best_diff: Estimate  # best(b) - best(a)
    fair: bool
    differences: list[Difference]
    verdict: str  # the plain-words paragraph the report leads with
    # "less sensitive" | "more sensitive" | "not distinguishable" | "mixed evidence" | "no verdict" (refused)
    direction: str = "not distinguishable"
    mode: str = ""  # the space mode both studies share ("matched", "full", ...) or "mixed"
    swept: tuple[str, ...] = ()  # the hyperparameters both studies sweep, as the card header names them
    primary: bool = False  # the one primary comparison of a report; every other is secondary
    p_value: float = math.nan  # of the primary spread test, Holm-adjusted when the comparison is secondary
    measures: list[Measure] = field(default_factory=list)
    refusal: str = ""  # why no directional verdict was given (TPE sampler, n too small, ...), else ""


@dataclass
class Analysis:
    """Everything a report shows, computed from the store alone."""

    # tidy: one row per trial (see analysis.load); analyse adds "value_failure_aware" (diverged trials at the
    # study's floor_value, NaN for killed / crashed trials, else the value)
    trials: pd.DataFrame
    settings: dict[str, dict[str, Any]]  # study name -> stored study attributes
    summaries: dict[str, StudySummary]
    comparisons: list[Comparison]
    # columns: study, n, mean, low, high, basis ("failure-aware" | "survivors"); failure-aware rows are primary
    expected_best: pd.DataFrame
    # columns: study, param, method ("fanova" | "ped-anova" | "rbd-fast"), mean, low, high, spread (fANOVA's std
    # over forest seeds), n_trials (complete trials used, after any subsampling)
    importances: pd.DataFrame
    marginals: pd.DataFrame  # columns: study, param, bin_center, bin_low, bin_high, mean, low, high, count
    messages: list[str] = field(default_factory=list)  # caveats for the reader (too few trials, unfair, ...)
    storage: str = ""  # the storage URL with any password redacted
    # Binned mean mAP over gamma_neg x clip, for analysis.figures.binned_map(grid2d, "gamma_neg", "clip"):
    # columns study, x_param, y_param, <x name>, <y name> (bin centres), mean, low, high, count.
    grid2d: pd.DataFrame = field(default_factory=pd.DataFrame)
    timings: dict[str, float] = field(default_factory=dict)  # seconds spent per step of analyse()

    def summary_frame(self) -> pd.DataFrame:
        """One row per study and statistic: study, loss, space_mode, stat, value, low, high, and counts.

        ``stat`` names: the failure-aware ``stats`` keys, ``survivors_<key>`` (survivors only),
        ``variance_hp`` / ``variance_seed`` / ``variance_interaction`` (R >= 2), rates, tier spreads, seed floor.
        """
        rows = []
        for s in self.summaries.values():
            base = {
                "study": s.name,
                "loss": s.loss,
                "space_mode": s.space_mode,
                "n_trials": s.n_trials,
                "n_complete": s.n_complete,
                "n_failed": s.n_failed,
                "n_diverged": s.n_diverged,
                "enough": s.enough,
            }
            named = [(k, e) for k, e in s.stats.items()]
            named += [(f"survivors_{k}", e) for k, e in s.survivor_stats.items()]
            named += [(f"variance_{k}", e) for k, e in s.variance_components.items()]
            named += [("failure_rate", s.failure_rate), ("divergence_rate", s.divergence_rate)]
            named += [(f"std_mAP_{tier}", e) for tier, e in s.tier_std.items()]
            if s.seed_floor_std is not None:
                named.append(("seed_floor_std", Estimate(s.seed_floor_std)))
            if s.hp_to_seed_ratio is not None:
                named.append(("hp_to_seed_ratio", s.hp_to_seed_ratio))
            rows += [{**base, "stat": k, **e.to_dict()} for k, e in named]
        return pd.DataFrame(rows)

    def comparison_frame(self) -> pd.DataFrame:
        """One row per comparison: estimates as <name>, <name>_low, <name>_high; fairness; verdict."""
        rows = []
        for c in self.comparisons:
            row: dict[str, Any] = {"a": c.a, "b": c.b}
            for name in ("std_ratio", "p_b_beats_a", "mean_diff", "best_diff"):
                e = getattr(c, name)
                row.update({name: e.value, f"{name}_low": e.low, f"{name}_high": e.high})
            row.update(
                {
                    "brown_forsythe_stat": c.brown_forsythe_stat,
                    "brown_forsythe_p": c.brown_forsythe_p,
                    "primary": c.primary,
                    "mode": c.mode,
                    "direction": c.direction,
                    "p_value": c.p_value,
                    "refusal": c.refusal,
                    "fair": c.fair,
                    "differences": "; ".join(d.setting for d in c.differences),
                    "verdict": c.verdict,
                }
            )
            rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the frames, JSON-ready (NaN as null)."""
        return _jsonable(
            {
                "storage": self.storage,
                "summaries": {k: asdict(v) for k, v in self.summaries.items()},
                "comparisons": [asdict(c) for c in self.comparisons],
                "settings": self.settings,
                "messages": self.messages,
                "timings": self.timings,
            }
        )

    def write(self, directory: str | Path) -> list[Path]:
        """Write every result beside a report: CSV frames and one ``analysis.json``; returns the paths.

        Files: summaries.csv, comparisons.csv, expected_best.csv, importances.csv, marginals.csv,
        grid2d.csv, trials.csv (list columns as JSON text) and analysis.json (summaries, comparisons
        with their differences and verdicts, settings, messages).
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        trials = self.trials.copy()
        for col in trials.columns:
            if trials[col].dtype == object and trials[col].map(lambda v: isinstance(v, (list, dict))).any():
                trials[col] = trials[col].map(lambda v: json.dumps(_jsonable(v)))
        frames = {
            "summaries": self.summary_frame(),
            "comparisons": self.comparison_frame(),
            "expected_best": self.expected_best,
            "importances": self.importances,
            "marginals": self.marginals,
            "grid2d": self.grid2d,
            "trials": trials,
        }
        paths = []
        for name, frame in frames.items():
            path = out / f"{name}.csv"
            frame.to_csv(path, index=False)
            paths.append(path)
        path = out / "analysis.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False))
        paths.append(path)
        return paths


def _jsonable(value: Any) -> Any:
    """Plain JSON values: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)
