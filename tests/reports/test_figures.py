"""Figure functions and table formatting on ordinary, empty and single-valued data."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis import figures
from analysis.results import Estimate
from reports import tables


def trials_frame(n: int = 30, studies=("asl", "ral"), status: str = "complete", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in studies:
        for i in range(n):
            value = float(rng.uniform(0.2, 0.4))
            rows.append(
                {
                    "study": s,
                    "loss": s,
                    "number": i,
                    "status": status,
                    "value": value if status == "complete" else math.nan,
                    "param_gamma_neg": float(rng.uniform(0, 6)),
                    "param_clip": float(rng.uniform(0, 0.4)),
                    "val_mAP_head": value + 0.1,
                    "val_mAP_medium": value,
                    "val_mAP_tail": value - 0.1,
                    "fail_reason": None if status == "complete" else "diverged: non-finite loss",
                }
            )
    return pd.DataFrame(rows)


def png_size(fig: Figure) -> tuple[int, int]:
    png = figures.to_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_distribution_figures_draw_every_study():
    trials = trials_frame()
    for draw in (figures.distributions, figures.ecdf, figures.tier_spread):
        fig = draw(trials, ["ral", "asl"])
        width, height = png_size(fig)
        assert width > 200 and height > 150
    ax = figures.distributions(trials, ["ral", "asl"]).axes[0]
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["ral", "asl"]


@pytest.mark.parametrize("draw", [figures.distributions, figures.ecdf, figures.tier_spread])
def test_distribution_figures_refuse_empty_data_with_a_reason(draw):
    with pytest.raises(figures.NotEnoughData, match="complete|head"):
        draw(trials_frame(status="diverged"))
    with pytest.raises(figures.NotEnoughData):
        draw(trials_frame().iloc[0:0])


def test_single_value_studies_still_draw():
    trials = trials_frame(n=1)
    for draw in (figures.distributions, figures.ecdf, figures.tier_spread):
        assert png_size(draw(trials))[0] > 0
    constant = trials_frame(n=5).assign(value=0.3)
    assert png_size(figures.distributions(constant))[0] > 0


def test_result_frame_figures_and_their_empty_cases():
    eb = pd.DataFrame(
        {
            "study": ["a"] * 3 + ["b"] * 3,
            "n": [1, 2, 3] * 2,
            "mean": [0.3, 0.35, 0.37, 0.33, 0.34, 0.35],
            "low": [0.28, 0.33, 0.36, 0.31, 0.33, 0.34],
            "high": [0.32, 0.37, 0.38, 0.35, 0.35, 0.36],
        }
    )
    assert png_size(figures.expected_best(eb))[0] > 0
    imp = pd.DataFrame(
        {
            "study": ["a", "a", "b"],
            "param": ["clip", "gamma_neg", "clip"],
            "method": ["fanova"] * 3,
            "mean": [0.6, 0.4, 0.9],
            "low": [0.5, math.nan, 0.8],
            "high": [0.7, math.nan, 1.0],
        }
    )
    fig = figures.importances(imp)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["gamma_neg", "clip"]  # most important on top
    marg = pd.DataFrame(
        {
            "study": ["a"] * 4,
            "param": ["clip"] * 2 + ["lam"] * 2,
            "bin_center": [0.1, 0.2, 1.2, 1.4],
            "mean": [0.3, 0.32, 0.31, 0.3],
            "low": [0.29, 0.31, 0.3, 0.29],
            "high": [0.31, 0.33, 0.32, 0.31],
            "count": [3, 4, 2, 5],
        }
    )
    assert len([ax for ax in figures.marginals(marg).axes if ax.get_visible() and ax.get_title()]) == 2
    for draw, frame in ((figures.expected_best, eb), (figures.importances, imp), (figures.marginals, marg)):
        with pytest.raises(figures.NotEnoughData):
            draw(frame.iloc[0:0])
        with pytest.raises(figures.NotEnoughData):
            draw(frame.assign(mean=math.nan))


def test_binned_map_shares_one_colour_scale():
    grid = pd.DataFrame(
        {
            "study": ["a"] * 4 + ["b"] * 4,
            "gamma_neg": [1, 1, 3, 3] * 2,
            "clip": [0.1, 0.3] * 4,
            "mean": [0.1, 0.2, 0.3, 0.4, 0.35, 0.36, 0.37, np.nan],
        }
    )
    fig = figures.binned_map(grid, "gamma_neg", "clip")
    from matplotlib.collections import QuadMesh

    meshes = [c for ax in fig.axes if ax.get_title() for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 2
    assert {m.get_clim() for m in meshes} == {(0.1, 0.4)}
    with pytest.raises(figures.NotEnoughData):
        figures.binned_map(grid.assign(mean=np.nan), "gamma_neg", "clip")
    assert png_size(figures.binned_map(grid.iloc[:1], "gamma_neg", "clip"))[0] > 0  # one cell, one value


def test_failure_map_places_failures_by_each_studys_parameters():
    trials = pd.concat([trials_frame(10), trials_frame(3, status="diverged", seed=1)])
    fig = figures.failure_map(trials, {"asl": ("gamma_neg", "clip"), "ral": ("clip", "gamma_neg")})
    assert [ax.get_xlabel() for ax in fig.axes] == ["gamma_neg", "clip"]
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["complete (10)", "diverged (3)"]
    with pytest.raises(figures.NotEnoughData, match="no trial failed"):
        figures.failure_map(trials_frame(10), {"asl": ("gamma_neg", "clip")})
    with pytest.raises(figures.NotEnoughData):
        figures.failure_map(trials, {})


def test_figures_leave_global_matplotlib_state_alone():
    before = {k: repr(v) for k, v in matplotlib.rcParams.items()}
    figures.to_png(figures.distributions(trials_frame()))
    assert before == {k: repr(v) for k, v in matplotlib.rcParams.items()}
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []  # no pyplot figures were opened


def test_number_and_estimate_formatting():
    assert tables.number(0.41234) == "0.412"
    assert tables.number(math.nan) == tables.DASH and tables.number(None) == tables.DASH
    assert tables.number(1234) == "1,234"
    assert tables.estimate(Estimate(0.41234, 0.4, 0.425)) == "0.412 [0.400, 0.425]"
    assert tables.estimate(Estimate(0.5)) == "0.500"
    assert tables.estimate(Estimate(0.05, 0.02, 0.1), percent=True) == "5.0 % [2.0, 10.0]"
    assert tables.estimate_parts(Estimate(0.41234, 0.4, 0.425)) == ("0.412", "[0.400, 0.425]")
    assert tables.p_value(0.0004) == "< 0.001" and tables.p_value(0.0312) == "0.031"


def test_fairness_rows_flag_differences_and_expected_ones():
    base = {
        "loss": "asl",
        "config": {
            "sampler": "qmc",
            "seed": 0,
            "n_trials": 100,
            "trial": {"protocol": "linear-probe", "train": {"epochs": 30}},
        },
        "search_space": {"params": [{"name": "gamma_neg"}, {"name": "clip"}]},
    }
    other = {
        "loss": "ral",
        "config": {
            "sampler": "qmc",
            "seed": 1,
            "n_trials": 100,
            "trial": {"protocol": "linear-probe", "train": {"epochs": 10}},
        },
        "search_space": {"params": [{"name": "gamma_neg"}, {"name": "clip"}, {"name": "lam"}]},
    }
    rows = {r.label: r for r in tables.fairness_rows({"a": base, "b": other}, ["a", "b"])}
    assert rows["loss"].expected and rows["swept parameters"].expected
    assert rows["seed"].differs and not rows["seed"].expected and rows["seed"].cells == ["0", "1"]
    assert rows["epochs"].differs and not rows["sampler"].differs
    assert rows["swept parameters"].cells == ["gamma_neg, clip", "gamma_neg, clip, lam"]


def test_log_swept_parameters_get_log_axes():
    from reports.charts import log_params

    settings = {
        "a": {"search_space": {"params": [{"name": "lr", "log": True}, {"name": "clip", "log": False}]}},
        "b": {},
    }
    assert log_params(settings) == {"lr"}
    marg = pd.DataFrame(
        {
            "study": ["a"] * 4,
            "param": ["lr"] * 2 + ["clip"] * 2,
            "bin_center": [1e-4, 1e-2, 0.1, 0.2],
            "mean": [0.3, 0.31, 0.32, 0.3],
            "low": [0.29] * 4,
            "high": [0.33] * 4,
            "count": [5] * 4,
        }
    )
    scales = {
        ax.get_title(): ax.get_xscale() for ax in figures.marginals(marg, log_params={"lr"}).axes if ax.get_visible()
    }
    assert scales == {"lr": "log", "clip": "linear"}
