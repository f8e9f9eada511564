"""Calibration of the primary spread test: false-direction rate under the null, power under alternatives.

    python -m benchmarks.verdict [--reps 400] [--perms 500] [--methods gated,studentised,permutation,bf,bootstrap]

Each cell draws ``--reps`` pairs of studies and applies the test at the verdict's primary level
``analysis.spread.ALPHA`` (2.5 %, two-sided; direction from the estimate). Under a null (equal
spread) any directional claim is false, so the false-direction rate is the rejection rate; its
Monte-Carlo interval is Wilson's. Shapes (per study):

- normal: N(0.45, 0.02^2)
- skewed: 0.45 - 0.01 chi^2_1 (mAP's long lower tail over a search space)
- bimodal: a good mode N(0.45, 0.01^2) with probability 0.85, else a failure cluster at a floor
  value 0.05 (ties: diverged trials at the chance-level floor)

Extra nulls the test must survive: the same shape at different locations, unequal n (30 vs 300),
and a bimodal pair whose good modes differ in location. Power: normal, n = 100, true std ratio 1.5
and 2 (b's std times the ratio). Every method is vectorised over replications and permutations.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import scipy.stats

from analysis.spread import ALPHA, centred, permutation_t, studentised
from analysis.stats import wilson

Shape = Callable[[np.random.Generator, tuple[int, int]], np.ndarray]


def normal(rng, size):
    return 0.45 + 0.02 * rng.standard_normal(size)


def skewed(rng, size):
    return 0.45 - 0.01 * rng.chisquare(1, size)


def bimodal(rng, size):
    good = 0.45 + 0.01 * rng.standard_normal(size)
    return np.where(rng.uniform(size=size) < 0.15, 0.05, good)


SHAPES: dict[str, Shape] = {"normal": normal, "skewed": skewed, "bimodal": bimodal}


def _reject_studentised(a, b, rng, perms):
    z = centred(a, b)
    _, t = studentised(z, a.shape[-1])
    perm = permutation_t(z, a.shape[-1], perms, rng)
    p = (1 + np.sum(perm >= np.abs(t)[:, None], axis=-1)) / (perms + 1)
    return p < ALPHA


def _reject_permutation(a, b, rng, perms):
    """Plain (not studentised) permutation test of the log scale ratio on centred data."""
    z = centred(a, b)
    n_a = a.shape[-1]
    obs, _ = studentised(z, n_a)
    perm = rng.permuted(np.broadcast_to(z[:, None, :], (z.shape[0], perms, z.shape[1])), axis=-1)
    stat, _ = studentised(perm, n_a)
    stat = np.where(np.isfinite(stat), np.abs(stat), np.inf)
    p = (1 + np.sum(stat >= np.abs(obs)[:, None], axis=-1)) / (perms + 1)
    return p < ALPHA


def _reject_bf(a, b, rng, perms):
    """Brown–Forsythe: the two-sample t test on absolute deviations from the group medians."""
    ra = np.abs(a - np.median(a, axis=-1, keepdims=True))
    rb = np.abs(b - np.median(b, axis=-1, keepdims=True))
    return scipy.stats.ttest_ind(ra, rb, axis=-1).pvalue < ALPHA


def _reject_bootstrap(a, b, rng, perms):
    """The former rule: a percentile bootstrap CI of std(b) / std(a) excludes 1."""
    out = np.empty(a.shape[0], dtype=bool)
    boots = max(perms, 400)
    for i in range(a.shape[0]):
        ia = rng.integers(0, a.shape[1], size=(boots, a.shape[1]))
        ib = rng.integers(0, b.shape[1], size=(boots, b.shape[1]))
        r = np.std(b[i][ib], axis=1, ddof=1) / np.std(a[i][ia], axis=1, ddof=1)
        low, high = np.quantile(r, [0.025, 0.975])
        out[i] = low > 1 or high < 1
    return out


def _reject_gated(a, b, rng, perms):
    """The studentised permutation test gated by Brown–Forsythe (both at 5 %: an intersection-union test)."""
    return _reject_studentised(a, b, rng, perms) & _reject_bf(a, b, rng, perms)


METHODS = {
    "gated": _reject_gated,
    "studentised": _reject_studentised,
    "permutation": _reject_permutation,
    "bf": _reject_bf,
    "bootstrap": _reject_bootstrap,
}


def rate(method, draw_a, draw_b, reps, perms, rng, chunk=100):
    hits = 0
    for start in range(0, reps, chunk):
        k = min(chunk, reps - start)
        hits += int(np.sum(METHODS[method](draw_a(rng, k), draw_b(rng, k), rng, perms)))
    return wilson(hits, reps)


def cells() -> list[tuple[str, str, Callable, Callable]]:
    """(kind, label, draw a (rng, reps), draw b (rng, reps))."""
    out = []
    for shape_name, shape in SHAPES.items():
        for n in (30, 100, 300):
            out.append(("null", f"{shape_name} n={n}", _draw(shape, n), _draw(shape, n)))
    out.append(("null", "normal, locations differ by 0.1, n=100", _draw(normal, 100), _draw(normal, 100, shift=0.1)))
    out.append(("null", "skewed, locations differ by 0.05, n=30", _draw(skewed, 30), _draw(skewed, 30, shift=-0.05)))
    out.append(("null", "skewed, n=30 vs n=300", _draw(skewed, 30), _draw(skewed, 300)))
    out.append(("null", "normal, n=300 vs n=30", _draw(normal, 300), _draw(normal, 30)))
    out.append(("null", "bimodal, good modes differ by 0.05, n=100", _draw(bimodal, 100), _draw(bimodal, 100, 0.05)))
    for ratio in (1.5, 2.0):
        out.append(("power", f"normal n=100, std ratio {ratio}", _draw(normal, 100), _draw(normal, 100, scale=ratio)))
    return out


def _draw(shape: Shape, n: int, shift: float = 0.0, scale: float = 1.0):
    def draw(rng, reps):
        x = shape(rng, (reps, n))
        return (x - 0.45) * scale + 0.45 + shift

    return draw


def sigma_hp_rate(config: Shape, g: int, r: int, reps: int, boots: int, rng, ratio: float = 1.0):
    """Rejection rate of the gated σ_hp ratio (the primary measure with R >= 2 replicate seeds)."""
    from analysis.compare import gate
    from analysis.components import sigma_hp_ratio
    from analysis.spread import spread_test
    from analysis.stats import brown_forsythe

    hits = 0
    for _ in range(reps):
        tables = []
        for scale in (1.0, ratio):
            hp = (config(rng, (g, 1)) - 0.45) * scale  # configuration effects
            seed = 0.005 * rng.standard_normal((1, r))  # the R seeds every trial shares
            tables.append(0.45 + hp + seed + 0.005 * rng.standard_normal((g, r)))
        s = int(rng.integers(2**31))
        hp_ratio, p = sigma_hp_ratio(tables[0], tables[1], n_boot=boots, seed=s)
        means = [t.mean(axis=1) for t in tables]  # trial values: the mean of R runs
        test = spread_test(means[0], means[1], n_perm=boots, seed=s)
        if test is not None:
            p_spread = max(test.p_value, brown_forsythe(means[0], means[1])[1])
            p = gate(p, hp_ratio.value, p_spread, test.ratio.value)
        hits += bool(p < ALPHA)
    return wilson(hits, reps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=400, help="replications per cell (default 400)")
    parser.add_argument("--perms", type=int, default=500, help="permutations per test (default 500)")
    parser.add_argument(
        "--methods",
        default="gated",
        help=f"comma-separated, of {', '.join(METHODS)} (default gated: the one analysis uses)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--replicates", action="store_true", help="also calibrate the σ_hp ratio (the primary measure with R >= 2)"
    )
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or args.reps < 1 or args.perms < 1:
        parser.exit(2, f"error: unknown method(s) {unknown} or reps/perms < 1; methods: {', '.join(METHODS)}\n")
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    print(
        f"reps {args.reps} per cell, {args.perms} permutations per test, two-sided {100 * ALPHA:g} % "
        "(the bootstrap column, the former rule, at 5 %)"
    )
    print(f"{'cell':<44} {'kind':<6} " + " ".join(f"{m:>24}" for m in methods))
    for kind, label, draw_a, draw_b in cells():
        row = []
        for m in methods:
            e = rate(m, draw_a, draw_b, args.reps, args.perms, rng)
            row.append(f"{100 * e.value:5.1f} % [{100 * e.low:4.1f}, {100 * e.high:5.1f}]")
        print(f"{label:<44} {kind:<6} " + " ".join(f"{r:>24}" for r in row), flush=True)
    if args.replicates:
        print(f"σ_hp ratio (R = 3 seeds, G configurations; seed and error std 0.005), {args.perms} bootstrap resamples")
        for label, shape, g, ratio in (
            ("normal configs, G=100", normal, 100, 1.0),
            ("skewed configs, G=100", skewed, 100, 1.0),
            ("normal configs, G=30", normal, 30, 1.0),
            ("normal configs, G=100, σ_hp ratio 2", normal, 100, 2.0),
        ):
            e = sigma_hp_rate(shape, g, 3, args.reps, args.perms, rng, ratio)
            kind = "power" if ratio != 1 else "null"
            print(f"{label:<44} {kind:<6} {100 * e.value:5.1f} % [{100 * e.low:4.1f}, {100 * e.high:5.1f}]", flush=True)
    print(f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
