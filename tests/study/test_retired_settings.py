"""A study stored before RAL's polynomial lengths became options of its space still resumes."""

from __future__ import annotations

from search_spaces import get_space
from study.config import StudyConfig, setting_differences


def attrs(config: dict, space: dict) -> dict:
    return {"config": config, "search_space": space, "data_fingerprint": "f"}


def test_stored_n_alpha_and_n_beta_are_not_differences_but_the_space_still_is():
    now = StudyConfig(loss="ral", n_trials=4).to_dict()
    assert "n_alpha" not in now and "n_beta" not in now
    before = {**now, "n_alpha": 2, "n_beta": 1}  # what main wrote into every study's config
    space = get_space("ral").to_dict()
    assert setting_differences(attrs(before, space), attrs(now, space)) == []
    # The lengths are recorded by the stored space: a study made with --n-alpha 3 is not resumed by a default run.
    longer = get_space("ral", options={"n_alpha": 3}).to_dict()
    diffs = setting_differences(attrs({**before, "n_alpha": 3}, longer), attrs(now, space))
    assert any(d.startswith("search_space.params.alpha_3") for d in diffs), diffs
