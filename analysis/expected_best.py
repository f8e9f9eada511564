"""Expected best validation mAP after n trials (Dodge et al. 2019, "Show Your Work").

A sensitivity study spends N trials; a practitioner tuning the loss spends n <= N. The estimator is
the expected maximum of n trials drawn *without replacement* from the N observed ones (Dodge et al.
2021, "Expected validation performance and estimation of a random variable's maximum"; Tang et al.
2020): it is the U-statistic of degree n for E[max of n random-search trials], hence unbiased for
it, whereas the with-replacement estimator of Dodge et al. (2019), (i/N)^n − ((i−1)/N)^n weights,
is biased low for n near N (it re-draws trials already seen). It shows at a glance how many trials
a loss needs before its best configuration is found (a robust loss reaches its plateau at small n).

Intervals: the 95 % band is a percentile bootstrap drawn only for n <= N/2. At n = N the estimator
is the sample maximum, whose bootstrap is invalid (its upper bound is the sample max itself);
below N/2 it averages many order statistics. ``expected_best_half`` (n = ⌊N/2⌋) is the valid
"best" quantity the summaries show beside the observed best.

With sorted values v_(1) <= ... <= v_(N), the i-th value is the maximum of a random n-subset with
probability C(i-1, n-1) / C(N, n), so E[max_n] = sum_i v_(i) C(i-1, n-1) / C(N, n). The weights are
computed in log space with ``scipy.special.gammaln`` (the binomials overflow beyond N ~ 1000), and
the estimator for many n is one matrix product, which also makes the bootstrap band cheap.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import gammaln

from analysis.results import Estimate

MAX_POINTS = 200  # n values evaluated beyond this many trials (log-spaced, always including 1 and N)
MAX_BAND_RESAMPLES = 500  # the band is a percentile interval; 500 resamples give its 2.5 % tails


def n_grid(n_total: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """Every n in 1..N when N is small, else a log-spaced grid including 1 and N."""
    if n_total <= max_points:
        return np.arange(1, n_total + 1)
    grid = np.unique(np.round(np.geomspace(1, n_total, max_points)).astype(int))
    return grid


def dodge_weights(n_total: int, ns: np.ndarray) -> np.ndarray:
    """Matrix W (len(ns) x N): W[k, i-1] = C(i-1, n_k-1) / C(N, n_k), zero for i < n_k; rows sum to 1."""
    i = np.arange(1, n_total + 1, dtype=float)[None, :]
    n = np.asarray(ns, dtype=float)[:, None]
    valid = i >= n
    with np.errstate(invalid="ignore"):
        log_num = gammaln(i) - gammaln(n) - gammaln(np.where(valid, i - n + 1, 1.0))
        log_den = gammaln(n_total + 1) - gammaln(n + 1) - gammaln(n_total - n + 1)
        w = np.where(valid, np.exp(log_num - log_den), 0.0)
    return w


def expected_max(values: np.ndarray, ns: np.ndarray | None = None) -> np.ndarray:
    """Dodge's unbiased expected maximum of n values drawn without replacement, for each n in ``ns``."""
    v = np.sort(np.asarray(values, dtype=float))
    if v.size == 0:
        return np.empty(0)
    ns = np.arange(1, v.size + 1) if ns is None else np.asarray(ns)
    if np.any(ns < 1) or np.any(ns > v.size):
        raise ValueError(f"n must lie in 1..{v.size} (the number of values); got {ns.min()}..{ns.max()}")
    return dodge_weights(v.size, ns) @ v


def expected_best_curve(values: np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Columns n, mean, low, high: the expected best value after n trials with a 95 % bootstrap band.

    The band resamples the N trials with replacement and recomputes the estimator: it is the
    uncertainty that comes from having observed only N trials of the loss's mAP distribution.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return pd.DataFrame(columns=["n", "mean", "low", "high"])
    ns = n_grid(v.size)
    w = dodge_weights(v.size, ns)
    mean = w @ np.sort(v)
    low = high = np.full(ns.shape, np.nan)
    n_resamples = min(n_boot, MAX_BAND_RESAMPLES)
    if v.size >= 2 and n_resamples >= 2:
        rng = np.random.default_rng(seed)
        # Chunks of resamples keep memory at ~4e6 floats whatever N is.
        chunk = max(1, 4_000_000 // v.size)
        parts: list[np.ndarray] = []
        for start in range(0, n_resamples, chunk):
            k = min(chunk, n_resamples - start)
            resampled = np.sort(v[rng.integers(0, v.size, size=(k, v.size))], axis=1)
            parts.append(resampled @ w.T)
        curves = np.concatenate(parts, axis=0)
        low, high = np.quantile(curves, [0.025, 0.975], axis=0)
        beyond = ns > v.size // 2  # no band where the estimator is (close to) the sample maximum
        low, high = np.where(beyond, np.nan, low), np.where(beyond, np.nan, high)
    return pd.DataFrame({"n": ns, "mean": mean, "low": low, "high": high})


def expected_best_half(values: np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> Estimate:
    """The expected best at budget ⌊N/2⌋ with its 95 % percentile bootstrap interval."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Estimate(math.nan)
    half = max(1, v.size // 2)
    value = float(expected_max(v, np.array([half]))[0])
    if v.size < 4 or n_boot < 2:
        return Estimate(value)
    w = dodge_weights(v.size, np.array([half]))[0]
    rng = np.random.default_rng(seed)
    k = min(n_boot, MAX_BAND_RESAMPLES)
    chunk = max(1, 4_000_000 // v.size)
    dist = np.concatenate(
        [np.sort(v[rng.integers(0, v.size, size=(min(chunk, k - s), v.size))], axis=1) @ w for s in range(0, k, chunk)]
    )
    low, high = np.quantile(dist, [0.025, 0.975])
    return Estimate(value, float(low), float(high))
