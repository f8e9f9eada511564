"""Planning a run: one :class:`Plan` per loss, and the study each plan runs into, created or checked.

A plan is validated completely (search space, grid budget, settings) before any store is touched,
and every plan is checked against the store before the first one runs, so a conflicting study
refuses the whole command instead of half of it.
"""

from __future__ import annotations

import importlib.metadata
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from search_spaces import SearchSpace, get_space

from .config import STORE_FORMAT, RunOptions, StudyConfig, setting_differences
from .design import Design, grid_levels
from .errors import UsageError
from .storage import redact

# The objective's name in the store: optuna-dashboard shows it instead of "Objective 0".
METRIC_NAMES = ["val mAP"]


@dataclass
class Plan:
    """One study to run: its name, configuration and search space."""

    name: str
    config: StudyConfig
    space: SearchSpace

    def attrs(self, prepared: Any) -> dict[str, Any]:
        """The study's user attributes (docs/store-format.md)."""
        config = self.config.to_dict()
        config["grid_levels"] = grid_levels(self.space, self.config.n_trials) if self.config.sampler == "grid" else None
        return {
            "lossweep": {"format": STORE_FORMAT},
            "loss": self.config.loss,
            "config": config,
            "search_space": self.space.to_dict(),
            "data_fingerprint": str(prepared.fingerprint),
            "class_names": list(prepared.class_names),
            "train_positives": [int(x) for x in prepared.train_positives],
            "data_source": prepared.dataset.record(),
            "versions": versions(),
        }


def versions() -> dict[str, str | None]:
    """Versions that produced the results; read from package metadata so torch is not imported."""

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "lossweep": version("lossweep"),
        "optuna": optuna.__version__,
        "torch": version("torch"),
        "timm": version("timm"),
        "python": platform.python_version(),
    }


def make_plans(options: RunOptions) -> list[Plan]:
    """One plan per loss; raises UsageError / ValueError with a message for the user."""
    plans = []
    for loss in options.losses:
        space = get_space(
            loss,
            options.space_mode,
            nuisance=options.nuisance,
            options=dict(options.space_options),
            overrides=options.space_file,
        )
        config = StudyConfig(
            loss=loss,
            n_trials=options.n_trials,
            trial=options.trial,
            sampler=options.sampler,
            seed=options.seed,
            space_mode=options.space_mode,
            nuisance=options.nuisance,
            replicates=options.replicates,
            max_retries=options.max_retries,
            space_file=None if options.space_file is None else str(Path(options.space_file).resolve()),
        )
        Design(space, config.sampler, config.seed, config.n_trials)  # validates e.g. the grid budget
        if options.study_name is None:
            name = config.default_study_name()
        else:
            name = options.study_name + (f"-{loss}" if len(options.losses) > 1 else "")
        plans.append(Plan(name, config, space))
    return plans


def check_existing(storage: optuna.storages.RDBStorage, plan: Plan, attrs: dict[str, Any], url: str) -> bool:
    """True when the study exists and matches; UsageError when it exists with other settings."""
    try:
        study_id = storage.get_study_id_from_name(plan.name)
    except KeyError:
        return False
    stored = storage.get_study_user_attrs(study_id)
    for _ in range(20):  # another machine may have just created it and be writing its attributes
        if "config" in stored:
            break
        time.sleep(0.5)
        stored = storage.get_study_user_attrs(study_id)
    if "lossweep" not in stored or "config" not in stored:
        raise UsageError(f"study {plan.name!r} in {redact(url)} was not made by lossweep; choose another --study-name")
    keys = ("config", "search_space", "data_fingerprint")
    diffs = setting_differences({k: stored.get(k) for k in keys}, {k: attrs[k] for k in keys})
    if diffs:
        raise UsageError(
            f"study {plan.name!r} in {redact(url)} was made with different settings: {'; '.join(diffs)}. "
            "Rerun with the stored settings to resume it, or pass another --study-name"
        )
    return True


def create_or_load(storage: optuna.storages.RDBStorage, plan: Plan, attrs: dict[str, Any], url: str) -> optuna.Study:
    """Create the study once, before any worker starts (concurrent table creation races, optuna #1092)."""
    if not check_existing(storage, plan, attrs, url):
        try:
            study = optuna.create_study(study_name=plan.name, storage=storage, direction="maximize")
        except optuna.exceptions.DuplicatedStudyError:  # another machine was faster
            check_existing(storage, plan, attrs, url)
        else:
            name_objective(study)
            for key, value in attrs.items():
                study.set_user_attr(key, value)
            return study
    study = optuna.load_study(study_name=plan.name, storage=storage)
    name_objective(study)  # a study made before lossweep named it
    stored_config = study.user_attrs["config"]
    if plan.config.n_trials > int(stored_config.get("n_trials", 0)):
        study.set_user_attr("config", {**stored_config, "n_trials": plan.config.n_trials})  # the budget grows
    return study


def name_objective(study: optuna.Study) -> None:
    """Store :data:`METRIC_NAMES` where the study has no metric names yet."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if study.metric_names is None:
            study.set_metric_names(METRIC_NAMES)
