"""Benchmark ``python -m reports.build`` on a large generated store and print seconds per stage.

Run: ``python -m benchmarks.report [--trials 5000] [--n-boot 2000]``. The store (two studies, ASL and
RAL, ``--trials`` finished trials each, with every attribute ``study.run`` writes) is generated with
bulk INSERTs (:func:`bulk_add_trials`) into a temporary SQLite file; its generation is not timed. The stages timed
are the ones ``reports.build.build_report`` runs: load, analyse, figures, render, write.

:func:`make_store` is also what the report tests use to get a real store.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import optuna
import sqlalchemy
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

CLASS_NAMES = [f"finding_{i:02d}" for i in range(26)]


def space_dict(loss: str) -> dict[str, Any]:
    """The search space ``study.run`` stores for ``loss`` (``search_spaces`` imports no torch)."""
    from search_spaces import get_space

    return get_space(loss, "full").to_dict()


def _trial_config(epochs: int = 30) -> dict[str, Any]:
    """``runners.config.TrialConfig().to_dict()`` spelled out, so generating a store needs no lossweep import."""
    return {
        "data": {
            "name": "synthetic", "path": None, "image_root": None, "image_size": 64, "num_classes": 26,
            "num_images": 6000, "imbalance_ratio": 142.0, "labels_per_image": 2.0, "missing_rate": 0.2,
            "path_column": "path", "label_columns": None, "split_column": "split", "uncertain": "zero",
            "val_fraction": 0.15, "test_fraction": 0.15, "seed": 0,
        },
        "backbone": "resnet18", "checkpoint": None, "protocol": "linear-probe",
        "train": {
            "epochs": epochs, "batch_size": 256, "lr": 1e-3, "weight_decay": 1e-4, "optimizer": "adamw",
            "head": "linear", "mlp_hidden": 256, "grad_clip": None, "amp": "auto", "warmup_epochs": 0,
        },
        "device": "auto", "cache_dir": ".lossweep-cache", "embed_batch_size": 128, "num_threads": None,
    }


def study_attrs(
    loss: str,
    n_trials: int,
    *,
    seed: int = 0,
    sampler: str = "qmc",
    epochs: int = 30,
    class_names: Sequence[str] = CLASS_NAMES,
    space: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The study attributes of docs/store-format.md for one loss."""
    rng = np.random.default_rng(7)
    positives = sorted((int(x) for x in 4000 * rng.pareto(1.2, len(class_names)) + 30), reverse=True)
    return {
        "lossweep": {"format": 1},
        "loss": loss,
        "config": {
            "loss": loss, "n_trials": n_trials, "sampler": sampler, "seed": seed, "space_mode": "full",
            "nuisance": False, "replicates": 1, "trial": _trial_config(epochs),
        },
        "search_space": space if space is not None else space_dict(loss),
        "data_fingerprint": "5f1c0e9a2b7d4c3e",
        "class_names": list(class_names),
        "train_positives": positives,
        "versions": {"lossweep": "0.1.0", "optuna": optuna.__version__, "torch": "2.5.1", "timm": "1.0.11",
                     "python": "3.11.2"},
    }


def _metrics(rng: np.random.Generator, split: str, value: float, n_classes: int) -> dict[str, Any]:
    head, medium, tail = value + 0.12, value + 0.01, value - 0.1 + rng.normal(0, 0.02)
    aps = np.clip(rng.normal(value, 0.08, n_classes), 0.0, 1.0)
    return {
        f"{split}_mAP": value, f"{split}_mAUC": min(1.0, value + 0.3), f"{split}_mF1": value * 0.8,
        f"{split}_mAP_head": min(1.0, head), f"{split}_mAP_medium": medium, f"{split}_mAP_tail": max(0.0, tail),
        f"{split}_per_class_ap": [round(float(a), 4) for a in aps],
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
        attrs: dict[str, Any] = {"design_index": index, "status": kind, "seconds": float(rng.gamma(4.0, 2.0)),
                                 "seeds": [seed + index], "fail_reason": None, "diverged_step": None,
                                 "diverged_value": None}
        if kind == "complete":
            value = _mAP(loss, params, rng) if {"gamma_neg", "clip", "gamma_pos"} <= set(params) else float(
                rng.uniform(0.2, 0.5))
            attrs |= _metrics(rng, "val", value, n_classes) | _metrics(rng, "test", value - 0.01, n_classes)
            attrs["replicate_values"] = [value]
            trials.append(optuna.trial.create_trial(params=params, distributions=dists, value=value,
                                                    user_attrs=attrs, state=TrialState.COMPLETE))
            continue
        for split in ("val", "test"):
            attrs |= {f"{split}_{m}": None for m in ("mAP", "mAUC", "mF1", "mAP_head", "mAP_medium", "mAP_tail")}
            attrs[f"{split}_per_class_ap"] = []
        attrs["replicate_values"] = []
        if kind == "diverged":
            attrs["fail_reason"] = "diverged: non-finite loss"
            attrs["diverged_step"] = int(rng.integers(1, 500))
            attrs["diverged_value"] = "nan"
        else:
            attrs["fail_reason"] = str(fail_reasons[int(rng.integers(len(fail_reasons)))])
        trials.append(optuna.trial.create_trial(params=params, distributions=dists, user_attrs=attrs,
                                                state=TrialState.FAIL))
    return trials


def bulk_add_trials(storage: optuna.storages.RDBStorage, study_name: str,
                    trials: Sequence[optuna.trial.FrozenTrial]) -> None:
    """``Study.add_trials`` in a handful of multi-row INSERTs into Optuna's own tables.

    Hand-written because ``add_trials`` issues one ORM upsert per user attribute (~60 ms per trial
    here, 10+ minutes for the benchmark's 10,000 trials). It writes exactly the rows ``add_trials``
    writes, through Optuna's table definitions (``optuna.storages._rdb.models``), for finished
    single-objective trials without intermediate values; a test compares the two stores trial by trial.
    """
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models

    study_id = storage.get_study_id_from_name(study_name)
    first = storage.get_n_trials(study_id)
    with storage.engine.begin() as conn:
        ids = conn.execute(
            sqlalchemy.insert(models.TrialModel).returning(models.TrialModel.trial_id, sort_by_parameter_order=True),
            [{"number": first + i, "study_id": study_id, "state": t.state, "datetime_start": t.datetime_start,
              "datetime_complete": t.datetime_complete} for i, t in enumerate(trials)],
        ).scalars().all()
        params, values, attrs = [], [], []
        for trial_id, t in zip(ids, trials):
            for name, dist in t.distributions.items():
                params.append({"trial_id": trial_id, "param_name": name,
                               "param_value": dist.to_internal_repr(t.params[name]),
                               "distribution_json": distribution_to_json(dist)})
            if t.value is not None:
                value, kind = models.TrialValueModel.value_to_stored_repr(t.value)
                values.append({"trial_id": trial_id, "objective": 0, "value": value, "value_type": kind})
            attrs += [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in t.user_attrs.items()]
        for model, rows in ((models.TrialParamModel, params), (models.TrialValueModel, values),
                            (models.TrialUserAttributeModel, attrs)):
            if rows:
                conn.execute(sqlalchemy.insert(model), rows)


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
) -> str:
    """Create (or extend) a store at ``url`` with one lossweep study per ``name -> loss``; returns ``url``."""
    studies = studies if studies is not None else {"asl": "asl", "ral": "ral"}
    storage = optuna.storages.RDBStorage(url)
    for offset, (name, loss) in enumerate(studies.items()):
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
        for key, value in study_attrs(loss, n_trials, seed=seed, class_names=class_names).items():
            study.set_user_attr(key, value)
        bulk_add_trials(storage, name, make_trials(loss, n_trials, seed=seed + 1000 * offset, failed=failed,
                                                   diverged=diverged, n_classes=len(class_names),
                                                   fail_reasons=fail_reasons))
    storage.remove_session()
    return url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.report", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5000, help="finished trials per study (default 5000)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--store", type=Path, default=None,
                        help="SQLite file to generate the store into and reuse on later runs "
                        "(default: a temporary file)")
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
    print(f"store: 2 studies x {args.trials} trials ({generation}, not counted); n_boot={args.n_boot}; "
          f"report {size / 1e6:.2f} MB")
    print(f"{'stage':<10} {'seconds':>8} {'share':>7}")
    for stage, seconds in timings.items():
        print(f"{stage:<10} {seconds:8.2f} {seconds / total:7.1%}")
    print(f"{'total':<10} {total:8.2f} {'':>7}  (goal <= 30 s: {'met' if total <= 30 else 'NOT met'})")
    print(f"{'CPU time':<10} {cpu:8.2f} {'':>7}  (this process, all threads)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
