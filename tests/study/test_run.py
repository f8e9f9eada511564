"""`python -m study.run` end to end: real workers, real training, real SQLite and PostgreSQL stores."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from study.design import Design
from search_spaces import get_space

pytestmark = pytest.mark.slow

STORE_KEYS = {"lossweep", "loss", "config", "search_space", "data_fingerprint", "class_names", "train_positives", "versions"}
TRIAL_KEYS = {"design_index", "status", "val_mAP", "test_mAP", "val_per_class_ap", "seconds", "seeds", "fail_reason"}


def finished(trials):
    return [t for t in trials if t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and t.user_attrs.get("status") == "diverged")]


def check_exact_budget(trials, n):
    """Exactly one finished trial per design index 0..n-1, none RUNNING."""
    done = finished(trials)
    assert len(done) == n
    assert sorted(t.user_attrs["design_index"] for t in done) == list(range(n))
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    return done


def load(url, name):
    return optuna.load_study(study_name=name, storage=url)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_three_workers_finish_exactly_n_trials(backend, tmp_path, request, cli, tiny):
    url = f"sqlite:///{tmp_path / 'store.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    result = cli(["--loss", "ral", "--trials", "9", "--workers", "3", "--storage", url, *tiny], tmp_path)
    assert result.returncode == 0, result.stderr
    study = load(url, "ral-synthetic-linear-probe-full")
    trials = study.get_trials()
    done = check_exact_budget(trials, 9)
    assert len(trials) == 9  # no error, no retry, no surplus trial
    assert len({tuple(sorted(t.params.items())) for t in done}) == 9  # no repeated design point
    assert STORE_KEYS <= set(study.user_attrs)
    assert study.user_attrs["config"]["n_trials"] == 9 and study.user_attrs["loss"] == "ral"
    for t in done:
        assert TRIAL_KEYS <= set(t.user_attrs)
        assert t.user_attrs["seeds"] == [0]  # common random numbers: every trial uses the study seed
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    assert complete and all(0.0 < t.value <= 1.0 for t in complete)
    assert len({t.system_attrs["lossweep:worker"] for t in trials}) >= 2
    assert "trials finished" in result.stdout and "9 / 9" in result.stdout
    if backend == "sqlite":
        # The same command again has nothing left to do and adds nothing.
        again = cli(["--loss", "ral", "--trials", "9", "--workers", "3", "--storage", url, *tiny], tmp_path)
        assert again.returncode == 0 and "nothing to run" in again.stderr
        assert len(load(url, "ral-synthetic-linear-probe-full").get_trials()) == 9


def test_same_seed_gives_the_same_points_and_values_with_1_or_2_workers(tmp_path, cli, tiny):
    runs = {}
    for workers in (1, 2):
        url = f"sqlite:///{tmp_path / f'w{workers}.db'}"
        result = cli(["--loss", "asl", "--trials", "4", "--seed", "7", "--workers", str(workers), "--num-threads", "1", "--storage", url, *tiny], tmp_path)
        assert result.returncode == 0, result.stderr
        trials = load(url, "asl-synthetic-linear-probe-full").get_trials()
        runs[workers] = {t.user_attrs["design_index"]: t for t in check_exact_budget(trials, 4)}
    design = Design(get_space("asl"), "qmc", 7, 4)
    for k in range(4):
        one, two = runs[1][k], runs[2][k]
        assert one.params == two.params == pytest.approx(design.point(k))
        assert one.user_attrs["status"] == two.user_attrs["status"]
        assert one.user_attrs["val_mAP"] == pytest.approx(two.user_attrs["val_mAP"], abs=1e-6, nan_ok=True)


def wait_for(predicate, timeout=180.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def trials_or_empty(url, name):
    try:
        return load(url, name).get_trials()
    except KeyError:
        return []


def test_a_killed_worker_is_retried_with_the_same_parameters(tmp_path, start, tiny):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    name = "asl-synthetic-linear-probe-full"
    # Longer trials, so the kill lands mid-trial.
    proc = start(["--loss", "asl", "--trials", "5", "--workers", "2", "--storage", url, *tiny, "--epochs", "60"], tmp_path)
    try:
        victim = wait_for(lambda: next((t for t in trials_or_empty(url, name) if t.state == TrialState.RUNNING and t.number >= 1), None), what="a running trial")
        pid = int(victim.system_attrs["lossweep:worker"].rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    trials = load(url, name).get_trials()
    check_exact_budget(trials, 5)
    killed = next(t for t in trials if t.number == victim.number)
    assert killed.state == TrialState.FAIL
    retry = next(t for t in finished(trials) if t.user_attrs["design_index"] == victim.user_attrs["design_index"])
    assert retry.number > killed.number and retry.params == killed.params
    assert "died (signal 9)" in err


def test_ctrl_c_stops_cleanly_and_a_rerun_completes_the_budget(tmp_path, start, cli, tiny):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    name = "ral-synthetic-linear-probe-full"
    args = ["--loss", "ral", "--trials", "8", "--workers", "2", "--storage", url, *tiny, "--epochs", "20"]
    proc = start(args, tmp_path)
    try:
        wait_for(lambda: len(finished(trials_or_empty(url, name))) >= 2, what="2 finished trials")
        os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends; the parent forwards it to its workers
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    trials = load(url, name).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]  # no zombie
    assert 2 <= len(finished(trials)) < 8
    for t in trials:
        if t.state == TrialState.FAIL:
            assert t.user_attrs.get("fail_reason") == "interrupted"
    # The same command resumes to exactly 8; a larger --trials then extends the same design.
    assert cli(args, tmp_path).returncode == 0
    check_exact_budget(load(url, name).get_trials(), 8)
    bigger = cli([a if a != "8" else "10" for a in args], tmp_path)
    assert bigger.returncode == 0, bigger.stderr
    study = load(url, name)
    done = check_exact_budget(study.get_trials(), 10)
    assert study.user_attrs["config"]["n_trials"] == 10
    design = Design(get_space("ral"), "qmc", 0, 10)
    for t in done:
        assert t.params == pytest.approx(design.point(t.user_attrs["design_index"]))


def test_several_losses_make_one_study_each_and_a_report(tmp_path, cli, tiny):
    result = cli(["--loss", "asl,ral", "--trials", "2", "--study-name", "cmp", *tiny], tmp_path)
    assert result.returncode == 0, result.stderr
    url = f"sqlite:///{tmp_path / 'lossweep.db'}"
    assert sorted(optuna.get_all_study_names(url)) == ["cmp-asl", "cmp-ral"]
    for name, loss in (("cmp-asl", "asl"), ("cmp-ral", "ral")):
        study = load(url, name)
        assert study.user_attrs["loss"] == loss
        check_exact_budget(study.get_trials(), 2)
    try:
        import reports.build  # noqa: F401
    except ImportError:
        pytest.skip("reports.build is not available")
    report = tmp_path / "lossweep-report.html"
    assert report.is_file() and report.stat().st_size > 1000, result.stderr


def test_studies_without_swept_parameters_measure_seed_noise(tmp_path, cli, tiny):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    result = cli(["--loss", "bce", "--trials", "3", "--seed", "5", "--storage", url, *tiny], tmp_path)
    assert result.returncode == 0, result.stderr
    trials = check_exact_budget(load(url, "bce-synthetic-linear-probe-full").get_trials(), 3)
    assert sorted(t.user_attrs["seeds"][0] for t in trials) == [5, 6, 7]
    assert Counter(len(t.params) for t in trials) == Counter({0: 3})
