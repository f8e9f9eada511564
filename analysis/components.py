"""Hyperparameter variance apart from seed variance: a crossed config × seed design.

With ``--replicates R >= 2`` every trial of a sweep trains with the same R seeds (the study seed and
R - 1 seeds derived from it: common random numbers), so a study's replicate values form a G × R
table (G configurations, R seeds) of a two-way random-effects model without within-cell
replication, y_ij = μ + a_i + b_j + e_ij:

- σ²_hp = (MS_config − MS_error) / R: how much the hyperparameters move mAP,
- σ²_seed = (MS_seed − MS_error) / G: how much the shared seed moves every configuration together,
- σ²_interaction + error = MS_error: config × seed interaction, which one run per cell cannot tell
  apart from pure error (key ``"interaction"``).

Point estimates are the ANOVA (method-of-moments) estimates, clipped at 0. Intervals are 95 %:
χ² (exact under normality) for MS_error; the modified large-sample (MLS) interval of Ting, Burdick
& Graybill (1990) for the differences of mean squares σ²_hp and σ²_seed (close to nominal even for
few degrees of freedom, unlike Satterthwaite's). With R = 2 the seed component has one degree of
freedom and a very wide interval: that is the information there is.

A diverged trial enters as a row at the floor value (analysis.failure) in every column; a trial
without R finite replicate values is left out. The σ_hp ratio of two studies gets a percentile
bootstrap over configurations (rows resampled, each study on its own); on its own it is liberal
(6-8 % at 5 %), so analysis.compare.gate requires the spread test of the trial values to agree.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from analysis.results import Estimate
from analysis.spread import ALPHA as PRIMARY_ALPHA

ALPHA = 0.05


def replicate_table(part: pd.DataFrame, replicates: int, floor: float) -> np.ndarray:
    """G × R values: complete trials' replicate values, diverged trials as rows at ``floor``."""
    rows: list[np.ndarray] = []
    for status, reps in zip(part["status"].astype(str), part["replicate_values"], strict=True):
        if status == "diverged" and math.isfinite(floor):
            rows.append(np.full(replicates, floor))
        elif status == "complete" and isinstance(reps, list) and len(reps) == replicates:
            r = np.asarray(reps, dtype=float)
            if np.all(np.isfinite(r)):
                rows.append(r)
    return np.asarray(rows, dtype=float).reshape(-1, replicates)


def mean_squares(y: np.ndarray) -> tuple[Any, Any, Any, int, int, int]:
    """(MS_config, MS_seed, MS_error, df_config, df_seed, df_error) of a G × R table, vectorised over leading axes."""
    g, r = y.shape[-2], y.shape[-1]
    grand = y.mean(axis=(-2, -1), keepdims=True)
    rows = y.mean(axis=-1, keepdims=True)
    cols = y.mean(axis=-2, keepdims=True)
    ms_rows = r * np.sum((rows - grand) ** 2, axis=(-2, -1)) / (g - 1)
    ms_cols = g * np.sum((cols - grand) ** 2, axis=(-2, -1)) / (r - 1)
    ms_err = np.sum((y - rows - cols + grand) ** 2, axis=(-2, -1)) / ((g - 1) * (r - 1))
    return ms_rows, ms_cols, ms_err, g - 1, r - 1, (g - 1) * (r - 1)


def mls_interval(c1: float, s1: float, n1: int, c2: float, s2: float, n2: int) -> tuple[float, float]:
    """95 % MLS interval of θ = c1 s1 − c2 s2 (mean squares s1, s2 with n1, n2 df), clipped at 0.

    Ting, Burdick & Graybill (1990), as given in Burdick & Graybill, "Confidence Intervals on
    Variance Components" (1992), §3.
    """
    a = ALPHA / 2
    f_up = lambda n: scipy.stats.chi2.ppf(1 - a, n) / n  # noqa: E731  F(1-a; n, ∞)
    f_lo = lambda n: scipy.stats.chi2.ppf(a, n) / n  # noqa: E731
    g1, h1 = 1 - 1 / f_up(n1), 1 / f_lo(n1) - 1
    g2, h2 = 1 - 1 / f_up(n2), 1 / f_lo(n2) - 1
    f12u, f12l = scipy.stats.f.ppf(1 - a, n1, n2), scipy.stats.f.ppf(a, n1, n2)
    g12 = ((f12u - 1) ** 2 - g1**2 * f12u**2 - h2**2) / f12u
    h12 = ((1 - f12l) ** 2 - h1**2 * f12l**2 - g2**2) / f12l
    theta = c1 * s1 - c2 * s2
    v_low = g1**2 * c1**2 * s1**2 + h2**2 * c2**2 * s2**2 + g12 * c1 * c2 * s1 * s2
    v_high = h1**2 * c1**2 * s1**2 + g2**2 * c2**2 * s2**2 + h12 * c1 * c2 * s1 * s2
    low = theta - math.sqrt(max(v_low, 0.0))
    high = theta + math.sqrt(max(v_high, 0.0))
    return max(low, 0.0), max(high, 0.0)


def variance_components(y: np.ndarray) -> dict[str, Estimate]:
    """``{"hp", "seed", "interaction"}`` variance estimates with 95 % intervals; empty below 2 × 2."""
    y = np.asarray(y, dtype=float)
    if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 2:
        return {}
    g, r = y.shape
    ms_r, ms_c, ms_e, df_r, df_c, df_e = mean_squares(y)
    err_low = df_e * ms_e / scipy.stats.chi2.ppf(1 - ALPHA / 2, df_e)
    err_high = df_e * ms_e / scipy.stats.chi2.ppf(ALPHA / 2, df_e)
    hp = mls_interval(1 / r, ms_r, df_r, 1 / r, ms_e, df_e)
    seed = mls_interval(1 / g, ms_c, df_c, 1 / g, ms_e, df_e)
    return {
        "hp": Estimate(max((ms_r - ms_e) / r, 0.0), *hp),
        "seed": Estimate(max((ms_c - ms_e) / g, 0.0), *seed),
        "interaction": Estimate(float(ms_e), float(err_low), float(err_high)),
    }


def _sigma_hp(y: np.ndarray) -> np.ndarray:
    ms_r, _, ms_e, *_ = mean_squares(y)
    return np.sqrt(np.maximum((ms_r - ms_e) / y.shape[-1], 0.0))


def sigma_hp_ratio(ya: np.ndarray, yb: np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> tuple[Estimate, float]:
    """σ_hp(b) / σ_hp(a) with a percentile bootstrap over configurations (a ``1 - PRIMARY_ALPHA``
    interval), and its two-sided bootstrap p."""
    if ya.shape[0] < 2 or yb.shape[0] < 2 or ya.shape[1] < 2 or yb.shape[1] < 2:
        return Estimate(math.nan), math.nan
    sa, sb = float(_sigma_hp(ya)), float(_sigma_hp(yb))
    if sa == 0 or sb == 0:
        return Estimate(math.nan if sa == sb else (math.inf if sa == 0 else 0.0)), math.nan
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // (ya.size + yb.size))
    logs = []
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        ba = _sigma_hp(ya[rng.integers(0, ya.shape[0], size=(k, ya.shape[0]))])
        bb = _sigma_hp(yb[rng.integers(0, yb.shape[0], size=(k, yb.shape[0]))])
        with np.errstate(divide="ignore", invalid="ignore"):
            logs.append(np.log(bb) - np.log(ba))
    d = np.concatenate(logs) if logs else np.empty(0)
    d = d[~np.isnan(d)]
    if d.size < 2:
        return Estimate(sb / sa), math.nan
    # The interval at the primary level, since this ratio is the primary measure when R >= 2.
    low, high = np.quantile(d, [PRIMARY_ALPHA / 2, 1 - PRIMARY_ALPHA / 2])
    p = min(1.0, 2 * min(float(np.mean(d <= 0)), float(np.mean(d >= 0))))
    return Estimate(sb / sa, float(np.exp(low)), float(np.exp(high))), float(p)
