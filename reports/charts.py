"""Draw the report's figures and turn them into inline ``data:`` images with alt text and captions.

A figure that the data cannot support becomes a :class:`Chart` with ``note`` set instead of an
image, so degenerate studies (nothing complete, a single value) still give a full report.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import figures
from analysis.results import Analysis
from reports.roles import Roles, symbol
from reports.roles import roles as make_roles
from reports.tables import param_specs


@dataclass
class Chart:
    key: str
    title: str
    alt: str
    caption: str
    src: str | None = None  # data:image/png;base64,...
    note: str | None = None  # why the figure is not shown
    width: int = 0
    height: int = 0


def _draw(key: str, title: str, alt: str, caption: str, draw: Callable[[], figures.Figure]) -> Chart:
    chart = Chart(key, title, alt, caption)
    try:
        fig = draw()
    except figures.NotEnoughData as exc:
        chart.note = str(exc)
        return chart
    png = figures.to_png(fig)
    chart.width, chart.height = _png_size(png)
    chart.src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return chart


def _png_size(png: bytes) -> tuple[int, int]:
    # The IHDR chunk holds width and height at bytes 16-24 of every PNG.
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _names(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def top_params(analysis: Analysis, study: str | None = None, k: int = 2) -> list[str]:
    """The ``k`` most important swept parameters (mean importance over methods and studies).

    Falls back to the parameters with the most recorded values when no importances were computed.
    """
    trials = analysis.trials
    present = [c[len("param_") :] for c in trials.columns if c.startswith("param_")] if not trials.empty else []
    rows = trials
    if study is not None and present:
        rows = trials[trials["study"].astype(str) == study]
        present = [p for p in present if rows[f"param_{p}"].notna().any()]
    ranked: list[str] = []
    imp = analysis.importances
    if imp is not None and not imp.empty:
        part = imp if study is None else imp[imp["study"].astype(str) == study]
        ranked = [p for p in part.groupby("param")["mean"].mean().sort_values(ascending=False).index if p in present]
    if len(ranked) < k and present:
        counts = {p: int(rows[f"param_{p}"].notna().sum()) for p in present}
        ranked += [p for p in sorted(present, key=lambda p: -counts[p]) if p not in ranked]
    return ranked[:k]


def _grid(analysis: Analysis) -> tuple[pd.DataFrame | None, str, str]:
    """``Analysis.grid2d`` (binned mean mAP over γ⁻ × τ) and the names of its two parameter columns."""
    frame = getattr(analysis, "grid2d", None)
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        return None, "gamma_neg", "clip"
    x = str(frame["x_param"].iloc[0]) if "x_param" in frame else "gamma_neg"
    y = str(frame["y_param"].iloc[0]) if "y_param" in frame else "clip"
    return frame, x, y


def floors(analysis: Analysis, roles: Roles) -> dict[str, figures.Floor]:
    """Each sweep's seed floor (its matched seeds-mode study), from that study's complete trials."""
    trials = analysis.trials
    out: dict[str, figures.Floor] = {}
    if trials.empty:
        return out
    done = trials[trials["status"] == "complete"]
    for sweep, floor in roles.floor_of.items():
        values = pd.to_numeric(done.loc[done["study"].astype(str) == floor, "value"], errors="coerce").dropna()
        if len(values) >= 2:
            out[sweep] = figures.Floor(roles.label(floor), float(values.mean()), float(values.std(ddof=1)), len(values))
    return out


def value_columns(analysis: Analysis, sweeps: Sequence[str]) -> tuple[list[tuple[str, str]], str]:
    """Which values the distribution figures show, and a sentence for their captions.

    Failure-aware values (diverged trials at the study's floor value) first where the analysis gives
    them and some sweep has a diverged trial; survivors-only values beside them, labelled.
    """
    trials = analysis.trials
    column = figures.FAILURE_AWARE
    if trials.empty or column not in trials:
        return [
            ("value", "complete trials")
        ], "Diverged trials are left out (this analysis has no failure-aware values)."
    part = trials[trials["study"].astype(str).isin(list(sweeps))]
    diverged = part[(part["status"] == "diverged") & np.isfinite(pd.to_numeric(part[column], errors="coerce"))]
    if diverged.empty:
        return [
            ("value", "complete trials")
        ], "No swept trial diverged, so failure-aware and survivors-only values coincide."
    floors, sources = [], []
    for name in dict.fromkeys(diverged["study"].astype(str)):
        s = analysis.summaries.get(name)
        if s is not None and np.isfinite(s.floor_value):
            floors.append(f"{name} {s.floor_value:.3f}")
            sources.append(s.floor_source or "the chance-level mAP of the validation split")
    at = f" ({', '.join(floors)})" if floors else ""
    source = "; ".join(dict.fromkeys(sources)) or "a documented floor"
    return (
        [(column, "failure-aware: diverged trials at the floor value"), ("value", "survivors only")],
        f"Left: failure-aware, every diverged trial enters at its study's floor value{at}, {source}; "
        "right: survivors only (complete trials).",
    )


def _floor_sentence(roles: Roles, bands: dict[str, figures.Floor]) -> str:
    if not bands:
        text = "No seeds-mode study matches a sweep, so no seed noise floor is drawn."
    else:
        text = (
            "Grey bands are the seed noise floor: the loss's default configuration re-run over seeds "
            "(mean ± std), a reference, not a rival study."
        )
    if roles.floor_notes:
        text += " Not drawn as a floor: " + "; ".join(roles.floor_notes) + "."
    return text


def charts(analysis: Analysis, order: Sequence[str], roles: Roles | None = None) -> dict[str, Chart]:
    """Every figure of the report, keyed by section.

    Seeds-mode studies appear only as their sweeps' floors; every figure names studies by their
    short labels (the report lists the full names).
    """
    roles = roles if roles is not None else make_roles(analysis, order)
    sweeps = roles.sweeps
    labels = roles.labels
    trials = analysis.trials
    names = _names([roles.label(s) for s in sweeps]) if sweeps else "no study"
    medians = _medians(trials, sweeps, labels)
    log = log_params(analysis.settings)
    names_of = param_names(trials)
    bands = floors(analysis, roles)
    columns, basis_sentence = value_columns(analysis, sweeps)
    floor_sentence = _floor_sentence(roles, bands)
    out: dict[str, Chart] = {}

    out["distributions"] = _draw(
        "distributions",
        "Validation mAP of every trial",
        f"Violin and strip plot of validation mAP per swept study ({names}); each dot is one trial. {medians}",
        "Each violin is the distribution of validation mAP over a study's trials, with its "
        "quartiles; dots are individual trials (a random subsample where a study has more than "
        f"{figures.MAX_POINTS:,}). {basis_sentence} {floor_sentence} Look for the height of each violin: "
        "a short violin means the loss gives similar mAP wherever its hyperparameters land; a long lower "
        "tail means some settings fail badly.",
        lambda: figures.distributions(trials, sweeps, labels=labels, floors=bands, columns=columns),
    )
    out["ecdf"] = _draw(
        "ecdf",
        "Empirical CDF of validation mAP",
        f"Empirical cumulative distribution of validation mAP for {names}. {medians}",
        f"The share of trials at or below each mAP. {basis_sentence} Dashed vertical lines and bands are "
        "each loss's seed noise floor (default configuration, mean ± std over seeds). A steeper curve means "
        "less spread; a curve to the right of another at every height means that loss is better at every "
        "quantile, not only at the best trial.",
        lambda: figures.ecdf(trials, sweeps, labels=labels, floors=bands, columns=columns),
    )
    eb = analysis.expected_best
    if isinstance(eb, pd.DataFrame) and not eb.empty and "study" in eb:
        eb = eb[eb["study"].astype(str).isin(sweeps)]
    basis = isinstance(eb, pd.DataFrame) and "basis" in eb and eb["basis"].nunique() > 1
    out["expected_best"] = _draw(
        "expected_best",
        "Expected best mAP versus number of trials",
        f"Expected best validation mAP as a function of the number of random trials, with bands, for {names}.",
        "Expected best validation mAP when drawing n trials at random from the study (Dodge et al. 2019), "
        "with its band. "
        + ("Left: failure-aware (a diverged draw counts at the floor value); right: survivors only. " if basis else "")
        + "Dashed horizontal lines are each loss's default configuration (mean over seeds, band ± std): the "
        "height of a curve above its line is what tuning buys. Look at the left end: a loss that reaches "
        "its plateau after few trials needs little tuning.",
        lambda: figures.expected_best(eb, sweeps, labels=labels, floors=bands),
    )
    out["importances"] = _draw(
        "importances",
        "Hyperparameter importance",
        "Bar chart of each hyperparameter's importance per study and method, with error bars.",
        "Share of mAP variance attributed to each hyperparameter (per importance method), with intervals. "
        "Look for one parameter dominating: that is the one a user of this loss has to tune; overlapping "
        "error bars mean the ranking is not settled.",
        lambda: figures.importances(analysis.importances, sweeps, labels=labels, param_labels=names_of),
    )
    out["marginals"] = _draw(
        "marginals",
        "Marginal effect of each hyperparameter",
        "Line plots of mean validation mAP across bins of each hyperparameter, one panel per hyperparameter.",
        "Mean validation mAP over trials in each bin of one hyperparameter (averaging over the others), with "
        "intervals. Flat curves mean the loss is insensitive to that parameter; a sharp peak means it must be "
        "set carefully.",
        lambda: figures.marginals(analysis.marginals, sweeps, log_params=log, labels=labels, param_labels=names_of),
    )

    frame, x, y = _grid(analysis)
    has_both = not trials.empty and {f"param_{x}", f"param_{y}"} <= set(trials.columns)
    if frame is not None or has_both:
        out["gamma_clip"] = _draw(
            "gamma_clip",
            "γ⁻ × τ map",
            "Heatmaps of binned mean validation mAP over the negative focusing parameter gamma_neg and the "
            "probability shift clip, one per study.",
            "Mean validation mAP in each (γ⁻, τ) bin; colours are shared across studies; empty cells had no "
            "complete trial. ASL's tuning advice is about these two parameters: look for how large the "
            "bright region is, not only how bright its best cell is.",
            lambda: (
                figures.binned_map(frame, x, y, "mean", sweeps, labels=labels, param_labels=names_of)
                if frame is not None
                else _raise("too few complete trials sweep both γ⁻ and τ to bin them.")
            ),
        )

    pairs = {name: (params[0], params[1]) for name in sweeps if len(params := top_params(analysis, name, k=2)) == 2}
    out["failures"] = _draw(
        "failures",
        "Where trials fail or diverge",
        "Scatter plots, one per swept study, of every trial over that study's two most important hyperparameters: "
        "grey dots are complete trials, red crosses diverged trials, orange triangles failed trials.",
        "Each study's trials placed by its two most important hyperparameters. Look for red crosses "
        "clustering: a region where a loss diverges is a region its search space (or the loss) should "
        "exclude; failed (orange) trials scattered at random point to the infrastructure, not the loss.",
        lambda: figures.failure_map(trials, pairs, sweeps, log_params=log, labels=labels, param_labels=names_of),
    )

    out["tiers"] = _draw(
        "tiers",
        "Head, medium and tail mAP per study",
        "Box plots of head, medium and tail class mAP per swept study over complete trials.",
        "mAP over the frequent (head), medium and rare (tail) classes, one box per tier over a study's "
        "complete trials. Look at the tail boxes: if one loss's overall spread is smaller only because its "
        "head classes are stable while its tail varies as much, its robustness is not bought where it matters.",
        lambda: figures.tier_spread(trials, sweeps, labels=labels),
    )
    return out


def param_names(trials: pd.DataFrame) -> dict[str, str]:
    """ "γ⁻ (gamma_neg)" for every swept parameter with a symbol: figures name both, tables the stored name."""
    present = [c[len("param_") :] for c in trials.columns if c.startswith("param_")] if not trials.empty else []
    return {p: f"{symbol(p)} ({p})" for p in present if symbol(p) != p}


def log_params(settings: dict) -> set[str]:
    """Names of parameters any study sweeps on a log scale (from the stored search spaces)."""
    out: set[str] = set()
    for attrs in settings.values():
        params = ((attrs or {}).get("search_space") or {}).get("params")
        out |= {name for name, spec in param_specs(params) if spec.get("log")}
    return out


def _medians(trials: pd.DataFrame, order: Sequence[str], labels: dict[str, str] | None = None) -> str:
    """Alt text for readers who cannot see the figure: each study's median and quartiles."""
    if trials.empty:
        return ""
    done = trials[trials["status"] == "complete"]
    parts = []
    for name in order:
        values = pd.to_numeric(done.loc[done["study"].astype(str) == name, "value"], errors="coerce").dropna()
        if len(values):
            q1, q2, q3 = values.quantile([0.25, 0.5, 0.75])
            label = (labels or {}).get(name, name)
            label = label if label == name else f"{label} ({name})"
            parts.append(f"{label}: median {q2:.3f}, quartiles {q1:.3f} to {q3:.3f} over {len(values)} trials")
    return "; ".join(parts) + "." if parts else ""


def _raise(message: str):
    raise figures.NotEnoughData(message)
