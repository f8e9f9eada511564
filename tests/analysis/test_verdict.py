"""Verdict wording rules, on hand-made summaries (no store): the claim follows the std-ratio CI only."""

from __future__ import annotations

import math

import pytest

from analysis.results import Difference, Estimate, StudySummary
from analysis.verdict import write_verdict


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
    )


ASL = _summary("asl-m", "asl", failed=2, diverged=3)
RAL = _summary("ral-m", "ral", floor=0.004, ratio=Estimate(2.5, 1.8, 3.4))
MEAN = Estimate(0.01, 0.002, 0.018)
SUP = Estimate(0.6, 0.52, 0.68)


@pytest.mark.parametrize(
    "ratio, claim",
    [
        (Estimate(0.39, 0.30, 0.50), "RAL is less sensitive to its hyperparameters than ASL on this data."),
        (Estimate(1.8, 1.2, 2.6), "RAL is more sensitive to its hyperparameters than ASL on this data."),
        (Estimate(0.8, 0.55, 1.01), "Their sensitivity to hyperparameters is not distinguishable on this data."),
        (Estimate(0.5), "Their sensitivity to hyperparameters is not distinguishable on this data."),  # no CI: no claim
    ],
)
def test_claim_follows_the_ratio_interval(ratio, claim):
    text = write_verdict(ASL, RAL, ratio, 0.0004, SUP, MEAN, [])
    assert claim in text
    others = {"less sensitive", "more sensitive", "not distinguishable"} - {
        next(k for k in ("less sensitive", "more sensitive", "not distinguishable") if k in claim)
    }
    assert not any(o in text for o in others)
    assert f"varied {ratio.value:.2f}x as much as ASL's" in text and "Brown–Forsythe p < 0.001" in text


def test_seed_floor_and_failure_rates_in_the_same_paragraph():
    text = write_verdict(ASL, RAL, Estimate(0.39, 0.30, 0.50), 0.02, SUP, MEAN, [])
    assert "\n" not in text and "Brown–Forsythe p = 0.020" in text
    assert "RAL's seed noise floor is a std of 0.0040, so its hyperparameters spread mAP 2.50x" in text
    assert "ASL's seed noise floor was not measured (measure it with `python -m study.run --loss asl" in text
    assert "ASL: 5 of 100 trials failed (5.0 %, 95 % CI 1.0–20.0 %), 3 of them diverged" in text
    assert "RAL: 0 of 100 trials failed" in text
    assert "random RAL trial beat a random ASL trial with probability 0.60 (95 % CI 0.52–0.68)" in text


def test_seed_ratio_not_above_noise_is_said():
    ral = _summary("ral-m", "ral", floor=0.01, ratio=Estimate(1.2, 0.9, 1.6))
    text = write_verdict(ASL, ral, Estimate(0.39, 0.30, 0.50), 0.02, SUP, MEAN, [])
    assert "not clearly above seed noise" in text


def test_unfair_and_too_few_lead_the_paragraph():
    few = _summary("ral-m", "ral", n=4)
    diffs = [Difference("sampler", "qmc", "tpe")]
    text = write_verdict(ASL, few, Estimate(math.nan), math.nan, Estimate(math.nan), Estimate(math.nan), diffs)
    assert text.startswith("Unfair comparison: the studies differ in sampler (qmc vs tpe)")
    assert "Too few complete trials (ASL 95, RAL 4; at least 5 each are needed)" in text
    assert "cannot be computed" in text and "not distinguishable on this data" in text


def test_same_loss_uses_study_names():
    other = _summary("asl-b", "asl")
    text = write_verdict(ASL, other, Estimate(0.9, 0.7, 1.2), 0.5, SUP, MEAN, [])
    assert "asl-b's validation mAP varied 0.90x as much as asl-m's" in text
