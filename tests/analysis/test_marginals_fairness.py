"""Binned marginals, the 2-D grid and the fairness check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import fairness
from analysis.marginals import assign_bins, grid2d, marginals, mean_ci, quantile_edges
from analysis.testing import StudySpec, study_attrs


def test_bins_and_mean_ci():
    edges = quantile_edges(np.arange(10.0), 2)
    np.testing.assert_allclose(edges, [0, 4.5, 9])
    np.testing.assert_array_equal(assign_bins(np.array([0, 4.5, 9, np.nan]), edges), [0, 1, 1, -1])
    m, lo, hi = mean_ci(np.array([1.0, 2.0, 3.0]))
    assert m == 2 and hi - m == pytest.approx(4.302652729911275 * 1 / np.sqrt(3))  # t(0.975, 2) * s / sqrt(n)
    assert np.isnan(mean_ci(np.array([1.0]))[1])


def test_marginal_follows_the_parameter():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 8, 200)
    frame = pd.DataFrame(
        {
            "study": ["a"] * 100 + ["b"] * 100,
            "value": 0.1 * x,
            "param_gamma_neg": x,
            "param_clip": rng.uniform(0, 0.2, 200),
        }
    )
    m = marginals(frame, ["gamma_neg", "clip", "absent"])
    part = m[(m["study"] == "a") & (m["param"] == "gamma_neg")].sort_values("bin_center")
    assert len(part) == 10 and np.all(np.diff(part["mean"]) > 0) and part["count"].sum() == 100
    # shared bins: both studies have the same centres
    centers = m[m["param"] == "clip"].groupby("study")["bin_center"].apply(tuple)
    assert centers["a"] == centers["b"]
    g = grid2d(frame)
    assert g.groupby("study")["count"].sum().to_dict() == {"a": 100, "b": 100}
    assert g["gamma_neg"].nunique() == 4 and g["clip"].nunique() == 4  # sqrt(100 / 5) -> 4 bins a side
    assert grid2d(frame.drop(columns="param_clip")).empty


def test_fairness_lists_every_difference():
    a = study_attrs(StudySpec("a", "asl", 100))
    b = study_attrs(StudySpec("b", "ral", 100))
    assert fairness.differences(a, b, 100, 100) == []  # different loss and space, nothing else
    b2 = study_attrs(StudySpec("b", "ral", 50, sampler="tpe", seed=3))
    b2["config"]["trial"]["backbone"] = "vit_small"
    b2["config"]["trial"]["device"] = "cuda"  # operational: not a difference
    b2["config"]["trial"]["loader_workers"] = 4  # operational too
    b2["config"]["trial"]["protocol"] = "finetune"
    b2["config"]["space_mode"] = "full"
    b2["search_space"]["params"][1]["high"] = 6.0  # gamma_neg range
    diffs = {d.setting: (d.value_a, d.value_b) for d in fairness.differences(a, b2, 100, 97)}
    assert diffs == {
        "n_trials": (100, 50),
        "sampler": ("random", "tpe"),
        "seed": (0, 3),
        "trial.backbone": ("resnet18", "vit_small"),
        "finished_trials": (100, 97),
        "trial.protocol": ("linear-probe", "finetune"),
        "space_mode": ("matched", "full"),
        "search_space.gamma_neg": ({"low": 0.0, "high": 8.0, "log": False}, {"low": 0.0, "high": 6.0, "log": False}),
    }
    text = fairness.describe(fairness.differences(a, b2, 100, 97), limit=2)
    assert text.startswith("finished_trials (100 vs 97), n_trials (100 vs 50), and 6 more")


def test_same_contents_at_other_paths_is_fair():
    a = study_attrs(StudySpec("a", "asl", 10))
    b = study_attrs(StudySpec("b", "ral", 10))
    for attrs, where in ((a, "/data/a"), (b, "/scratch/b")):
        attrs["config"]["trial"]["checkpoint"] = f"{where}/resnet.pth"
        attrs["config"]["trial"]["checkpoint_sha256"] = "ab" * 32
        attrs["config"]["trial"]["data"]["path"] = f"{where}/labels.csv"
    assert fairness.differences(a, b) == []
    b["config"]["trial"]["checkpoint_sha256"] = "cd" * 32
    assert {d.setting for d in fairness.differences(a, b)} == {"trial.checkpoint", "trial.checkpoint_sha256"}
