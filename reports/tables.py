"""The report's tables, as plain rows of already-formatted strings.

Formatting happens here, not in the template, so that every number in the report follows the same
rules (3 decimals, 95 % intervals in brackets, "—" where there is no value) and the template only
lays rows out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.results import Analysis, Comparison, Estimate, StudySummary

DASH = "—"


def number(x: Any, digits: int = 3) -> str:
    """``0.412``; integers stay integers; NaN / None become a dash."""
    if x is None:
        return DASH
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(x):
        return DASH
    if x != 0 and abs(x) < 10**-digits:
        return f"{x:.{max(digits - 1, 1)}e}"
    return f"{x:.{digits}f}"


def estimate(e: Estimate | None, digits: int = 3, percent: bool = False) -> str:
    """``0.412 [0.401, 0.423]``: the value and its 95 % interval (value alone when there is no interval)."""
    if e is None:
        return DASH
    scale, unit = (100.0, " %") if percent else (1.0, "")
    digits = 1 if percent else digits
    value = number(e.value * scale, digits)
    if value == DASH:
        return DASH
    if not e.has_ci:
        return value + unit
    return f"{value}{unit} [{number(e.low * scale, digits)}, {number(e.high * scale, digits)}]"


def estimate_parts(e: Estimate | None, digits: int = 3, percent: bool = False) -> tuple[str, str]:
    """(value, "[low, high]") for tables that put the interval on a second line."""
    text = estimate(e, digits, percent)
    value, _, ci = text.partition(" [")
    return value, f"[{ci}" if ci else ""


def p_value(p: float) -> str:
    if p is None or not math.isfinite(p):
        return DASH
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def plain(value: Any) -> str:
    """Setting values as a reader expects them: JSON for containers, ``none`` for None."""
    if value is None:
        return "none"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# -- fairness -------------------------------------------------------------------------------------

# (label, path in the study attributes, whether studies are *meant* to differ on it)
FAIRNESS_SETTINGS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("loss", ("loss",), True),
    ("data set", ("config", "trial", "data", "name"), False),
    ("data file", ("config", "trial", "data", "path"), False),
    ("data fingerprint", ("data_fingerprint",), False),
    ("classes", ("class_names",), False),
    ("protocol", ("config", "trial", "protocol"), False),
    ("backbone", ("config", "trial", "backbone"), False),
    ("checkpoint", ("config", "trial", "checkpoint_sha256"), False),
    ("budget (trials)", ("config", "n_trials"), False),
    ("sampler", ("config", "sampler"), False),
    ("seed", ("config", "seed"), False),
    ("space mode", ("config", "space_mode"), False),
    ("nuisance (lr, wd swept)", ("config", "nuisance"), False),
    ("replicates per trial", ("config", "replicates"), False),
    ("epochs", ("config", "trial", "train", "epochs"), False),
    ("batch size", ("config", "trial", "train", "batch_size"), False),
    ("learning rate", ("config", "trial", "train", "lr"), False),
    ("weight decay", ("config", "trial", "train", "weight_decay"), False),
    ("optimizer", ("config", "trial", "train", "optimizer"), False),
    ("head", ("config", "trial", "train", "head"), False),
    ("image size", ("config", "trial", "data", "image_size"), False),
    ("swept parameters", ("search_space", "params"), True),
    ("lossweep version", ("versions", "lossweep"), False),
)

_MISSING = object()


def _get(d: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return _MISSING
        d = d[key]
    return d


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for key, value in d.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _param_names(params: Any) -> list[str]:
    """Swept parameter names from a stored search space (a list of specs, or a name -> spec mapping)."""
    if isinstance(params, dict):
        return list(params)
    if isinstance(params, list):
        return [str(p.get("name")) if isinstance(p, dict) else str(p) for p in params]
    return []


def param_specs(params: Any) -> list[tuple[str, dict[str, Any]]]:
    """(name, spec) pairs from a stored search space's ``params`` (a list of specs, or name -> spec)."""
    if isinstance(params, dict):
        return [(str(k), v if isinstance(v, dict) else {"default": v}) for k, v in params.items()]
    if isinstance(params, list):
        return [(str(p.get("name")), p) for p in params if isinstance(p, dict)]
    return []


@dataclass
class Row:
    label: str
    cells: list[str]
    differs: bool = False  # the studies disagree on this setting
    expected: bool = False  # ...and are meant to (the loss, its search space)
    note: str = ""


def fairness_rows(settings: dict[str, dict[str, Any]], studies: Sequence[str]) -> list[Row]:
    """What each study used, one row per setting, flagging settings on which the studies differ.

    Curated settings first (what DESIGN.md names as needed for a fair comparison), then any other
    trial setting that differs, so that nothing that changes a trial's result goes unreported.
    """
    rows: list[Row] = []
    for setting, path, expected in FAIRNESS_SETTINGS:
        values = [_get(settings.get(s, {}), path) for s in studies]
        if all(v is _MISSING for v in values):
            continue
        if path == ("search_space", "params"):
            values = [_param_names(v) for v in values]
            shown = [", ".join(v) if v else "none" for v in values]
        elif path == ("class_names",):
            shown = [f"{len(v)} classes" if isinstance(v, list) else DASH for v in values]
        elif path == ("data_fingerprint",):
            shown = [str(v)[:12] if v is not _MISSING else DASH for v in values]
        else:
            shown = [DASH if v is _MISSING else plain(v) for v in values]
        differs = (
            len({json.dumps(v if v is not _MISSING else "<missing>", sort_keys=True, default=str) for v in values}) > 1
        )
        rows.append(Row(setting, shown, differs, expected and differs))
    curated = {".".join(p[2:]) for _, p, _ in FAIRNESS_SETTINGS if p[:2] == ("config", "trial")}
    flat = [_flatten(_get(settings.get(s, {}), ("config", "trial"))) for s in studies]
    keys = sorted(set().union(*[f.keys() for f in flat])) if flat else []
    for key in keys:
        if key in curated or key in {"device", "cache_dir", "embed_batch_size", "num_threads", ""}:
            continue  # where a trial ran, not what it computed
        values = [f.get(key, _MISSING) for f in flat]
        if len({plain(v) if v is not _MISSING else "<missing>" for v in values}) > 1:
            rows.append(Row(key, [DASH if v is _MISSING else plain(v) for v in values], True))
    return rows


# -- dispersion -----------------------------------------------------------------------------------

DISPERSION_COLUMNS = (
    ("mean", "mean"),
    ("std", "std"),
    ("iqr", "IQR"),
    ("worst_decile", "worst decile"),
    ("min", "min"),
    ("best", "best"),
)


@dataclass
class SummaryRow:
    study: str
    loss: str
    counts: str
    enough: bool
    stats: list[tuple[str, str]]  # (value, "[low, high]")
    failure_rate: tuple[str, str]
    divergence_rate: tuple[str, str]
    seed_ratio: tuple[str, str]
    label: str = ""  # the short label figures use
    basis: str = ""  # "failure-aware" | "survivors" | "" (older analyses)
    basis_note: str = ""  # "diverged at 0.052": the floor value diverged trials enter at
    survivors: bool = False  # the survivors-only line under a study's failure-aware line
    floor: bool = False  # a seeds-mode study: the noise floor, not a sweep


def dispersion_rows(summaries: Iterable[StudySummary], labels: dict[str, str] | None = None) -> list[SummaryRow]:
    """One row per study; where the analysis is failure-aware, a survivors-only row under it.

    ``stats`` are failure-aware when ``survivor_stats`` is filled (diverged trials at ``floor_value``);
    older analyses have survivors-only ``stats`` and no second row.
    """
    rows = []
    for s in summaries:
        aware = bool(s.survivor_stats)
        basis = "failure-aware" if aware else ""
        note = f"diverged at {number(s.floor_value)}" if aware and math.isfinite(s.floor_value) and s.n_diverged else ""
        base = SummaryRow(
            study=s.name,
            loss=s.loss,
            counts=f"{s.n_complete:,} / {s.n_trials:,}",
            enough=s.enough,
            stats=[estimate_parts(s.stats.get(key)) for key, _ in DISPERSION_COLUMNS],
            failure_rate=estimate_parts(s.failure_rate, percent=True),
            divergence_rate=estimate_parts(s.divergence_rate, percent=True),
            seed_ratio=estimate_parts(s.hp_to_seed_ratio, digits=2),
            label=(labels or {}).get(s.name, s.name),
            basis=basis,
            basis_note=note,
            floor=s.space_mode == "seeds",
        )
        rows.append(base)
        if aware:
            rows.append(
                SummaryRow(
                    study=s.name,
                    loss=s.loss,
                    counts=f"{s.n_complete:,}",
                    enough=s.enough,
                    stats=[estimate_parts(s.survivor_stats.get(key)) for key, _ in DISPERSION_COLUMNS],
                    failure_rate=("", ""),
                    divergence_rate=("", ""),
                    seed_ratio=("", ""),
                    label=base.label,
                    basis="survivors",
                    survivors=True,
                    floor=base.floor,
                )
            )
    return rows


VARIANCE_COMPONENTS = (("hp", "σ²_hp (hyperparameters)"), ("seed", "σ²_seed"), ("interaction", "σ²_hp×seed"))


def variance_rows(summaries: Iterable[StudySummary], labels: dict[str, str] | None = None) -> list[list[str]]:
    """Per study with R >= 2 replicate seeds: the config x seed variance components with their intervals."""
    rows = []
    for s in summaries:
        if not s.variance_components:
            continue
        cells = [(labels or {}).get(s.name, s.name), f"{s.n_replicates:,}"]
        for key, _ in VARIANCE_COMPONENTS:
            e = s.variance_components.get(key)
            cells.append(estimate(e, 5) if e is not None else DASH)
        rows.append(cells)
    return rows


@dataclass
class ComparisonRow:
    pair: str
    std_ratio: str
    std_ratio_clear: bool  # the interval excludes 1
    brown_forsythe: str
    p_b_beats_a: str
    mean_diff: str
    best_diff: str
    fair: bool
    differences: list[str] = field(default_factory=list)


def comparison_rows(comparisons: Iterable[Comparison]) -> list[ComparisonRow]:
    rows = []
    for c in comparisons:
        bf = DASH
        if c.brown_forsythe_stat is not None and math.isfinite(c.brown_forsythe_stat):
            p = p_value(c.brown_forsythe_p)
            bf = f"W = {number(c.brown_forsythe_stat, 2)}, p {p if p.startswith('<') else '= ' + p}"
        rows.append(
            ComparisonRow(
                pair=f"{c.b} vs {c.a}",
                std_ratio=estimate(c.std_ratio),
                std_ratio_clear=c.std_ratio.excludes(1.0),
                brown_forsythe=bf,
                p_b_beats_a=estimate(c.p_b_beats_a),
                mean_diff=estimate(c.mean_diff),
                best_diff=estimate(c.best_diff),
                fair=c.fair,
                differences=[
                    f"{d.setting}: {plain(d.value_a)} ({c.a}) vs {plain(d.value_b)} ({c.b})" for d in c.differences
                ],
            )
        )
    return rows


# -- failures -------------------------------------------------------------------------------------


def status_counts(trials: pd.DataFrame, studies: Sequence[str]) -> list[list[str]]:
    """Per study: complete, diverged, failed counts and the share that did not complete."""
    rows = []
    for name in studies:
        part = trials[trials["study"].astype(str) == name] if not trials.empty else trials
        n = len(part)
        counts = {s: int((part["status"] == s).sum()) if n else 0 for s in ("complete", "diverged", "failed")}
        lost = (counts["diverged"] + counts["failed"]) / n if n else math.nan
        rows.append(
            [
                name,
                f"{counts['complete']:,}",
                f"{counts['diverged']:,}",
                f"{counts['failed']:,}",
                number(lost * 100, 1) + " %" if n else DASH,
            ]
        )
    return rows


def fail_reasons(trials: pd.DataFrame, limit: int = 12) -> list[list[str]]:
    """The most common reasons trials failed or diverged, per study and status."""
    if trials.empty or "status" not in trials:
        return []
    bad = trials[trials["status"].isin(["failed", "diverged"])]
    if bad.empty:
        return []
    reason = bad["fail_reason"] if "fail_reason" in bad else pd.Series("", index=bad.index)
    reason = reason.fillna("(no reason recorded)").astype(str).str.strip().str.slice(0, 160)
    counts = (
        bad.assign(reason=reason, study=bad["study"].astype(str))
        .groupby(["study", "status", "reason"], sort=False)
        .size()
        .rename("count")
        .reset_index()
        .sort_values(["study", "count"], ascending=[True, False])
    )
    counts = counts.groupby("study", sort=False).head(limit)
    # str(): the columns hold strings already (see above); pandas types itertuples fields as any scalar.
    return [[str(r.study), str(r.status), str(r.reason), f"{r.count:,}"] for r in counts.itertuples(index=False)]


# -- class tiers ----------------------------------------------------------------------------------


def tier_rows(trials: pd.DataFrame, summaries: Iterable[StudySummary], split: str = "val") -> list[list[str]]:
    """Per study and tier (head / medium / tail): median mAP over complete trials and the spread (std, CI)."""
    rows = []
    for s in summaries:
        part = (
            trials[(trials["study"].astype(str) == s.name) & (trials["status"] == "complete")]
            if not trials.empty
            else trials
        )
        for tier in ("head", "medium", "tail"):
            column = f"{split}_mAP_{tier}"
            values = pd.to_numeric(part[column], errors="coerce").dropna() if column in part else pd.Series([])
            if values.empty and tier not in s.tier_std:
                continue
            median = number(values.median()) if not values.empty else DASH
            iqr = number(values.quantile(0.75) - values.quantile(0.25)) if len(values) > 1 else DASH
            rows.append([s.name, tier, median, estimate(s.tier_std.get(tier)), iqr])
    return rows


# -- appendix -------------------------------------------------------------------------------------


def search_space_rows(settings: dict[str, dict[str, Any]], studies: Sequence[str]) -> list[list[str]]:
    rows = []
    for name in studies:
        space = settings.get(name, {}).get("search_space") or {}
        for param, spec in param_specs(space.get("params")):
            rows.append(
                [
                    name,
                    param,
                    plain(spec.get("low")),
                    plain(spec.get("high")),
                    "log" if spec.get("log") else "linear",
                    plain(spec.get("default")),
                    "swept",
                ]
            )
        for param, value in (space.get("fixed") or {}).items():
            rows.append([name, param, DASH, DASH, DASH, plain(value), "fixed"])
    return rows


def version_rows(settings: dict[str, dict[str, Any]], studies: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """(package names, one row per study) of the versions each study ran with."""
    versions = {s: settings.get(s, {}).get("versions") or {} for s in studies}
    packages = list(dict.fromkeys(k for v in versions.values() for k in v))
    return packages, [[s] + [plain(versions[s].get(p, DASH)) for p in packages] for s in studies]


def settings_json(settings: dict[str, dict[str, Any]], name: str) -> str:
    """A study's stored attributes as indented JSON, without the long per-class lists."""
    shown = {k: v for k, v in settings.get(name, {}).items() if k not in {"train_positives"}}
    return json.dumps(shown, indent=2, sort_keys=True, default=str)


def study_order(analysis: Analysis) -> list[str]:
    """Studies in the order the analysis summarised them, then any others that have trials."""
    names = list(analysis.summaries)
    if not analysis.trials.empty:
        names += [s for s in dict.fromkeys(analysis.trials["study"].astype(str)) if s not in names]
    names += [s for s in analysis.settings if s not in names]
    return names
