"""The benchmark's bulk store writer must write what Optuna's own ``add_trials`` writes."""

from __future__ import annotations

import optuna

from benchmarks.report import bulk_add_trials, make_trials


def test_bulk_add_trials_matches_optuna_add_trials(tmp_path):
    trials = make_trials("ral", 12, failed=2, diverged=3, n_classes=4)
    read = {}
    for way in ("optuna", "bulk"):
        url = f"sqlite:///{tmp_path / f'{way}.db'}"
        storage = optuna.storages.RDBStorage(url)
        study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
        study.add_trial(trials[0])  # extending a study that already has trials keeps numbering going
        if way == "optuna":
            study.add_trials(trials[1:])
        else:
            bulk_add_trials(storage, "s", trials[1:])
        storage.remove_session()
        read[way] = optuna.load_study(study_name="s", storage=url).get_trials(deepcopy=False)

    def fields(t: optuna.trial.FrozenTrial):
        return (t.number, t.state, t.value, t.params, t.distributions, t.user_attrs, t.system_attrs,
                t.intermediate_values, t.datetime_start, t.datetime_complete)

    assert len(read["bulk"]) == 12
    assert {t.state for t in read["bulk"]} == {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL}
    assert [fields(t) for t in read["bulk"]] == [fields(t) for t in read["optuna"]]
