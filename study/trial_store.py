"""Atomic writes of trials: a pack's RUNNING trials, their heartbeats and their results, each in one transaction.

Optuna's public API writes each user attribute in its own transaction; a lossweep trial stores
about 25, so one result cost ~25 commits (0.1-0.2 s on SQLite, a large share of a linear-probe
trial) and a worker killed half-way left a trial with half its attributes. Creating a trial costs
four more (the trial, its parameters, its attributes, its first heartbeat), so a pack of 200 cost
800 commits under the claim lock. The functions here write through Optuna's own SQLAlchemy
models (``study.optuna_internals``) in one transaction each: :func:`create_running_trials` (a
pack's trials with their parameters, attributes and first heartbeats), :func:`record_heartbeats`
(every trial of a pack), :func:`write_result` / :func:`write_results` (every attribute, the value
and the final state). Where those models are missing (another Optuna version) each falls back to
the public API, which is correct, only slower and not atomic. The claim's fast read lives with the
claim (``study.claims``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    check_distribution_compatibility,
    distribution_to_json,
    json_to_distribution,
)
from optuna.trial import FrozenTrial, TrialState

from .optuna_internals import has_fast_path, rdb_models, session


@dataclass(frozen=True)
class NewTrial:
    """A RUNNING trial to create: its parameters (with their distributions) and attributes."""

    params: dict[str, Any]
    distributions: dict[str, BaseDistribution]
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)


def create_running_trials(
    storage: optuna.storages.RDBStorage, study_id: int, trials: Sequence[NewTrial]
) -> list[tuple[int, int]]:
    """Create ``trials`` as RUNNING trials, each with its first heartbeat; returns (trial id, number) each.

    One transaction on the fast path: a worker killed while claiming a pack leaves either the whole
    pack or nothing. The rows are those ``RDBStorage.create_new_trial`` writes (the trial number is
    the count of the study's earlier trials, with the study row locked as Optuna locks it, and each
    parameter's distribution is checked against the one the study already stores under its name).
    """
    if not has_fast_path(storage):
        created = []
        for new in trials:
            template = FrozenTrial(
                number=-1,
                state=TrialState.RUNNING,
                value=None,
                datetime_start=datetime.now(),
                datetime_complete=None,
                params=new.params,
                distributions=new.distributions,
                user_attrs=new.user_attrs,
                system_attrs=new.system_attrs,
                intermediate_values={},
                trial_id=-1,
            )
            trial_id = storage.create_new_trial(study_id, template)
            storage.record_heartbeat(trial_id)
            created.append((trial_id, storage.get_trial_number_from_id(trial_id)))
        return created
    import sqlalchemy

    models: Any = rdb_models()
    created = []
    with session(storage) as s:
        models.StudyModel.find_or_raise_by_id(study_id, s, for_update=True)
        number = s.execute(
            sqlalchemy.select(sqlalchemy.func.count(models.TrialModel.trial_id)).where(
                models.TrialModel.study_id == study_id
            )
        ).scalar_one()
        stored: dict[str, BaseDistribution] = {}
        names = sorted({name for new in trials for name in new.distributions})
        if names:
            params = models.TrialParamModel
            query = (
                sqlalchemy.select(params.param_name, sqlalchemy.func.min(params.distribution_json))
                .join(models.TrialModel, models.TrialModel.trial_id == params.trial_id)
                .where(models.TrialModel.study_id == study_id, params.param_name.in_(names))
                .group_by(params.param_name)
            )
            stored = {name: json_to_distribution(text) for name, text in s.execute(query)}
        for new in trials:
            for name, distribution in new.distributions.items():
                if name in stored:
                    check_distribution_compatibility(stored[name], distribution)
        rows = [
            models.TrialModel(
                study_id=study_id, number=number + i, state=TrialState.RUNNING, datetime_start=datetime.now()
            )
            for i in range(len(trials))
        ]
        s.add_all(rows)
        s.flush()  # every trial id from one batched INSERT: a flush per trial made a 112-trial claim ~3x slower
        for trial, new in zip(rows, trials, strict=True):
            s.add_all(
                [
                    models.TrialParamModel(
                        trial_id=trial.trial_id,
                        param_name=name,
                        param_value=new.distributions[name].to_internal_repr(value),
                        distribution_json=distribution_to_json(new.distributions[name]),
                    )
                    for name, value in new.params.items()
                ]
                + [
                    models.TrialUserAttributeModel(trial_id=trial.trial_id, key=key, value_json=json.dumps(value))
                    for key, value in new.user_attrs.items()
                ]
                + [
                    models.TrialSystemAttributeModel(trial_id=trial.trial_id, key=key, value_json=json.dumps(value))
                    for key, value in new.system_attrs.items()
                ]
                + [models.TrialHeartbeatModel(trial_id=trial.trial_id)]
            )
            created.append((trial.trial_id, trial.number))
    return created


def record_heartbeats(storage: optuna.storages.RDBStorage, trial_ids: Sequence[int]) -> None:
    """Record a heartbeat of every trial in ``trial_ids`` (each has its first one already), in one statement."""
    if not has_fast_path(storage):
        for trial_id in trial_ids:
            storage.record_heartbeat(trial_id)
        return
    import sqlalchemy

    beats = rdb_models().TrialHeartbeatModel  # type: ignore[union-attr]
    with session(storage) as s:
        s.execute(
            sqlalchemy.update(beats)
            .where(beats.trial_id.in_(list(trial_ids)))
            .values(heartbeat=sqlalchemy.func.current_timestamp())
        )


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


Result = tuple[int, dict[str, Any], TrialState, float | None]  # trial id, user attributes, state, value


def write_results(storage: optuna.storages.BaseStorage, results: list[Result]) -> list[bool]:
    """:func:`write_result` for the trials of a pack, all in one transaction where the fast path exists.

    Returns, per trial, whether it was written (False: another worker had already failed it as stale).
    """
    for _, _, state, value in results:
        if state not in (TrialState.COMPLETE, TrialState.FAIL) or (state == TrialState.COMPLETE and value is None):
            raise ValueError(f"a result is COMPLETE with a value or FAIL, not {state.name} with {value!r}")
    if not has_fast_path(storage):
        return [write_result(storage, *result) for result in results]
    assert isinstance(storage, optuna.storages.RDBStorage)
    models: Any = rdb_models()
    written = []
    with session(storage) as s:
        for trial_id, user_attrs, state, value in results:
            trial = models.TrialModel.find_or_raise_by_id(trial_id, s, for_update=True)
            if trial.state.is_finished():  # failed as stale meanwhile: keep that, write nothing
                written.append(False)
                continue
            _write_in(s, models, trial, trial_id, user_attrs, state, value)
            written.append(True)
    return written


def _write_batched(
    storage: optuna.storages.RDBStorage,
    trial_id: int,
    user_attrs: dict[str, Any],
    state: TrialState,
    value: float | None,
) -> None:
    models: Any = rdb_models()
    with session(storage) as s:
        # Lock the trial row (PostgreSQL: FOR UPDATE) so a concurrent stale sweep either already
        # finished it -- then nothing is written -- or waits until this result is committed.
        trial = models.TrialModel.find_or_raise_by_id(trial_id, s, for_update=True)
        storage.check_trial_is_updatable(trial_id, trial.state)
        _write_in(s, models, trial, trial_id, user_attrs, state, value)


def _write_in(s: Any, models: Any, trial: Any, trial_id: int, user_attrs: dict[str, Any], state, value) -> None:
    """The statements of one result inside an open session, the trial row already locked."""
    import sqlalchemy

    attrs = models.TrialUserAttributeModel
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
