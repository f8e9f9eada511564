"""The secondary faces of robustness on a verdict card, each per study and as a contrast b − a.

All take *failure-aware* values (a diverged trial at the floor value, analysis.failure):

- divergence rate: k / n with Wilson intervals; the contrast is Newcombe's hybrid score interval
  of the difference (method 10 of Newcombe 1998, built from the two Wilson intervals), the test
  Boschloo's exact test (more powerful than Fisher's at no cost in size) up to ``BOSCHLOO_MAX_N``
  trials per study, Fisher's exact test beyond (Boschloo's cost grows as n^2: 6 s at 500 a side).
- near-best fraction: P(mAP ≥ best − δ), the share of the space within δ of the study's own best;
  Wilson / Newcombe intervals and the same exact test, conditional on the observed best (the
  threshold is treated as fixed: a bootstrap would recompute the maximum, whose bootstrap is invalid).
- tunability (Probst et al. 2019): best reachable minus the default configuration's mean (the
  matched seeds-mode study). "Best reachable" is the 95th percentile of the sweep's values, not the
  sample maximum: a quantile has a valid bootstrap (the maximum's upper bound is the sample max
  itself) and its meaning does not drift with the budget N. Percentile bootstrap over both samples.
- area under the expected-best curve (Sivaprasad et al. 2020): the mean of the without-replacement
  expected best E[max_n] over budgets n = 1..M, M = ⌊min(N_a, N_b) / 2⌋ (a common range, so the
  areas compare; capped at N/2 where the estimator still averages many order statistics). Percentile
  bootstrap, approximate: the area weights the top trials most.

:func:`holm` is Holm's step-down adjustment (hand-written: five lines, and statsmodels is not a
dependency).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import scipy.stats

from analysis.results import Estimate
from analysis.stats import bootstrap_ci, wilson

DELTA = 0.01  # default near-best margin (mAP points)
BEST_QUANTILE = 0.95  # "best reachable" of tunability
BOSCHLOO_MAX_N = 150
AUBC_MAX_RESAMPLES = 500


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (NaN stays NaN and is not counted in the family)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return [float(v) for v in out]


def exact_test(k_a: int, n_a: int, k_b: int, n_b: int) -> tuple[float, str]:
    """Two-sided exact test of equal proportions: (p, method name); NaN when a study has no trials."""
    if n_a <= 0 or n_b <= 0:
        return math.nan, ""
    table = [[k_a, k_b], [n_a - k_a, n_b - k_b]]
    if (k_a == 0 and k_b == 0) or (k_a == n_a and k_b == n_b):
        return 1.0, "no events to compare"
    if max(n_a, n_b) <= BOSCHLOO_MAX_N:
        return float(scipy.stats.boschloo_exact(table, alternative="two-sided").pvalue), "Boschloo exact test"
    return float(scipy.stats.fisher_exact(table, alternative="two-sided").pvalue), "Fisher exact test"


def newcombe(k_a: int, n_a: int, k_b: int, n_b: int) -> Estimate:
    """p_b − p_a with Newcombe's hybrid score (Wilson) interval."""
    if n_a <= 0 or n_b <= 0:
        return Estimate(math.nan)
    a, b = wilson(k_a, n_a), wilson(k_b, n_b)
    d = b.value - a.value
    low = d - math.sqrt((b.value - b.low) ** 2 + (a.high - a.value) ** 2)
    high = d + math.sqrt((b.high - b.value) ** 2 + (a.value - a.low) ** 2)
    return Estimate(d, max(-1.0, low), min(1.0, high))


def near_best_count(values: np.ndarray, delta: float = DELTA) -> tuple[int, int]:
    """(trials within ``delta`` of the best, trials): the near-best fraction's numerator and denominator."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0, 0
    # A tiny tolerance so that "best − δ" on a grid of values is not lost to floating-point rounding.
    return int(np.sum(v >= v.max() - delta - 1e-12)), int(v.size)


def _quantile(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.quantile(x, BEST_QUANTILE, axis=axis)


def tunability(sweep: np.ndarray, default: np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> Estimate:
    """95th percentile of ``sweep`` minus the mean of ``default`` (the default configuration over seeds)."""
    x, d = _finite(sweep), _finite(default)
    if x.size < 2 or d.size < 2:
        return Estimate(math.nan)

    def stat(s, dd, axis=-1):
        return _quantile(s, axis) - np.mean(dd, axis=axis)

    value = float(stat(x, d))
    low, high = bootstrap_ci((x, d), stat, n_boot=n_boot, seed=seed, method="percentile")
    return Estimate(value, float(low), float(high))


def tunability_difference(
    sweep_a: np.ndarray, default_a: np.ndarray, sweep_b: np.ndarray, default_b: np.ndarray, *, n_boot: int, seed: int
) -> tuple[Estimate, float]:
    """tunability(b) − tunability(a) with a percentile bootstrap interval and two-sided bootstrap p."""
    samples = tuple(_finite(s) for s in (sweep_a, default_a, sweep_b, default_b))
    if any(s.size < 2 for s in samples):
        return Estimate(math.nan), math.nan

    def stat(xa, da, xb, db, axis=-1):
        return (_quantile(xb, axis) - np.mean(db, axis=axis)) - (_quantile(xa, axis) - np.mean(da, axis=axis))

    value = float(stat(*samples))
    dist = _resample(samples, stat, n_boot, seed)
    return _percentile(value, dist)


@functools.lru_cache(maxsize=16)
def aubc_weights(n_total: int, m: int) -> np.ndarray:
    """w (N,): the area (1/m) Σ_{n=1}^{m} E[max_n] is w @ sorted(values).

    The without-replacement weight of the i-th smallest value at budget n is C(i−1, n−1) / C(N, n);
    from n to n + 1 it is multiplied by (i − n) / n · (n + 1) / (N − n), so the m rows cost m vector
    products instead of m × N log-gamma evaluations (tests check it against expected_best.dodge_weights).
    """
    i = np.arange(1, n_total + 1, dtype=float)
    row = np.full(n_total, 1.0 / n_total)  # n = 1: every value is the maximum of one draw with probability 1/N
    total = row.copy()
    for n in range(1, m):
        row = row * np.maximum(i - n, 0.0) / n * (n + 1) / (n_total - n)
        total += row
    out = total / m
    out.flags.writeable = False  # cached: shared between callers
    return out


def aubc(values: np.ndarray, m: int) -> float:
    """Mean expected best over budgets 1..m (without replacement, Dodge et al.)."""
    v = np.sort(_finite(values))
    if v.size == 0 or m < 1:
        return math.nan
    return float(aubc_weights(v.size, min(m, v.size)) @ v)


def aubc_difference(a: np.ndarray, b: np.ndarray, m: int, *, n_boot: int, seed: int) -> tuple[Estimate, float]:
    """aubc(b) − aubc(a) over budgets 1..m with a percentile bootstrap interval and two-sided p."""
    x, y = _finite(a), _finite(b)
    if x.size < 2 or y.size < 2 or m < 1:
        return Estimate(math.nan), math.nan
    wa, wb = aubc_weights(x.size, m), aubc_weights(y.size, m)

    def stat(s, t, axis=-1):
        return np.sort(t, axis=axis) @ wb - np.sort(s, axis=axis) @ wa

    value = float(stat(x, y))
    dist = _resample((x, y), stat, min(n_boot, AUBC_MAX_RESAMPLES), seed)
    return _percentile(value, dist)


def _finite(x) -> np.ndarray:
    arr = np.asarray(x, dtype=float).ravel()
    return arr[np.isfinite(arr)]


def _resample(samples: tuple[np.ndarray, ...], stat, n_boot: int, seed: int) -> np.ndarray:
    """The statistic on ``n_boot`` independent with-replacement resamples of each sample (vectorised in chunks)."""
    if n_boot < 2:
        return np.empty(0)
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // max(1, sum(s.size for s in samples)))
    out = []
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        out.append(stat(*(s[rng.integers(0, s.size, size=(k, s.size))] for s in samples), axis=-1))
    return np.concatenate(out)


def _percentile(value: float, dist: np.ndarray) -> tuple[Estimate, float]:
    """Percentile interval and the two-sided bootstrap p-value 2 min(P(d* ≤ 0), P(d* ≥ 0))."""
    dist = dist[np.isfinite(dist)]
    if dist.size < 2:
        return Estimate(value), math.nan
    low, high = np.quantile(dist, [0.025, 0.975])
    p = min(1.0, 2 * min(float(np.mean(dist <= 0)), float(np.mean(dist >= 0))))
    return Estimate(value, float(low), float(high)), float(p)
