"""Figures of a sensitivity analysis, drawn with seaborn on matplotlib ``Figure`` objects.

Every function takes tidy frames (``Analysis.trials`` and the result frames of ``analysis``) and
returns a :class:`matplotlib.figure.Figure`, or raises :class:`NotEnoughData` with a sentence the
report shows instead of the figure. Nothing here touches pyplot's global state or the global
rcParams: figures are built and saved inside :func:`style`, a ``matplotlib.rc_context`` that is
undone on exit (optuna's own plots call ``plt.style.use``, which is why they are not used here).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Collection, Iterator, Mapping, Sequence

import matplotlib
import matplotlib.ticker
from matplotlib.artist import Artist

if os.environ.get("MPLBACKEND") is None and matplotlib.rcParams._get_backend_or_none() is None:  # type: ignore[attr-defined]  # private, no public query
    # Figures are only ever saved to files; a GUI backend would need a display.
    matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = [
    "NotEnoughData",
    "style",
    "palette",
    "to_png",
    "distributions",
    "ecdf",
    "expected_best",
    "importances",
    "marginals",
    "binned_map",
    "failure_map",
    "tier_spread",
    "STATUS_STYLE",
]

# Largest number of points drawn per study in strip/scatter plots: beyond it the points are a random
# subsample (the violins and ECDFs still use every trial) so that figures stay readable and fast.
MAX_POINTS = 1500

STATUS_STYLE = {
    "complete": {"color": "#9e9e9e", "marker": "o", "s": 10, "alpha": 0.45},
    "diverged": {"color": "#d62728", "marker": "X", "s": 34, "alpha": 0.9},
    "failed": {"color": "#ff7f0e", "marker": "^", "s": 30, "alpha": 0.9},
}


class NotEnoughData(ValueError):
    """The data cannot support this figure; the message says why, for the reader."""


def _rc() -> dict:
    rc = dict(sns.axes_style("whitegrid"))
    rc.update(sns.plotting_context("notebook", font_scale=0.85))
    rc.update(
        {
            "figure.dpi": 96,
            "savefig.dpi": 96,
            "axes.titleweight": "bold",
            "legend.frameon": False,
            "svg.fonttype": "none",
            "font.family": "DejaVu Sans",
        }
    )
    return rc


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The report's look, applied only inside the ``with`` block."""
    with matplotlib.rc_context(_rc()):
        yield


def palette(studies: Sequence[str]) -> dict[str, tuple]:
    """One colour per study, the same in every figure."""
    colors = sns.color_palette("colorblind", max(len(studies), 1))
    return {name: colors[i % len(colors)] for i, name in enumerate(studies)}


def to_png(fig: Figure) -> bytes:
    """PNG bytes of ``fig`` (PNG, not SVG: user-controlled text such as study names cannot end up as markup)."""
    buffer = io.BytesIO()
    with style():
        # No bbox_inches="tight": every figure uses constrained layout already, and "tight" draws it twice.
        fig.savefig(buffer, format="png", facecolor="white")
    return buffer.getvalue()


def _studies(frame: pd.DataFrame, order: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(frame["study"].astype(str)))
    if order is None:
        return present
    return [s for s in order if s in set(present)]


def _complete(trials: pd.DataFrame, column: str = "value") -> pd.DataFrame:
    if trials.empty or column not in trials:
        return trials.iloc[0:0]
    done = trials[(trials["status"] == "complete") & np.isfinite(pd.to_numeric(trials[column], errors="coerce"))]
    return done.assign(study=done["study"].astype(str), **{column: pd.to_numeric(done[column])})


def _subsample(frame: pd.DataFrame, by: str, limit: int = MAX_POINTS) -> pd.DataFrame:
    parts = [g if len(g) <= limit else g.sample(limit, random_state=0) for _, g in frame.groupby(by, sort=False)]
    return pd.concat(parts) if parts else frame


def distributions(trials: pd.DataFrame, order: Sequence[str] | None = None) -> Figure:
    """Violin (every complete trial) and individual points of validation mAP per study."""
    done = _complete(trials)
    if done.empty:
        raise NotEnoughData("no complete trial has a validation mAP, so there is no distribution to draw.")
    studies = _studies(done, order)
    colors = palette(studies)
    with style():
        fig = Figure(figsize=(max(5.0, 1.6 * len(studies) + 2.5), 4.2), layout="constrained")
        ax = fig.subplots()
        # A violin needs two distinct values; single-valued studies get points only.
        spread = done.groupby("study")["value"].nunique()
        violins = done[done["study"].isin(spread[spread >= 2].index)]
        if not violins.empty:
            sns.violinplot(
                data=violins,
                x="study",
                y="value",
                hue="study",
                order=studies,
                hue_order=studies,
                palette=colors,
                cut=0,
                inner="quart",
                linewidth=1,
                saturation=0.6,
                legend=False,
                ax=ax,
                density_norm="width",
            )
        sns.stripplot(
            data=_subsample(done, "study"),
            x="study",
            y="value",
            order=studies,
            color="0.15",
            size=2.5,
            alpha=0.45,
            jitter=0.18,
            ax=ax,
        )
        ax.set_xlabel("")
        ax.set_ylabel("validation mAP")
        ax.set_xticks(range(len(studies)), [f"{s}\n(n={int((done['study'] == s).sum())})" for s in studies])
    return fig


def ecdf(trials: pd.DataFrame, order: Sequence[str] | None = None) -> Figure:
    """Empirical CDF of validation mAP per study: a curve further right is better at every quantile."""
    done = _complete(trials)
    if done.empty:
        raise NotEnoughData("no complete trial has a validation mAP, so there is no ECDF to draw.")
    studies = _studies(done, order)
    with style():
        fig = Figure(figsize=(6.5, 4.0), layout="constrained")
        ax = fig.subplots()
        sns.ecdfplot(data=done, x="value", hue="study", hue_order=studies, palette=palette(studies), ax=ax, linewidth=2)
        ax.set_xlabel("validation mAP")
        ax.set_ylabel("share of trials with mAP ≤ x")
    return fig


def expected_best(frame: pd.DataFrame, order: Sequence[str] | None = None) -> Figure:
    """Expected best validation mAP after n trials (Dodge et al. 2019), with its band."""
    if frame is None or frame.empty or not np.isfinite(pd.to_numeric(frame["mean"], errors="coerce")).any():
        raise NotEnoughData("no expected-best curve could be computed (no complete trials).")
    studies = _studies(frame, order)
    colors = palette(studies)
    with style():
        fig = Figure(figsize=(6.5, 4.0), layout="constrained")
        ax = fig.subplots()
        for name in studies:
            part = frame[frame["study"].astype(str) == name].sort_values("n")
            ax.plot(part["n"], part["mean"], color=colors[name], linewidth=2, label=name)
            if {"low", "high"} <= set(part) and np.isfinite(part[["low", "high"]].to_numpy(float)).any():
                ax.fill_between(part["n"], part["low"], part["high"], color=colors[name], alpha=0.2, linewidth=0)
        if frame["n"].max() > 50:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("number of trials n")
        ax.set_ylabel("expected best validation mAP")
        ax.legend(title="study")
    return fig


def importances(frame: pd.DataFrame, order: Sequence[str] | None = None) -> Figure:
    """Per-hyperparameter importance, one panel per method, bars per study with their intervals."""
    if frame is None or frame.empty or not np.isfinite(pd.to_numeric(frame["mean"], errors="coerce")).any():
        raise NotEnoughData(
            "no importances were computed (they need several complete trials and at least one swept hyperparameter)."
        )
    frame = frame[np.isfinite(pd.to_numeric(frame["mean"], errors="coerce"))]
    studies = _studies(frame, order)
    colors = palette(studies)
    methods = list(dict.fromkeys(frame["method"]))
    params = frame.groupby("param")["mean"].max().sort_values().index.tolist()
    height = 0.8 / max(len(studies), 1)
    with style():
        fig = Figure(
            figsize=(4.2 * len(methods) + 1.0, 0.45 * len(params) * max(1, len(studies) * 0.6) + 1.6),
            layout="constrained",
        )
        axes = np.atleast_1d(fig.subplots(1, len(methods), sharey=True))
        for ax, method in zip(axes, methods, strict=True):
            for i, name in enumerate(studies):
                part = frame[(frame["method"] == method) & (frame["study"].astype(str) == name)].set_index("param")
                part = part.reindex(params)
                y = np.arange(len(params)) + (i - (len(studies) - 1) / 2) * height
                mean = part["mean"].to_numpy(float)
                err = None
                if {"low", "high"} <= set(part):
                    low, high = part["low"].to_numpy(float), part["high"].to_numpy(float)
                    err = np.vstack([np.clip(mean - low, 0, None), np.clip(high - mean, 0, None)])
                    err = np.where(np.isfinite(err), err, 0.0)
                ax.barh(
                    y,
                    np.nan_to_num(mean),
                    height=height,
                    color=colors[name],
                    label=name,
                    xerr=err,
                    error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "0.2"},
                )
            ax.set_yticks(range(len(params)), params)
            ax.set_title(method)
            ax.set_xlabel("importance (share of variance)")
        axes[-1].legend(title="study", loc="lower right")
    return fig


def marginals(
    frame: pd.DataFrame,
    order: Sequence[str] | None = None,
    max_params: int = 12,
    log_params: Collection[str] = (),
) -> Figure:
    """Mean validation mAP along each hyperparameter (binned), with intervals: flat curves mean robust.

    Parameters in ``log_params`` (swept on a log scale, e.g. lr) get a log x axis.
    """
    if frame is None or frame.empty or not np.isfinite(pd.to_numeric(frame["mean"], errors="coerce")).any():
        raise NotEnoughData("no marginal curves were computed (no complete trials with swept hyperparameters).")
    studies = _studies(frame, order)
    colors = palette(studies)
    # Parameters most studies share first (ASL and RAL share γ⁺, γ⁻, τ), so shared curves sit together.
    shared = frame.groupby("param", sort=False)["study"].nunique()
    params = sorted(dict.fromkeys(frame["param"]), key=lambda p: -shared[p])[:max_params]
    ncols = min(4, len(params))
    nrows = int(np.ceil(len(params) / ncols))
    with style():
        fig = Figure(figsize=(3.3 * ncols + 0.5, 2.8 * nrows + 0.4), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
        for ax, param in zip(axes, params, strict=False):
            for name in studies:
                part = frame[(frame["param"] == param) & (frame["study"].astype(str) == name)].sort_values("bin_center")
                if part.empty:
                    continue
                ax.plot(part["bin_center"], part["mean"], marker="o", markersize=3, color=colors[name], label=name)
                if {"low", "high"} <= set(part):
                    ax.fill_between(
                        part["bin_center"], part["low"], part["high"], color=colors[name], alpha=0.2, linewidth=0
                    )
            ax.set_title(param)
            ax.set_xlabel(param)
            if param in log_params and (frame.loc[frame["param"] == param, "bin_center"] > 0).all():
                ax.set_xscale("log")
        for ax in axes[len(params) :]:
            ax.set_visible(False)
        axes[0].set_ylabel("mean validation mAP")
        legend: dict[str, Artist] = {}
        for ax in axes:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                legend.setdefault(label, handle)
        if legend:
            fig.legend(list(legend.values()), list(legend), title="study", loc="outside right upper")
    return fig


def binned_map(
    frame: pd.DataFrame,
    x: str,
    y: str,
    value: str = "mean",
    order: Sequence[str] | None = None,
    count: str | None = "count",
) -> Figure:
    """Heatmap of binned mean validation mAP over two hyperparameters, one panel per study, shared colours.

    ``frame`` has one row per (study, x bin, y bin) with bin labels (or centres) in columns ``x`` and ``y``.
    """
    if frame is None or frame.empty or value not in frame:
        raise NotEnoughData(f"no binned {x} × {y} map was computed.")
    frame = frame[np.isfinite(pd.to_numeric(frame[value], errors="coerce"))]
    if frame.empty:
        raise NotEnoughData(f"no {x} × {y} bin holds a complete trial.")
    studies = _studies(frame, order)
    vmin, vmax = float(frame[value].min()), float(frame[value].max())
    if vmin == vmax:
        vmin, vmax = vmin - 0.005, vmax + 0.005
    xs = sorted(frame[x].unique())
    ys = sorted(frame[y].unique())

    def label(v) -> str:
        return f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)

    with style():
        fig = Figure(figsize=(4.4 * len(studies) + 1.2, 4.2), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(studies), sharey=True, squeeze=False)).ravel()
        for i, (ax, name) in enumerate(zip(axes, studies, strict=True)):
            grid = frame[frame["study"].astype(str) == name].pivot_table(
                index=y, columns=x, values=value, aggfunc="mean"
            )
            grid = grid.reindex(index=ys[::-1], columns=xs)
            sns.heatmap(
                grid,
                ax=ax,
                vmin=vmin,
                vmax=vmax,
                cmap="viridis",
                cbar=i == len(studies) - 1,
                cbar_kws={"label": "mean validation mAP"},
                linewidths=0.3,
                linecolor="white",
                xticklabels=[label(v) for v in xs],
                yticklabels=[label(v) for v in ys[::-1]],
            )
            ax.set_title(name)
            ax.set_xlabel(x)
            ax.set_ylabel(y if i == 0 else "")
            ax.tick_params(axis="x", labelrotation=45)
            ax.tick_params(axis="y", labelrotation=0)
    return fig


def failure_map(
    trials: pd.DataFrame,
    pairs: Mapping[str, tuple[str, str]],
    order: Sequence[str] | None = None,
    log_params: Collection[str] = (),
) -> Figure:
    """Where failed and diverged trials lie, against the complete ones, one panel per study.

    ``pairs`` maps a study to the two hyperparameters to place its trials by (its most important ones;
    studies of different losses sweep different parameters, so each panel has its own axes).
    """
    if trials.empty:
        raise NotEnoughData("there are no trials to place.")
    trials = trials.assign(study=trials["study"].astype(str))
    if not (trials["status"] != "complete").any():
        raise NotEnoughData("no trial failed or diverged.")
    panels = []
    for name in _studies(trials, order):
        if name not in pairs:
            continue
        x, y = pairs[name]
        cx, cy = f"param_{x}", f"param_{y}"
        if cx not in trials or cy not in trials:
            continue
        part = trials[trials["study"] == name]
        part = part[
            np.isfinite(pd.to_numeric(part[cx], errors="coerce"))
            & np.isfinite(pd.to_numeric(part[cy], errors="coerce"))
        ]
        if not part.empty:
            panels.append((name, x, y, part))
    if not panels:
        raise NotEnoughData("no study has two swept hyperparameters to place its trials by.")
    with style():
        fig = Figure(figsize=(4.2 * len(panels) + 0.8, 4.0), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)).ravel()
        for ax, (name, x, y, part) in zip(axes, panels, strict=True):
            for status, kw in STATUS_STYLE.items():
                points = part[part["status"] == status]
                if status == "complete":
                    points = _subsample(points, "study")
                if points.empty:
                    continue
                ax.scatter(
                    points[f"param_{x}"],
                    points[f"param_{y}"],
                    linewidths=0,
                    label=f"{status} ({int((part['status'] == status).sum()):,})",
                    **kw,
                )
            ax.set_title(name)
            ax.set_xlabel(x)
            ax.set_ylabel(y)
            if x in log_params and (part[f"param_{x}"] > 0).all():
                ax.set_xscale("log")
            if y in log_params and (part[f"param_{y}"] > 0).all():
                ax.set_yscale("log")
            ax.legend(loc="best", fontsize="small", frameon=True)
    return fig


TIERS = ("head", "medium", "tail")


def tier_spread(trials: pd.DataFrame, order: Sequence[str] | None = None, split: str = "val") -> Figure:
    """Box plots of head / medium / tail mAP per study: where across the class frequencies the spread lives."""
    columns = {f"{split}_mAP_{tier}": tier for tier in TIERS if f"{split}_mAP_{tier}" in trials}
    if trials.empty or not columns:
        raise NotEnoughData("the trials record no head / medium / tail mAP.")
    done = trials[trials["status"] == "complete"].assign(study=lambda t: t["study"].astype(str))
    long = done.melt(id_vars=["study"], value_vars=list(columns), var_name="tier", value_name="mAP")
    long["tier"] = long["tier"].map(columns)
    long["mAP"] = pd.to_numeric(long["mAP"], errors="coerce")
    long = long[np.isfinite(long["mAP"])]
    if long.empty:
        raise NotEnoughData("no complete trial has a head / medium / tail mAP.")
    studies = _studies(long, order)
    with style():
        fig = Figure(figsize=(max(5.5, 2.2 * len(studies) + 2.0), 4.0), layout="constrained")
        ax = fig.subplots()
        with warnings.catch_warnings():
            # seaborn 0.13 passes boxplot's deprecated ``vert``; nothing the caller can act on.
            warnings.simplefilter("ignore", matplotlib.MatplotlibDeprecationWarning)
            sns.boxplot(
                data=long,
                x="study",
                y="mAP",
                hue="tier",
                order=studies,
                hue_order=[t for t in TIERS if t in set(long["tier"])],
                palette="crest",
                ax=ax,
                fliersize=2,
                linewidth=1,
            )
        ax.set_xlabel("")
        ax.set_ylabel(f"{'validation' if split == 'val' else split} mAP")
        ax.legend(title="class tier", loc="best")
    return fig
