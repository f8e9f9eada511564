"""The statistics against hand-computed values on small fixed arrays."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats

from analysis import stats
from analysis.expected_best import expected_best_curve, expected_max, n_grid


def test_dispersion_hand_values():
    est = stats.dispersion([1, 2, 3, 4, 5], n_boot=500)
    assert est["mean"].value == pytest.approx(3.0)
    assert est["std"].value == pytest.approx(math.sqrt(2.5))
    assert est["iqr"].value == pytest.approx(2.0)  # 4 - 2 (linear interpolation)
    assert est["worst_decile"].value == pytest.approx(1.4)
    assert (est["min"].value, est["max"].value, est["best"].value) == (1.0, 5.0, 5.0)
    for key, e in est.items():
        assert e.has_ci == (key not in ("min", "max", "best")), key  # no bootstrap CI of an extreme
        if e.has_ci:
            assert e.low <= e.value + 1e-12 or key in ("std", "iqr"), key
            assert e.low <= e.high


def test_dispersion_ci_is_reproducible_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0, 1, 30), rng.normal(0, 1, 3000)
    a = stats.dispersion(small, n_boot=400, seed=3)["std"]
    assert a == stats.dispersion(small, n_boot=400, seed=3)["std"]
    b = stats.dispersion(large, n_boot=400, seed=3)["std"]
    assert (b.high - b.low) < (a.high - a.low)
    assert b.low < 1.0 < b.high


def test_dispersion_degenerate_inputs():
    assert all(math.isnan(e.value) for e in stats.dispersion([]).values())
    one = stats.dispersion([0.4])
    assert one["mean"].value == 0.4 and math.isnan(one["std"].value) and not one["mean"].has_ci
    const = stats.dispersion([0.3] * 10, n_boot=200)
    assert const["std"].value == 0.0
    assert const["std"].low == 0.0 and const["std"].high == 0.0  # percentile fallback, not NaN
    assert stats.dispersion([0.1, np.nan, 0.3], n_boot=100)["mean"].value == pytest.approx(0.2)


def test_wilson_hand_values():
    z2 = scipy.stats.norm.ppf(0.975) ** 2
    zero = stats.wilson(0, 10)
    assert zero.value == 0 and zero.low == 0 and zero.high == pytest.approx(z2 / (10 + z2))
    half = stats.wilson(5, 10)
    assert (half.low, half.high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert stats.wilson(10, 10).high == 1.0
    assert math.isnan(stats.wilson(0, 0).value)


def test_std_ratio_and_differences():
    a, b = [1, 2, 3, 4, 5], [2, 4, 6, 8, 10]
    r = stats.std_ratio(a, b, n_boot=500)
    assert r.value == pytest.approx(2.0) and r.has_ci and r.low < r.high
    assert stats.mean_difference(a, b, n_boot=200).value == pytest.approx(3.0)
    best = stats.best_difference(a, b)
    assert best.value == pytest.approx(5.0) and not best.has_ci  # a maximum gets no bootstrap CI
    assert math.isnan(stats.std_ratio([1], b).value)
    assert math.isinf(stats.std_ratio([1, 1, 1], b).value)  # a has no spread: undefined, no CI
    assert not stats.std_ratio([1, 1, 1], b).has_ci


def test_brown_forsythe_hand_value():
    # |x - median|: a -> [2,1,0,1,2], b -> [4,2,0,2,4]; one-way ANOVA: SSB = 3.6, SSW = 14, F = 3.6 / (14 / 8)
    stat, p = stats.brown_forsythe([1, 2, 3, 4, 5], [2, 4, 6, 8, 10])
    assert stat == pytest.approx(3.6 / (14 / 8))
    assert p == pytest.approx(scipy.stats.f.sf(3.6 / (14 / 8), 1, 8))
    assert all(math.isnan(x) for x in stats.brown_forsythe([1], [1, 2]))


def test_prob_superiority_hand_value_and_delong():
    a, b = np.array([1.0, 2, 3]), np.array([2.0, 3, 4])
    est = stats.prob_superiority(a, b)
    assert est.value == pytest.approx(7 / 9)  # b=2: 1 + 0.5; b=3: 2 + 0.5; b=4: 3
    # DeLong by brute force: psi(b_j, a_i) = 1, 0.5 or 0
    psi = (b[:, None] > a[None, :]) + 0.5 * (b[:, None] == a[None, :])
    v_b, v_a = psi.mean(axis=1), psi.mean(axis=0)
    se = math.sqrt(v_b.var(ddof=1) / 3 + v_a.var(ddof=1) / 3)
    z = scipy.stats.norm.ppf(0.975)
    assert est.low == pytest.approx(max(0, 7 / 9 - z * se))
    assert est.high == pytest.approx(min(1, 7 / 9 + z * se))
    u = scipy.stats.mannwhitneyu(b, a).statistic
    assert est.value == pytest.approx(u / 9)


def test_replicate_residuals_give_pooled_within_std():
    assert np.std(stats.replicate_residuals([[1, 3]]), ddof=1) == pytest.approx(math.sqrt(2))
    assert np.std(stats.replicate_residuals([[1, 3], [10, 14], [5]]), ddof=1) == pytest.approx(math.sqrt(5))
    assert stats.replicate_residuals([[1], []]).size == 0


def _brute_expected_max(values, n):
    combos = list(itertools.combinations(values, n))
    return sum(max(c) for c in combos) / len(combos)


def test_dodge_hand_value_and_brute_force():
    assert expected_max(np.array([3.0, 1.0, 2.0]))[1] == pytest.approx(8 / 3)  # {1,2}->2, {1,3}->3, {2,3}->3
    values = np.array([0.3, 0.1, 0.5, 0.2, 0.4, 0.4, 0.35, 0.05])
    got = expected_max(values)
    want = [_brute_expected_max(values, n) for n in range(1, values.size + 1)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[0] == pytest.approx(values.mean()) and got[-1] == pytest.approx(values.max())
    with pytest.raises(ValueError, match="1..8"):
        expected_max(values, np.array([9]))


def test_dodge_is_stable_for_large_n():
    values = np.random.default_rng(0).uniform(size=5000)
    got = expected_max(values, np.array([1, 2, 10, 4999, 5000]))
    assert np.all(np.isfinite(got)) and np.all(np.diff(got) >= 0)
    assert got[0] == pytest.approx(values.mean()) and got[-1] == pytest.approx(values.max())
    assert got[1] == pytest.approx(_pair_mean_max(values))


def _pair_mean_max(values):
    # E[max of 2 without replacement] = sum_i v_(i) (i - 1) / C(N, 2)
    v = np.sort(values)
    n = v.size
    return float(np.sum(v * np.arange(n)) / (n * (n - 1) / 2))


def test_expected_best_curve_band_and_grid():
    values = np.random.default_rng(2).normal(0.4, 0.02, 300)
    curve = expected_best_curve(values, n_boot=200)
    assert list(curve.columns) == ["n", "mean", "low", "high"]
    assert curve["n"].iloc[0] == 1 and curve["n"].iloc[-1] == 300
    assert np.all(np.diff(curve["mean"]) >= -1e-12)
    band = curve[curve["n"] <= 150]
    assert band["low"].notna().all() and curve.loc[curve["n"] > 150, "low"].isna().all()  # no band beyond N/2
    assert np.all(band["low"] <= band["mean"] + 1e-9) and np.all(band["mean"] <= band["high"] + 1e-9)
    assert len(n_grid(5000)) <= 200 and n_grid(5000)[-1] == 5000 and n_grid(5000)[0] == 1
    assert expected_best_curve(np.array([]), n_boot=10).empty


def test_std_ratio_interval_finds_a_known_ratio():
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.4, 0.02, 400), rng.normal(0.4, 0.01, 400)  # true std(b) / std(a) = 0.5
    r = stats.std_ratio(a, b, n_boot=400)
    assert r.low < 0.5 < r.high and r.high < 0.6 and r.excludes(1.0)
    big = stats.std_ratio(rng.normal(0, 1, 1500), rng.normal(0, 1, 1500), n_boot=300)  # percentile path (> BCA_MAX_N)
    assert big.low < 1.0 < big.high and not big.excludes(1.0)
