"""Benchmark ``python -m reports.build`` on a large generated store and print seconds per stage.

Run: ``python -m benchmarks.report [--trials 5000] [--n-boot 2000]``. The store (two studies, ASL and
RAL, ``--trials`` finished trials each, with every attribute ``study.run`` writes) is generated with
bulk INSERTs (``analysis.testing.bulk_add_trials``) into a temporary SQLite file; its generation is
not timed. The stages timed are the ones ``reports.build.build_report`` runs: load, analyse,
figures, render, write.

:func:`make_store` is also what the report tests use to get a real store.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from analysis.testing import bulk_add_trials, trial_user_attrs

CLASS_NAMES = [f"finding_{i:02d}" for i in range(26)]


def space_dict(loss: str, mode: str = "full") -> dict[str, Any]:
    """The search space ``study.run`` stores for ``loss`` in ``mode`` (``search_spaces`` imports no torch)."""
    from search_spaces import get_space

    return get_space(loss, mode).to_dict()


def _study_config(
    loss: str, n_trials: int, *, sampler: str, seed: int, epochs: int, mode: str = "full"
) -> dict[str, Any]:
    """The ``config`` attribute ``study.run`` writes, from its own dataclasses (``study.config`` imports no torch)."""
    from runners.config import TrainConfig, TrialConfig
    from study.config import StudyConfig

    config = StudyConfig(
        loss=loss,
        n_trials=n_trials,
        trial=TrialConfig(train=TrainConfig(epochs=epochs)),
        sampler=sampler,
        seed=seed,
        space_mode=mode,
    ).to_dict()
    config["grid_levels"] = None  # study.run.Plan.attrs adds the grid levels for --sampler grid only
    return config


def study_attrs(
    loss: str,
    n_trials: int,
    *,
    seed: int = 0,
    sampler: str = "qmc",
    epochs: int = 30,
    class_names: Sequence[str] = CLASS_NAMES,
    space: dict[str, Any] | None = None,
    mode: str = "full",
) -> dict[str, Any]:
    """The study attributes of docs/store-format.md for one loss (space ``mode``: full, matched or seeds)."""
    rng = np.random.default_rng(7)
    positives = sorted((int(x) for x in 4000 * rng.pareto(1.2, len(class_names)) + 30), reverse=True)
    return {
        "lossweep": {"format": 1},
        "loss": loss,
        "config": _study_config(loss, n_trials, sampler=sampler, seed=seed, epochs=epochs, mode=mode),
        "search_space": space if space is not None else space_dict(loss, mode),
        "data_fingerprint": "5f1c0e9a2b7d4c3e",
        "class_names": list(class_names),
        "train_positives": positives,
        "versions": {
            "lossweep": "0.1.0",
            "optuna": optuna.__version__,
            "torch": "2.5.1",
            "timm": "1.0.11",
            "python": "3.11.2",
        },
    }


def _metrics(rng: np.random.Generator, value: float, n_classes: int) -> dict[str, Any]:
    """One split's metrics (``trial_user_attrs``'s ``val`` / ``test``): tiers around ``value``, noisy per-class AP."""
    head, medium, tail = value + 0.12, value + 0.01, value - 0.1 + rng.normal(0, 0.02)
    aps = np.clip(rng.normal(value, 0.08, n_classes), 0.0, 1.0)
    return {
        "mAP": value,
        "mAUC": min(1.0, value + 0.3),
        "mF1": value * 0.8,
        "mAP_head": min(1.0, head),
        "mAP_medium": medium,
        "mAP_tail": max(0.0, tail),
        "per_class_ap": [round(float(a), 4) for a in aps],
    }


def _mAP(loss: str, params: dict[str, float], rng: np.random.Generator) -> float:
    """A plausible response surface: ASL is peaked around its defaults, RAL flatter."""
    width = 1.0 if loss == "ral" else 0.45
    penalty = ((params["gamma_neg"] - 4.0) / 6.0) ** 2 + ((params["clip"] - 0.05) / 0.4) ** 2
    penalty += ((params["gamma_pos"] - 1.0) / 4.0) ** 2 * 0.5
    return float(np.clip(0.42 - 0.25 * penalty / width + rng.normal(0, 0.01), 0.01, 0.99))


def make_trials(
    loss: str,
    n_trials: int,
    *,
    seed: int = 0,
    failed: int | None = None,
    diverged: int | None = None,
    n_classes: int = len(CLASS_NAMES),
    space: dict[str, Any] | None = None,
    fail_reasons: Sequence[str] = ("CUDA out of memory", "worker killed (signal 9)"),
) -> list[optuna.trial.FrozenTrial]:
    """``n_trials`` finished trials with the user attributes ``study.run`` writes.

    ``failed`` / ``diverged`` default to about 2 % / 4 % of the trials; diverged trials sit at small
    γ⁻ (where the reference code has NaN gradients), failed ones anywhere.
    """
    space = space if space is not None else space_dict(loss)
    rng = np.random.default_rng(seed)
    dists = {p["name"]: FloatDistribution(p["low"], p["high"], log=p["log"]) for p in space["params"]}
    n_failed = failed if failed is not None else n_trials // 50
    n_diverged = diverged if diverged is not None else n_trials // 25
    kinds = ["failed"] * n_failed + ["diverged"] * n_diverged
    kinds += ["complete"] * max(0, n_trials - len(kinds))
    rng.shuffle(kinds)
    trials = []
    for index, kind in enumerate(kinds[:n_trials]):
        params = {name: float(rng.uniform(d.low, d.high)) for name, d in dists.items()}
        if kind == "diverged" and "gamma_neg" in params:
            params["gamma_neg"] = float(rng.uniform(0.0, 1.0))
        common: dict[str, Any] = {"seconds": float(rng.gamma(4.0, 2.0)), "seeds": [seed + index]}
        if kind == "complete":
            value = (
                _mAP(loss, params, rng)
                if {"gamma_neg", "clip", "gamma_pos"} <= set(params)
                else float(rng.uniform(0.2, 0.5))
            )
            attrs = trial_user_attrs(
                index,
                kind,
                **common,
                val=_metrics(rng, value, n_classes),
                test=_metrics(rng, value - 0.01, n_classes),
                replicate_values=[value],
            )
            trials.append(
                optuna.trial.create_trial(
                    params=params, distributions={**dists}, value=value, user_attrs=attrs, state=TrialState.COMPLETE
                )
            )
            continue
        if kind == "diverged":
            attrs = trial_user_attrs(
                index,
                kind,
                **common,
                fail_reason="diverged: non-finite loss",
                diverged_step=int(rng.integers(1, 500)),
                diverged_value="nan",
            )
        else:
            attrs = trial_user_attrs(
                index, kind, **common, fail_reason=str(fail_reasons[int(rng.integers(len(fail_reasons)))])
            )
        trials.append(
            optuna.trial.create_trial(params=params, distributions={**dists}, user_attrs=attrs, state=TrialState.FAIL)
        )
    return trials


def make_store(
    url: str,
    studies: dict[str, str] | None = None,
    n_trials: int = 60,
    *,
    seed: int = 0,
    class_names: Sequence[str] = CLASS_NAMES,
    failed: int | None = None,
    diverged: int | None = None,
    fail_reasons: Sequence[str] = ("CUDA out of memory", "worker killed (signal 9)"),
    mode: str = "full",
) -> str:
    """Create (or extend) a store at ``url`` with one lossweep study per ``name -> loss``; returns ``url``.

    ``mode`` is the space mode of every study (``matched`` gives ASL and RAL the same swept set, so
    their comparison gets a directional verdict; ``full`` ones are refused).
    """
    studies = studies if studies is not None else {"asl": "asl", "ral": "ral"}
    storage = optuna.storages.RDBStorage(url)
    for offset, (name, loss) in enumerate(studies.items()):
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
        for key, value in study_attrs(loss, n_trials, seed=seed, class_names=class_names, mode=mode).items():
            study.set_user_attr(key, value)
        bulk_add_trials(
            storage,
            name,
            make_trials(
                loss,
                n_trials,
                seed=seed + 1000 * offset,
                failed=failed,
                diverged=diverged,
                n_classes=len(class_names),
                fail_reasons=fail_reasons,
                space=space_dict(loss, mode),
            ),
        )
    storage.remove_session()
    return url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.report", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5000, help="finished trials per study (default 5000)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="SQLite file to generate the store into and reuse on later runs (default: a temporary file)",
    )
    args = parser.parse_args(argv)

    from reports.build import build_report  # imported here so the store generation is not mixed with it

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.store if args.store is not None else Path(tmp) / "bench.db"
        url = f"sqlite:///{path.resolve()}"
        start = time.perf_counter()
        if path.exists():
            generation = "reused"
            counts = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(url)}
            if counts != {"asl": args.trials, "ral": args.trials}:
                parser.error(f"{path} holds {counts}, not 2 x {args.trials} trials: delete it or pick another --store")
        else:
            make_store(url, {"asl": "asl", "ral": "ral"}, args.trials)
            generation = f"generated in {time.perf_counter() - start:.0f} s"
        timings: dict[str, float] = {}
        cpu = time.process_time()
        out = build_report(url, None, Path(tmp) / "report.html", n_boot=args.n_boot, timings=timings)
        cpu = time.process_time() - cpu  # next to the wall-clock total: on a shared machine the two differ
        size = out.stat().st_size
    total = sum(timings.values())
    print(
        f"store: 2 studies x {args.trials} trials ({generation}, not counted); n_boot={args.n_boot}; "
        f"report {size / 1e6:.2f} MB"
    )
    print(f"{'stage':<10} {'seconds':>8} {'share':>7}")
    for stage, seconds in timings.items():
        print(f"{stage:<10} {seconds:8.2f} {seconds / total:7.1%}")
    print(f"{'total':<10} {total:8.2f} {'':>7}  (goal <= 30 s: {'met' if total <= 30 else 'NOT met'})")
    print(f"{'CPU time':<10} {cpu:8.2f} {'':>7}  (this process, all threads)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
