"""Benchmark of ``python -m study.run``: orchestration overhead and scaling with workers.

    python -m benchmarks.study                 # the default 200-trial RAL study, 1 vs 2 workers
    python -m benchmarks.study --quick         # smoke run: 20 trials on a tiny data set (about a minute)

Each configuration runs the real command in a subprocess on a fresh SQLite store, after one warm-up
run that fills the data/embedding cache (so every configuration measures trials, not the one-off
embedding). Printed per configuration:

* wall: the command's wall time, from launch to exit (Python start, data loading, worker start-up,
  trials, summary);
* trial s: the sum of the trials' own compute time (``seconds`` attribute, measured in run_trial);
* overhead: the share of worker time not spent inside a trial, 1 - trial s / (wall * workers), from
  launch to exit (start-up included), and "in span" from the first trial's start to the last one's
  end (the per-trial cost of claiming, storing and reporting alone);
* trials/min and the speed-up over 1 worker.

On a shared machine the numbers are noisy; compare the rows of one run, not runs on different days.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
QUICK_TRIALS = 20
QUICK_FLAGS = [
    "--data-num-images",
    "600",
    "--data-num-classes",
    "8",
    "--data-imbalance-ratio",
    "10",
    "--data-image-size",
    "32",
    "--backbone",
    "test_resnet",
    "--epochs",
    "10",
]


def run(cwd: Path, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LOSSWEEP_STORAGE", None)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "study.run", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"study.run failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=200, help="trials per study (default: 200)")
    parser.add_argument("--loss", default="ral", help="loss (default: ral)")
    parser.add_argument("--workers", default="1,2", help="comma list of worker counts to compare (default: 1,2)")
    parser.add_argument("--extra", default="", help="extra study.run flags, e.g. '--epochs 10' (default: none)")
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: --trials {QUICK_TRIALS} with {' '.join(QUICK_FLAGS)}"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.trials = QUICK_TRIALS
        args.extra = " ".join([*QUICK_FLAGS, args.extra])
    counts = [int(x) for x in args.workers.split(",")]
    extra = args.extra.split()

    with tempfile.TemporaryDirectory(prefix="lossweep-bench-") as tmp:
        cwd = Path(tmp)
        warm = run(
            cwd,
            [
                "--loss",
                args.loss,
                "--trials",
                "1",
                "--devices",
                "cpu",
                "--quiet",
                "--storage",
                f"sqlite:///{cwd / 'warmup.db'}",
                *extra,
            ],
        )
        print(f"warm-up (data + embeddings into the cache, 1 trial): {warm:.1f} s", file=sys.stderr)
        rows = []
        for workers in counts:
            url = f"sqlite:///{cwd / f'bench-{workers}.db'}"
            wall = run(
                cwd,
                [
                    "--loss",
                    args.loss,
                    "--trials",
                    str(args.trials),
                    "--workers",
                    str(workers),
                    "--devices",
                    "cpu",
                    "--quiet",
                    "--storage",
                    url,
                    *extra,
                ],
            )
            study = optuna.load_study(study_name=optuna.get_all_study_names(url)[0], storage=url)
            trials = study.get_trials(deepcopy=False)
            trial_seconds = sum(float(t.user_attrs.get("seconds") or 0.0) for t in trials)
            starts = sorted(t.datetime_start for t in trials if t.datetime_start)
            ends = sorted(t.datetime_complete for t in trials if t.datetime_complete)
            busy_span = (ends[-1] - starts[0]).total_seconds()
            rows.append((workers, len(trials), wall, busy_span, trial_seconds))

    base = rows[0][1] / rows[0][2]
    print(f"study.run --loss {args.loss} --trials {args.trials} {' '.join(extra)} on {os.cpu_count()} CPU cores")
    print(
        f"{'workers':>7} {'trials':>6} {'wall s':>8} {'span s':>8} {'trial s':>8} {'overhead':>9} "
        f"{'in span':>8} {'trials/min':>10} {'speed-up':>8}"
    )
    for workers, n, wall, span, seconds in rows:
        overhead = 1.0 - seconds / (wall * workers)
        in_span = 1.0 - seconds / (span * workers)
        rate = n / wall
        print(
            f"{workers:>7} {n:>6} {wall:>8.1f} {span:>8.1f} {seconds:>8.1f} {overhead:>8.1%} {in_span:>7.1%} "
            f"{rate * 60:>10.1f} {rate / base:>7.2f}x"
        )
    print(
        "overhead = 1 - trial s / (wall s * workers); in span: the same over the trials' span. Goals: overhead "
        "<= 5 %, >= 1.7x trials/min with 2 workers on 2 cores"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
