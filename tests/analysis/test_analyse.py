"""analyse() end to end on real stores: verdicts, fairness, seed floor, degenerate inputs, write()."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis import Analysis, analyse
from analysis.testing import StudySpec

FAST = {"n_boot": 200, "importance_resamples": 0}  # importance intervals: test_importance.py


def _matched(loss, n, sensitivity, **kw):
    return StudySpec(f"{loss}-matched", loss, n, sensitivity=sensitivity, **kw)


def test_less_sensitive_verdict_and_result_shape(make_store):
    url = make_store(
        _matched("asl", 80, 0.10, diverge_rate=0.05),
        _matched("ral", 80, 0.02, fail_rate=0.05),
        StudySpec("ral-seeds", "ral", 20, space_mode="seeds"),
    )
    result = analyse(url, **FAST)
    assert isinstance(result, Analysis)
    (comp,) = result.comparisons  # the seeds study is not compared, it is RAL's floor
    assert (comp.a, comp.b) == ("asl-matched", "ral-matched")
    values = {
        n: result.trials.query("study == @n and status == 'complete'")["value"].to_numpy()
        for n in ("asl-matched", "ral-matched")
    }
    assert comp.std_ratio.value == pytest.approx(
        np.std(values["ral-matched"], ddof=1) / np.std(values["asl-matched"], ddof=1)
    )
    assert comp.std_ratio.high < 1
    assert comp.fair and comp.differences == []
    assert "RAL is less sensitive to its hyperparameters than ASL" in comp.verdict
    assert "Brown–Forsythe p < 0.001" in comp.verdict
    assert "ASL's seed noise floor was not measured" in comp.verdict
    assert "--loss asl --space-mode seeds --trials 30" in comp.verdict
    assert "RAL's seed noise floor is a std of" in comp.verdict
    assert "diverged" in comp.verdict and not comp.verdict.startswith("Unfair")

    ral, asl = result.summaries["ral-matched"], result.summaries["asl-matched"]
    seeds = result.trials.query("study == 'ral-seeds'")["value"].to_numpy()
    assert ral.seed_floor_std == pytest.approx(np.std(seeds, ddof=1))
    assert ral.hp_to_seed_ratio.value == pytest.approx(ral.stats["std"].value / ral.seed_floor_std)
    assert asl.seed_floor_std is None and asl.hp_to_seed_ratio is None
    assert asl.n_trials == 80 and asl.n_complete + asl.n_failed + asl.n_diverged == 80
    assert asl.failure_rate.value == pytest.approx((asl.n_failed + asl.n_diverged) / 80)
    assert set(asl.stats) == {"mean", "std", "iqr", "worst_decile", "min", "max", "best"}
    assert set(asl.tier_std) == {"head", "medium", "tail"} and all(e.has_ci for e in asl.tier_std.values())

    eb = result.expected_best
    assert set(eb["study"]) == {"asl-matched", "ral-matched", "ral-seeds"}
    last = eb[eb["study"] == "asl-matched"].iloc[-1]
    assert last["mean"] == pytest.approx(values["asl-matched"].max())

    imp = result.importances
    assert {"fanova", "ped-anova", "rbd-fast"} <= set(imp["method"])
    assert set(imp["study"]) == {"asl-matched", "ral-matched"}
    top = imp[(imp["study"] == "asl-matched") & (imp["method"] == "fanova")].sort_values("mean").iloc[-1]
    assert top["param"] == "gamma_neg"  # the simulated surface depends most on gamma_neg

    m = result.marginals
    assert set(m["param"]) >= {"gamma_neg", "clip", "lam"} and (m["count"] > 0).all()
    g = result.grid2d
    assert {"gamma_neg", "clip", "mean", "count"} <= set(g.columns)
    assert g.groupby("study")["count"].sum().to_dict() == {"asl-matched": asl.n_complete, "ral-matched": ral.n_complete}


def test_more_sensitive_and_indistinguishable(make_store):
    url = make_store(_matched("asl", 60, 0.02), _matched("ral", 60, 0.10))
    (comp,) = analyse(url, **FAST).comparisons
    assert comp.std_ratio.low > 1 and "RAL is more sensitive to its hyperparameters than ASL" in comp.verdict
    url = make_store(_matched("asl", 40, 0.0, noise=0.01), _matched("ral", 40, 0.0, noise=0.01))
    (comp,) = analyse(url, **FAST).comparisons
    assert comp.std_ratio.low < 1 < comp.std_ratio.high
    assert "not distinguishable on this data" in comp.verdict
    assert "less sensitive" not in comp.verdict and "more sensitive" not in comp.verdict


def test_unfair_comparison_lists_differences(make_store):
    url = make_store(
        _matched("asl", 30, 0.1), _matched("ral", 20, 0.02, sampler="tpe", overrides={"data_fingerprint": "0" * 16})
    )
    result = analyse(url, **FAST)
    (comp,) = result.comparisons
    assert not comp.fair
    settings = {d.setting for d in comp.differences}
    assert {"data_fingerprint", "n_trials", "sampler", "finished_trials"} <= settings
    assert comp.verdict.startswith("Unfair comparison: the studies differ in")
    assert any("unfair comparison" in m for m in result.messages)


def test_replicate_values_supply_the_seed_floor(make_store):
    url = make_store(_matched("asl", 20, 0.1, replicates=3, noise=0.01))
    result = analyse(url, **FAST)
    s = result.summaries["asl-matched"]
    reps = [r for r in result.trials["replicate_values"] if len(r) == 3]
    pooled = math.sqrt(np.mean([np.var(r, ddof=1) for r in reps]))
    assert s.seed_floor_std == pytest.approx(pooled)
    assert any("replicate values" in m for m in result.messages)
    assert result.comparisons == [] and any("only one study" in m for m in result.messages)


def test_explicit_pairs(make_store):
    url = make_store(_matched("asl", 10, 0.1), _matched("ral", 10, 0.02))
    result = analyse(url, pairs=[("ral-matched", "asl-matched")], **FAST)
    assert (result.comparisons[0].a, result.comparisons[0].b) == ("ral-matched", "asl-matched")
    with pytest.raises(ValueError, match="pairs name studies not analysed: x"):
        analyse(url, pairs=[("x", "asl-matched")], **FAST)


def test_degenerate_inputs_never_raise(make_store):
    url = make_store(
        _matched("asl", 6, 0.1, fail_rate=1.0),  # every trial failed
        _matched("ral", 3, 0.02),  # fewer than 5 complete
        StudySpec("focal-matched", "focal", 8, sensitivity=0.0, noise=0.0),  # zero variance
        StudySpec("foreign-hill", "hill", 7, lossweep=False),
        StudySpec("bce-matched", "bce", 0),  # created, nothing finished yet
    )
    result = analyse(url, **FAST)
    asl, ral = result.summaries["asl-matched"], result.summaries["ral-matched"]
    assert asl.n_complete == 0 and math.isnan(asl.stats["std"].value) and asl.failure_rate.value == 1.0
    assert not ral.enough and ral.n_complete == 3
    assert result.summaries["focal-matched"].stats["std"].value == 0.0
    assert result.summaries["foreign-hill"].loss == "hill"
    text = " ".join(result.messages)
    assert result.summaries["bce-matched"].n_trials == 0 and math.isnan(
        result.summaries["bce-matched"].failure_rate.value
    )
    for phrase in (
        "no complete trials",
        "only 3 complete trial",
        "same mAP",
        "not made by lossweep",
        "bce-matched: no finished trials yet",
    ):
        assert phrase in text, phrase
    comp = next(c for c in result.comparisons if {c.a, c.b} == {"asl-matched", "ral-matched"})
    assert "Too few complete trials" in comp.verdict and math.isnan(comp.std_ratio.value)
    zero = next(c for c in result.comparisons if {c.a, c.b} == {"focal-matched", "ral-matched"})
    assert zero.a == "focal-matched" and math.isinf(zero.std_ratio.value)
    assert "not distinguishable" in zero.verdict


def test_write_every_result(make_store, tmp_path):
    url = make_store(_matched("asl", 15, 0.1, diverge_rate=0.2), _matched("ral", 15, 0.02))
    result = analyse(url, **FAST)
    paths = result.write(tmp_path / "out")
    names = {p.name for p in paths}
    assert names == {
        "summaries.csv",
        "comparisons.csv",
        "expected_best.csv",
        "importances.csv",
        "marginals.csv",
        "grid2d.csv",
        "trials.csv",
        "analysis.json",
    }
    data = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert data["comparisons"][0]["verdict"] == result.comparisons[0].verdict
    assert data["summaries"]["asl-matched"]["n_trials"] == 15
    summaries = pd.read_csv(tmp_path / "out" / "summaries.csv")
    std = summaries.query("study == 'ral-matched' and stat == 'std'")["value"].item()
    assert std == pytest.approx(result.summaries["ral-matched"].stats["std"].value)
    trials = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert len(trials) == 30 and isinstance(json.loads(trials["replicate_values"].iloc[0]), list)


def test_empty_or_missing_store_is_one_clear_error(tmp_path):
    import optuna

    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.storages.RDBStorage(empty).engine.dispose()  # the tables, no study
    with pytest.raises(ValueError, match=r"^no studies in sqlite:///.*run `python -m study.run` first"):
        analyse(empty, **FAST)
    with pytest.raises(ValueError, match=r"^no lossweep store at sqlite:///"):
        analyse(f"sqlite:///{tmp_path / 'nothing-here.db'}", **FAST)
    with pytest.raises(ValueError, match="n_boot must be >= 0"):
        analyse(empty, n_boot=-1)


def test_seed_floor_prefers_the_same_data(make_store):
    other_data = {"data_fingerprint": "0" * 16}
    url = make_store(
        _matched("asl", 12, 0.1, replicates=2, noise=0.01),
        _matched("ral", 12, 0.02),
        StudySpec("asl-seeds-elsewhere", "asl", 8, space_mode="seeds", noise=0.05, overrides=other_data),
        StudySpec("ral-seeds-elsewhere", "ral", 8, space_mode="seeds", noise=0.05, overrides=other_data),
    )
    result = analyse(url, n_boot=100, importance_resamples=0)
    asl, ral = result.summaries["asl-matched"], result.summaries["ral-matched"]
    reps = [r for r in result.trials.query("study == 'asl-matched'")["replicate_values"] if len(r) == 2]
    assert asl.seed_floor_std == pytest.approx(math.sqrt(np.mean([np.var(r, ddof=1) for r in reps])))
    seeds = result.trials.query("study == 'ral-seeds-elsewhere'")["value"].to_numpy()
    assert ral.seed_floor_std == pytest.approx(np.std(seeds, ddof=1))  # no replicates: the other data, flagged
    assert any("ral-matched" in m and "used other data" in m for m in result.messages)
    assert not any("asl-matched" in m and "used other data" in m for m in result.messages)
