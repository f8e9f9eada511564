"""Robustness statistics on plain numpy arrays: dispersion, rates, two-study comparisons, seed noise.

Every function here is pure (arrays in, numbers out) so that it can be checked against hand-computed
values. Confidence intervals are 95 %; bootstrap intervals come from :func:`scipy.stats.bootstrap`
(BCa where it is defined, the percentile interval where BCa degenerates, e.g. for the maximum or for
constant data) with a fixed seed, so the same store always gives the same report.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import scipy.stats

from analysis.results import Estimate

# What the statistics accept: a list of floats or a 1-D array.
Values = Sequence[float] | np.ndarray

CONFIDENCE = 0.95
MIN_TRIALS = 5  # below this many complete trials the numbers are shown but flagged as too few
# Beyond this many values in a sample, bootstrap intervals are percentile intervals: BCa's jackknife
# evaluates the statistic on every leave-one-out sample, O(n^2) (seconds per study at 5,000 trials),
# while its bias and skew corrections shrink as 1/sqrt(n) and no longer move the interval visibly.
BCA_MAX_N = 1000

# Order of the one-sample dispersion statistics (StudySummary.stats keys).
DISPERSION_STATS = ("mean", "std", "iqr", "worst_decile", "min", "max", "best")
NO_INTERVAL = ("min", "max", "best")


def _dispersion_vector(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """All dispersion statistics of ``x`` along ``axis`` at once (vectorised for the bootstrap)."""
    q10, q25, q75 = np.percentile(x, [10, 25, 75], axis=axis)
    mx = np.max(x, axis=axis)
    return np.stack([np.mean(x, axis=axis), np.std(x, axis=axis, ddof=1), q75 - q25, q10, np.min(x, axis=axis), mx, mx])


def _clean(x: Values) -> np.ndarray:
    arr = np.asarray(x, dtype=float).ravel()
    return arr[np.isfinite(arr)]


def bootstrap_ci(
    samples: tuple[np.ndarray, ...],
    statistic: Callable[..., np.ndarray | np.floating],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    method: str = "BCa",
) -> tuple[np.ndarray, np.ndarray]:
    """95 % bootstrap interval(s) of ``statistic`` (vectorised, ``axis`` keyword) on independent samples.

    BCa corrects the percentile interval for bias and skew; it is undefined when every resample
    gives the same value on one side of the estimate (the maximum, constant data), where scipy
    returns NaN: those components fall back to the percentile interval of the same resamples. A
    sample larger than ``BCA_MAX_N`` gets the percentile interval directly.
    Returns (low, high) arrays shaped like the statistic; NaN where a sample has fewer than 2 values.
    """
    point = np.asarray(statistic(*samples, axis=-1), dtype=float)
    nan = np.full(point.shape, np.nan)
    if any(len(s) < 2 for s in samples) or n_boot < 2:
        return nan, nan.copy()
    if method == "BCa" and max(len(s) for s in samples) > BCA_MAX_N:
        method = "percentile"
    rng = np.random.default_rng(seed)
    batch = max(1, min(n_boot, 4_000_000 // max(1, sum(len(s) for s in samples))))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # DegenerateDataWarning / RuntimeWarning: handled below
        try:
            res = scipy.stats.bootstrap(
                samples,
                statistic,
                n_resamples=n_boot,
                batch=batch,
                vectorized=True,
                paired=False,
                axis=-1,
                confidence_level=CONFIDENCE,
                method=method,
                rng=rng,
            )
        except ValueError:  # e.g. BCa on a sample scipy cannot jackknife
            if method == "percentile":
                return nan, nan.copy()
            return bootstrap_ci(samples, statistic, n_boot=n_boot, seed=seed, method="percentile")
        low = np.array(res.confidence_interval.low, dtype=float, ndmin=1).reshape(point.shape)
        high = np.array(res.confidence_interval.high, dtype=float, ndmin=1).reshape(point.shape)
        dist = np.asarray(res.bootstrap_distribution, dtype=float).reshape(point.shape + (-1,))
        alpha = (1 - CONFIDENCE) / 2
        p_low = np.nanquantile(dist, alpha, axis=-1)
        p_high = np.nanquantile(dist, 1 - alpha, axis=-1)
    bad = ~(np.isfinite(low) & np.isfinite(high))
    low = np.where(bad, p_low, low)
    high = np.where(bad, p_high, high)
    return low.reshape(point.shape), high.reshape(point.shape)


def dispersion(values: Values, *, n_boot: int = 2000, seed: int = 0) -> dict[str, Estimate]:
    """Mean, std (ddof=1), IQR, worst decile (10th percentile) with bootstrap CIs; min, max and best (= max)
    without one (the bootstrap of an extreme is inconsistent: see analysis.expected_best for a valid
    "best" quantity).

    Non-finite values are dropped. With fewer than 2 values the statistics that exist are returned
    without interval (and std is NaN).
    """
    x = _clean(values)
    if x.size == 0:
        return {k: Estimate(math.nan) for k in DISPERSION_STATS}
    if x.size == 1:
        v = float(x[0])
        return {k: Estimate(math.nan if k in ("std", "iqr") else v) for k in DISPERSION_STATS}
    if np.ptp(x) == 0:  # constant: every statistic is exact (and std exactly 0, not rounding noise)
        v = float(x[0])
        return {k: Estimate(0.0, 0.0, 0.0) if k in ("std", "iqr") else Estimate(v, v, v) for k in DISPERSION_STATS}
    point = _dispersion_vector(x)
    low, high = bootstrap_ci((x,), _dispersion_vector, n_boot=n_boot, seed=seed)
    out = {k: Estimate(float(point[i]), float(low[i]), float(high[i])) for i, k in enumerate(DISPERSION_STATS)}
    for k in NO_INTERVAL:  # a bootstrap interval of an extreme is invalid (its upper bound is the sample max)
        out[k] = Estimate(out[k].value)
    return out


def std_estimate(values: Values, *, n_boot: int = 2000, seed: int = 0) -> Estimate:
    """Standard deviation (ddof=1) with a bootstrap CI."""
    x = _clean(values)
    if x.size < 2:
        return Estimate(math.nan)
    if np.ptp(x) == 0:
        return Estimate(0.0, 0.0, 0.0)
    stat = lambda s, axis=-1: np.std(s, axis=axis, ddof=1)  # noqa: E731
    low, high = bootstrap_ci((x,), stat, n_boot=n_boot, seed=seed)
    return Estimate(float(np.std(x, ddof=1)), float(low), float(high))


def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> Estimate:
    """Proportion k/n with the Wilson score interval.

    Hand-written because it is five lines and statsmodels (``proportion_confint``) is not a
    dependency; Wilson stays inside [0, 1] and is sensible at k = 0 or k = n, unlike the Wald interval.
    """
    if n <= 0:
        return Estimate(math.nan)
    z = float(scipy.stats.norm.ppf(0.5 + confidence / 2))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if k == 0 else max(0.0, centre - half)  # exact bounds at the edges, not rounding noise
    high = 1.0 if k == n else min(1.0, centre + half)
    return Estimate(p, low, high)


# --- two studies ---------------------------------------------------------------------------------


def _std_ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.std(b, axis=axis, ddof=1) / np.std(a, axis=axis, ddof=1)


def std_ratio(a: Values, b: Values, *, n_boot: int = 2000, seed: int = 0) -> Estimate:
    """std(b) / std(a) with a two-sample bootstrap CI (each study resampled on its own).

    A ratio above 1 says ``b`` is the more sensitive to its hyperparameters; ``n_boot=0`` skips the interval:

    >>> std_ratio([0.1, 0.2, 0.3], [0.2, 0.4, 0.6], n_boot=0)
    Estimate(value=2.0, low=nan, high=nan)
    """
    x, y = _clean(a), _clean(b)
    if x.size < 2 or y.size < 2:
        return Estimate(math.nan)
    if np.ptp(x) == 0:  # a has zero spread: the ratio is undefined (inf, or NaN if b is constant too)
        return Estimate(math.nan if np.ptp(y) == 0 else math.inf)
    if np.ptp(y) == 0:
        return Estimate(0.0, 0.0, 0.0)
    value = float(_std_ratio(x, y))
    low, high = bootstrap_ci((x, y), _std_ratio, n_boot=n_boot, seed=seed)
    return Estimate(value, float(low), float(high))


def _mean_diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(b, axis=axis) - np.mean(a, axis=axis)


def _best_diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.max(b, axis=axis) - np.max(a, axis=axis)


def mean_difference(a: Values, b: Values, *, n_boot: int = 2000, seed: int = 0) -> Estimate:
    """mean(b) - mean(a) with a two-sample bootstrap CI."""
    return _two_sample(a, b, _mean_diff, n_boot=n_boot, seed=seed)


def best_difference(a: Values, b: Values) -> Estimate:
    """max(b) - max(a), without interval: a bootstrap CI of a maximum is invalid (its upper bound is the
    sample max); the expected best at N/2 (analysis.expected_best) is the quantity with an interval."""
    x, y = _clean(a), _clean(b)
    if x.size == 0 or y.size == 0:
        return Estimate(math.nan)
    return Estimate(float(_best_diff(x, y)))


def _two_sample(a, b, statistic, *, n_boot: int, seed: int) -> Estimate:
    x, y = _clean(a), _clean(b)
    if x.size == 0 or y.size == 0:
        return Estimate(math.nan)
    value = float(statistic(x, y))
    low, high = bootstrap_ci((x, y), statistic, n_boot=n_boot, seed=seed)
    return Estimate(value, float(low), float(high))


def brown_forsythe(a: Values, b: Values) -> tuple[float, float]:
    """Brown–Forsythe test of equal spread (Levene's test centred on the median): (statistic, p).

    Median centring keeps the test honest for the skewed, heavy-tailed mAP distributions of a sweep
    (a few bad corners of the space), where the F test of variances and mean-centred Levene are not.
    NaN when a study has fewer than 2 values or both have zero spread.
    """
    x, y = _clean(a), _clean(b)
    if x.size < 2 or y.size < 2:
        return math.nan, math.nan
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        stat, p = scipy.stats.levene(x, y, center="median")
    return float(stat), float(p)


def prob_superiority(a: Values, b: Values) -> Estimate:
    """P(random trial of b > random trial of a), ties counted half (= U_b / (n_a n_b), the AUC).

    The interval is DeLong's (normal approximation on the structural components, computed from
    ranks in O(n log n)); hand-written because no installed library exposes it, and a bootstrap of a
    rank statistic at 5,000 x 5,000 trials would cost seconds per comparison.

    Eight of the nine (a, b) pairs below have b ahead:

    >>> est = prob_superiority([0.1, 0.2, 0.3], [0.25, 0.35, 0.45])
    >>> round(est.value, 3), est.has_ci
    (0.889, True)
    """
    x, y = _clean(a), _clean(b)
    m, n = x.size, y.size
    if m == 0 or n == 0:
        return Estimate(math.nan)
    ranks_all = scipy.stats.rankdata(np.concatenate([x, y]))  # average ranks: ties count half
    ranks_x, ranks_y = scipy.stats.rankdata(x), scipy.stats.rankdata(y)
    u_b = ranks_all[m:].sum() - n * (n + 1) / 2
    theta = float(u_b / (m * n))
    if m < 2 or n < 2:
        return Estimate(theta)
    # Structural components: for each b, the share of a it beats; for each a, the share of b beating it.
    v_b = (ranks_all[m:] - ranks_y) / m
    v_a = 1.0 - (ranks_all[:m] - ranks_x) / n
    se = math.sqrt(np.var(v_b, ddof=1) / n + np.var(v_a, ddof=1) / m)
    z = float(scipy.stats.norm.ppf(0.5 + CONFIDENCE / 2))
    return Estimate(theta, max(0.0, theta - z * se), min(1.0, theta + z * se))


# --- seed noise ----------------------------------------------------------------------------------


def replicate_residuals(replicates: Sequence[Values]) -> np.ndarray:
    """Within-configuration deviations of replicated trials, scaled so that their std is seed noise of one run.

    A trial's value is the mean of its R runs, so the seed noise of a *trial value* is this std / sqrt(R)
    (analysis.analyse applies it).

    Each trial's replicate values minus their mean, pooled over trials and scaled by
    sqrt((M - 1) / (M - G)) for M values in G trials: their std (ddof=1) then equals the pooled
    within-configuration std of a one-way ANOVA, sqrt(sum of squared deviations / (M - G)),
    whatever the configurations' own means are. Trials with fewer than 2 finite replicates are skipped.
    """
    parts = []
    for reps in replicates:
        r = _clean(reps if reps is not None else [])
        if r.size >= 2:
            parts.append(r - r.mean())
    if not parts:
        return np.empty(0)
    residuals = np.concatenate(parts)
    m, g = residuals.size, len(parts)
    return residuals * math.sqrt((m - 1) / (m - g))


def hp_to_seed_ratio(hp_values: Values, seed_values: Values, *, n_boot: int = 2000, seed: int = 0) -> Estimate:
    """std(hyperparameter trials) / std(seed noise) with a two-sample bootstrap CI.

    Near 1: the hyperparameters move mAP no more than re-running the same configuration does.
    """
    return std_ratio(seed_values, hp_values, n_boot=n_boot, seed=seed)
