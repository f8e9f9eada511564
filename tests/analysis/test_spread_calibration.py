"""The primary spread test keeps its size under the null and its power (a seeded, fast benchmarks.verdict).

Each check draws a few hundred replications with a fixed seed, so it is deterministic; the bounds are
binomial: under the nominal 5 % a count above the 99.9 % binomial quantile fails one run in a
thousand, while a rule firing 10 % of the time (the former bootstrap CI of the std ratio measured
7-13 % on the skewed shape at n = 30) fails the 600-replication check with probability about 0.97.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from analysis.compare import Side, _spread_measure
from analysis.results import Estimate, StudySummary
from benchmarks.verdict import METHODS, _draw, bimodal, normal, skewed


def _rate(method, shape, n, reps, *, scale=1.0, seed=0, n_b=None):
    rng = np.random.default_rng(seed)
    a, b = _draw(shape, n)(rng, reps), _draw(shape, n_b or n, scale=scale)(rng, reps)
    return int(np.sum(METHODS[method](a, b, rng, 200)))


def test_size_under_skewed_and_bimodal_nulls():
    for shape, n, n_b, reps in ((skewed, 30, None, 600), (bimodal, 30, None, 300), (skewed, 30, 120, 300)):
        bound = scipy.stats.binom.ppf(0.999, reps, 0.05)
        assert _rate("gated", shape, n, reps, n_b=n_b) <= bound, shape.__name__


def test_power_at_a_std_ratio_of_two():
    assert _rate("gated", normal, 100, 100, scale=2.0, seed=1) >= 80


def test_the_benchmark_gate_is_the_analysis_gate():
    # benchmarks.verdict's vectorised Brown–Forsythe (a t test on |x - median|) equals scipy's levene(center="median")
    rng = np.random.default_rng(4)
    a, b = skewed(rng, (1, 40)), skewed(rng, (1, 40)) * 1.5
    bench = METHODS["bf"](a, b, rng, 0)[0]
    assert bench == (scipy.stats.levene(a[0], b[0], center="median").pvalue < 0.05)
    # and the analysis' primary measure agrees with the benchmark's decision on a clear case
    summary = StudySummary("x", "asl", "matched", 40, 40, 0, 0, True, {}, Estimate(0.0), Estimate(0.0))
    x, y = normal(rng, 100), (normal(rng, 100) - 0.45) * 3 + 0.45
    m = _spread_measure(Side(summary, x, {}), Side(summary, y, {}), n_perm=500, seed=0, primary=True)
    assert m.p_value < 0.05 and m.contrast.low > 1
    assert METHODS["gated"](x[None], y[None], rng, 500)[0]
