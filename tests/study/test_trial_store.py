"""study.trial_store's one-transaction write and one-query read agree with Optuna's public API."""

from __future__ import annotations

import math

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from runners.result import TrialResult
from study import optuna_internals
from study.claims import LEDGER_ATTRS, fail_orphans, fail_stale, ledger_rows
from study.storage import open_storage
from study.summary import Summary
from study.trial_store import NewTrial, create_running_trials, record_heartbeats, write_result


def _result(value: float, status: str = "complete") -> TrialResult:
    return TrialResult(
        status=status,
        value=value if status == "complete" else None,
        val={"mAP": value, "per_class_ap": [value, None, 0.25]},
        test={"mAP": value / 2, "per_class_ap": [0.5, 0.5, None]},
        seconds=1.5,
        seeds=[3],
        replicate_values=[value],
        fail_reason="diverged: loss is nan" if status == "diverged" else None,
    )


@pytest.mark.parametrize("fast", [True, False], ids=["models", "public-api"])
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_results_read_back_through_optuna_and_the_ledger_query(backend, fast, tmp_path, request, monkeypatch):
    if not fast:
        monkeypatch.setattr(optuna_internals, "_MODELS", None)
    url = f"sqlite:///{tmp_path / 's.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    storage = open_storage(url, heartbeat_interval=1, grace_period=3)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study_id = storage.get_study_id_from_name("s")
    dist = {"gamma": optuna.distributions.FloatDistribution(0.0, 4.0)}
    ids = []
    for k in range(4):
        template = optuna.trial.create_trial(
            state=TrialState.RUNNING,
            params={"gamma": float(k)},
            distributions=dist,
            user_attrs={"design_index": k, "status": "stale value"},
        )
        ids.append(storage.create_new_trial(study_id, template))
    assert write_result(storage, ids[0], _result(0.75).user_attrs(), TrialState.COMPLETE, 0.75)
    assert write_result(storage, ids[1], _result(math.nan, "diverged").user_attrs(), TrialState.FAIL, None)
    storage.set_trial_state_values(ids[2], TrialState.FAIL)  # e.g. failed as stale by another worker
    assert not write_result(storage, ids[2], _result(0.5).user_attrs(), TrialState.COMPLETE, 0.5)  # nothing written

    trials = {t.number: t for t in study.get_trials()}
    done = trials[0]
    assert done.state == TrialState.COMPLETE and done.value == 0.75 and study.best_value == 0.75
    assert done.params == {"gamma": 0.0}
    assert done.user_attrs == {"design_index": 0, **_result(0.75).user_attrs()}  # "status" overwritten, the rest added
    assert done.user_attrs["val_per_class_ap"] == [0.75, None, 0.25]
    assert done.datetime_complete is not None
    assert (
        trials[1].state == TrialState.FAIL and trials[1].user_attrs["status"] == "diverged" and trials[1].value is None
    )
    assert trials[2].state == TrialState.FAIL and "val_mAP" not in trials[2].user_attrs
    assert trials[3].state == TrialState.RUNNING

    rows = ledger_rows(storage, study_id)
    assert [r.number for r in rows] == sorted(trials)
    for row in rows:
        full = trials[row.number]
        assert row.state == full.state
        assert row.user_attrs == {k: full.user_attrs[k] for k in LEDGER_ATTRS if k in full.user_attrs}
        assert row.value is None  # not asked for
    scored = ledger_rows(storage, study_id, values=True)
    assert [(r.number, r.value) for r in scored] == [(n, trials[n].value) for n in sorted(trials)]
    assert scored[0].value == 0.75
    # The closing table from the light rows is the one from Optuna's full trials.
    summary = Summary.read(storage, "s", n_trials=4, max_retries=1)
    assert summary == Summary.from_trials("s", study.get_trials(), n_trials=4, max_retries=1)
    assert (summary.complete, summary.diverged, summary.failed_attempts) == (1, 1, 1)
    assert summary.best_number == 0 and summary.best_value == 0.75 and summary.best_params == {"gamma": 0.0}


def test_a_complete_result_needs_a_value(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    study_id = storage.get_study_id_from_name(optuna.create_study(study_name="s", storage=storage).study_name)
    trial_id = storage.create_new_trial(study_id)
    with pytest.raises(ValueError, match="needs a value"):
        write_result(storage, trial_id, {}, TrialState.COMPLETE, None)
    with pytest.raises(ValueError, match="COMPLETE or FAIL"):
        write_result(storage, trial_id, {}, TrialState.PRUNED, None)


def test_a_running_trial_without_any_heartbeat_is_failed_as_an_orphan(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=3)
    study = optuna.create_study(study_name="s", storage=storage)
    study_id = storage.get_study_id_from_name("s")
    _orphan, alive = storage.create_new_trial(study_id), storage.create_new_trial(study_id)
    storage.record_heartbeat(alive)
    assert fail_orphans(storage, study_id) == [0]
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL and "heartbeat" in trials[0].user_attrs["fail_reason"]
    assert trials[1].state == TrialState.RUNNING
    assert fail_orphans(storage, study_id) == []


def _new_trials(n: int, gamma: float = 0.0) -> list[NewTrial]:
    dist = {"gamma": optuna.distributions.FloatDistribution(0.0, 4.0), "m": optuna.distributions.IntDistribution(1, 3)}
    return [
        NewTrial(
            params={"gamma": gamma + k / 2, "m": 1 + k % 3},
            distributions=dist,
            user_attrs={"design_index": k},
            system_attrs={"lossweep:worker": "host:1"},
        )
        for k in range(n)
    ]


@pytest.mark.parametrize("fast", [True, False], ids=["models", "public-api"])
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_pack_of_running_trials_reads_back_as_optuna_writes_it(backend, fast, tmp_path, request, monkeypatch):
    if not fast:
        monkeypatch.setattr(optuna_internals, "_MODELS", None)
    url = f"sqlite:///{tmp_path / 's.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    storage = open_storage(url, heartbeat_interval=1, grace_period=3)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study_id = storage.get_study_id_from_name("s")
    study.enqueue_trial({"gamma": 1.0})  # an earlier trial: numbers continue after it
    created = create_running_trials(storage, study_id, _new_trials(5))
    assert [number for _, number in created] == [1, 2, 3, 4, 5]
    trials = {t.number: t for t in study.get_trials()}
    for k, (trial_id, number) in enumerate(created):
        trial = trials[number]
        assert trial._trial_id == trial_id and trial.state == TrialState.RUNNING
        assert trial.params == {"gamma": k / 2, "m": 1 + k % 3}
        assert trial.distributions == _new_trials(1)[0].distributions
        assert trial.user_attrs == {"design_index": k} and trial.system_attrs == {"lossweep:worker": "host:1"}
        assert trial.datetime_start is not None
    assert fail_orphans(storage, study_id) == []  # every trial has its first heartbeat
    # Age every heartbeat, beat all but the last trial again: only the last one is stale.
    with storage.engine.begin() as connection:
        connection.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00'"))
    record_heartbeats(storage, [trial_id for trial_id, _ in created[:-1]])
    fail_stale(study)
    states = {t.number: t.state for t in study.get_trials()}
    assert [states[number] for _, number in created] == [TrialState.RUNNING] * 4 + [TrialState.FAIL]
    # A later public-API trial gets the next number: Optuna sees the rows as its own.
    assert storage.get_trial_number_from_id(storage.create_new_trial(study_id)) == 6


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_pack_that_cannot_be_created_whole_creates_nothing(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 's.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    storage = open_storage(url, heartbeat_interval=1, grace_period=3)
    study = optuna.create_study(study_name="s", storage=storage)
    study_id = storage.get_study_id_from_name("s")
    create_running_trials(storage, study_id, _new_trials(2))
    clash = NewTrial(
        params={"gamma": "a"}, distributions={"gamma": optuna.distributions.CategoricalDistribution(["a"])}
    )
    with pytest.raises(ValueError, match="different distribution"):
        create_running_trials(storage, study_id, [*_new_trials(3), clash])
    assert len(study.get_trials()) == 2  # the three valid trials before the clash were rolled back with it
