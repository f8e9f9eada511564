"""One comparison of study ``b`` against study ``a``: every measure, fairness, refusal, direction, verdict.

The inputs are failure-aware (analysis.failure). The primary measure is the σ_hp ratio when both
studies have R ≥ 2 replicate seeds (analysis.components), else the spread ratio of the calibrated
spread test (analysis.spread); the secondary measures are analysis.measures'. The direction and the
paragraph follow analysis.verdict's rule; a secondary comparison's p is Holm-adjusted afterwards by
:func:`adjust` (analysis.analyse), which re-decides its direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analysis import components, fairness, measures, spread, stats
from analysis.results import Comparison, Measure, StudySummary
from analysis.verdict import TPE_REFUSAL, better, decide, label, too_few, write_verdict


@dataclass
class Side:
    """What a comparison needs of one study."""

    summary: StudySummary
    values: np.ndarray  # failure-aware values (complete + diverged at the floor)
    settings: dict
    table: np.ndarray | None = None  # G x R replicate table when R >= 2
    default: np.ndarray | None = None  # failure-aware values of the matched seeds-mode study (tunability)


def _spread_measure(a: Side, b: Side, *, n_perm: int, seed: int, primary: bool) -> Measure | None:
    test = spread.spread_test(a.values, b.values, n_perm=n_perm, seed=seed)
    if test is None:
        return None
    _, bf_p = stats.brown_forsythe(a.values, b.values)
    # Intersection-union: directional words need both the studentised permutation test and
    # Brown–Forsythe to reject, so p = the larger of the two (benchmarks.verdict measures the size).
    p = max(test.p_value, bf_p) if math.isfinite(bf_p) else test.p_value
    return Measure(
        key="spread",
        name="spread (mean absolute deviation from the median)",
        value_a=test.scale_a,
        value_b=test.scale_b,
        contrast=test.ratio,
        kind="ratio",
        higher_is_more_robust=False,
        p_value=p,
        primary=primary,
        method=f"{spread.METHOD}, gated by Brown–Forsythe",
    )


def gate(p_hp: float, ratio_hp: float, p_spread: float, ratio_spread: float) -> float:
    """The σ_hp ratio's p gated by the spread test of the trial values (an intersection-union test).

    The percentile bootstrap of the σ_hp ratio alone is liberal (6-8 % at 5 %, benchmarks.verdict
    --replicates), so a σ_hp claim also needs the calibrated spread test of the trial values (each
    the mean of its R runs) to reject in the same direction: p = the larger of the two, 1 when the
    two ratios point opposite ways.
    """
    same = (ratio_hp - 1) * (ratio_spread - 1) > 0
    if not (math.isfinite(p_hp) and math.isfinite(p_spread)):
        return math.nan
    return max(p_hp, p_spread) if same else 1.0


def _hp_measure(a: Side, b: Side, *, n_boot: int, seed: int) -> Measure | None:
    if a.table is None or b.table is None:
        return None
    ratio, p = components.sigma_hp_ratio(a.table, b.table, n_boot=n_boot, seed=seed)
    if not math.isfinite(ratio.value) or ratio.value in (0.0, math.inf):
        return None
    hp_a, hp_b = a.summary.variance_components.get("hp"), b.summary.variance_components.get("hp")
    return Measure(
        key="variance_hp",
        name="σ_hp (hyperparameter std apart from seed noise)",
        value_a=math.sqrt(hp_a.value) if hp_a else math.nan,
        value_b=math.sqrt(hp_b.value) if hp_b else math.nan,
        contrast=ratio,
        kind="ratio",
        higher_is_more_robust=False,
        p_value=p,
        primary=True,
        method="two-way random-effects ANOVA; percentile bootstrap over configurations, gated by the spread test",
    )


def _rate_measure(key: str, name: str, ka: int, na: int, kb: int, nb: int, higher: bool) -> Measure:
    p, method = measures.exact_test(ka, na, kb, nb)
    return Measure(
        key=key,
        name=name,
        value_a=ka / na if na else math.nan,
        value_b=kb / nb if nb else math.nan,
        contrast=measures.newcombe(ka, na, kb, nb),
        kind="difference",
        higher_is_more_robust=higher,
        p_value=p,
        method=f"Newcombe hybrid score interval; {method}",
    )


def secondary_measures(a: Side, b: Side, *, delta: float, n_boot: int, seed: int) -> list[Measure]:
    """Divergence rate, near-best fraction, tunability (when both have a default) and expected-best area."""
    sa, sb = a.summary, b.summary
    out = [
        _rate_measure(
            "divergence_rate",
            "divergence rate",
            sa.n_diverged,
            sa.n_trials,
            sb.n_diverged,
            sb.n_trials,
            higher=False,
        )
    ]
    (ka, na), (kb, nb) = measures.near_best_count(a.values, delta), measures.near_best_count(b.values, delta)
    if na and nb:
        out.append(_rate_measure("near_best", f"near-best fraction (δ = {delta:g})", ka, na, kb, nb, higher=True))
    if a.default is not None and b.default is not None:
        diff, p = measures.tunability_difference(a.values, a.default, b.values, b.default, n_boot=n_boot, seed=seed)
        if math.isfinite(diff.value):
            ta = measures.tunability(a.values, a.default, n_boot=0).value
            tb = measures.tunability(b.values, b.default, n_boot=0).value
            out.append(
                Measure(
                    "tunability",
                    "tunability (default → 95th percentile)",
                    ta,
                    tb,
                    diff,
                    higher_is_more_robust=False,
                    p_value=p,
                    method="percentile bootstrap over sweep and seeds-mode trials",
                )
            )
    m = min(a.values.size, b.values.size) // 2
    if m >= 1:
        diff, p = measures.aubc_difference(a.values, b.values, m, n_boot=n_boot, seed=seed)
        if math.isfinite(diff.value):
            out.append(
                Measure(
                    "aubc",
                    f"area under the expected-best curve (budgets 1–{m})",
                    measures.aubc(a.values, m),
                    measures.aubc(b.values, m),
                    diff,
                    higher_is_more_robust=True,
                    p_value=p,
                    method="percentile bootstrap (approximate: the area weights the top trials most)",
                )
            )
    return out


def _refusal(a: Side, b: Side, diffs: list) -> str:
    samplers = [
        s.settings.get("config", {}).get("sampler") if isinstance(s.settings.get("config"), dict) else None
        for s in (a, b)
    ]
    adaptive = [s for s in samplers if s and s not in fairness.SPACE_FILLING]
    if adaptive:
        return f"sampler {adaptive[0]!r} is {TPE_REFUSAL}"
    swept_diff = next((d for d in diffs if d.setting == "swept_parameters"), None)
    if swept_diff is not None:
        return (
            f"the studies sweep different hyperparameters ({len(swept_diff.value_a)} vs {len(swept_diff.value_b)}: "
            f"{', '.join(swept_diff.value_a)} vs {', '.join(swept_diff.value_b)}); compare them with "
            "--space-mode matched"
        )
    refused = fairness.refusal_differences(diffs)
    if refused:
        return f"unfair comparison ({fairness.describe(refused)})"
    na, nb = a.values.size, b.values.size
    if min(na, nb) < stats.MIN_TRIALS:
        return too_few(a.summary, b.summary, na, nb)
    return ""


def compare(
    a: Side, b: Side, *, delta: float, n_boot: int, n_perm: int, seed: int, check_settings: bool = True
) -> Comparison:
    """Study ``b`` against study ``a`` (ratios are b / a, differences b − a)."""
    sa, sb = a.summary, b.summary
    va, vb = a.values, b.values
    diffs = fairness.differences(a.settings, b.settings, sa.n_trials, sb.n_trials) if check_settings else []
    refusal = _refusal(a, b, diffs)
    hp = _hp_measure(a, b, n_boot=n_boot, seed=seed) if sa.n_replicates >= 2 and sb.n_replicates >= 2 else None
    spread_m = _spread_measure(a, b, n_perm=n_perm, seed=seed, primary=hp is None)
    if hp is not None and spread_m is not None:
        hp.p_value = gate(hp.p_value, hp.contrast.value, spread_m.p_value, spread_m.contrast.value)
    if spread_m is None and not refusal:
        refusal = f"{label(sa, sb) if stats_zero(va) else label(sb, sa)} has zero spread (no interval, no direction)"
    ms = [m for m in (hp, spread_m) if m is not None]
    ms += secondary_measures(a, b, delta=delta, n_boot=n_boot, seed=seed)
    if refusal:  # no interval claims a direction: the measures stay, their verdict words do not
        for m in ms:
            m.better = None
    else:
        for m in ms:
            m.better = better(m)
    primary_m = next((m for m in ms if m.primary), None)
    bf_stat, bf_p = stats.brown_forsythe(va, vb)
    comp = Comparison(
        a=sa.name,
        b=sb.name,
        std_ratio=stats.std_ratio(va, vb, n_boot=n_boot, seed=seed),
        brown_forsythe_stat=bf_stat,
        brown_forsythe_p=bf_p,
        p_b_beats_a=stats.prob_superiority(va, vb),
        mean_diff=stats.mean_difference(va, vb, n_boot=n_boot, seed=seed),
        best_diff=stats.best_difference(va, vb),
        fair=not diffs,
        differences=diffs,
        verdict="",
        mode=sa.space_mode if sa.space_mode == sb.space_mode else "mixed",
        swept=tuple(p for p in sa.swept if p in set(sb.swept)),
        p_value=primary_m.p_value if primary_m else math.nan,
        measures=ms,
        refusal=refusal,
    )
    return finish(comp, sa, sb)


def stats_zero(values: np.ndarray) -> bool:
    v = values[np.isfinite(values)]
    return v.size < 2 or float(spread.scale(v)) == 0


def finish(comp: Comparison, a: StudySummary, b: StudySummary) -> Comparison:
    """Decide the direction from the (possibly adjusted) p and write the paragraph."""
    primary_m = next((m for m in comp.measures if m.primary), None)
    if primary_m is not None:
        primary_m.better = None if comp.refusal else better(primary_m, comp.p_value)
    comp.direction, against = decide(comp)
    comp.verdict = write_verdict(comp, a, b, against, comp.differences)
    return comp


def adjust(comps: list[Comparison], summaries: dict[str, StudySummary]) -> None:
    """Holm-adjust the primary-measure p of every secondary comparison, then re-decide them."""
    secondary = [c for c in comps if not c.primary]
    adjusted = measures.holm([c.p_value for c in secondary])
    for c, p in zip(secondary, adjusted, strict=True):
        c.p_value = p
    for c in comps:
        finish(c, summaries[c.a], summaries[c.b])
