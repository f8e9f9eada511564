"""Build real lossweep stores with simulated trial outcomes, for tests and benchmarks of analysis/reports.

The studies are written with plain Optuna in the format of docs/store-format.md (study and trial
user attributes included), so everything that reads a store reads these unchanged. Only the mAP
values are simulated: a smooth response surface over the loss hyperparameters plus seed noise,
with a share of failed and diverged trials.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

SPACES: dict[str, dict[str, tuple[float, float, bool]]] = {
    "asl": {"gamma_pos": (0.0, 4.0, False), "gamma_neg": (0.0, 8.0, False), "clip": (0.0, 0.2, False)},
    "ral": {"gamma_pos": (0.0, 4.0, False), "gamma_neg": (0.0, 8.0, False), "clip": (0.0, 0.2, False),
            "lam": (1.0, 2.0, False), "alpha_1": (0.0, 2.0, False), "alpha_2": (-2.0, 0.0, False)},
    "focal": {"gamma": (0.0, 5.0, False)},
    "bce": {},
    "hill": {"lam": (1.0, 2.0, False), "margin": (0.0, 2.0, False), "gamma": (0.0, 4.0, False)},
}
DEFAULTS = {"gamma_pos": 1.0, "gamma_neg": 4.0, "clip": 0.05, "lam": 1.5, "alpha_1": 1.0, "alpha_2": -1.25,
            "gamma": 2.0, "margin": 1.0}


@dataclass
class StudySpec:
    """One simulated study: ``sensitivity`` scales how much the hyperparameters move mAP."""

    name: str
    loss: str
    n_trials: int = 50
    space_mode: str = "matched"
    sensitivity: float = 0.05
    noise: float = 0.005
    base: float = 0.45
    fail_rate: float = 0.0
    diverge_rate: float = 0.0
    sampler: str = "random"
    seed: int = 0
    replicates: int = 1
    lossweep: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)  # study attributes to replace (fairness tests)


def study_attrs(spec: StudySpec) -> dict[str, Any]:
    space = SPACES[spec.loss]
    attrs: dict[str, Any] = {
        "lossweep": {"format": 1},
        "loss": spec.loss,
        "config": {
            "loss": spec.loss, "n_trials": spec.n_trials, "sampler": spec.sampler, "seed": spec.seed,
            "space_mode": spec.space_mode, "nuisance": False, "replicates": spec.replicates,
            "trial": {"data": {"name": "synthetic", "num_classes": 26, "seed": 0}, "backbone": "resnet18",
                      "checkpoint": None, "protocol": "linear-probe",
                      "train": {"epochs": 30, "lr": 1e-3, "weight_decay": 1e-4}, "device": "cpu"},
        },
        "search_space": {"format": 1, "loss": spec.loss, "mode": spec.space_mode, "nuisance": False,
                         "params": [{"name": k, "low": lo, "high": hi, "log": lg, "default": DEFAULTS[k]}
                                    for k, (lo, hi, lg) in space.items()],
                         "fixed": {}},
        "data_fingerprint": "f" * 16,
        "class_names": [f"c{i}" for i in range(26)],
        "train_positives": [1000 // (i + 1) for i in range(26)],
        "versions": {"lossweep": "0.1.0", "optuna": optuna.__version__},
    }
    attrs.update(spec.overrides)
    return attrs


def _surface(loss: str, params: dict[str, float]) -> float:
    """A response in [-1, 0]: 0 at the defaults, worse away from them (gamma_neg and clip matter most)."""
    space = SPACES[loss]
    out = 0.0
    weights = {"gamma_neg": 3.0, "clip": 0.6, "gamma_pos": 0.2}
    for k, (lo, hi, _) in space.items():
        z = (params[k] - DEFAULTS.get(k, (lo + hi) / 2)) / (hi - lo)
        out -= weights.get(k, 0.05) * z * z
    return out


def simulate_trials(spec: StudySpec, rng: np.random.Generator) -> list[optuna.trial.FrozenTrial]:
    space = SPACES[spec.loss]
    dists = {k: FloatDistribution(lo, hi, log=lg) for k, (lo, hi, lg) in space.items()}
    trials = []
    start = datetime(2026, 1, 1, 12, 0, 0)
    for number in range(spec.n_trials):
        if spec.space_mode == "seeds":
            params = {k: DEFAULTS[k] for k in space}
        else:
            params = {k: float(rng.uniform(lo, hi)) for k, (lo, hi, _) in space.items()}
        u = rng.uniform()
        reps = [spec.base + spec.sensitivity * _surface(spec.loss, params) + rng.normal(0, spec.noise)
                for _ in range(spec.replicates)]
        value = float(np.mean(reps))
        tier = {f"val_mAP_{t}": value + d + rng.normal(0, spec.noise) for t, d in
                (("head", 0.2), ("medium", 0.0), ("tail", -0.2))}
        attrs: dict[str, Any] = {"design_index": number, "seconds": float(rng.uniform(1, 3)),
                                 "seeds": list(range(spec.replicates))}
        if u < spec.diverge_rate:
            attrs.update(status="diverged", fail_reason="non-finite loss at step 12", diverged_step=12,
                         diverged_value="nan", replicate_values=[])
            state, val = TrialState.FAIL, None
        elif u < spec.diverge_rate + spec.fail_rate:
            attrs.update(status="failed", fail_reason="RuntimeError: CUDA out of memory", replicate_values=[])
            state, val = TrialState.FAIL, None
        else:
            attrs.update(status="complete", val_mAP=value, val_mAUC=min(1.0, value + 0.3), val_mF1=value * 0.8,
                         test_mAP=value - 0.01, replicate_values=[float(r) for r in reps],
                         val_per_class_ap=[value] * 4, fail_reason=None, **tier)
            state, val = TrialState.COMPLETE, value
        kwargs = {"value": val} if val is not None else {}
        trial = create_trial(state=state, params=params, distributions=dists, user_attrs=attrs, **kwargs)
        # Wall-clock timestamps that match the stored seconds (create_trial stamps both with "now").
        trial.datetime_start = start + timedelta(seconds=3 * number)
        trial.datetime_complete = trial.datetime_start + timedelta(seconds=attrs["seconds"] + 0.5)
        trials.append(trial)
    return trials


def _insert_trials(storage: optuna.storages.RDBStorage, study_id: int, trials: list[FrozenTrial]) -> None:
    """Write finished trials with one Core ``executemany`` per table, in one transaction.

    ``Study.add_trials`` goes through the ORM row by row (about 40 ms a trial here, 7 minutes for a
    10,000-trial benchmark store); this writes the same rows (Optuna's own table definitions and
    value encodings) in a fraction of a second. tests/analysis/test_testing.py checks that Optuna's
    public API reads back exactly the trials given.
    """
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models

    trials_t = models.TrialModel.__table__
    if not trials:
        return
    with storage.engine.begin() as conn:
        first = conn.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(trials_t)
                             .where(trials_t.c.study_id == study_id)).scalar_one()
        conn.execute(trials_t.insert(), [
            {"number": first + i, "study_id": study_id, "state": t.state,
             "datetime_start": _naive_utc(t.datetime_start), "datetime_complete": _naive_utc(t.datetime_complete)}
            for i, t in enumerate(trials)
        ])
        ids = dict(conn.execute(sqlalchemy.select(trials_t.c.number, trials_t.c.trial_id)
                                .where(trials_t.c.study_id == study_id)).all())
        params, values, attrs = [], [], []
        for i, t in enumerate(trials):
            tid = ids[first + i]
            for name, value in t.params.items():
                dist = t.distributions[name]
                params.append({"trial_id": tid, "param_name": name, "param_value": dist.to_internal_repr(value),
                               "distribution_json": distribution_to_json(dist)})
            if t.value is not None:
                stored, kind = models.TrialValueModel.value_to_stored_repr(t.value)
                values.append({"trial_id": tid, "objective": 0, "value": stored, "value_type": kind})
            attrs += [{"trial_id": tid, "key": k, "value_json": json.dumps(v)} for k, v in t.user_attrs.items()]
        for table, rows in ((models.TrialParamModel, params), (models.TrialValueModel, values),
                            (models.TrialUserAttributeModel, attrs)):
            if rows:
                conn.execute(table.__table__.insert(), rows)


def _naive_utc(when: datetime | None) -> datetime | None:
    """Optuna's RDB storage keeps naive UTC datetimes (optuna.storages._rdb.models.TrialModel)."""
    return None if when is None else when.astimezone(timezone.utc).replace(tzinfo=None)


def build_store(
    storage: str | optuna.storages.BaseStorage, specs: list[StudySpec], seed: int = 0, *, bulk: bool = True
) -> None:
    """Write the simulated studies into ``storage`` (an Optuna store URL or storage object).

    ``bulk`` writes the trials of an RDB store with :func:`_insert_trials`; False (or any other
    storage) uses ``Study.add_trials``.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(seed)
    if isinstance(storage, str):
        storage = optuna.storages.RDBStorage(storage)
    for spec in specs:
        study = optuna.create_study(storage=storage, study_name=spec.name, direction="maximize")
        for key, value in (study_attrs(spec) if spec.lossweep else {}).items():
            study.set_user_attr(key, value)
        trials = simulate_trials(spec, rng)
        if bulk and isinstance(storage, optuna.storages.RDBStorage):
            _insert_trials(storage, study._study_id, trials)
        else:
            study.add_trials(trials)
    if isinstance(storage, optuna.storages.RDBStorage):
        storage.engine.dispose()  # release the file before readers open it


__all__ = ["StudySpec", "build_store", "simulate_trials", "study_attrs", "SPACES", "DEFAULTS"]
