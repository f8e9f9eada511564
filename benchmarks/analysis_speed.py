"""How long ``analysis`` takes on big studies: loading and ``analyse`` at 2 x N trials.

Run: ``python -m benchmarks.analysis_speed [--trials 1000 5000] [--n-boot 2000]``. Builds SQLite stores
of simulated lossweep studies (analysis.testing) in a temporary folder, then prints, per size, the
bulk loader against Optuna's ``get_all_trials`` (the same tidy frame, read through the public API)
side by side, and the seconds of each ``analyse()`` step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import optuna

from analysis import analyse
from analysis.load import read_studies
from analysis.testing import StudySpec, build_store


def _store(folder: Path, n: int) -> str:
    url = f"sqlite:///{folder / f'bench-{n}.db'}"
    build_store(
        url,
        [
            StudySpec("asl-matched", "asl", n, sensitivity=0.08, fail_rate=0.02, diverge_rate=0.03),
            StudySpec("ral-matched", "ral", n, sensitivity=0.03, diverge_rate=0.05),
        ],
    )
    return url


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[1000, 5000], help="trials per study")
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=1, help="runs per measurement (the median is shown)")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.trials:
            url = _store(Path(tmp), n)
            bulk, api, runs = [], [], []
            for _ in range(args.repeats):  # interleaved, so both loaders see the same machine load
                bulk.append(_seconds(partial(read_studies, url)))
                api.append(_seconds(partial(read_studies, url, bulk=False)))
                runs.append(analyse(url, n_boot=args.n_boot).timings)
            timing = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            rows.append((n, statistics.median(bulk), statistics.median(api), timing))
    steps = list(rows[0][3])
    print(f"analysis speed (2 studies x N trials, n_boot={args.n_boot}; seconds, median of {args.repeats})")
    print(
        f"{'N':>6} | {'load bulk':>9} | {'get_all_trials':>14} | {'ratio':>6} | "
        + " | ".join(f"{s:>13}" for s in steps)
    )
    for n, bulk_s, api_s, timing in rows:
        print(
            f"{n:>6} | {bulk_s:>9.2f} | {api_s:>14.2f} | {api_s / bulk_s:>5.1f}x | "
            + " | ".join(f"{timing[s]:>13.2f}" for s in steps)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
