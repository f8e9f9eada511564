"""Design points and the claim protocol, against real SQLite and PostgreSQL stores.

The claim test drives ``study.claims.Claimer.claim`` (through a worker) from several OS processes as fast as they can
go (no training), the harshest contention the protocol meets: every index must be finished by
exactly one trial and no trial may be created beyond the budget.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from search_spaces import get_space
from study.claims import Ledger
from study.design import Design, check_grid_budget, trial_seed

ROOT = Path(__file__).resolve().parents[2]


def test_qmc_points_depend_on_seed_and_index_only():
    space = get_space("ral", "full")
    a = Design(space, "qmc", seed=3, n_trials=20)
    b = Design(space, "qmc", seed=3, n_trials=200)  # a larger budget keeps the first points
    points = [a.point(k) for k in range(20)]
    assert points == [b.point(k) for k in range(20)]
    assert len({tuple(p.values()) for p in points}) == 20  # no point repeats
    assert points != [Design(space, "qmc", seed=4, n_trials=20).point(k) for k in range(20)]
    for p in points:
        for spec in space.params:
            assert spec.low <= p[spec.name] <= spec.high


def test_qmc_rows_drawn_in_another_process_give_the_same_points():
    # The parent draws the rows once and hands them to its workers (Design.sobol_rows): a worker's
    # design must give exactly the points of one that draws its own, in a process without scipy.stats.
    space = get_space("ral", "full")
    rows = Design(space, "qmc", seed=3, n_trials=37).sobol_rows()
    assert rows is not None and rows.shape == (64, space.dim)  # the whole power of 2 the budget lies in
    probe = textwrap.dedent(
        """
        import pickle, sys
        from search_spaces import get_space
        from study.design import Design
        rows = pickle.loads(sys.stdin.buffer.read())
        design = Design(get_space("ral", "full"), "qmc", seed=3, n_trials=37, sobol=rows)
        print([design.point(k) for k in range(37)])
        print("scipy.stats" in sys.modules)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], input=pickle.dumps(rows), capture_output=True, cwd=ROOT, timeout=600
    )
    assert result.returncode == 0, result.stderr.decode()
    points, scipy_imported = result.stdout.decode().splitlines()
    assert points == repr([Design(space, "qmc", seed=3, n_trials=37).point(k) for k in range(37)])
    assert scipy_imported == "False"
    assert Design(space, "random", seed=3, n_trials=37).sobol_rows() is None
    with pytest.raises(ValueError, match="sobol rows must be shaped"):
        Design(space, "qmc", seed=3, n_trials=37, sobol=rows[:, :2])


def test_qmc_covers_the_cube_evenly():
    space = get_space("asl", "full")
    design = Design(space, "qmc", seed=0, n_trials=64)
    # Each axis of a 64-point scrambled Sobol design has one point in each of 64 equal strata
    # of its sampling scale; check it on the linear-scale axis gamma_neg.
    spec = space["gamma_neg"]
    values = np.array([design.point(k)["gamma_neg"] for k in range(64)])
    strata = np.floor((values - spec.low) / (spec.high - spec.low) * 64).astype(int)
    assert sorted(strata.tolist()) == list(range(64))


def test_random_and_tpe_startup_are_seeded_per_index():
    space = get_space("asl", "full")
    r = Design(space, "random", seed=1, n_trials=30)
    assert r.point(7) == Design(space, "random", seed=1, n_trials=5).point(7)
    assert r.point(7) != r.point(8)
    t = Design(space, "tpe", seed=1, n_trials=30)
    assert t.point(3) == r.point(3) and t.point(10) is None  # after the random start-up TPE proposes


def test_grid_budget_must_be_a_grid_size():
    space = get_space("asl", "full")  # 3 parameters
    check_grid_budget(space, 27)
    with pytest.raises(ValueError, match="--trials 8 or 27 or 64"):
        check_grid_budget(space, 30)
    design = Design(space, "grid", seed=0, n_trials=27)
    assert len({tuple(design.point(k).values()) for k in range(27)}) == 27


def test_seed_rule():
    swept, none = get_space("ral", "full"), get_space("bce", "full")
    assert [trial_seed(swept, 5, k) for k in range(3)] == [5, 5, 5]
    assert [trial_seed(none, 5, k) for k in range(3)] == [5, 6, 7]
    assert Design(none, "qmc", 0, 10).point(4) == {}


def _trial(state, k, **attrs):
    return optuna.trial.create_trial(
        state=state, value=0.5 if state == TrialState.COMPLETE else None, user_attrs={"design_index": k, **attrs}
    )


def test_ledger_counts_finished_retries_and_interruptions():
    trials = [
        _trial(TrialState.COMPLETE, 0),
        _trial(TrialState.FAIL, 1, status="diverged"),
        _trial(TrialState.FAIL, 2, status="failed", fail_reason="ValueError: x"),
        _trial(TrialState.FAIL, 2, status="failed", fail_reason="ValueError: x"),
        _trial(TrialState.FAIL, 3, status="failed", fail_reason="interrupted"),
        _trial(TrialState.FAIL, 3, status="failed", fail_reason="interrupted"),
        _trial(TrialState.FAIL, 3, status="failed", fail_reason="interrupted"),
    ]
    ledger = Ledger.from_trials(trials, n_trials=5, max_retries=1)
    assert ledger.n_finished() == 2
    assert ledger.exhausted() == [2]  # two errors > one retry
    assert ledger.next_free() == 3  # interruptions never exhaust a point
    assert Ledger.from_trials(trials, n_trials=5, max_retries=2).next_free() == 2


CLAIMER = textwrap.dedent(
    """
    import os, sys, threading, time
    from study.worker import Worker, WorkerSpec
    from study.claims import Ledger
    from runners.result import TrialResult
    spec = WorkerSpec(**eval(sys.argv[1]))
    worker = Worker(spec, events=None, stop=threading.Event())
    open(sys.argv[2] + f".ready{spec.slot}", "w").close()
    while not os.path.exists(sys.argv[2]):  # start together, so every process contends
        time.sleep(0.01)
    first = True
    while True:
        claim = worker.claimer.claim()
        if isinstance(claim, Ledger):
            if not claim.held_by_others():
                break
            continue
        value = sum(claim.params.values()) % 1.0
        if first:  # hold the first claim until every process has one: the work is shared however slow the machine
            first = False
            open(sys.argv[2] + f".claimed{spec.slot}", "w").close()
            deadline = time.monotonic() + 600
            while not all(os.path.exists(sys.argv[2] + f".claimed{i}") for i in range(3)):
                assert time.monotonic() < deadline, "the other claimers never claimed"
                time.sleep(0.05)
        worker.finish([claim], [TrialResult(status="complete", value=value, seconds=0.0, seeds=[claim.seed])])
    """
)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_claims_finish_exactly_the_budget(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'claims.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    from study.storage import open_storage

    n_trials, name = 24, "claims"
    optuna.create_study(study_name=name, storage=open_storage(url), direction="maximize")
    space = get_space("ral", "full")
    spec = dict(
        slot=0, storage_url=url, study_name=name, loss="ral", space=space.to_dict(), trial={}, n_trials=n_trials,
        sampler="qmc", seed=0, replicates=1, max_retries=2, heartbeat_interval=1, grace_period=600,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, repr({**spec, "slot": i}), str(go)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    deadline = time.monotonic() + 600  # generous: three interpreters importing torch on a busy machine
    while not all((tmp_path / f"go.ready{i}").exists() for i in range(3)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "claimers did not start"
        time.sleep(0.1)
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()
    assert len(trials) == n_trials  # not one surplus trial
    assert all(t.state == TrialState.COMPLETE for t in trials)
    indices = Counter(t.user_attrs["design_index"] for t in trials)
    assert sorted(indices) == list(range(n_trials)) and set(indices.values()) == {1}
    design = Design(space, "qmc", 0, n_trials)
    for t in trials:
        assert t.params == pytest.approx(design.point(t.user_attrs["design_index"]))
    assert len({t.system_attrs["lossweep:worker"] for t in trials}) == 3  # the work was shared
