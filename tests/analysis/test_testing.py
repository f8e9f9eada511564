"""The one bulk trial writer (analysis.testing.bulk_add_trials) stores exactly what Optuna's own add_trials stores.

Both store generators go through it: analysis.testing.build_store (the analysis tests' simulated
studies) and benchmarks.report.make_store (the report benchmark's and report tests' realistic ones).
"""

from __future__ import annotations

import optuna
import pytest

from analysis.testing import StudySpec, build_store, bulk_add_trials, trial_user_attrs
from benchmarks.report import make_store, make_trials


def _fields(t: optuna.trial.FrozenTrial) -> tuple:
    return (
        t.number,
        t.state,
        t.value,
        t.params,
        t.distributions,
        t.user_attrs,
        t.system_attrs,
        t.intermediate_values,
        t.datetime_start,
        t.datetime_complete,
    )


def _read(url: str) -> dict[str, list]:
    out = {}
    for summary in optuna.get_all_study_summaries(url):
        study = optuna.load_study(study_name=summary.study_name, storage=url)
        out[summary.study_name] = [_fields(t) for t in study.get_trials(deepcopy=False)] + [study.user_attrs]
    return out


def test_build_store_bulk_matches_add_trials(tmp_path):
    specs = [
        StudySpec("asl-m", "asl", 8, fail_rate=0.25, diverge_rate=0.25, replicates=2),
        StudySpec("bce-m", "bce", 2),
    ]
    bulk, slow = f"sqlite:///{tmp_path / 'bulk.db'}", f"sqlite:///{tmp_path / 'slow.db'}"
    build_store(bulk, specs, seed=4)
    build_store(slow, specs, seed=4, bulk=False)
    got, want = _read(bulk), _read(slow)
    assert got == want
    statuses = {t[5]["status"] for t in got["asl-m"][:-1]}
    assert statuses == {"complete", "failed", "diverged"}
    assert all(t[9] > t[8] for t in got["asl-m"][:-1])  # durations are positive


def test_bulk_add_trials_extends_a_study_like_add_trials(tmp_path):
    """The report generator's trials (every attribute study.run writes), appended to a study that has one."""
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

    assert len(read["bulk"]) == 12
    assert {t.user_attrs["status"] for t in read["bulk"]} == {"complete", "failed", "diverged"}
    assert [_fields(t) for t in read["bulk"]] == [_fields(t) for t in read["optuna"]]


def test_bulk_add_trials_refuses_what_it_cannot_write(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    optuna.create_study(storage=storage, study_name="s", direction="maximize")
    running = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING)
    with pytest.raises(ValueError, match="Study.add_trials"):
        bulk_add_trials(storage, "s", [running])
    assert storage.get_n_trials(storage.get_study_id_from_name("s")) == 0


def test_trial_user_attrs_are_what_trial_result_writes():
    """The generators' attributes match runners.result.TrialResult.user_attrs(), the format's writer."""
    from runners.result import TrialResult

    val = {
        "mAP": 0.4,
        "mAUC": 0.7,
        "mF1": 0.3,
        "mAP_head": 0.5,
        "mAP_medium": 0.4,
        "mAP_tail": 0.2,
        "per_class_ap": [0.5, 0.3],
    }
    test = {k: v for k, v in val.items() if k != "mAUC"}
    complete = TrialResult("complete", 0.4, val=val, test=test, seconds=2.5, seeds=[3], replicate_values=[0.4])
    diverged = TrialResult(
        "diverged", seconds=1.0, seeds=[3], fail_reason="non-finite loss", diverged_step=7, diverged_value=float("nan")
    )
    assert trial_user_attrs(5, "complete", seconds=2.5, seeds=[3], val=val, test=test, replicate_values=[0.4]) == {
        "design_index": 5,
        **complete.user_attrs(),
    }
    assert trial_user_attrs(
        5, "diverged", seconds=1.0, seeds=[3], fail_reason="non-finite loss", diverged_step=7, diverged_value="nan"
    ) == {"design_index": 5, **diverged.user_attrs()}


@pytest.mark.parametrize("generator", ["analysis", "report"])
def test_generated_stores_have_every_documented_key(tmp_path, generator):
    """docs/store-format.md: every study attribute, every trial attribute, study.run's whole config."""
    from runners.result import TrialResult
    from study.config import StudyConfig

    url = f"sqlite:///{tmp_path / 's.db'}"
    if generator == "analysis":
        build_store(url, [StudySpec("s", "ral", 12, fail_rate=0.2, diverge_rate=0.2)], seed=1)
    else:
        make_store(url, {"s": "ral"}, 12, failed=2, diverged=2)
    study = optuna.load_study(study_name="s", storage=url)
    assert set(study.user_attrs) == {
        "lossweep",
        "loss",
        "config",
        "search_space",
        "data_fingerprint",
        "class_names",
        "train_positives",
        "versions",
    }
    assert set(study.user_attrs["versions"]) == {"lossweep", "optuna", "torch", "timm", "python"}
    n_classes = len(study.user_attrs["class_names"])
    assert len(study.user_attrs["train_positives"]) == n_classes
    if generator == "report":  # the analysis generator abridges config.trial to what analysis reads
        written = StudyConfig(loss="ral", n_trials=12).to_dict()
        assert set(study.user_attrs["config"]) == set(written) | {"grid_levels"}
        assert set(study.user_attrs["config"]["trial"]) == set(written["trial"])
    trial_keys = {"design_index"} | set(TrialResult("failed").user_attrs())
    trials = study.get_trials(deepcopy=False)
    assert {t.user_attrs["status"] for t in trials} == {"complete", "failed", "diverged"}
    for t in trials:
        assert set(t.user_attrs) == trial_keys
        complete = t.user_attrs["status"] == "complete"
        assert len(t.user_attrs["val_per_class_ap"]) == (n_classes if complete else 0)
        assert (t.user_attrs["test_mAP_tail"] is not None) == complete
