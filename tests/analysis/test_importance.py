"""Importances: direction of PED-ANOVA for a maximised objective, fANOVA ranking, intervals, cost bound."""

from __future__ import annotations

import numpy as np
import pandas as pd
from optuna.distributions import FloatDistribution

from analysis.importance import param_importances

DISTS = {"x": FloatDistribution(0, 1), "y": FloatDistribution(0, 1), "noise": FloatDistribution(0, 1)}


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.uniform(size=(n, 3)), columns=["x", "y", "noise"]), rng


def _by(frame, method):
    return frame[frame["method"] == method].set_index("param")["mean"]


def test_ped_anova_looks_at_the_highest_map():
    # The top of mAP is decided by x (higher is better); the bottom by y (y < 0.1 is a disaster).
    # A maximised study must rank x first; read as minimised, the worst 10 % would make y dominate.
    params, rng = _data(400)
    values = 0.4 + 0.05 * params["x"] - 0.5 * (params["y"] < 0.1) + rng.normal(0, 1e-3, 400)
    imp = param_importances("s", params, values.to_numpy(), DISTS, n_resamples=0)
    ped = _by(imp, "ped-anova")
    assert ped["x"] > 2 * ped["y"] and ped["x"] > 2 * ped["noise"]
    reversed_imp = _by(param_importances("s", params, -values.to_numpy(), DISTS, n_resamples=0), "ped-anova")
    assert reversed_imp["y"] > reversed_imp["x"]  # the same trials seen from the other end


def test_fanova_ranks_the_driving_parameter_with_intervals():
    params, rng = _data(150, seed=1)
    values = 0.4 + 0.1 * params["x"] ** 2 + 0.02 * params["y"] + rng.normal(0, 1e-3, 150)
    imp = param_importances("s", params, values.to_numpy(), DISTS, n_resamples=4, sampler="random")
    fan = imp[imp["method"] == "fanova"].set_index("param")
    assert fan["mean"].idxmax() == "x" and fan.loc["x", "mean"] > 0.8
    assert (fan["low"] <= fan["high"]).all() and fan[["low", "high"]].notna().all().all()
    assert (fan["spread"] >= 0).all()
    rbd = _by(imp, "rbd-fast")
    assert rbd.idxmax() == "x"
    assert set(imp["method"]) == {"fanova", "ped-anova", "rbd-fast"}
    tpe = param_importances("s", params, values.to_numpy(), DISTS, n_resamples=0, sampler="tpe")
    assert set(_by(tpe, "fanova").index) == {"x", "y", "noise"}
    assert "rbd-fast" not in set(tpe["method"])  # the cross-check needs a space-filling (random/qmc) design


def test_cost_bound_and_degenerate_inputs():
    params, rng = _data(120, seed=2)
    values = params["x"].to_numpy() + rng.normal(0, 0.01, 120)
    messages: list[str] = []
    imp = param_importances("s", params, values, DISTS, n_resamples=0, max_trials=50, messages=messages)
    assert (imp["n_trials"] == 50).all()
    assert any("subsample of 50 of 120" in m for m in messages)
    messages.clear()
    assert param_importances("s", params.iloc[:3], values[:3], DISTS, messages=messages).empty
    assert any("at least 5" in m for m in messages)
    assert param_importances("s", params, np.full(120, 0.3), DISTS, messages=messages).empty
    assert any("same mAP" in m for m in messages)
    constant = params.assign(y=0.5)
    imp = param_importances("s", constant, values, DISTS, n_resamples=0)
    assert "y" not in set(imp["param"])  # not swept: no importance row


def test_given_trials_study_matches_a_real_study():
    import optuna

    from analysis.importance import _evaluate, _GivenTrials, _trials

    params, rng = _data(60, seed=3)
    values = (params["x"] + 0.3 * params["y"] + rng.normal(0, 0.01, 60)).to_numpy()
    trials = _trials(params, values, DISTS)
    real = optuna.create_study(direction="maximize")
    real.add_trials(trials)
    names = ["x", "y", "noise"]
    for evaluator in (
        lambda: optuna.importance.FanovaImportanceEvaluator(n_trees=8, max_depth=4, seed=1),
        optuna.importance.PedAnovaImportanceEvaluator,
    ):
        got = _evaluate(_GivenTrials(trials), evaluator(), names)
        want = _evaluate(real, evaluator(), names)
        np.testing.assert_allclose(got, want, rtol=1e-12)
        assert got.argmax() == 0
