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
from dataclasses import dataclass
from typing import Any

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
    "Floor",
    "FAILURE_AWARE",
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


# The trials column where diverged trials carry the study's floor value (analysis.results.Analysis.trials).
FAILURE_AWARE = "value_failure_aware"
FLOOR_COLOR = "0.35"


@dataclass(frozen=True)
class Floor:
    """A sweep's seed noise floor: its loss's default configuration re-run over seeds (a seeds-mode study).

    Drawn as a reference band (mean ± std), never as a rival distribution: it says how much of a
    sweep's spread re-seeding alone would give, and where the untuned default lands.
    """

    label: str  # e.g. "ASL seeds"
    mean: float
    std: float
    n: int


def _relabel(
    frame: pd.DataFrame, order: Sequence[str] | None, labels: Mapping[str, str] | None
) -> tuple[pd.DataFrame, list[str] | None]:
    """Study names replaced by their short labels (unique by construction in reports.roles), order too."""
    if frame is None or frame.empty or "study" not in frame:
        return frame, list(order) if order is not None else None
    frame = frame.assign(study=frame["study"].astype(str))
    if labels:
        frame = frame.assign(study=frame["study"].map(lambda s: labels.get(s, s)))
        order = [labels.get(s, s) for s in order] if order is not None else None
    return frame, list(order) if order is not None else None


def _floors(floors: Mapping[str, Floor] | None, labels: Mapping[str, str] | None) -> dict[str, Floor]:
    """Floors keyed by the sweep's label (the key figures use after _relabel), only finite ones."""
    out = {}
    for name, floor in (floors or {}).items():
        if np.isfinite(floor.mean) and np.isfinite(floor.std):
            out[(labels or {}).get(name, name)] = floor
    return out


def _unique_floors(floors: Mapping[str, Floor], studies: Sequence[str]) -> list[tuple[Floor, str]]:
    """Each distinct floor once, with the first sweep (in order) it belongs to."""
    seen: dict[str, tuple[Floor, str]] = {}
    for name in studies:
        if name in floors and floors[name].label not in seen:
            seen[floors[name].label] = (floors[name], name)
    return list(seen.values())


def _floor_handle(seeds: Sequence[int]):
    from matplotlib.patches import Patch

    count = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    return Patch(
        facecolor=FLOOR_COLOR,
        alpha=0.25,
        edgecolor=FLOOR_COLOR,
        linestyle="--",
        label=f"seed floor: the loss's default config, mean ± std over {count} seeds",
    )


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
    """Trials that are outcomes for ``column``: complete ones for "value", complete + diverged for the
    failure-aware column (killed / crashed trials are never outcomes); the values land in "value"."""
    if trials.empty or column not in trials:
        return trials.iloc[0:0]
    keep = ("complete", "diverged") if column == FAILURE_AWARE else ("complete",)
    values = pd.to_numeric(trials[column], errors="coerce")
    done = trials[trials["status"].isin(keep) & np.isfinite(values)]
    return done.assign(study=done["study"].astype(str), value=pd.to_numeric(done[column]))


def _panels(trials: pd.DataFrame, columns: Sequence[tuple[str, str]]) -> list[tuple[str, pd.DataFrame]]:
    """(title, outcome rows) for each column that has any: failure-aware first, survivors beside it."""
    out = []
    for column, title in columns:
        done = _complete(trials, column)
        if not done.empty:
            out.append((title, done))
    return out


def _subsample(frame: pd.DataFrame, by: str, limit: int = MAX_POINTS) -> pd.DataFrame:
    parts = [g if len(g) <= limit else g.sample(limit, random_state=0) for _, g in frame.groupby(by, sort=False)]
    return pd.concat(parts) if parts else frame


SURVIVORS = (("value", "complete trials"),)


def _value_panels(
    trials: pd.DataFrame,
    order: Sequence[str] | None,
    labels: Mapping[str, str] | None,
    floors: Mapping[str, Floor] | None,
    columns: Sequence[tuple[str, str]],
    what: str,
) -> tuple[list[tuple[str, pd.DataFrame]], list[str], dict[str, tuple], dict[str, Floor]]:
    """What the per-trial value figures share: panels, studies (by label), colours and floors."""
    trials, order = _relabel(trials, order, labels)
    panels = _panels(trials, columns)
    if not panels:
        raise NotEnoughData(f"no complete trial has a validation mAP, so there is no {what} to draw.")
    studies = _studies(pd.concat([done for _, done in panels]), order)
    return panels, studies, palette(studies), _floors(floors, labels)


def distributions(
    trials: pd.DataFrame,
    order: Sequence[str] | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    floors: Mapping[str, Floor] | None = None,
    columns: Sequence[tuple[str, str]] = SURVIVORS,
) -> Figure:
    """Violin (every outcome) and individual points of validation mAP per study, one panel per column.

    ``columns`` are (trials column, panel title) pairs, e.g. the failure-aware values beside the
    survivors'; ``floors`` (by study) are drawn as a grey band behind that study's violin.
    """
    panels, studies, colors, bands = _value_panels(trials, order, labels, floors, columns, "distribution")
    with style():
        width = max(5.0, 1.5 * len(studies) + 2.0) * (1 if len(panels) == 1 else 0.85)
        fig = Figure(figsize=(width * len(panels), 4.2), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)).ravel()
        for ax, (title, done) in zip(axes, panels, strict=True):
            for i, name in enumerate(studies):
                if name in bands:
                    f = bands[name]
                    ax.fill_between(
                        [i - 0.45, i + 0.45], f.mean - f.std, f.mean + f.std, color=FLOOR_COLOR, alpha=0.22, lw=0
                    )
                    ax.hlines(f.mean, i - 0.45, i + 0.45, colors=FLOOR_COLOR, linestyles="--", linewidth=1.2)
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
            if "status" in done and (done["status"] == "diverged").any():
                # Diverged trials sit at the floor value: marked, so that the lower tail reads as divergence.
                kw = STATUS_STYLE["diverged"]
                sns.stripplot(
                    data=done[done["status"] == "diverged"],
                    x="study",
                    y="value",
                    order=studies,
                    color=kw["color"],
                    marker=kw["marker"],
                    size=5,
                    jitter=0.18,
                    ax=ax,
                )
            ax.set_xlabel("")
            ax.set_ylabel("validation mAP")
            ax.set_xticks(range(len(studies)), [f"{s}\n(n={int((done['study'] == s).sum())})" for s in studies])
            if len(panels) > 1:
                ax.set_title(title)
        handles = []
        if bands:
            handles.append(_floor_handle(sorted({f.n for f in bands.values()})))
        if any("status" in d and (d["status"] == "diverged").any() for _, d in panels):
            from matplotlib.lines import Line2D

            kw = STATUS_STYLE["diverged"]
            handles.append(
                Line2D(
                    [],
                    [],
                    color=str(kw["color"]),
                    marker=str(kw["marker"]),
                    linestyle="",
                    label="diverged trial (floor value)",
                )
            )
        if handles:
            fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small")
    return fig


def ecdf(
    trials: pd.DataFrame,
    order: Sequence[str] | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    floors: Mapping[str, Floor] | None = None,
    columns: Sequence[tuple[str, str]] = SURVIVORS,
) -> Figure:
    """Empirical CDF of validation mAP per study: a curve further right is better at every quantile.

    Floors are vertical bands (mean ± std of the default configuration over seeds).
    """
    panels, studies, colors, bands = _value_panels(trials, order, labels, floors, columns, "ECDF")
    with style():
        fig = Figure(figsize=(6.0 * len(panels) + 0.5, 4.0), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)).ravel()
        for ax, (title, done) in zip(axes, panels, strict=True):
            for name in studies:
                values = done.loc[done["study"] == name, "value"].to_numpy(float)
                if values.size:
                    sns.ecdfplot(x=values, ax=ax, color=colors[name], linewidth=2, label=name)
            for f, name in _unique_floors(bands, studies):
                ax.axvspan(f.mean - f.std, f.mean + f.std, color=colors[name], alpha=0.12, lw=0)
                ax.axvline(f.mean, color=colors[name], linestyle="--", linewidth=1.2, label=f"{f.label} (mean ± std)")
            ax.set_xlabel("validation mAP")
            ax.set_ylabel("share of trials with mAP ≤ x")
            ax.set_ylim(0, 1.02)
            if len(panels) > 1:
                ax.set_title(title)
        _figure_legend(fig, axes)
    return fig


def _figure_legend(fig: Figure, axes: Sequence[Any] | np.ndarray) -> None:
    """One legend for every panel, below them, so that no curve hides under it."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(
            handles=list(entries.values()),
            labels=list(entries),
            loc="outside lower center",
            ncols=min(4, len(entries)),
            fontsize="small",
        )


def expected_best(
    frame: pd.DataFrame,
    order: Sequence[str] | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    floors: Mapping[str, Floor] | None = None,
) -> Figure:
    """Expected best validation mAP after n trials, with its band; one panel per ``basis`` when present.

    Floors are horizontal lines (the default configuration's mean over seeds, ± std): the height of a
    curve above its loss's line is what tuning buys over the default.
    """
    if frame is None or frame.empty or not np.isfinite(pd.to_numeric(frame["mean"], errors="coerce")).any():
        raise NotEnoughData("no expected-best curve could be computed (no complete trials).")
    frame, order = _relabel(frame, order, labels)
    studies = _studies(frame, order)
    if not studies:
        raise NotEnoughData("no swept study has an expected-best curve.")
    frame = frame[frame["study"].isin(studies)]
    colors = palette(studies)
    bands = _floors(floors, labels)
    if "basis" in frame:
        bases = [b for b in ("failure-aware", "survivors") if (frame["basis"] == b).any()]
        bases += [b for b in dict.fromkeys(frame["basis"].astype(str)) if b not in bases]
        parts = [(b, frame[frame["basis"] == b]) for b in bases]
        if len(parts) == 2 and _same_curves(parts[0][1], parts[1][1]):
            parts = [(f"{parts[0][0]} = {parts[1][0]} (no trial diverged)", parts[0][1])]
    else:
        parts = [("", frame)]
    with style():
        fig = Figure(figsize=(6.0 * len(parts) + 0.5, 4.0), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(parts), squeeze=False, sharey=True)).ravel()
        for ax, (title, part_frame) in zip(axes, parts, strict=True):
            for name in studies:
                part = part_frame[part_frame["study"] == name].sort_values("n")
                if part.empty:
                    continue
                ax.plot(part["n"], part["mean"], color=colors[name], linewidth=2, label=name)
                if {"low", "high"} <= set(part) and np.isfinite(part[["low", "high"]].to_numpy(float)).any():
                    ax.fill_between(part["n"], part["low"], part["high"], color=colors[name], alpha=0.2, linewidth=0)
            for f, name in _unique_floors(bands, studies):
                ax.axhspan(f.mean - f.std, f.mean + f.std, color=colors[name], alpha=0.1, lw=0)
                ax.axhline(
                    f.mean, color=colors[name], linestyle="--", linewidth=1.2, label=f"{f.label} (default config)"
                )
            if frame["n"].max() > 50:
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_xlabel("number of trials n")
            if title:
                ax.set_title(title)
        axes[0].set_ylabel("expected best validation mAP")
        _figure_legend(fig, axes[:1])
    return fig


def _same_curves(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    key = ["study", "n"]
    left, right = a.sort_values(key)[key + ["mean"]], b.sort_values(key)[key + ["mean"]]
    if len(left) != len(right) or not (left[key].to_numpy() == right[key].to_numpy()).all():
        return False
    return bool(np.allclose(left["mean"].to_numpy(float), right["mean"].to_numpy(float), equal_nan=True))


def importances(
    frame: pd.DataFrame,
    order: Sequence[str] | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    param_labels: Mapping[str, str] | None = None,
) -> Figure:
    """Per-hyperparameter importance, one panel per method, bars per study with their intervals."""
    if frame is None or frame.empty or not np.isfinite(pd.to_numeric(frame["mean"], errors="coerce")).any():
        raise NotEnoughData(
            "no importances were computed (they need several complete trials and at least one swept hyperparameter)."
        )
    frame, order = _relabel(frame, order, labels)
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
            ax.set_yticks(range(len(params)), [_param(p, param_labels) for p in params])
            ax.set_title(method)
            ax.set_xlabel("importance (share of variance)")
        axes[-1].legend(title="study", loc="lower right")
    return fig


def marginals(
    frame: pd.DataFrame,
    order: Sequence[str] | None = None,
    max_params: int = 12,
    log_params: Collection[str] = (),
    *,
    labels: Mapping[str, str] | None = None,
    param_labels: Mapping[str, str] | None = None,
) -> Figure:
    """Mean validation mAP along each hyperparameter (binned), with intervals: flat curves mean robust.

    Parameters in ``log_params`` (swept on a log scale, e.g. lr) get a log x axis.
    """
    if frame is None or frame.empty or not np.isfinite(pd.to_numeric(frame["mean"], errors="coerce")).any():
        raise NotEnoughData("no marginal curves were computed (no complete trials with swept hyperparameters).")
    frame, order = _relabel(frame, order, labels)
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
            ax.set_title(_param(param, param_labels))
            ax.set_xlabel(param)  # the stored name, as in the search space table
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
    *,
    labels: Mapping[str, str] | None = None,
    param_labels: Mapping[str, str] | None = None,
) -> Figure:
    """Heatmap of binned mean validation mAP over two hyperparameters, one panel per study, shared colours.

    ``frame`` has one row per (study, x bin, y bin) with bin labels (or centres) in columns ``x`` and ``y``.
    """
    if frame is None or frame.empty or value not in frame:
        raise NotEnoughData(f"no binned {x} × {y} map was computed.")
    frame = frame[np.isfinite(pd.to_numeric(frame[value], errors="coerce"))]
    if frame.empty:
        raise NotEnoughData(f"no {x} × {y} bin holds a complete trial.")
    frame, order = _relabel(frame, order, labels)
    studies = _studies(frame, order)
    vmin, vmax = float(frame[value].min()), float(frame[value].max())
    if vmin == vmax:
        vmin, vmax = vmin - 0.005, vmax + 0.005
    xs = sorted(frame[x].unique())
    ys = sorted(frame[y].unique())

    def label(v) -> str:
        return f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)

    with style():
        ncols, nrows = _grid_shape(len(studies))
        fig = Figure(figsize=(4.4 * ncols + 1.2, 4.2 * nrows), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
        for ax in axes[len(studies) :]:
            ax.set_visible(False)
        for i, (ax, name) in enumerate(zip(axes, studies, strict=False)):
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
                cbar=False,
                linewidths=0.3,
                linecolor="white",
                xticklabels=[label(v) for v in xs],
                yticklabels=[label(v) for v in ys[::-1]],
            )
            ax.set_title(name)
            ax.set_xlabel(_param(x, param_labels))
            ax.set_ylabel(_param(y, param_labels) if i % ncols == 0 else "")
            ax.tick_params(axis="x", labelrotation=45)
            ax.tick_params(axis="y", labelrotation=0)
        # One colour bar for every panel: the colours are shared.
        fig.colorbar(axes[0].collections[0], ax=list(axes[: len(studies)]), label="mean validation mAP", shrink=0.9)
    return fig


def failure_map(
    trials: pd.DataFrame,
    pairs: Mapping[str, tuple[str, str]],
    order: Sequence[str] | None = None,
    log_params: Collection[str] = (),
    *,
    labels: Mapping[str, str] | None = None,
    param_labels: Mapping[str, str] | None = None,
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
    pairs = {(labels or {}).get(k, k): v for k, v in pairs.items()}
    trials, order = _relabel(trials, order, labels)
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
        ncols, nrows = _grid_shape(len(panels))
        fig = Figure(figsize=(4.2 * ncols + 0.8, 4.0 * nrows), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        for ax, (name, x, y, part) in zip(axes, panels, strict=False):
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
            ax.set_xlabel(_param(x, param_labels))
            ax.set_ylabel(_param(y, param_labels))
            if x in log_params and (part[f"param_{x}"] > 0).all():
                ax.set_xscale("log")
            if y in log_params and (part[f"param_{y}"] > 0).all():
                ax.set_yscale("log")
            ax.legend(loc="best", fontsize="small", frameon=True)
    return fig


def _param(name: str, param_labels: Mapping[str, str] | None) -> str:
    """How a figure names a hyperparameter: its symbol with the stored name where given (e.g. "γ⁻ (gamma_neg)")."""
    return (param_labels or {}).get(name, name)


def _grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    """(columns, rows) for ``n`` per-study panels: at most three a row, so text stays legible in the report."""
    n = max(n, 1)
    rows = int(np.ceil(n / max_cols))
    ncols = int(np.ceil(n / rows))  # balanced: 4 panels as 2 x 2, not 3 + 1
    return ncols, rows


TIERS = ("head", "medium", "tail")


def tier_spread(
    trials: pd.DataFrame,
    order: Sequence[str] | None = None,
    split: str = "val",
    *,
    labels: Mapping[str, str] | None = None,
) -> Figure:
    """Box plots of head / medium / tail mAP per study: where across the class frequencies the spread lives."""
    trials, order = _relabel(trials, order, labels)
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
