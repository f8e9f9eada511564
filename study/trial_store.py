"""The atomic write of a trial's result: every attribute, the value and the final state in one transaction.

Optuna's public API writes each user attribute in its own transaction; a lossweep trial stores
about 25, so one result cost ~25 commits (0.1-0.2 s on SQLite, a large share of a linear-probe
trial) and a worker killed half-way left a trial with half its attributes. :func:`write_result`
writes them all at once through Optuna's own SQLAlchemy models (``study.optuna_internals``); where
those models are missing (another Optuna version) it falls back to the public API, which is
correct, only slower and not atomic. The claim's fast read lives with the claim (``study.claims``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import TrialState

from .optuna_internals import has_fast_path, rdb_models, session


def write_result(
    storage: optuna.storages.BaseStorage,
    trial_id: int,
    user_attrs: dict[str, Any],
    state: TrialState,
    value: float | None,
) -> bool:
    """Store ``user_attrs``, ``value`` (COMPLETE only) and the finished ``state`` of a RUNNING trial.

    Returns False, writing nothing, when the trial is already finished (another worker failed it as
    stale after its heartbeat stopped).
    """
    if state not in (TrialState.COMPLETE, TrialState.FAIL):
        raise ValueError(f"a result is COMPLETE or FAIL, not {state.name}")
    if state == TrialState.COMPLETE and value is None:
        raise ValueError("a COMPLETE trial needs a value")
    try:
        if has_fast_path(storage):
            assert isinstance(storage, optuna.storages.RDBStorage)
            _write_batched(storage, trial_id, user_attrs, state, value)
        else:
            for key, attr in user_attrs.items():
                storage.set_trial_user_attr(trial_id, key, attr)
            storage.set_trial_state_values(
                trial_id, state, [float(value)] if state == TrialState.COMPLETE and value is not None else None
            )
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    return True


def _write_batched(
    storage: optuna.storages.RDBStorage,
    trial_id: int,
    user_attrs: dict[str, Any],
    state: TrialState,
    value: float | None,
) -> None:
    import sqlalchemy

    models: Any = rdb_models()
    attrs = models.TrialUserAttributeModel
    with session(storage) as s:
        # Lock the trial row (PostgreSQL: FOR UPDATE) so a concurrent stale sweep either already
        # finished it -- then nothing is written -- or waits until this result is committed.
        trial = models.TrialModel.find_or_raise_by_id(trial_id, s, for_update=True)
        storage.check_trial_is_updatable(trial_id, trial.state)
        if user_attrs:
            # One DELETE and one multi-row INSERT: an upsert of every key in two statements.
            s.execute(sqlalchemy.delete(attrs).where(attrs.trial_id == trial_id, attrs.key.in_(list(user_attrs))))
            s.execute(
                sqlalchemy.insert(attrs),
                [{"trial_id": trial_id, "key": key, "value_json": json.dumps(a)} for key, a in user_attrs.items()],
            )
        if state == TrialState.COMPLETE:
            assert value is not None
            stored, kind = models.TrialValueModel.value_to_stored_repr(float(value))
            s.add(models.TrialValueModel(trial_id=trial_id, objective=0, value=stored, value_type=kind))
        trial.state = state
        trial.datetime_complete = datetime.now()
