"""The claim lock: mutual exclusion with a bounded wait on both backends; free indices by one rule."""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState

from study.claims import Ledger, TrialRow, claim_lock
from study.storage import open_storage


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_claim_lock_is_exclusive_and_honours_its_timeout(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'lock.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    holder, waiter = open_storage(url), open_storage(url)  # two engines: two connections, as two workers
    with claim_lock(holder, "s"):
        started = time.monotonic()
        with pytest.raises(TimeoutError), claim_lock(waiter, "s", timeout=0.5):
            pass
        assert time.monotonic() - started >= 0.5  # it waited (no upper bound: a busy machine is slow)
        if backend == "postgresql":  # one lock per study there; SQLite has one per store file
            with claim_lock(waiter, "another study", timeout=0.5):
                pass
    with claim_lock(waiter, "s", timeout=60):  # released on exit
        pass


def test_free_indices_follow_one_rule():
    rows = [
        TrialRow(0, TrialState.COMPLETE, {"design_index": 0}),
        TrialRow(1, TrialState.RUNNING, {"design_index": 1}),
        TrialRow(2, TrialState.FAIL, {"design_index": 2, "fail_reason": "boom"}),
        TrialRow(3, TrialState.FAIL, {"design_index": 2, "fail_reason": "boom"}),
        TrialRow(4, TrialState.FAIL, {"design_index": 3, "fail_reason": "interrupted"}),
    ]
    ledger = Ledger.from_trials(rows, n_trials=5, max_retries=1)
    assert ledger.free() == [3, 4]  # 2 is exhausted, an interruption does not count
    assert ledger.next_free() == ledger.free()[0]
    assert Ledger.from_trials(rows[:2], n_trials=2, max_retries=1).next_free() is None


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_new_study_names_its_objective_for_the_dashboard(tmp_path):
    from study.planning import METRIC_NAMES, name_objective

    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 's.db'}"), direction="maximize")
    assert study.metric_names is None
    name_objective(study)
    assert study.metric_names == METRIC_NAMES == ["val mAP"]
    study.set_metric_names(["kept"])
    name_objective(study)  # a name already there is left alone
    assert study.metric_names == ["kept"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_pack_claim_takes_the_lowest_free_indices_at_their_design_points(backend, tmp_path, request):
    from search_spaces import get_space
    from study.claims import Claimer, fail_orphans
    from study.design import Design, trial_seed

    url = f"sqlite:///{tmp_path / 's.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    storage = open_storage(url, heartbeat_interval=1, grace_period=60)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    design = Design(get_space("ral", "full"), "qmc", seed=5, n_trials=7)
    claimer = Claimer(storage, study, design, max_retries=1, identity="host:1")

    pack = claimer.claim_pack(4)
    assert [c.design_index for c in pack] == [0, 1, 2, 3] and [c.number for c in pack] == [0, 1, 2, 3]
    trials = study.get_trials()
    for claim, trial in zip(pack, trials, strict=True):
        assert claim.params == design.point(claim.design_index) == trial.params
        assert claim.seed == trial_seed(design.space, 5, claim.design_index)
        assert trial.state == TrialState.RUNNING and trial.user_attrs == {"design_index": claim.design_index}
        assert trial.system_attrs["lossweep:worker"] == "host:1"
    assert fail_orphans(storage, storage.get_study_id_from_name("s")) == []  # each has its first heartbeat

    storage.set_trial_state_values(pack[1].trial_id, TrialState.FAIL)  # e.g. an error: index 1 is free again
    rest = claimer.claim_pack(10)  # at most what is free: 1, then 4..6
    assert [c.design_index for c in rest] == [1, 4, 5, 6]
    assert rest[0].params == pack[1].params  # the retry has the same parameters
    assert claimer.claim_pack(10).held_by_others()  # nothing free: the ledger, with indices still held
    assert len(study.get_trials()) == 8  # nothing created beyond the free indices
