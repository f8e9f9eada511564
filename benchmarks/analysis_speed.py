"""How long ``analysis`` takes on big studies: loading and ``analyse`` at 2 x N trials.

Run: ``python -m benchmarks.analysis_speed [--trials 5000 1000] [--n-boot 2000]``. Builds SQLite stores
of simulated lossweep studies (analysis.testing) in a temporary folder, then prints, per size, the
seconds of each analyse() step, and the bulk loader against Optuna's per-trial reads side by side.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from analysis import analyse, load_studies
from analysis.testing import StudySpec, build_store


def _store(folder: Path, n: int) -> str:
    url = f"sqlite:///{folder / f'bench-{n}.db'}"
    build_store(url, [
        StudySpec("asl-matched", "asl", n, sensitivity=0.08, fail_rate=0.02, diverge_rate=0.03),
        StudySpec("ral-matched", "ral", n, sensitivity=0.03, diverge_rate=0.05),
    ])
    return url


def _per_trial_reads(url: str) -> int:
    """The slow way a loader could read: one storage call per trial."""
    storage = optuna.storages.RDBStorage(url)
    count = 0
    for s in storage.get_all_studies():
        n = storage.get_n_trials(s._study_id)
        for number in range(n):
            trial_id = storage.get_trial_id_from_study_id_trial_number(s._study_id, number)
            storage.get_trial(trial_id)
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[1000, 5000], help="trials per study")
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.trials:
            url = _store(Path(tmp), n)
            t = time.perf_counter()
            load_studies(url)
            bulk = time.perf_counter() - t
            t = time.perf_counter()
            _per_trial_reads(url)
            per_trial = time.perf_counter() - t
            runs = []
            for _ in range(args.repeats):
                runs.append(analyse(url, n_boot=args.n_boot).timings)
            timing = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            rows.append((n, bulk, per_trial, timing))
    steps = list(rows[0][3])
    print(f"analysis speed (2 studies x N trials, n_boot={args.n_boot}; seconds, median of {args.repeats})")
    print(f"{'N':>6} | {'load bulk':>9} | {'per-trial':>9} | {'ratio':>6} | " + " | ".join(f"{s:>12}" for s in steps))
    for n, bulk, per_trial, timing in rows:
        print(f"{n:>6} | {bulk:>9.2f} | {per_trial:>9.2f} | {per_trial / bulk:>5.1f}x | "
              + " | ".join(f"{timing[s]:>12.2f}" for s in steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
