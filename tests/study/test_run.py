"""`python -m study.run` end to end: real workers, real training, real SQLite and PostgreSQL stores."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from search_spaces import get_space
from study.design import Design
from study.worker import TEST_GATE_ENV

pytestmark = pytest.mark.slow

STORE_KEYS = {
    "lossweep",
    "loss",
    "config",
    "search_space",
    "data_fingerprint",
    "class_names",
    "train_positives",
    "versions",
}
TRIAL_KEYS = {"design_index", "status", "val_mAP", "test_mAP", "val_per_class_ap", "seconds", "seeds", "fail_reason"}


def finished(trials):
    return [
        t
        for t in trials
        if t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and t.user_attrs.get("status") == "diverged")
    ]


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
    # Packs of 2: an auto pack takes a worker's share in whole blocks of 16, all 6 trials at once here.
    args = ["--loss", "ral", "--trials", "6", "--workers", "3", "--pack-size", "2", "--storage", url, *tiny]
    result = cli(args, tmp_path)
    assert result.returncode == 0, result.stderr
    # The run closed the store before it ended: SQLite folded the write-ahead log back into the file
    # (checked before this test opens the store, which starts a log of its own).
    assert backend != "sqlite" or not (tmp_path / "store.db-wal").exists()
    study = load(url, "ral-synthetic-linear-probe-full")
    trials = study.get_trials()
    done = check_exact_budget(trials, 6)
    assert len(trials) == 6  # no error, no retry, no surplus trial
    assert len({tuple(sorted(t.params.items())) for t in done}) == 6  # no repeated design point
    assert STORE_KEYS <= set(study.user_attrs)
    assert study.user_attrs["config"]["n_trials"] == 6 and study.user_attrs["loss"] == "ral"
    assert study.metric_names == ["val mAP"]  # optuna-dashboard shows it instead of "Objective 0"
    for t in done:
        assert TRIAL_KEYS <= set(t.user_attrs)
        assert t.user_attrs["seeds"] == [0]  # common random numbers: every trial uses the study seed
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    assert complete and all(0.0 < t.value <= 1.0 for t in complete)
    assert len({t.system_attrs["lossweep:worker"] for t in trials}) >= 2
    assert "trials finished" in result.stdout and "6 / 6" in result.stdout
    if backend == "postgresql":
        password = make_url(url).password
        assert password and password not in result.stdout + result.stderr  # the store URL is shown redacted
        assert password not in json.dumps(study.user_attrs)
    else:
        # The same command again has nothing left to do and adds nothing.
        again = cli(args, tmp_path)
        assert again.returncode == 0 and "nothing to run" in again.stderr
        assert len(load(url, "ral-synthetic-linear-probe-full").get_trials()) == 6


def test_same_seed_gives_the_design_points_and_reproducible_values(tmp_path, cli, tiny, cache_dir):
    """Points are the design's (a function of seed and index, whatever the workers' timing); on CPU a
    trial's stored value is what the same parameters and seed give when run again."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    result = cli(
        [
            "--loss",
            "asl",
            "--trials",
            "4",
            "--seed",
            "7",
            "--workers",
            "2",
            "--num-threads",
            "1",
            "--storage",
            url,
            *tiny,
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    study = load(url, "asl-synthetic-linear-probe-full")
    done = {t.user_attrs["design_index"]: t for t in check_exact_budget(study.get_trials(), 4)}
    design = Design(get_space("asl"), "qmc", 7, 4)
    for k, t in done.items():
        assert t.params == pytest.approx(design.point(k))
        assert t.user_attrs["seeds"] == [7]

    import runners
    from runners.config import TrialConfig

    config = TrialConfig.from_dict(
        {**study.user_attrs["config"]["trial"], "device": "cpu", "num_threads": 1, "cache_dir": cache_dir}
    )
    space = get_space("asl")
    for k in (0, 3):
        again = runners.run_trial(config, "asl", space.loss_params(done[k].params), 7)
        assert again.status == done[k].user_attrs["status"]
        assert again.val["mAP"] == pytest.approx(done[k].user_attrs["val_mAP"], abs=1e-6)


def with_flag(args, flag, value):
    """``args`` with the value of ``flag`` replaced."""
    i = args.index(flag)
    return [*args[: i + 1], value, *args[i + 2 :]]


def wait_for(predicate, timeout=600.0, what="condition", proc=None):
    """Poll the store until ``predicate`` holds; the bound is for a machine many times slower than usual.

    With ``proc`` (the CLI run being watched), a run that ends first fails at once, with its output.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"the run ended (exit code {proc.returncode}) before {what}:\n{out[-3000:]}\n{err[-3000:]}"
            )
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def kill_worker_then_open_gates(proc, trial, folder):
    """SIGKILL the worker process running ``trial``, open every gate, and let the run finish: (stdout, stderr)."""
    os.kill(int(trial.system_attrs["lossweep:worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    (folder / "open-all").touch()
    return proc.communicate(timeout=900)


def gate(tmp_path, *open_indices):
    """The worker's test-only trial gate (study.worker.TEST_GATE_ENV): a trial of design index k waits
    until ``open-k`` (or ``open-all``) exists, so a signal lands mid-trial however fast the machine."""
    folder = tmp_path / "gate"
    folder.mkdir()
    for k in open_indices:
        (folder / f"open-{k}").touch()
    return folder, {TEST_GATE_ENV: str(folder)}


class StoreWatch:
    """Reads a study's trials while a CLI run writes them, through one storage opened once.

    ``optuna.load_study(storage=url)`` opens (and checks the schema of) a new store on every call,
    which takes long enough on a busy machine to miss a whole short study.
    """

    def __init__(self, path, name):
        self.path, self.name, self.storage = path, name, None

    def trials(self):
        if self.storage is None:
            if not self.path.exists():
                return []
            try:
                self.storage = optuna.storages.RDBStorage(f"sqlite:///{self.path}", skip_table_creation=True)
            except Exception:  # the file exists, its tables not yet
                return []
        try:
            study_id = self.storage.get_study_id_from_name(self.name)
        except Exception:  # tables or study not created yet
            return []
        return self.storage.get_all_trials(study_id, deepcopy=False)


def test_a_killed_worker_is_retried_with_the_same_parameters(tmp_path, start, tiny):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    name = "asl-synthetic-linear-probe-full"
    # Every trial waits at the gate until the kill has landed, then all run.
    folder, env = gate(tmp_path)
    proc = start(["--loss", "asl", "--trials", "5", "--workers", "2", "--storage", url, *tiny], tmp_path, env=env)
    watch = StoreWatch(tmp_path / "store.db", name)
    try:
        victim = wait_for(
            lambda: next((t for t in watch.trials() if t.state == TrialState.RUNNING and t.number >= 1), None),
            what="a running trial",
            proc=proc,
        )
        out, err = kill_worker_then_open_gates(proc, victim, folder)
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
    # Only design index 0 may run to the end; every other trial waits at the gate, so the signal,
    # sent once index 0 is finished and another trial is running, lands mid-trial on any machine.
    # One trial at a time: in a pack, index 0 would wait for its gated pack-mates (packs are
    # interrupted and killed in tests/study/test_packs.py).
    args = ["--loss", "ral", "--trials", "6", "--workers", "2", "--pack-size", "1", "--storage", url, *tiny]
    _, env = gate(tmp_path, 0)
    proc = start(args, tmp_path, env=env)
    watch = StoreWatch(tmp_path / "store.db", name)

    def first_finished_and_another_running():
        trials = watch.trials()
        return len(finished(trials)) >= 1 and any(t.state == TrialState.RUNNING for t in trials)

    try:
        wait_for(first_finished_and_another_running, what="a finished trial and a running one", proc=proc)
        signalled = datetime.now()
        os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends; the parent forwards it to its workers
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    timeline = [
        (t.number, t.state.name, str(t.datetime_start.time()), str(t.datetime_complete and t.datetime_complete.time()))
        for t in watch.trials()
    ]
    assert proc.returncode == 130, f"SIGINT at {signalled.time()}; trials {timeline}; stderr {err}"
    assert "run the same command again to resume" in err
    trials = load(url, name).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]  # no zombie
    assert [t.user_attrs["design_index"] for t in finished(trials)] == [0]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(t.user_attrs.get("fail_reason") == "interrupted" for t in failed)
    # The same command resumes to exactly 6 (the worker count is free to change); a larger --trials
    # then extends the same design.
    one_worker = with_flag(args, "--workers", "1")
    resumed = cli(one_worker, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    check_exact_budget(load(url, name).get_trials(), 6)
    bigger = cli(with_flag(one_worker, "--trials", "8"), tmp_path)
    assert bigger.returncode == 0, bigger.stderr
    study = load(url, name)
    done = check_exact_budget(study.get_trials(), 8)
    assert study.user_attrs["config"]["n_trials"] == 8
    design = Design(get_space("ral"), "qmc", 0, 8)
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


BCE = "bce-synthetic-linear-probe-full"


@pytest.fixture(scope="module")
def bce_store(tmp_path_factory, cli, tiny):
    """A finished 3-trial bce study (no swept parameter: the seed-noise study), made once per module."""
    folder = tmp_path_factory.mktemp("bce")
    args = ["--loss", "bce", "--trials", "3", "--seed", "5", *tiny]
    result = cli(args, folder)
    assert result.returncode == 0, result.stderr
    return folder / "lossweep.db", args


def test_studies_without_swept_parameters_measure_seed_noise(bce_store):
    path, _ = bce_store
    trials = check_exact_budget(load(f"sqlite:///{path}", BCE).get_trials(), 3)
    assert sorted(t.user_attrs["seeds"][0] for t in trials) == [5, 6, 7]
    assert Counter(len(t.params) for t in trials) == Counter({0: 3})


def test_conflicting_settings_are_refused_and_the_study_is_left_alone(bce_store, tmp_path, cli):
    path, args = bce_store
    shutil.copy(path, tmp_path / "lossweep.db")
    url = f"sqlite:///{tmp_path / 'lossweep.db'}"
    before = load(url, BCE).get_trials()
    result = cli([*args, "--trials", "4", "--epochs", "4", "--sampler", "random"], tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert (
        "different settings" in lines[0]
        and "train.epochs (stored 3, now 4)" in lines[0]
        and "sampler (stored 'qmc', now 'random')" in lines[0]
    )
    after = load(url, BCE)
    assert [(t.number, t.state, t.params, t.user_attrs) for t in after.get_trials()] == [
        (t.number, t.state, t.params, t.user_attrs) for t in before
    ]
    assert after.user_attrs["config"]["n_trials"] == 3  # the budget was not raised either
    assert optuna.get_all_study_names(url) == [BCE]


def test_the_worker_server_starts_in_the_background_and_stops_at_once():
    from multiprocessing import forkserver

    from study.worker_server import start_worker_server, stop_worker_server, worker_context

    if worker_context().get_start_method() != "forkserver":
        pytest.skip("no fork server on this platform: workers are spawned")
    start_worker_server()
    pid = forkserver._forkserver._forkserver_pid
    assert isinstance(pid, int)
    stop_worker_server()

    def exited():  # read, not reaped: the stdlib reaps its server itself when it starts the next one
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
        except FileNotFoundError:
            return True

    wait_for(exited, timeout=60, what="the fork server to exit")
    start_worker_server()  # a later run starts a new one
    assert forkserver._forkserver._forkserver_pid not in (None, pid)
    stop_worker_server()


def test_the_worker_servers_imports_never_ask_cuda_anything():
    # A process that has asked the CUDA driver anything (even torch.cuda.is_available()) cannot hand
    # CUDA to the workers it forks: the fork server's imports must stay clear of it.
    from study.worker_server import WORKER_MODULES

    root = Path(__file__).resolve().parents[2]
    probe = textwrap.dedent(
        f"""
        import torch
        asked = []
        count = torch._C._cuda_getDeviceCount
        def spy(*args):
            asked.append(1)
            return count(*args)
        torch._C._cuda_getDeviceCount = spy
        torch.cuda._lazy_init = lambda: asked.append(1)
        for module in {WORKER_MODULES!r}:
            __import__(module)
        print(len(asked))
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=root, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "0"
    # and the probe sees a module that does ask
    result = subprocess.run(
        [sys.executable, "-c", probe.replace(f"{WORKER_MODULES!r}", "['torch.utils.cpp_extension']")],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=600,
        env={**os.environ, "CUDA_HOME": str(root)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] != "0"
