"""``analyse``: from a store to every number a report shows (an :class:`~analysis.results.Analysis`).

Steps: load the studies (analysis.load), put each diverged trial at its data's floor value
(analysis.failure), summarise each study's failure-aware spread of validation mAP with survivors-only
figures beside (analysis.stats) and its variance components where R >= 2 (analysis.components),
find each loss's seed noise floor, compare pairs of studies (analysis.compare: the calibrated
spread test or σ_hp, secondary measures, fairness, refusal, verdict; one primary comparison, the
others Holm-adjusted), expected best mAP after n trials (analysis.expected_best), importances
(analysis.importance) and marginal curves (analysis.marginals). Degenerate inputs (one study, no
complete trials, constant values, a study
not made by lossweep) give NaNs and messages, never a traceback.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import optuna
import pandas as pd

from analysis import fairness, stats
from analysis.compare import Side, adjust, compare
from analysis.components import replicate_table, variance_components
from analysis.expected_best import expected_best_curve, expected_best_half
from analysis.failure import failure_aware, floors
from analysis.importance import param_importances
from analysis.load import LoadedStudy, read_studies
from analysis.marginals import GRID_PAIR, grid2d, marginals
from analysis.measures import DELTA
from analysis.results import Analysis, Comparison, Estimate, StudySummary
from analysis.spread import N_PERMUTATIONS
from analysis.verdict import seed_command

TIERS = ("head", "medium", "tail")
SEEDS_MODE = "seeds"


def _values(part: pd.DataFrame) -> np.ndarray:
    v = part.loc[part["status"] == "complete", "value"].to_numpy(float)
    return v[np.isfinite(v)]


def _counts(part: pd.DataFrame) -> tuple[int, int, int, int]:
    """(complete, failed, diverged, interrupted); interrupted trials (a stopped worker) are not the loss's doing."""
    status = part["status"].astype(str)
    interrupted = (status == "failed") & (part["fail_reason"].astype(str) == "interrupted")
    return (
        int((status == "complete").sum()),
        int(((status == "failed") & ~interrupted).sum()),
        int((status == "diverged").sum()),
        int(interrupted.sum()),
    )


def _config(settings: dict) -> dict:
    config = settings.get("config")
    return config if isinstance(config, dict) else {}


def _replicates(settings: dict) -> int:
    r = _config(settings).get("replicates", 1)
    return int(r) if isinstance(r, int) and not isinstance(r, bool) and r >= 1 else 1


def summarise(
    study: LoadedStudy,
    part: pd.DataFrame,
    failure_aware: np.ndarray,
    floor: float,
    *,
    floor_source: str = "",
    n_boot: int,
    seed: int,
    messages: list[str],
) -> StudySummary:
    """Failure-aware dispersion (survivors beside), failure rates, tier spreads and variance components."""
    values = _values(part)
    n_complete, n_failed, n_diverged, n_interrupted = _counts(part)
    n_finished = n_complete + n_failed + n_diverged
    if n_interrupted:
        messages.append(
            f"{study.name}: {n_interrupted} interrupted trial(s) (a stopped worker, retried) are not "
            "counted as failures"
        )
    enough = n_complete >= stats.MIN_TRIALS
    if n_finished == 0:
        messages.append(f"{study.name}: no finished trials yet; its spread cannot be measured")
    elif n_complete == 0:
        messages.append(
            f"{study.name}: no complete trials ({n_finished} finished, all failed or diverged); "
            "its spread cannot be measured"
        )
    elif not enough:
        messages.append(
            f"{study.name}: only {n_complete} complete trial(s) (at least {stats.MIN_TRIALS} needed); "
            "its numbers are shown but too few to rely on"
        )
    if values.size >= 2 and np.ptp(values) == 0:
        messages.append(f"{study.name}: every complete trial has the same mAP ({values[0]:.4f}); spread is zero")
    tier_std = {}
    for tier in TIERS:
        col = f"val_mAP_{tier}"
        if col in part:
            tv = pd.to_numeric(part.loc[part["status"] == "complete", col], errors="coerce").to_numpy(float)
            tv = tv[np.isfinite(tv)]
            if tv.size:
                tier_std[tier] = stats.std_estimate(tv, n_boot=n_boot, seed=seed)
    fa = failure_aware[np.isfinite(failure_aware)]
    replicates = _replicates(study.settings)
    components: dict[str, Estimate] = {}
    if replicates >= 2 and study.space_mode != SEEDS_MODE:
        table = replicate_table(part, replicates, floor)
        components = variance_components(table)
    dispersion = stats.dispersion(fa, n_boot=n_boot, seed=seed)
    dispersion["expected_best_half"] = expected_best_half(fa, n_boot=n_boot, seed=seed)
    survivors = stats.dispersion(values, n_boot=n_boot, seed=seed)
    survivors["expected_best_half"] = expected_best_half(values, n_boot=n_boot, seed=seed)
    return StudySummary(
        name=study.name,
        loss=study.loss,
        space_mode=study.space_mode,
        n_trials=n_finished,
        n_complete=n_complete,
        n_failed=n_failed,
        n_diverged=n_diverged,
        enough=enough,
        stats=dispersion,
        failure_rate=stats.wilson(n_failed + n_diverged, n_finished),
        divergence_rate=stats.wilson(n_diverged, n_finished),
        tier_std=tier_std,
        floor_value=floor,
        floor_source=floor_source,
        survivor_stats=survivors,
        variance_components=components,
        n_replicates=replicates,
        sampler=str(_config(study.settings).get("sampler") or ""),
        swept=fairness.swept(study.settings),
    )


def _seed_floor(
    name: str,
    loaded: dict[str, LoadedStudy],
    fa: dict[str, np.ndarray],
    by_study: dict[str, pd.DataFrame],
    messages: list[str],
) -> tuple[np.ndarray, str, np.ndarray | None] | None:
    """(values whose std is the seed noise of one of ``name``'s trial values, their source, default values).

    In order: a seeds-mode study of the same loss that matches the sweep on data, protocol, epochs,
    backbone and replicates (its failure-aware values; they are also the default configuration's
    values for tunability); else the replicate residuals of the study's own trials divided by sqrt(R)
    (a trial value is the mean of R runs). A seeds-mode study that does not match is named, never used.
    """
    study = loaded[name]
    candidates = [s for s in loaded.values() if s.space_mode == SEEDS_MODE and s.loss == study.loss]
    candidates.sort(key=lambda s: -fa[s.name].size)
    for cand in candidates:
        diffs = fairness.floor_differences(study.settings, cand.settings)
        if diffs:
            messages.append(
                f"{name}: seeds-mode study {cand.name!r} is not used as its noise floor: it differs in "
                f"{fairness.describe(diffs)}"
            )
            continue
        if fa[cand.name].size >= 2:
            return fa[cand.name], f"seeds-mode study {cand.name!r}", fa[cand.name]
    r = _replicates(study.settings)
    reps = by_study[name].loc[by_study[name]["status"] == "complete", "replicate_values"]
    residuals = stats.replicate_residuals([x for x in reps if isinstance(x, list)])
    if residuals.size >= 2:
        return residuals / math.sqrt(r), f"replicate values of its own trials (single-run std / sqrt({r}))", None
    return None


def default_pairs(summaries: dict[str, StudySummary]) -> list[tuple[str, str]]:
    """Every pair of studies with the same space mode and different losses; ASL is ``a``, RAL is ``b``."""

    def rank(s: StudySummary) -> int:  # a before b: ASL first, RAL last, others between
        return {"asl": 0, "ral": 2}.get(s.loss, 1)

    pairs = []
    studies = [s for s in summaries.values() if s.space_mode != SEEDS_MODE]
    for x, y in itertools.combinations(studies, 2):
        if x.space_mode != y.space_mode or x.loss == y.loss:
            continue
        a, b = (x, y) if rank(x) <= rank(y) else (y, x)
        pairs.append((a.name, b.name))
    return pairs


def primary_index(comparisons: list[Comparison], summaries: dict[str, StudySummary]) -> int | None:
    """The primary comparison: ASL vs RAL in matched mode, else in full mode, else the first one."""
    if not comparisons:
        return None

    def key(i: int) -> tuple[int, int]:
        c = comparisons[i]
        losses = {summaries[c.a].loss, summaries[c.b].loss}
        mode = {"matched": 0, "full": 1}.get(c.mode, 2)
        return (0 if losses == {"asl", "ral"} else 1, mode)

    return min(range(len(comparisons)), key=lambda i: (key(i), i))


def analyse(
    storage: str | optuna.storages.BaseStorage | None,
    studies: list[str] | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    pairs: list[tuple[str, str]] | None = None,
    importance_resamples: int = 12,
    max_importance_trials: int = 1000,
    delta: float = DELTA,
    n_perm: int = N_PERMUTATIONS,
) -> Analysis:
    """Every robustness statistic of the studies in ``storage`` (all of them, or those named).

    Args:
        storage: the store URL (or an open Optuna storage); None: ``$LOSSWEEP_STORAGE`` or sqlite:///lossweep.db.
        studies: study names; None analyses every study in the store.
        n_boot: bootstrap resamples for the confidence intervals.
        seed: seed of every resampling, so a store always gives the same numbers.
        pairs: ``(a, b)`` study pairs to compare (ratio = std(b) / std(a)); None: every pair with the
            same space mode and different losses, ASL as ``a`` and RAL as ``b`` where present.
        importance_resamples: subsamples behind the importance intervals (each refits fANOVA).
        max_importance_trials: complete trials per study used for importances (subsampled beyond).
        delta: the near-best margin δ of P(mAP ≥ best − δ) (mAP points; default 0.01).
        n_perm: permutations of the primary spread test.

    Raises:
        ValueError: an empty store, unknown study names, pairs naming studies not analysed, a negative
            n_boot or n_perm, or a delta that is not a positive finite number.
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0 (bootstrap resamples); got {n_boot}")
    if n_perm < 0:
        raise ValueError(f"n_perm must be >= 0 (permutations); got {n_perm}")
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta > 0):
        raise ValueError(f"delta must be a positive number of mAP points, e.g. 0.01; got {delta!r}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    frame, loaded, shown = read_studies(storage, studies)
    timings["load"] = time.perf_counter() - t0
    messages: list[str] = [m for s in loaded.values() for m in s.messages]
    by_study = {name: frame[frame["study"] == name] for name in loaded}

    t = time.perf_counter()
    floor_of = floors({n: s.settings for n, s in loaded.items()}, by_study)
    frame["value_failure_aware"] = np.nan
    fa: dict[str, np.ndarray] = {}
    for name in loaded:
        floor, source = floor_of[name]
        column = failure_aware(by_study[name], floor)
        frame.loc[column.index, "value_failure_aware"] = column
        fa[name] = column.to_numpy(float)[np.isfinite(column.to_numpy(float))]
        n_div = int((by_study[name]["status"].astype(str) == "diverged").sum())
        if n_div:
            messages.append(f"{name}: {n_div} diverged trial(s) counted at the floor mAP {floor:.4f} ({source})")
    by_study = {name: frame[frame["study"] == name] for name in loaded}
    summaries = {
        name: summarise(
            s,
            by_study[name],
            fa[name],
            floor_of[name][0],
            floor_source=floor_of[name][1],
            n_boot=n_boot,
            seed=seed,
            messages=messages,
        )
        for name, s in loaded.items()
    }
    defaults: dict[str, np.ndarray] = {}
    for name, summary in summaries.items():
        if summary.space_mode == SEEDS_MODE:
            summary.seed_floor_std = summary.stats["std"].value
            continue
        noise = _seed_floor(name, loaded, fa, by_study, messages)
        if noise is None:
            messages.append(f"{name}: seed noise floor not measured; measure it with `{seed_command(summary.loss)}`")
            continue
        sample, source, default = noise
        if default is not None:
            defaults[name] = default
        summary.seed_floor_std = float(np.std(sample, ddof=1))
        summary.hp_to_seed_ratio = stats.hp_to_seed_ratio(fa[name], sample, n_boot=n_boot, seed=seed)
        messages.append(f"{name}: seed noise floor from the {source} (std {summary.seed_floor_std:.4f})")
    timings["summaries"] = time.perf_counter() - t

    t = time.perf_counter()
    if pairs is None:
        pairs = default_pairs(summaries)
        if len(loaded) == 1:
            messages.append(
                f"only one study ({next(iter(loaded))}): nothing to compare it with; run a second loss, "
                "e.g. `python -m study.run --loss asl`"
            )
        elif not pairs:
            messages.append(
                "no two studies share a space mode with different losses: no default comparison "
                "(pass pairs=[(a, b)] to compare others)"
            )
    else:
        unknown = sorted({n for p in pairs for n in p} - set(loaded))
        if unknown:
            raise ValueError(f"pairs name studies not analysed: {', '.join(unknown)}; analysed: {', '.join(loaded)}")

    def side(name: str) -> Side:
        s = summaries[name]
        table = (
            replicate_table(by_study[name], s.n_replicates, s.floor_value)
            if s.n_replicates >= 2 and s.variance_components
            else None
        )
        return Side(s, fa[name], loaded[name].settings, table, defaults.get(name))

    comparisons = []
    for name_a, name_b in pairs:
        comp = compare(side(name_a), side(name_b), delta=delta, n_boot=n_boot, n_perm=n_perm, seed=seed)
        if not ("lossweep" in loaded[name_a].settings and "lossweep" in loaded[name_b].settings):
            messages.append(
                f"{name_a} vs {name_b}: a study not made by lossweep cannot be checked for fairness; treated as unfair"
            )
        if not comp.fair:
            messages.append(f"{name_a} vs {name_b}: unfair comparison ({fairness.describe(comp.differences)})")
        comparisons.append(comp)
    first = primary_index(comparisons, summaries)
    if first is not None:
        comparisons[first].primary = True
        c = comparisons[first]
        messages.append(f"primary comparison: {c.a} vs {c.b} ({c.mode} space); every other comparison is secondary")
    adjust(comparisons, summaries)
    timings["comparisons"] = time.perf_counter() - t

    t = time.perf_counter()
    curves = []
    for name in loaded:
        for basis, v in (("failure-aware", fa[name]), ("survivors", _values(by_study[name]))):
            curve = expected_best_curve(v, n_boot=n_boot, seed=seed)
            curves.append(curve.assign(study=name, basis=basis))
    columns = ["study", "n", "mean", "low", "high", "basis"]
    expected = pd.concat(curves, ignore_index=True)[columns] if curves else pd.DataFrame(columns=columns)
    timings["expected_best"] = time.perf_counter() - t

    t = time.perf_counter()
    importance_frames = []
    for name, study in loaded.items():
        if study.space_mode == SEEDS_MODE:
            continue
        part = by_study[name]
        done = part[part["status"] == "complete"]
        pcols = [c for c in done.columns if c.startswith("param_") and done[c].notna().any()]
        params = done[pcols].rename(columns=lambda c: c[len("param_") :])
        config = got if isinstance(got := study.settings.get("config"), dict) else {}
        frame_imp = param_importances(
            name,
            params,
            done["value"].to_numpy(float),
            study.distributions,
            sampler=config.get("sampler"),
            n_resamples=importance_resamples,
            max_trials=max_importance_trials,
            seed=seed,
            messages=messages,
        )
        if not frame_imp.empty:
            importance_frames.append(frame_imp)
    importances = (
        pd.concat(importance_frames, ignore_index=True)
        if importance_frames
        else pd.DataFrame(columns=["study", "param", "method", "mean", "low", "high", "spread", "n_trials"])
    )
    timings["importances"] = time.perf_counter() - t

    t = time.perf_counter()
    swept = [n for n in loaded if loaded[n].space_mode != SEEDS_MODE]
    complete = frame[(frame["status"] == "complete") & frame["study"].isin(swept)]
    log = {p: bool(getattr(d, "log", False)) for s in loaded.values() for p, d in s.distributions.items()}
    param_names = list(
        dict.fromkeys(c[len("param_") :] for c in frame.columns if c.startswith("param_") and complete[c].notna().any())
    )
    marg = marginals(complete, param_names, log)
    grid = grid2d(complete, *GRID_PAIR, log=log)
    timings["marginals"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0

    return Analysis(
        trials=frame,
        settings={name: s.settings for name, s in loaded.items()},
        summaries=summaries,
        comparisons=comparisons,
        expected_best=expected,
        importances=importances,
        marginals=marg,
        messages=list(dict.fromkeys(messages)),
        storage=shown,
        grid2d=grid,
        timings=timings,
    )
