"""Which hyperparameters move validation mAP: fANOVA and PED-ANOVA (optuna.importance), with intervals.

Neither evaluator gives an interval, and fANOVA's random forest changes from call to call (optuna
#1199, #2757), so both are re-evaluated on subsamples of the trials: the interval covers which
trials happened to be run and, for fANOVA, the forest's seed (each subsample has its own). The
subsamples are random subsets of a share f = 0.632 of the trials drawn without replacement
(duplicated trials, as in a bootstrap resample, bias both methods: spiky Parzen estimates in
PED-ANOVA, pure leaves in the forest). A subsample of m = f n trials varies more than the full
sample does: for a smooth statistic Var(θ_m) ≈ σ² (1/m − 1/n), so the subsample deviations are
rescaled by √(f / (1 − f)) to the full-sample scale (Politis, Romano & Wolf 1999, ch. 2). With the
few subsamples fANOVA's cost allows (12 by default), empirical 2.5 / 97.5 % quantiles would be
unstable, so the interval is θ̂ ± t(0.975, B − 1) · sd(θ*) · √(f / (1 − f)) — the t quantile
accounts for estimating the sd from B subsamples — clipped to [0, 1] (importances are shares).
The point estimate is fANOVA's mean over several forest seeds on all trials (``spread`` is their
std) and PED-ANOVA's value on all trials (it is deterministic).

PED-ANOVA measures how much each parameter's distribution among the top ``target_quantile`` trials
differs from its distribution over all of them. Its direction comes from the study: the trials
here go into a ``direction="maximize"`` study, so the top trials are those with the *highest* mAP
(passing a ``target`` would make it assume lower-is-better, see its docstring).

Where the sampler was random or QMC the trials are a space-filling design, and SALib's given-data
RBD-FAST first-order index is added as a cross-check with its own bootstrap interval.

Cost is bounded: beyond ``max_trials`` complete trials a fixed-seed random subsample is used (and
a message says so), and the forests are shallow (``FANOVA_TREES`` trees of depth ``FANOVA_DEPTH``):
full-depth forests cost minutes at a few thousand trials and fANOVA's decomposition of a deep tree
grows with its number of leaves.
"""

from __future__ import annotations

import datetime
import warnings

import numpy as np
import optuna
import pandas as pd
import scipy.stats
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from study.optuna_internals import FixedTrialsStudy

FANOVA_TREES = 16
FANOVA_DEPTH = 6
FANOVA_SEEDS = 3  # forests averaged for the point estimate
MAX_TRIALS = 1000  # complete trials used per study (fixed-seed subsample beyond)
MIN_TRIALS = 5
COLUMNS = ["study", "param", "method", "mean", "low", "high", "spread", "n_trials"]


SUBSAMPLE_SHARE = 0.632  # share of the trials in each subsample (as many distinct trials as a bootstrap resample)


# A maximised study reading a fixed list of trials: what ``optuna.importance`` evaluates (a resample
# is a list slice, not a deep copy of every trial). tests/analysis/test_importance.py checks that the
# importances equal those of a real study.
_GivenTrials = FixedTrialsStudy


_EPOCH = datetime.datetime(2000, 1, 1)  # finished trials need timestamps; the evaluators ignore them


def _trials(params: pd.DataFrame, values: np.ndarray, distributions: dict[str, BaseDistribution]) -> list[FrozenTrial]:
    """Complete trials with distinct ids (PED-ANOVA tells its top trials apart by ``_trial_id``)."""
    names = list(params.columns)
    dists = {n: distributions[n] for n in names}
    out = []
    for i, (row, value) in enumerate(zip(params.to_numpy(object), values, strict=True)):
        p = {
            n: (v if isinstance(dists[n], CategoricalDistribution) else float(v))
            for n, v in zip(names, row, strict=True)
        }
        out.append(
            FrozenTrial(
                number=i,
                trial_id=i,
                state=TrialState.COMPLETE,
                value=float(value),
                values=None,
                datetime_start=_EPOCH,
                datetime_complete=_EPOCH,
                params=p,
                distributions=dists,
                user_attrs={},
                system_attrs={},
                intermediate_values={},
            )
        )
    return out


def _evaluate(study: optuna.Study, evaluator, names: list[str]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PED-ANOVA's "importances will be equal" etc.: visible as zeros
        result = optuna.importance.get_param_importances(study, evaluator=evaluator, params=names, normalize=True)
    return np.array([float(result.get(n, 0.0)) for n in names])


def _swept(params: pd.DataFrame, distributions: dict[str, BaseDistribution]) -> list[str]:
    return [
        c
        for c in params.columns
        if c in distributions and not distributions[c].single() and params[c].nunique(dropna=True) > 1
    ]


def param_importances(
    study_name: str,
    params: pd.DataFrame,
    values: np.ndarray,
    distributions: dict[str, BaseDistribution],
    *,
    sampler: str | None = None,
    n_resamples: int = 12,
    max_trials: int = MAX_TRIALS,
    seed: int = 0,
    messages: list[str] | None = None,
) -> pd.DataFrame:
    """Importance rows (``COLUMNS``) of one study's complete trials.

    Args:
        params: one column per hyperparameter (plain names), one row per complete trial.
        values: the trials' validation mAP.
        distributions: the Optuna distribution of each parameter.
        sampler: the study's sampler; "random" or "qmc" adds the SALib RBD-FAST cross-check.
        n_resamples: subsamples for the intervals (each re-fits every evaluator).
    """
    messages = messages if messages is not None else []
    values = np.asarray(values, dtype=float)
    keep = np.isfinite(values) & params.notna().all(axis=1).to_numpy()
    params, values = params.loc[keep].reset_index(drop=True), values[keep]
    names = _swept(params, distributions)
    if not names or len(values) < MIN_TRIALS:
        if names:
            messages.append(f"{study_name}: importances need at least {MIN_TRIALS} complete trials; skipped")
        return pd.DataFrame(columns=COLUMNS)
    if np.ptp(values) == 0:
        messages.append(f"{study_name}: every complete trial has the same mAP; importances are not defined")
        return pd.DataFrame(columns=COLUMNS)
    rng = np.random.default_rng(seed)
    if len(values) > max_trials:
        pick = np.sort(rng.choice(len(values), size=max_trials, replace=False))
        messages.append(
            f"{study_name}: importances use a random subsample of {max_trials} of {len(values)} complete trials "
            f"(seed {seed}) to bound their cost"
        )
        params, values = params.iloc[pick].reset_index(drop=True), values[pick]
    params = params[names]
    n = len(values)
    rows = []

    trials = _trials(params, values, distributions)
    base = _GivenTrials(trials)
    fanova_points = np.array(
        [
            _evaluate(
                base,
                optuna.importance.FanovaImportanceEvaluator(n_trees=FANOVA_TREES, max_depth=FANOVA_DEPTH, seed=s),
                names,
            )
            for s in range(seed, seed + FANOVA_SEEDS)
        ]
    )
    ped_point = _evaluate(base, optuna.importance.PedAnovaImportanceEvaluator(), names)

    fanova_boot, ped_boot = [], []
    size = max(MIN_TRIALS, int(round(SUBSAMPLE_SHARE * n)))
    for r in range(n_resamples if size < n else 0):
        idx = np.sort(rng.choice(n, size=size, replace=False))
        if np.ptp(values[idx]) == 0:
            continue
        resampled = _GivenTrials([trials[i] for i in idx])
        fanova_boot.append(
            _evaluate(
                resampled,
                optuna.importance.FanovaImportanceEvaluator(
                    n_trees=FANOVA_TREES, max_depth=FANOVA_DEPTH, seed=seed + 1000 + r
                ),
                names,
            )
        )
        ped_boot.append(_evaluate(resampled, optuna.importance.PedAnovaImportanceEvaluator(), names))

    share = size / n

    def interval(point: np.ndarray, boot: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if len(boot) < 2:
            nan = np.full(len(names), np.nan)
            return nan, nan
        sd = np.std(np.array(boot), axis=0, ddof=1) * np.sqrt(share / (1 - share))
        half = scipy.stats.t.ppf(0.975, len(boot) - 1) * sd
        return np.clip(point - half, 0.0, 1.0), np.clip(point + half, 0.0, 1.0)

    f_mean, f_spread = fanova_points.mean(axis=0), fanova_points.std(axis=0, ddof=1)
    f_low, f_high = interval(f_mean, fanova_boot)
    p_low, p_high = interval(ped_point, ped_boot)
    for i, name in enumerate(names):
        rows.append([study_name, name, "fanova", f_mean[i], f_low[i], f_high[i], f_spread[i], n])
        rows.append([study_name, name, "ped-anova", ped_point[i], p_low[i], p_high[i], np.nan, n])

    if sampler in ("random", "qmc"):
        rows.extend(_rbd_fast(study_name, params, values, distributions, seed, messages))
    return pd.DataFrame(rows, columns=COLUMNS)


def _rbd_fast(study_name, params, values, distributions, seed, messages) -> list[list]:
    """SALib's given-data RBD-FAST first-order indices (numeric parameters only), a sampler-free check."""
    from SALib.analyze import rbd_fast

    numeric = [c for c in params.columns if not isinstance(distributions[c], CategoricalDistribution)]
    if not numeric:
        return []
    X = params[numeric].to_numpy(float)
    log = [bool(getattr(distributions[c], "log", False)) for c in numeric]
    X = np.where(log, np.log(np.where(X > 0, X, np.nan)), X)
    problem = {
        "num_vars": len(numeric),
        "names": numeric,
        "bounds": [[float(np.nanmin(X[:, j])), float(np.nanmax(X[:, j]))] for j in range(len(numeric))],
    }
    M = min(10, max(1, len(values) // 20))  # harmonics: fewer when trials are few (SALib needs N > 2M)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            res = rbd_fast.analyze(problem, X, values, M=M, num_resamples=100, seed=seed)
    except Exception as exc:  # SALib raises bare ValueErrors on too few points
        messages.append(f"{study_name}: RBD-FAST cross-check skipped ({exc})")
        return []
    out = []
    for j, name in enumerate(numeric):
        s1, conf = float(res["S1"][j]), float(res["S1_conf"][j])
        out.append([study_name, name, "rbd-fast", s1, s1 - conf, s1 + conf, np.nan, len(values)])
    return out
