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
