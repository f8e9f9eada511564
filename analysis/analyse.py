"""``analyse``: from a store to every number a report shows (an :class:`~analysis.results.Analysis`).

Steps: load the studies (analysis.load), summarise each study's spread of validation mAP
(analysis.stats), find each loss's seed noise floor, compare pairs of studies (spread ratio,
Brown–Forsythe, superiority, differences, fairness, verdict), expected best mAP after n trials
(analysis.expected_best), importances (analysis.importance) and marginal curves
(analysis.marginals). Degenerate inputs (one study, no complete trials, constant values, a study
not made by lossweep) give NaNs and messages, never a traceback.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import optuna
import pandas as pd

from analysis import fairness, stats
from analysis.expected_best import expected_best_curve
from analysis.importance import param_importances
from analysis.load import LoadedStudy, read_studies
from analysis.marginals import GRID_PAIR, grid2d, marginals
from analysis.results import Analysis, Comparison, StudySummary
from analysis.verdict import seed_command, write_verdict

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


def summarise(study: LoadedStudy, part: pd.DataFrame, *, n_boot: int, seed: int, messages: list[str]) -> StudySummary:
    """Dispersion, failure rates and tier spreads of one study's trials."""
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
    return StudySummary(
        name=study.name,
        loss=study.loss,
        space_mode=study.space_mode,
        n_trials=n_finished,
        n_complete=n_complete,
        n_failed=n_failed,
        n_diverged=n_diverged,
        enough=enough,
        stats=stats.dispersion(values, n_boot=n_boot, seed=seed),
        failure_rate=stats.wilson(n_failed + n_diverged, n_finished),
        divergence_rate=stats.wilson(n_diverged, n_finished),
        tier_std=tier_std,
    )


def _seed_noise(
    name: str, loaded: dict[str, LoadedStudy], frame: pd.DataFrame, by_study: dict[str, pd.DataFrame]
) -> tuple[np.ndarray, str] | None:
    """Values whose std is the seed noise of ``name``'s loss, and where they come from.

    In order of preference: a seeds-mode study of the same loss on the same data (the default
    configuration over many seeds); the replicate values stored in the study's own trials; a
    seeds-mode study of the loss on other data, named as such (seed noise depends on the data).
    """
    study = loaded[name]
    fp = study.settings.get("data_fingerprint")

    def same_data(s: LoadedStudy) -> bool:
        other = s.settings.get("data_fingerprint")
        return fp is None or other is None or other == fp

    candidates = [s for s in loaded.values() if s.space_mode == SEEDS_MODE and s.loss == study.loss]
    candidates.sort(key=lambda s: -_values(by_study[s.name]).size)
    for cand in (c for c in candidates if same_data(c)):
        v = _values(by_study[cand.name])
        if v.size >= 2:
            return v, f"seeds-mode study {cand.name!r}"
    reps = by_study[name].loc[by_study[name]["status"] == "complete", "replicate_values"]
    residuals = stats.replicate_residuals([r for r in reps if isinstance(r, list)])
    if residuals.size >= 2:
        return residuals, "replicate values of its own trials"
    for cand in (c for c in candidates if not same_data(c)):
        v = _values(by_study[cand.name])
        if v.size >= 2:
            return v, f"seeds-mode study {cand.name!r}, which used other data (its floor may not apply here)"
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


def compare(
    a: StudySummary,
    b: StudySummary,
    va: np.ndarray,
    vb: np.ndarray,
    settings_a: dict,
    settings_b: dict,
    *,
    n_boot: int,
    seed: int,
    check_settings: bool = True,
) -> Comparison:
    """Study ``b`` against study ``a``: spread ratio, equal-spread test, superiority, differences, verdict."""
    ratio = stats.std_ratio(va, vb, n_boot=n_boot, seed=seed)
    bf_stat, bf_p = stats.brown_forsythe(va, vb)
    superiority = stats.prob_superiority(va, vb)
    mean_diff = stats.mean_difference(va, vb, n_boot=n_boot, seed=seed)
    best_diff = stats.best_difference(va, vb, n_boot=n_boot, seed=seed)
    diffs = fairness.differences(settings_a, settings_b, a.n_trials, b.n_trials) if check_settings else []
    verdict = write_verdict(a, b, ratio, bf_p, superiority, mean_diff, diffs)
    return Comparison(
        a=a.name,
        b=b.name,
        std_ratio=ratio,
        brown_forsythe_stat=bf_stat,
        brown_forsythe_p=bf_p,
        p_b_beats_a=superiority,
        mean_diff=mean_diff,
        best_diff=best_diff,
        fair=not diffs,
        differences=diffs,
        verdict=verdict,
    )


def analyse(
    storage: str | optuna.storages.BaseStorage | None,
    studies: list[str] | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    pairs: list[tuple[str, str]] | None = None,
    importance_resamples: int = 12,
    max_importance_trials: int = 1000,
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

    Raises:
        ValueError: an empty store, unknown study names, or pairs naming studies not analysed.
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0 (bootstrap resamples); got {n_boot}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    frame, loaded, shown = read_studies(storage, studies)
    timings["load"] = time.perf_counter() - t0
    messages: list[str] = [m for s in loaded.values() for m in s.messages]
    by_study = {name: frame[frame["study"] == name] for name in loaded}

    t = time.perf_counter()
    summaries = {
        name: summarise(s, by_study[name], n_boot=n_boot, seed=seed, messages=messages) for name, s in loaded.items()
    }
    for name, summary in summaries.items():
        if summary.space_mode == SEEDS_MODE:
            summary.seed_floor_std = summary.stats["std"].value
            continue
        noise = _seed_noise(name, loaded, frame, by_study)
        if noise is None:
            messages.append(f"{name}: seed noise floor not measured; measure it with `{seed_command(summary.loss)}`")
            continue
        sample, source = noise
        summary.seed_floor_std = float(np.std(sample, ddof=1))
        summary.hp_to_seed_ratio = stats.hp_to_seed_ratio(_values(by_study[name]), sample, n_boot=n_boot, seed=seed)
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
    comparisons = []
    for name_a, name_b in pairs:
        a, b = summaries[name_a], summaries[name_b]
        lossweep_made = "lossweep" in loaded[name_a].settings and "lossweep" in loaded[name_b].settings
        comp = compare(
            a,
            b,
            _values(by_study[name_a]),
            _values(by_study[name_b]),
            loaded[name_a].settings,
            loaded[name_b].settings,
            n_boot=n_boot,
            seed=seed,
            check_settings=True,
        )
        if not lossweep_made:
            messages.append(
                f"{name_a} vs {name_b}: a study not made by lossweep cannot be checked for fairness; treated as unfair"
            )
        if not comp.fair:
            messages.append(f"{name_a} vs {name_b}: unfair comparison ({fairness.describe(comp.differences)})")
        comparisons.append(comp)
    timings["comparisons"] = time.perf_counter() - t

    t = time.perf_counter()
    curves = []
    for name in loaded:
        curve = expected_best_curve(_values(by_study[name]), n_boot=n_boot, seed=seed)
        curves.append(curve.assign(study=name))
    expected = (
        pd.concat(curves, ignore_index=True)[["study", "n", "mean", "low", "high"]]
        if curves
        else pd.DataFrame(columns=["study", "n", "mean", "low", "high"])
    )
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
