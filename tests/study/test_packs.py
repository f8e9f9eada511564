"""Studies in packs: several design indices claimed and trained together, with the same guarantees."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from .test_run import StoreWatch, check_exact_budget, finished, gate, kill_worker_then_open_gates, load, wait_for

pytestmark = pytest.mark.slow


def store_url(backend, tmp_path, request):
    return f"sqlite:///{tmp_path / 'store.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")


class Watch:
    """The study's trials as the CLI writes them, through one storage opened once (see test_run.StoreWatch)."""

    def __init__(self, url, name):
        self.url, self.name, self.storage = url, name, None

    def trials(self):
        try:
            if self.storage is None:
                self.storage = optuna.storages.RDBStorage(self.url, skip_table_creation=True)
            study_id = self.storage.get_study_id_from_name(self.name)
        except Exception:  # the store, its tables or the study are not created yet
            self.storage = None
            return []
        return self.storage.get_all_trials(study_id, deepcopy=False)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_mid_pack_fails_the_whole_pack_and_each_trial_is_retried_once(backend, tmp_path, request, start, tiny):
    url = store_url(backend, tmp_path, request)
    name = "asl-synthetic-linear-probe-full"
    folder, env = gate(tmp_path)  # every trial waits until the kill has landed
    args = ["--loss", "asl", "--trials", "6", "--workers", "1", "--pack-size", "4", "--storage", url, *tiny]
    proc = start(args, tmp_path, env=env)
    watch = StoreWatch(tmp_path / "store.db", name) if backend == "sqlite" else Watch(url, name)
    try:
        pack = wait_for(
            lambda: (lambda r: r if len(r) == 4 else None)(
                [t for t in watch.trials() if t.state == TrialState.RUNNING]
            ),
            what="a running pack of 4",
            proc=proc,
        )
        workers = {t.system_attrs["lossweep:worker"] for t in pack}
        assert len(workers) == 1  # one worker claimed the four indices at once
        out, err = kill_worker_then_open_gates(proc, pack[0], folder)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    trials = load(url, name).get_trials()
    check_exact_budget(trials, 6)
    killed = {t.number for t in pack}
    assert all(t.state == TrialState.FAIL for t in trials if t.number in killed)
    for victim in (t for t in trials if t.number in killed):
        k = victim.user_attrs["design_index"]
        attempts = [t for t in trials if t.user_attrs.get("design_index") == k]
        assert len(attempts) == 2, attempts  # the killed one and exactly one retry
        assert finished(attempts)[0].params == victim.params


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_with_packs_finish_exactly_n_trials(backend, tmp_path, request, cli, tiny):
    url = store_url(backend, tmp_path, request)
    result = cli(
        ["--loss", "ral", "--trials", "11", "--workers", "2", "--pack-size", "3", "--storage", url, *tiny], tmp_path
    )
    assert result.returncode == 0, result.stderr
    trials = load(url, "ral-synthetic-linear-probe-full").get_trials()
    check_exact_budget(trials, 11)
    assert len(trials) == 11  # nothing created beyond the budget, nothing retried


def test_packs_give_the_studies_of_one_trial_at_a_time(tmp_path, cli, tiny):
    """``--loss asl,ral,bce``: the default (packs) and --pack-size 1 store the same points and results bit for
    bit, for sweeps (trials as heads) and for bce's seed-noise study (a seed per trial: trials as groups)."""
    stores = {}
    for label, size in (("packs", "auto"), ("single", "1")):
        url = f"sqlite:///{tmp_path / (label + '.db')}"
        args = ["--loss", "asl,ral,bce", "--trials", "7", "--storage", url, *tiny]
        result = cli(args if size == "auto" else [*args, "--pack-size", size], tmp_path)
        assert result.returncode == 0, result.stderr
        stores[label] = url
    for loss in ("asl", "ral", "bce"):
        name = f"{loss}-synthetic-linear-probe-full"
        by_index = {}
        for label, url in stores.items():
            done = check_exact_budget(load(url, name).get_trials(), 7)
            by_index[label] = {t.user_attrs["design_index"]: t for t in done}
        seeds = {tuple(t.user_attrs["seeds"]) for t in by_index["packs"].values()}
        assert len(seeds) == (7 if loss == "bce" else 1)
        for k, packed in by_index["packs"].items():
            single = by_index["single"][k]
            assert packed.params == single.params
            attrs = {key: v for key, v in packed.user_attrs.items() if key != "seconds"}
            assert attrs == {key: v for key, v in single.user_attrs.items() if key != "seconds"}, (loss, k)


def test_pack_size_flag_is_checked(tmp_path, cli, tiny):
    result = cli(["--loss", "ral", "--trials", "2", "--pack-size", "0", *tiny], tmp_path)
    assert result.returncode == 2 and "--pack-size" in result.stderr and "Traceback" not in result.stderr
