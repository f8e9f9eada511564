"""Hand-computed values of the new statistics: Holm, near-best fraction, tunability, expected-best area,
Newcombe / exact tests, variance components, failure-aware values, and the spread test's statistic."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from analysis import components, measures, spread
from analysis.failure import failure_aware, floors
from analysis.stats import wilson


def test_holm_hand_values():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert measures.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = measures.holm([0.2, math.nan, 0.6])  # NaN is not part of the family: m = 2
    assert out[0] == pytest.approx(0.4) and math.isnan(out[1]) and out[2] == pytest.approx(0.6)
    assert measures.holm([0.9, 0.8]) == [1.0, 1.0]  # 2 x 0.8 capped at 1; monotone, so 0.9 -> 1 too
    assert measures.holm([]) == []


def test_near_best_fraction_hand_value():
    values = np.array([0.40, 0.445, 0.45, 0.46, 0.455, np.nan])
    assert measures.near_best_count(values, 0.01) == (3, 5)  # best 0.46: 0.45, 0.455 and 0.46 are within 0.01
    assert measures.near_best_count(values, 0.1) == (5, 5)
    assert measures.near_best_count(np.array([]), 0.01) == (0, 0)


def test_tunability_hand_value():
    sweep, default = np.arange(1.0, 21.0), np.array([10.0, 12.0])
    # 95th percentile of 1..20 (linear): 19 + 0.05 * (20 - 19) = 19.05; default mean 11
    t = measures.tunability(sweep, default, n_boot=300)
    assert t.value == pytest.approx(8.05) and t.low <= t.value <= t.high
    diff, p = measures.tunability_difference(sweep, default, sweep, default + 5, n_boot=300, seed=1)
    assert diff.value == pytest.approx(-5.0) and diff.high < 0 and p < 0.05
    assert math.isnan(measures.tunability(sweep, np.array([1.0])).value)  # one default run: no spread to resample


def test_expected_best_area_hand_value():
    v = np.array([4.0, 1.0, 3.0, 2.0])
    # E[max_1] = 2.5; E[max_2] = (1*2 + 2*3 + 3*4) / C(4, 2) = 20 / 6; the area over budgets 1..2 is their mean
    assert measures.aubc(v, 2) == pytest.approx((2.5 + 20 / 6) / 2)
    assert measures.aubc(v, 1) == pytest.approx(2.5)
    w = measures.aubc_weights(600, 300)  # chunked budgets agree with the direct sum
    from analysis.expected_best import dodge_weights

    assert w == pytest.approx(dodge_weights(600, np.arange(1, 301)).mean(axis=0))
    diff, p = measures.aubc_difference(v, v + 1, 2, n_boot=200, seed=0)
    assert diff.value == pytest.approx(1.0)


def test_newcombe_and_exact_tests():
    d = measures.newcombe(2, 20, 8, 20)
    a, b = wilson(2, 20), wilson(8, 20)
    assert d.value == pytest.approx(0.3)
    assert d.low == pytest.approx(0.3 - math.sqrt((b.value - b.low) ** 2 + (a.high - a.value) ** 2))
    assert d.high == pytest.approx(0.3 + math.sqrt((b.high - b.value) ** 2 + (a.value - a.low) ** 2))
    p, method = measures.exact_test(2, 20, 8, 20)
    assert method == "Boschloo exact test"
    assert p == pytest.approx(scipy.stats.boschloo_exact([[2, 8], [18, 12]]).pvalue)
    p, method = measures.exact_test(20, 400, 80, 400)
    assert method == "Fisher exact test" and p == pytest.approx(scipy.stats.fisher_exact([[20, 80], [380, 320]])[1])
    assert measures.exact_test(0, 10, 0, 10)[0] == 1.0 and math.isnan(measures.exact_test(0, 0, 1, 2)[0])


def test_variance_components_hand_values():
    y = np.array([[1.0, 2.0], [3.0, 5.0], [5.0, 8.0]])  # G = 3 configurations x R = 2 seeds
    # grand 4; rows 1.5, 4, 6.5 -> MS_config = 2 * 12.5 / 2 = 12.5; columns 3, 5 -> MS_seed = 3 * 2 / 1 = 6;
    # residuals +-0.5, 0, 0, +-0.5 -> MS_error = 1 / 2 = 0.5
    ms_r, ms_c, ms_e, *df = components.mean_squares(y)
    assert (ms_r, ms_c, ms_e, *df) == pytest.approx((12.5, 6.0, 0.5, 2, 1, 2))
    vc = components.variance_components(y)
    assert vc["hp"].value == pytest.approx((12.5 - 0.5) / 2)
    assert vc["seed"].value == pytest.approx((6 - 0.5) / 3)
    assert vc["interaction"].value == pytest.approx(0.5)
    chi2 = scipy.stats.chi2
    assert vc["interaction"].low == pytest.approx(2 * 0.5 / chi2.ppf(0.975, 2))
    assert vc["interaction"].high == pytest.approx(2 * 0.5 / chi2.ppf(0.025, 2))
    assert components.variance_components(np.ones((1, 3))) == {}


def test_mls_interval_covers_about_95_percent():
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(300):
        y = (
            0.02 * rng.standard_normal((40, 1))
            + 0.005 * rng.standard_normal((1, 3))
            + 0.005 * rng.standard_normal((40, 3))
        )
        e = components.variance_components(y)["hp"]
        hits += e.low <= 0.02**2 <= e.high
    assert 0.90 <= hits / 300 <= 0.99


def test_replicate_table_puts_diverged_rows_at_the_floor():
    part = pd.DataFrame(
        {
            "status": ["complete", "diverged", "failed", "complete"],
            "replicate_values": [[0.4, 0.5], [0.3], [], [0.45]],  # the last has too few replicates
        }
    )
    np.testing.assert_allclose(components.replicate_table(part, 2, 0.05), [[0.4, 0.5], [0.05, 0.05]])


def test_failure_aware_values_and_floors():
    part = pd.DataFrame({"status": ["complete", "diverged", "failed", "complete"], "value": [0.4, np.nan, np.nan, 0.5]})
    np.testing.assert_allclose(failure_aware(part, 0.05).to_numpy(), [0.4, 0.05, np.nan, 0.5])
    same = {"data_fingerprint": "x"}
    with_chance = {
        "a": part.assign(val_chance_mAP=[0.06, np.nan, np.nan, 0.06]),
        "b": part.assign(val_chance_mAP=[0.06, np.nan, np.nan, 0.06]),
    }
    assert floors({"a": same, "b": same}, with_chance)["b"] == (0.06, "chance-level mAP of the validation split")
    other = {"a": part, "b": part.assign(value=[0.3, np.nan, np.nan, 0.6])}
    floor = floors({"a": same, "b": same}, other)
    assert floor["a"][0] == floor["b"][0] == 0.3 and "lowest complete mAP" in floor["a"][1]
    apart = floors({"a": same, "b": {"data_fingerprint": "y"}}, other)  # other data: its own floor
    assert (apart["a"][0], apart["b"][0]) == (0.4, 0.3)


def test_spread_statistic_hand_value():
    a, b = np.array([1.0, 2, 3, 4, 5]), np.array([2.0, 4, 6, 8, 10])
    assert spread.scale(a) == pytest.approx(1.2)  # mean |x - 3| = (2 + 1 + 0 + 1 + 2) / 5
    log_ratio, t = spread.studentised(spread.centred(a, b), 5)
    # |a - 3| = [2, 1, 0, 1, 2]: var 0.7; |b - 6| twice that (var 2.8); se^2 = 0.7 / (5 1.44) + 2.8 / (5 5.76)
    assert log_ratio == pytest.approx(math.log(2))
    assert t == pytest.approx(math.log(2) / math.sqrt(0.7 / 7.2 + 2.8 / 28.8))
    test = spread.spread_test(a, b + 100, n_perm=500)  # a shift of location is not spread
    assert test.ratio.value == pytest.approx(2.0) and test.ratio.low < 2 < test.ratio.high
    assert 0 < test.p_value <= 1 and (test.p_value < 0.05) == test.ratio.excludes(1.0)
    assert spread.spread_test(a, np.full(5, 3.0)) is None  # zero spread: no interval, no direction
    assert spread.spread_test(a, np.array([1.0])) is None


def test_sigma_hp_claim_is_gated_by_the_spread_test():
    from analysis.compare import gate

    assert gate(0.01, 0.5, 0.03, 0.7) == 0.03  # both say b is calmer: the larger p
    assert gate(0.01, 0.5, 0.001, 1.4) == 1.0  # opposite directions: no claim
    assert math.isnan(gate(math.nan, 0.5, 0.01, 0.5))
