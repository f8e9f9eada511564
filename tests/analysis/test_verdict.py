"""The verdict rule on hand-made comparisons (no store): primary measure, contradictions, refusals, wording."""

from __future__ import annotations

import math

import pytest

from analysis.compare import finish
from analysis.results import Comparison, Difference, Estimate, Measure, StudySummary
from analysis.verdict import better, decide


def _summary(name, loss, *, n=100, failed=0, diverged=0, floor=None, ratio=None) -> StudySummary:
    done = n - failed - diverged
    return StudySummary(
        name=name,
        loss=loss,
        space_mode="matched",
        n_trials=n,
        n_complete=done,
        n_failed=failed,
        n_diverged=diverged,
        enough=done >= 5,
        stats={},
        failure_rate=Estimate((failed + diverged) / n, 0.01, 0.2),
        divergence_rate=Estimate(diverged / n, 0.0, 0.1),
        seed_floor_std=floor,
        hp_to_seed_ratio=ratio,
        floor_value=0.05,
    )


ASL = _summary("asl-m", "asl", failed=2, diverged=3)
RAL = _summary("ral-m", "ral", floor=0.004, ratio=Estimate(2.5, 1.8, 3.4))


def _spread(ratio: Estimate, p: float) -> Measure:
    return Measure(
        "spread",
        "spread",
        0.02,
        0.02 * ratio.value,
        ratio,
        kind="ratio",
        higher_is_more_robust=False,
        p_value=p,
        primary=True,
        method="test",
    )


def _comp(ratio: Estimate, p: float, *extra: Measure, refusal: str = "", primary: bool = True) -> Comparison:
    comp = Comparison(
        a="asl-m",
        b="ral-m",
        std_ratio=ratio,
        brown_forsythe_stat=1.0,
        brown_forsythe_p=p,
        p_b_beats_a=Estimate(0.6, 0.52, 0.68),
        mean_diff=Estimate(0.01, 0.002, 0.018),
        best_diff=Estimate(0.0),
        fair=True,
        differences=[],
        verdict="",
        primary=primary,
        p_value=p,
        measures=[_spread(ratio, p), *extra],
        refusal=refusal,
    )
    for m in comp.measures:
        m.better = better(m)
    return finish(comp, ASL, RAL)


@pytest.mark.parametrize(
    "ratio, p, direction, claim",
    [
        (Estimate(0.39, 0.30, 0.50), 0.001, "less sensitive", "RAL is less sensitive to its hyperparameters than ASL"),
        (Estimate(1.8, 1.2, 2.6), 0.01, "more sensitive", "RAL is more sensitive to its hyperparameters than ASL"),
        (Estimate(0.8, 0.55, 1.01), 0.08, "not distinguishable", "not distinguishable on this data"),
        (Estimate(0.5), math.nan, "not distinguishable", "not distinguishable on this data"),  # no test: no claim
    ],
)
def test_direction_follows_the_primary_test(ratio, p, direction, claim):
    comp = _comp(ratio, p)
    assert comp.direction == direction and claim in comp.verdict
    words = {"less sensitive", "more sensitive", "not distinguishable"} - {direction}
    assert not any(w in comp.verdict for w in words)


def test_a_significantly_higher_divergence_rate_is_mixed_evidence_never_less_sensitive():
    diverges = Measure(
        "divergence_rate",
        "divergence rate",
        0.0,
        0.4,
        Estimate(0.4, 0.3, 0.5),
        higher_is_more_robust=False,
        p_value=1e-6,
    )
    comp = _comp(Estimate(0.39, 0.30, 0.50), 0.001, diverges)
    assert comp.direction == "mixed evidence"
    assert "less sensitive" not in comp.verdict.replace("is less sensitive than ASL, but", "")
    assert (
        "Mixed evidence: the primary measure says RAL is less sensitive than ASL, but divergence rate" in comp.verdict
    )
    assert "favours ASL" in comp.verdict
    calm = Measure(
        "divergence_rate",
        "divergence rate",
        0.0,
        0.02,
        Estimate(0.02, -0.01, 0.05),
        higher_is_more_robust=False,
        p_value=0.4,
    )
    assert _comp(Estimate(0.39, 0.30, 0.50), 0.001, calm).direction == "less sensitive"


def test_a_supporting_secondary_measure_does_not_make_it_mixed():
    near = Measure("near_best", "near-best fraction", 0.1, 0.3, Estimate(0.2, 0.1, 0.3), p_value=0.001)
    comp = _comp(Estimate(0.39, 0.30, 0.50), 0.001, near)
    assert comp.direction == "less sensitive" and "near-best fraction" in comp.verdict and "favours RAL" in comp.verdict


def test_refusal_has_no_direction_and_says_why():
    comp = _comp(
        Estimate(0.39, 0.30, 0.50), 0.001, refusal="sampler 'tpe' is not a sensitivity design: use qmc, random or grid"
    )
    assert comp.direction == "no verdict"
    assert "No verdict: sampler 'tpe' is not a sensitivity design: use qmc, random or grid." in comp.verdict
    assert "less sensitive" not in comp.verdict and all(m.better is None for m in comp.measures if m.primary)


def test_secondary_comparison_is_labelled():
    comp = _comp(Estimate(0.39, 0.30, 0.50), 0.2, primary=False)
    assert comp.verdict.startswith("Secondary comparison (p-values Holm-adjusted")
    assert comp.direction == "not distinguishable"  # the adjusted p decides, not the unadjusted one


def test_seed_floor_failure_rates_and_unfair_lead():
    comp = _comp(Estimate(0.39, 0.30, 0.50), 0.02)
    text = comp.verdict
    assert "\n" not in text and "p = 0.020" in text
    assert "RAL's seed noise floor is a std of 0.0040, so its hyperparameters spread mAP 2.50x" in text
    assert "ASL's seed noise floor was not measured (measure it with `python -m study.run --loss asl" in text
    assert "ASL: 5 of 100 trials failed (5.0 %, 95 % CI 1.0–20.0 %), 3 of them diverged" in text
    assert "counted at the floor mAP 0.050" in text
    comp.differences = [Difference("n_trials", 100, 80)]
    assert finish(comp, ASL, RAL).verdict.startswith("Unfair comparison: the studies differ in n_trials (100 vs 80)")


def test_decide_without_a_primary_measure_is_no_verdict():
    comp = _comp(Estimate(0.39, 0.30, 0.50), 0.001)
    comp.measures = []
    assert decide(comp) == ("no verdict", [])


def test_a_significant_measure_of_a_refused_comparison_is_not_called_no_difference():
    from analysis.results import Estimate, Measure
    from analysis.verdict import _measure_words

    names = {"a": "ASL", "b": "RAL"}
    m = Measure("near_best", "near-best fraction", 0.7, 0.5, Estimate(-0.2, -0.29, -0.1), p_value=0.0005)
    assert "no significant difference" not in _measure_words(m, names)
    assert "refused comparison" in _measure_words(m, names)
    m.better = "a"
    assert "favours ASL" in _measure_words(m, names)
    m.better, m.p_value = None, 0.4
    assert "no significant difference" in _measure_words(m, names)
