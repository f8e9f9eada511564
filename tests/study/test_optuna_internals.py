"""Optuna's private names lossweep relies on are there, and nothing else in the tree reaches for one.

When an Optuna upgrade removes or renames one, the first test fails naming the installed Optuna
version and the missing attribute; the store would still work (every fast path falls back to the
public API), only slower -- and a result's write would no longer be atomic.
"""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from study import optuna_internals
from study.claims import fail_orphans, ledger_rows
from study.storage import open_storage
from study.trial_store import write_result

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("study", "analysis", "reports", "runners", "search_spaces", "benchmarks")
# A private Optuna module (optuna.x._y), Study._get_trials, FrozenStudy._study_id, _create_scoped_session.
PRIVATE_USE = re.compile(r"optuna(\.\w+)*\._(?!_)\w+|\._get_trials\b|\._study_id\b|_create_scoped_session")


def test_every_private_optuna_name_lossweep_uses_exists():
    missing = optuna_internals.missing_private_names()
    assert not missing, (
        f"optuna {optuna.__version__} no longer has {', '.join(missing)}: lossweep's fast store paths fall back "
        "to the public API (slower, and a result's write is not atomic); update study/optuna_internals.py"
    )


def test_a_missing_name_is_reported_by_module_and_attribute(monkeypatch):
    names = {**optuna_internals.PRIVATE_NAMES}
    names[optuna_internals.MODELS_MODULE] = (*names[optuna_internals.MODELS_MODULE], "TrialModel.no_such_method")
    names["optuna.storages._no_such_module"] = ("Anything",)
    monkeypatch.setattr(optuna_internals, "PRIVATE_NAMES", names)
    assert optuna_internals.missing_private_names() == [
        f"{optuna_internals.MODELS_MODULE}.TrialModel.no_such_method",
        "optuna.storages._no_such_module",
    ]


def test_no_module_outside_optuna_internals_uses_a_private_optuna_name():
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "study" / "optuna_internals.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if PRIVATE_USE.search(code) and "``" not in code:  # docstrings may name them
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "private Optuna API outside study/optuna_internals.py:\n" + "\n".join(offenders)


@pytest.fixture
def public_api_only(monkeypatch):
    """What an Optuna without the private models gives: every fast path takes the public API."""
    monkeypatch.setattr(optuna_internals, "_MODELS", None)


def test_the_public_fallback_writes_and_reads_the_same(tmp_path, public_api_only):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    assert not optuna_internals.has_fast_path(storage)
    study_id = storage.get_study_id_from_name("s")
    done, lost = (storage.get_trial_id_from_study_id_trial_number(study_id, study.ask().number) for _ in range(2))
    storage.set_trial_user_attr(done, "design_index", 0)
    assert write_result(storage, done, {"status": "complete", "val_mAP": 0.5}, TrialState.COMPLETE, 0.5)
    assert not write_result(storage, done, {"status": "failed"}, TrialState.FAIL, None)  # already finished
    rows = ledger_rows(storage, study_id)
    assert [(r.number, r.state, r.user_attrs) for r in rows] == [
        (0, TrialState.COMPLETE, {"design_index": 0, "status": "complete"}),
        (1, TrialState.RUNNING, {}),
    ]
    assert fail_orphans(storage, study_id) == []  # needs the models: the trial stays RUNNING
    assert storage.get_trial(lost).state == TrialState.RUNNING
    assert study.trials[0].value == 0.5 and study.trials[0].user_attrs["val_mAP"] == 0.5
