"""The one place lossweep touches Optuna's private API, each use with a public fallback.

Optuna's public storage API is correct but slow for what a sweep does thousands of times (one
transaction per user attribute, whole-trial reads); the fast paths of ``study.trial_store``,
``study.claims``, ``analysis.load`` and ``analysis.testing`` go through Optuna's own SQLAlchemy
models instead, so the rows they read and write are exactly Optuna's. Those models are private
(``optuna.storages._rdb.models``) and may change in any release, so:

* every private name is listed in :data:`PRIVATE_NAMES` and reached only through this module;
* :func:`rdb_models` returns None when any of them is missing, and every caller then takes the
  public API (correct, only slower -- and for a result's write, not atomic);
* ``tests/study/test_optuna_internals.py`` fails, naming the installed Optuna version and the
  missing attribute, when an upgrade removes one, so the slow path is never taken unnoticed;
  it also fails if a private Optuna name is used anywhere outside this module.

Sessions are plain SQLAlchemy sessions on ``RDBStorage.engine`` (public), not Optuna's private
``_create_scoped_session``; a study's id is read with ``get_study_id_from_name`` (public) rather
than ``FrozenStudy._study_id``.

This module imports only optuna and sqlalchemy (analysis and reports use it without torch).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Container, Iterator, Sequence
from types import ModuleType
from typing import Any

import optuna
import sqlalchemy.orm
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

MODELS_MODULE = "optuna.storages._rdb.models"
# The private names the fast paths use: module -> attribute paths (dotted for class members).
PRIVATE_NAMES: dict[str, tuple[str, ...]] = {
    MODELS_MODULE: (
        "StudyModel.find_or_raise_by_id",
        "TrialModel",
        "TrialModel.find_or_raise_by_id",
        "TrialParamModel",
        "TrialUserAttributeModel",
        "TrialSystemAttributeModel",
        "TrialValueModel",
        "TrialValueModel.value_to_stored_repr",
        "TrialValueModel.stored_repr_to_value",
        "TrialHeartbeatModel",
    ),
}


def missing_private_names() -> list[str]:
    """``module.attribute`` for each name of :data:`PRIVATE_NAMES` the installed Optuna lacks."""
    missing = []
    for module_name, attributes in PRIVATE_NAMES.items():
        try:
            module: Any = importlib.import_module(module_name)
        except ImportError:
            missing.append(module_name)
            continue
        for path in attributes:
            target = module
            for part in path.split("."):
                target = getattr(target, part, None)
                if target is None:
                    missing.append(f"{module_name}.{path}")
                    break
    return missing


_MODELS: ModuleType | None | bool = False  # False: not looked up yet


def rdb_models() -> ModuleType | None:
    """Optuna's SQLAlchemy models module, or None (take the public API) when any name is missing."""
    global _MODELS
    if _MODELS is False:
        _MODELS = None if missing_private_names() else importlib.import_module(MODELS_MODULE)
    return _MODELS  # type: ignore[return-value]


def has_fast_path(storage: object) -> bool:
    """True when ``storage`` is an RDB store and the private models are usable."""
    return isinstance(storage, optuna.storages.RDBStorage) and rdb_models() is not None


@contextlib.contextmanager
def session(storage: optuna.storages.RDBStorage) -> Iterator[sqlalchemy.orm.Session]:
    """One transaction on the store: committed when the block ends, rolled back when it raises."""
    with sqlalchemy.orm.Session(storage.engine) as s, s.begin():
        yield s


class FixedTrialsStudy(optuna.Study):
    """A study that reads a fixed list of trials, for ``optuna.importance`` on resamples.

    Adding the trials to an in-memory study instead deep-copies every one of them; a resample
    here is a list slice. The installed Optuna's evaluators read trials through the public
    ``get_trials``; some earlier releases read the private ``Study._get_trials``, which is
    overridden too (harmless where it no longer exists, so it is not in :data:`PRIVATE_NAMES`).
    """

    def __init__(self, trials: Sequence[FrozenTrial], direction: StudyDirection = StudyDirection.MAXIMIZE) -> None:
        storage = optuna.storages.InMemoryStorage()
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" per resample
        try:
            study_id = storage.create_new_study([direction])
        finally:
            optuna.logging.set_verbosity(verbosity)
        super().__init__(study_name=storage.get_study_name_from_id(study_id), storage=storage)
        self._given = list(trials)

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        import copy

        trials = [t for t in self._given if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def _get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None, use_cache: bool = False
    ) -> list[FrozenTrial]:
        return self.get_trials(deepcopy=deepcopy, states=states)
