"""The simulated-store builder: its bulk writer stores exactly what Optuna's own add_trials stores."""

from __future__ import annotations

import optuna

from analysis.testing import StudySpec, build_store


def _read(url: str) -> dict[str, list[tuple]]:
    out = {}
    for summary in optuna.get_all_study_summaries(url):
        study = optuna.load_study(study_name=summary.study_name, storage=url)
        out[summary.study_name] = [
            (t.number, t.state, t.value, t.params, t.distributions, t.user_attrs,
             t.datetime_start, t.datetime_complete)
            for t in study.get_trials(deepcopy=False)
        ] + [study.user_attrs]
    return out


def test_bulk_writer_matches_add_trials(tmp_path):
    specs = [StudySpec("asl-m", "asl", 8, fail_rate=0.25, diverge_rate=0.25, replicates=2), StudySpec("bce-m", "bce", 2)]
    bulk, slow = f"sqlite:///{tmp_path / 'bulk.db'}", f"sqlite:///{tmp_path / 'slow.db'}"
    build_store(bulk, specs, seed=4)
    build_store(slow, specs, seed=4, bulk=False)
    got, want = _read(bulk), _read(slow)
    assert got == want
    states = {t[1] for t in got["asl-m"][:-1]}
    assert states == {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL}
    assert all(t[7] > t[6] for t in got["asl-m"][:-1])  # durations are positive
