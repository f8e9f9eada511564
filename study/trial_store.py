"""Fast, atomic store access for the two things every trial does: the claim's read and the result's write.

Optuna's public API is correct but slow for a sweep of many short trials:

* it writes each user attribute in its own transaction; a lossweep trial stores about 25, so one
  result cost ~25 commits (0.1-0.2 s on SQLite, a large share of a linear-probe trial) and a worker
  killed half-way left a trial with half its attributes;
* ``study.get_trials`` loads every trial with every attribute, parameter and per-class list; the
  claim, which runs under the study's lock before each trial, needs only each trial's state and
  three small attributes, and the full read grows with the study (0.1 s at 200 trials).

:func:`write_result` therefore writes all attributes, the value and the final state in one
transaction, and :func:`ledger_rows` reads just the claim's columns in one query, both through
Optuna's own SQLAlchemy models (``optuna.storages._rdb.models``, private to Optuna). Where those
models are missing or changed (another Optuna version) both fall back to the public API, which is
correct, only slower and, for the write, not atomic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import TrialState

# The user attributes the claim's ledger reads (study.design.Ledger).
LEDGER_ATTRS = ("design_index", "status", "fail_reason")


@dataclass(frozen=True)
class TrialRow:
    """The part of a trial the ledger needs; duck-types the FrozenTrial fields it reads."""

    number: int
    state: TrialState
    user_attrs: dict[str, Any] = field(default_factory=dict)


def _models() -> Any | None:
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session  # noqa: F401
    except ImportError:
        return None
    needed = ("TrialModel", "TrialUserAttributeModel", "TrialValueModel", "TrialHeartbeatModel")
    return models if all(hasattr(models, name) for name in needed) else None


def _session(storage: Any):
    from optuna.storages._rdb.storage import _create_scoped_session

    return _create_scoped_session(storage.scoped_session)


def write_result(
    storage: optuna.storages.RDBStorage,
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
        models = _models()
        if models is not None and hasattr(storage, "scoped_session"):
            _write_batched(storage, models, trial_id, user_attrs, state, value)
        else:
            for key, attr in user_attrs.items():
                storage.set_trial_user_attr(trial_id, key, attr)
            # value is not None when COMPLETE (checked above).
            values = [float(value)] if state == TrialState.COMPLETE else None  # type: ignore[arg-type]
            storage.set_trial_state_values(trial_id, state, values)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    return True


def _write_batched(
    storage: Any, models: Any, trial_id: int, user_attrs: dict[str, Any], state: TrialState, value: float | None
) -> None:
    import sqlalchemy

    attrs = models.TrialUserAttributeModel
    with _session(storage) as session:
        # Lock the trial row (PostgreSQL: FOR UPDATE) so a concurrent stale sweep either already
        # finished it -- then nothing is written -- or waits until this result is committed.
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
        storage.check_trial_is_updatable(trial_id, trial.state)
        # One DELETE and one multi-row INSERT: an upsert of every key in two statements.
        session.execute(sqlalchemy.delete(attrs).where(attrs.trial_id == trial_id, attrs.key.in_(list(user_attrs))))
        session.execute(
            sqlalchemy.insert(attrs),
            [{"trial_id": trial_id, "key": key, "value_json": json.dumps(attr)} for key, attr in user_attrs.items()],
        )
        if state == TrialState.COMPLETE:
            stored, kind = models.TrialValueModel.value_to_stored_repr(float(value))  # type: ignore[arg-type]  # see caller
            session.add(models.TrialValueModel(trial_id=trial_id, objective=0, value=stored, value_type=kind))
        trial.state = state
        trial.datetime_complete = datetime.now()


def ledger_rows(storage: optuna.storages.RDBStorage, study_id: int) -> list[TrialRow]:
    """Every trial of the study with its state and the :data:`LEDGER_ATTRS` it has, in one query."""
    models = _models()
    if models is None or not hasattr(storage, "scoped_session"):
        return [
            TrialRow(t.number, t.state, {k: t.user_attrs[k] for k in LEDGER_ATTRS if k in t.user_attrs})
            for t in storage.get_all_trials(study_id, deepcopy=False)
        ]
    import sqlalchemy

    trials, attrs = models.TrialModel, models.TrialUserAttributeModel
    query = (
        sqlalchemy.select(trials.number, trials.state, attrs.key, attrs.value_json)
        .select_from(trials)
        .outerjoin(attrs, sqlalchemy.and_(attrs.trial_id == trials.trial_id, attrs.key.in_(LEDGER_ATTRS)))
        .where(trials.study_id == study_id)
    )
    rows: dict[int, TrialRow] = {}
    with _session(storage) as session:
        for number, state, key, value_json in session.execute(query):
            row = rows.setdefault(number, TrialRow(number, state, {}))
            if key is not None:
                row.user_attrs[key] = json.loads(value_json)
    return [rows[n] for n in sorted(rows)]


def fail_orphans(storage: optuna.storages.RDBStorage, study_id: int) -> list[int]:
    """Fail the study's RUNNING trials that have no heartbeat at all; returns their numbers.

    Call it only while holding the claim lock (study.design.claim_lock): a worker creates its trial
    and records the first heartbeat inside that lock, so a RUNNING trial without a heartbeat seen
    under the lock belongs to a worker that died in between. Optuna never fails such a trial as
    stale (it has no heartbeat to be late), and its design index would stay held for ever.
    """
    models = _models()
    if models is None or not hasattr(storage, "scoped_session"):
        return []
    import sqlalchemy

    trials, beats = models.TrialModel, models.TrialHeartbeatModel
    query = sqlalchemy.select(trials.trial_id, trials.number).where(
        trials.study_id == study_id,
        trials.state == TrialState.RUNNING,
        ~sqlalchemy.exists().where(beats.trial_id == trials.trial_id),
    )
    with _session(storage) as session:
        orphans = list(session.execute(query))
    failed = []
    for trial_id, number in orphans:
        if write_result(
            storage,
            trial_id,
            {"status": "failed", "fail_reason": "worker lost before its first heartbeat"},
            TrialState.FAIL,
            None,
        ):
            failed.append(number)
    return failed
