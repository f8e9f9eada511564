"""Build real lossweep stores with simulated trial outcomes, for tests and benchmarks of analysis/reports.

The studies are written with plain Optuna in the format of docs/store-format.md (study and trial
user attributes included), so everything that reads a store reads these unchanged. Only the mAP
values are simulated: a smooth response surface over the loss hyperparameters plus seed noise,
with a share of failed and diverged trials.

This module is also the one place that writes trials in bulk (:func:`bulk_add_trials`) and that
spells out a trial's user attributes (:func:`trial_user_attrs`): ``benchmarks/report.py`` builds
its realistic report stores with both. Like all of ``analysis`` it must not import torch or runners.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

SPACES: dict[str, dict[str, tuple[float, float, bool]]] = {
    "asl": {"gamma_pos": (0.0, 4.0, False), "gamma_neg": (0.0, 8.0, False), "clip": (0.0, 0.2, False)},
    "ral": {
        "gamma_pos": (0.0, 4.0, False),
        "gamma_neg": (0.0, 8.0, False),
        "clip": (0.0, 0.2, False),
        "lam": (1.0, 2.0, False),
        "alpha_1": (0.0, 2.0, False),
        "alpha_2": (-2.0, 0.0, False),
    },
    "focal": {"gamma": (0.0, 5.0, False)},
    "bce": {},
    "hill": {"lam": (1.0, 2.0, False), "margin": (0.0, 2.0, False), "gamma": (0.0, 4.0, False)},
}
DEFAULTS = {
    "gamma_pos": 1.0,
    "gamma_neg": 4.0,
    "clip": 0.05,
    "lam": 1.5,
    "alpha_1": 1.0,
    "alpha_2": -1.25,
    "gamma": 2.0,
    "margin": 1.0,
}
N_CLASSES = 26
MATCHED = ("gamma_pos", "gamma_neg", "clip")  # what `matched` mode sweeps for ASL and RAL (search_spaces)


def swept_space(loss: str, mode: str) -> dict[str, tuple[float, float, bool]]:
    """The parameters a simulated study sweeps: none in seeds mode, the shared three in matched mode
    (for ASL and RAL, as search_spaces does), the loss's whole space otherwise; the rest stay at defaults."""
    space = SPACES[loss]
    if mode == "seeds":
        return {}
    if mode == "matched" and loss in ("asl", "ral"):
        return {k: v for k, v in space.items() if k in MATCHED}
    return dict(space)


# runners.result.SCALAR_METRICS, repeated because analysis may not import runners.
SCALAR_METRICS = ("mAP", "mAUC", "mF1", "mAP_head", "mAP_medium", "mAP_tail", "chance_mAP")


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
    seed_effect: float = 0.0  # std of the replicate seeds' shared effect (common random numbers across trials)
    chance: float | None = 0.05  # the validation split's chance-level mAP; None: not recorded (an older store)
    lossweep: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)  # study attributes to replace (fairness tests)


def study_attrs(spec: StudySpec) -> dict[str, Any]:
    """The study attributes of docs/store-format.md (``config.trial`` abridged to the keys analysis reads)."""
    space = swept_space(spec.loss, spec.space_mode)
    attrs: dict[str, Any] = {
        "lossweep": {"format": 1},
        "loss": spec.loss,
        "config": {
            "loss": spec.loss,
            "n_trials": spec.n_trials,
            "sampler": spec.sampler,
            "seed": spec.seed,
            "space_mode": spec.space_mode,
            "nuisance": False,
            "replicates": spec.replicates,
            "trial": {
                "data": {"name": "synthetic", "num_classes": N_CLASSES, "seed": 0},
                "backbone": "resnet18",
                "checkpoint": None,
                "protocol": "linear-probe",
                "train": {"epochs": 30, "lr": 1e-3, "weight_decay": 1e-4},
                "device": "cpu",
            },
        },
        "search_space": {
            "format": 1,
            "loss": spec.loss,
            "mode": spec.space_mode,
            "nuisance": False,
            "params": [
                {"name": k, "low": lo, "high": hi, "log": lg, "default": DEFAULTS[k]}
                for k, (lo, hi, lg) in space.items()
            ],
            "fixed": {k: DEFAULTS[k] for k in SPACES[spec.loss] if k not in space},
        },
        "data_fingerprint": "f" * 16,
        "class_names": [f"c{i}" for i in range(N_CLASSES)],
        "train_positives": [1000 // (i + 1) for i in range(N_CLASSES)],
        "versions": {
            "lossweep": "0.1.0",
            "optuna": optuna.__version__,
            "torch": "2.5.1",
            "timm": "1.0.11",
            "python": "3.11.2",
        },
    }
    attrs.update(spec.overrides)
    return attrs


def trial_user_attrs(
    design_index: int,
    status: str,
    *,
    seconds: float,
    seeds: Sequence[int],
    val: Mapping[str, Any] | None = None,
    test: Mapping[str, Any] | None = None,
    replicate_values: Iterable[float] = (),
    fail_reason: str | None = None,
    diverged_step: int | None = None,
    diverged_value: str | None = None,
) -> dict[str, Any]:
    """A trial's user attributes as ``study.run`` writes them: ``design_index`` plus every key of
    ``runners.result.TrialResult.user_attrs()`` (docs/store-format.md).

    ``val`` / ``test`` map metric names (:data:`SCALAR_METRICS` and ``per_class_ap``) to values; a
    metric left out is stored as None (an empty list for ``per_class_ap``), as for a failed trial.
    """
    attrs: dict[str, Any] = {"design_index": design_index, "status": status}
    for split, metrics in (("val", val or {}), ("test", test or {})):
        for name in SCALAR_METRICS:
            attrs[f"{split}_{name}"] = metrics.get(name)
        attrs[f"{split}_per_class_ap"] = list(metrics.get("per_class_ap", []))
    attrs |= {
        "seconds": seconds,
        "seeds": list(seeds),
        "replicate_values": list(replicate_values),
        "fail_reason": fail_reason,
        "diverged_step": diverged_step,
        "diverged_value": diverged_value,
    }
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
    space = swept_space(spec.loss, spec.space_mode)
    dists: dict[str, BaseDistribution] = {k: FloatDistribution(lo, hi, log=lg) for k, (lo, hi, lg) in space.items()}
    trials = []
    start = datetime(2026, 1, 1, 12, 0, 0)
    # Replicate r of every trial trains with the same seed, so it shares this shift (crossed config x seed design).
    seed_shift = rng.normal(0, spec.seed_effect, spec.replicates) if spec.seed_effect > 0 else np.zeros(spec.replicates)
    for number in range(spec.n_trials):
        params = {k: float(rng.uniform(lo, hi)) for k, (lo, hi, _) in space.items()}
        surface = _surface(spec.loss, {k: DEFAULTS[k] for k in SPACES[spec.loss]} | params)
        u = rng.uniform()
        reps = [
            spec.base + spec.sensitivity * surface + seed_shift[r] + rng.normal(0, spec.noise)
            for r in range(spec.replicates)
        ]
        value = float(np.mean(reps))
        tier = {
            f"mAP_{t}": value + d + rng.normal(0, spec.noise)
            for t, d in (("head", 0.2), ("medium", 0.0), ("tail", -0.2))
        }
        common: dict[str, Any] = {"seconds": float(rng.uniform(1, 3)), "seeds": list(range(spec.replicates))}
        if u < spec.diverge_rate:
            attrs = trial_user_attrs(
                number,
                "diverged",
                **common,
                fail_reason="non-finite loss at step 12",
                diverged_step=12,
                diverged_value="nan",
            )
            state, val = TrialState.FAIL, None
        elif u < spec.diverge_rate + spec.fail_rate:
            attrs = trial_user_attrs(number, "failed", **common, fail_reason="RuntimeError: CUDA out of memory")
            state, val = TrialState.FAIL, None
        else:
            val_metrics: dict[str, Any] = {
                "mAP": value,
                "mAUC": min(1.0, value + 0.3),
                "mF1": value * 0.8,
                **tier,
                "chance_mAP": spec.chance,
                "per_class_ap": [value] * N_CLASSES,
            }
            # The test split is simulated as the validation split a point lower (no extra random draws).
            test_metrics = {
                k: [a - 0.01 for a in v] if k == "per_class_ap" else (None if v is None else v - 0.01)
                for k, v in val_metrics.items()
            }
            attrs = trial_user_attrs(
                number,
                "complete",
                **common,
                val=val_metrics,
                test=test_metrics,
                replicate_values=[float(r) for r in reps],
            )
            state, val = TrialState.COMPLETE, value
        kwargs: dict[str, Any] = {"value": val} if val is not None else {}
        trial = create_trial(state=state, params=params, distributions=dists, user_attrs=attrs, **kwargs)
        # Wall-clock timestamps that match the stored seconds (create_trial stamps both with "now").
        trial.datetime_start = start + timedelta(seconds=3 * number)
        trial.datetime_complete = trial.datetime_start + timedelta(seconds=attrs["seconds"] + 0.5)
        trials.append(trial)
    return trials


def bulk_add_trials(storage: optuna.storages.RDBStorage, study_name: str, trials: Sequence[FrozenTrial]) -> None:
    """``Study.add_trials`` as one multi-row INSERT per table, in one transaction.

    Hand-written because ``add_trials`` goes through the ORM row by row, one upsert per user
    attribute (40-60 ms a trial here: 10+ minutes for the report benchmark's 10,000 trials). This
    writes exactly the rows ``add_trials`` writes, through Optuna's own table definitions and value
    encodings (``optuna.storages._rdb.models``, through ``study.optuna_internals``; ``add_trials``
    itself where those are missing), for finished single-objective trials without intermediate
    values or system attributes; tests/analysis/test_testing.py compares the two stores field by
    field. The trials are numbered after those the study already has.
    """
    from optuna.distributions import distribution_to_json

    from study.optuna_internals import rdb_models

    for t in trials:
        multi_objective = t.values is not None and len(t.values) != 1
        if not t.state.is_finished() or multi_objective or t.intermediate_values or t.system_attrs:
            raise ValueError(
                f"bulk_add_trials writes finished single-objective trials without intermediate "
                f"values or system attributes; trial {t.number} is not one: use Study.add_trials"
            )
    if not trials:
        return
    models: Any = rdb_models()
    if models is None:  # Optuna's models changed: the public API writes the same rows, slowly
        optuna.load_study(study_name=study_name, storage=storage).add_trials(trials)
        return
    study_id = storage.get_study_id_from_name(study_name)
    trials_t = models.TrialModel.__table__
    with storage.engine.begin() as conn:
        first = conn.execute(
            sqlalchemy.select(sqlalchemy.func.count()).select_from(trials_t).where(trials_t.c.study_id == study_id)
        ).scalar_one()
        conn.execute(
            trials_t.insert(),
            [
                {
                    "number": first + i,
                    "study_id": study_id,
                    "state": t.state,
                    "datetime_start": t.datetime_start,
                    "datetime_complete": t.datetime_complete,
                }
                for i, t in enumerate(trials)
            ],
        )
        # Read the new ids back by number (portable: no INSERT ... RETURNING needed).
        ids: dict[int, int] = dict(
            conn.execute(
                sqlalchemy.select(trials_t.c.number, trials_t.c.trial_id).where(
                    trials_t.c.study_id == study_id, trials_t.c.number >= first
                )
            ).all()
        )
        params, values, attrs = [], [], []
        for i, t in enumerate(trials):
            trial_id = ids[first + i]
            for name, dist in t.distributions.items():
                params.append(
                    {
                        "trial_id": trial_id,
                        "param_name": name,
                        "param_value": dist.to_internal_repr(t.params[name]),
                        "distribution_json": distribution_to_json(dist),
                    }
                )
            if t.value is not None:
                stored, kind = models.TrialValueModel.value_to_stored_repr(t.value)
                values.append({"trial_id": trial_id, "objective": 0, "value": stored, "value_type": kind})
            attrs += [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in t.user_attrs.items()]
        for model, rows in (
            (models.TrialParamModel, params),
            (models.TrialValueModel, values),
            (models.TrialUserAttributeModel, attrs),
        ):
            if rows:
                conn.execute(model.__table__.insert(), rows)


def build_store(
    storage: str | optuna.storages.BaseStorage, specs: list[StudySpec], seed: int = 0, *, bulk: bool = True
) -> None:
    """Write the simulated studies into ``storage`` (an Optuna store URL or storage object).

    ``bulk`` writes the trials of an RDB store with :func:`bulk_add_trials`; False (or any other
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
            bulk_add_trials(storage, spec.name, trials)
        else:
            study.add_trials(trials)
    if isinstance(storage, optuna.storages.RDBStorage):
        storage.engine.dispose()  # release the file before readers open it


__all__ = [
    "StudySpec",
    "build_store",
    "bulk_add_trials",
    "simulate_trials",
    "study_attrs",
    "trial_user_attrs",
    "SCALAR_METRICS",
    "SPACES",
    "DEFAULTS",
    "N_CLASSES",
]
