"""Validation mAP along each hyperparameter (binned means) and over a 2-D grid (gamma_neg x clip).

Bins are quantiles of the values pooled over the studies being drawn together, so every study has
the same bins (curves and heatmaps line up) and each bin holds a similar number of trials. A bin's
interval is the t interval of its mean: a flat curve whose intervals overlap says the loss does not
care about that parameter.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats

MARGINAL_COLUMNS = ["study", "param", "bin_center", "bin_low", "bin_high", "mean", "low", "high", "count"]
MIN_PER_BIN = 5  # bins are made coarser until each holds about this many trials on average
GRID_PAIR = ("gamma_neg", "clip")


def quantile_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Unique quantile edges of ``values`` (fewer than ``n_bins`` bins where values repeat)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.empty(0)
    return np.unique(np.quantile(v, np.linspace(0, 1, n_bins + 1)))


def bin_centers(edges: np.ndarray, log: bool) -> np.ndarray:
    lo, hi = edges[:-1], edges[1:]
    if log and np.all(edges > 0):
        return np.sqrt(lo * hi)
    return (lo + hi) / 2


def assign_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each value (-1 when not finite); the last edge belongs to the last bin."""
    v = np.asarray(values, dtype=float)
    idx = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, max(len(edges) - 2, 0))
    return np.where(np.isfinite(v), idx, -1)


def mean_ci(x: np.ndarray) -> tuple[float, float, float]:
    """Mean with its 95 % t interval (NaN bounds for fewer than 2 values)."""
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        return np.nan, np.nan, np.nan
    m = float(x.mean())
    if x.size < 2:
        return m, np.nan, np.nan
    half = float(scipy.stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return m, m - half, m + half


def _n_bins(n: int, max_bins: int) -> int:
    return int(max(1, min(max_bins, n // MIN_PER_BIN)))


def marginals(
    complete: pd.DataFrame, params: list[str], log: dict[str, bool] | None = None, max_bins: int = 10
) -> pd.DataFrame:
    """Rows of ``MARGINAL_COLUMNS``: binned mean mAP of each study along each parameter.

    ``complete`` holds complete trials with columns ``study``, ``value`` and ``param_<name>``.
    """
    log = log or {}
    rows = []
    for param in params:
        col = f"param_{param}"
        if col not in complete:
            continue
        x_all = pd.to_numeric(complete[col], errors="coerce")
        have = complete.loc[x_all.notna()]
        if have.empty:
            continue
        per_study = have.groupby("study", observed=True).size()
        edges = quantile_edges(x_all[x_all.notna()].to_numpy(), _n_bins(int(per_study.min()), max_bins))
        if edges.size < 2:
            continue
        centers = bin_centers(edges, log.get(param, False))
        for study, part in have.groupby("study", observed=True):
            x = pd.to_numeric(part[col]).to_numpy(float)
            y = part["value"].to_numpy(float)
            bins = assign_bins(x, edges)
            for b in range(len(centers)):
                in_bin = y[bins == b]
                m, lo, hi = mean_ci(in_bin)
                rows.append([str(study), param, centers[b], edges[b], edges[b + 1], m, lo, hi, int(in_bin.size)])
    return pd.DataFrame(rows, columns=MARGINAL_COLUMNS)


def grid2d(
    complete: pd.DataFrame,
    x: str = GRID_PAIR[0],
    y: str = GRID_PAIR[1],
    log: dict[str, bool] | None = None,
    max_bins: int = 6,
) -> pd.DataFrame:
    """Binned mean mAP over two parameters (rows per study, x bin, y bin), for a heatmap.

    Columns: study, x_param, y_param, ``x`` and ``y`` (the bin centres, named by the parameters, as
    ``analysis.figures.binned_map`` expects), mean, low, high, count. Empty when no study sweeps both.
    """
    log = log or {}
    cx, cy = f"param_{x}", f"param_{y}"
    columns = ["study", "x_param", "y_param", x, y, "mean", "low", "high", "count"]
    if cx not in complete or cy not in complete:
        return pd.DataFrame(columns=columns)
    xs = pd.to_numeric(complete[cx], errors="coerce")
    ys = pd.to_numeric(complete[cy], errors="coerce")
    have = complete.loc[xs.notna() & ys.notna()]
    if have.empty:
        return pd.DataFrame(columns=columns)
    per_study = int(have.groupby("study", observed=True).size().min())
    k = int(max(1, min(max_bins, np.sqrt(per_study / MIN_PER_BIN))))
    ex = quantile_edges(xs[have.index].to_numpy(), k)
    ey = quantile_edges(ys[have.index].to_numpy(), k)
    if ex.size < 2 or ey.size < 2:
        return pd.DataFrame(columns=columns)
    centers_x, centers_y = bin_centers(ex, log.get(x, False)), bin_centers(ey, log.get(y, False))
    rows = []
    for study, part in have.groupby("study", observed=True):
        bx = assign_bins(pd.to_numeric(part[cx]).to_numpy(float), ex)
        by = assign_bins(pd.to_numeric(part[cy]).to_numpy(float), ey)
        v = part["value"].to_numpy(float)
        for i in range(len(centers_x)):
            for j in range(len(centers_y)):
                cell = v[(bx == i) & (by == j)]
                m, lo, hi = mean_ci(cell)
                rows.append([str(study), x, y, centers_x[i], centers_y[j], m, lo, hi, int(cell.size)])
    return pd.DataFrame(rows, columns=columns)
