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
    values = {  # failure-aware: diverged trials at the floor, killed / crashed trials out
        n: result.trials.query("study == @n")["value_failure_aware"].dropna().to_numpy()
        for n in ("asl-matched", "ral-matched")
    }
    asl_trials = result.trials.query("study == 'asl-matched'")
    n_div = int((asl_trials["status"] == "diverged").sum())
    assert n_div > 0 and values["asl-matched"].size == int((asl_trials["status"] == "complete").sum()) + n_div
    assert np.sum(values["asl-matched"] == 0.05) == n_div  # the simulated chance-level mAP
    assert comp.std_ratio.value == pytest.approx(
        np.std(values["ral-matched"], ddof=1) / np.std(values["asl-matched"], ddof=1)
    )
    assert comp.fair and comp.differences == [] and comp.primary and comp.mode == "matched"
    assert comp.swept == ("gamma_pos", "gamma_neg", "clip")
    assert comp.direction == "less sensitive" and comp.refusal == "" and comp.p_value < 0.05
    assert "RAL is less sensitive to its hyperparameters than ASL" in comp.verdict
    spread = next(m for m in comp.measures if m.primary)
    assert spread.key == "spread" and spread.contrast.high < 1 and spread.better == "b"
    assert {m.key for m in comp.measures} == {"spread", "divergence_rate", "near_best", "aubc"}  # no ASL default
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
    keys = {"mean", "std", "iqr", "worst_decile", "min", "max", "best", "expected_best_half"}
    assert set(asl.stats) == keys and set(asl.survivor_stats) == keys
    assert asl.stats["std"].value == pytest.approx(np.std(values["asl-matched"], ddof=1))
    survivors = asl_trials.loc[asl_trials["status"] == "complete", "value"].to_numpy()
    assert asl.survivor_stats["std"].value == pytest.approx(np.std(survivors, ddof=1))
    assert asl.stats["worst_decile"].value < asl.survivor_stats["worst_decile"].value  # the floor drags it down
    assert asl.floor_source == "chance-level mAP of the validation split"
    assert asl.floor_value == 0.05 and asl.sampler == "random" and asl.swept == ("gamma_pos", "gamma_neg", "clip")
    assert not asl.stats["best"].has_ci and asl.stats["expected_best_half"].has_ci
    assert set(asl.tier_std) == {"head", "medium", "tail"} and all(e.has_ci for e in asl.tier_std.values())

    eb = result.expected_best
    assert set(eb["study"]) == {"asl-matched", "ral-matched", "ral-seeds"}
    assert set(eb["basis"]) == {"failure-aware", "survivors"}
    fa_curve = eb[(eb["study"] == "asl-matched") & (eb["basis"] == "failure-aware")]
    assert fa_curve["n"].iloc[-1] == values["asl-matched"].size
    assert fa_curve["mean"].iloc[-1] == pytest.approx(values["asl-matched"].max())
    assert fa_curve["mean"].iloc[0] == pytest.approx(values["asl-matched"].mean())  # E[max of 1] = the mean
    assert np.isnan(fa_curve["low"].iloc[-1])  # no band at n = N: the sample maximum has no valid bootstrap

    imp = result.importances
    assert {"fanova", "ped-anova", "rbd-fast"} <= set(imp["method"])
    assert set(imp["study"]) == {"asl-matched", "ral-matched"}
    top = imp[(imp["study"] == "asl-matched") & (imp["method"] == "fanova")].sort_values("mean").iloc[-1]
    assert top["param"] == "gamma_neg"  # the simulated surface depends most on gamma_neg

    m = result.marginals
    assert set(m["param"]) == {"gamma_pos", "gamma_neg", "clip"} and (m["count"] > 0).all()
    g = result.grid2d
    assert {"gamma_neg", "clip", "mean", "count"} <= set(g.columns)
    assert g.groupby("study")["count"].sum().to_dict() == {"asl-matched": asl.n_complete, "ral-matched": ral.n_complete}


def test_more_sensitive_and_indistinguishable(make_store):
    url = make_store(_matched("asl", 60, 0.02), _matched("ral", 60, 0.10))
    (comp,) = analyse(url, **FAST).comparisons
    assert comp.direction == "more sensitive"
    assert comp.std_ratio.low > 1 and "RAL is more sensitive to its hyperparameters than ASL" in comp.verdict
    url = make_store(_matched("asl", 40, 0.0, noise=0.01), _matched("ral", 40, 0.0, noise=0.01))
    (comp,) = analyse(url, **FAST).comparisons
    assert comp.std_ratio.low < 1 < comp.std_ratio.high
    assert comp.direction == "not distinguishable" and "not distinguishable on this data" in comp.verdict
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
    assert comp.direction == "no verdict"
    assert comp.refusal == "sampler 'tpe' is not a sensitivity design: use qmc, random or grid"
    assert "No verdict: sampler 'tpe' is not a sensitivity design: use qmc, random or grid." in comp.verdict
    assert all(m.better is None for m in comp.measures)


def test_replicate_values_supply_the_seed_floor(make_store):
    url = make_store(_matched("asl", 20, 0.1, replicates=3, noise=0.01))
    result = analyse(url, **FAST)
    s = result.summaries["asl-matched"]
    reps = [r for r in result.trials["replicate_values"] if len(r) == 3]
    pooled = math.sqrt(np.mean([np.var(r, ddof=1) for r in reps]))
    assert s.seed_floor_std == pytest.approx(pooled / math.sqrt(3))  # a trial value is the mean of 3 runs
    assert any("replicate values" in m and "sqrt(3)" in m for m in result.messages)
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
    assert result.summaries["foreign-hill"].loss == "unknown"  # never guessed from the name (analysis.load)
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
    assert comp.direction == "no verdict" and comp.refusal.startswith("too few trials (ASL 0, RAL 3")
    assert math.isnan(comp.std_ratio.value) and not any(m.contrast.has_ci for m in comp.measures if m.primary)


def test_write_every_result(make_store, tmp_path):  # noqa: D103
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
    comp = result.comparisons[0]
    assert data["comparisons"][0]["direction"] == comp.direction and data["comparisons"][0]["primary"] is True
    assert [m["key"] for m in data["comparisons"][0]["measures"]] == [m.key for m in comp.measures]
    assert data["summaries"]["asl-matched"]["floor_value"] == 0.05
    comparisons = pd.read_csv(tmp_path / "out" / "comparisons.csv")
    assert comparisons.loc[0, "direction"] == comp.direction and bool(comparisons.loc[0, "primary"])
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
    assert asl.seed_floor_std == pytest.approx(math.sqrt(np.mean([np.var(r, ddof=1) for r in reps])) / math.sqrt(2))
    assert ral.seed_floor_std is None  # the seeds study on other data is named, never used
    named = [m for m in result.messages if "'ral-seeds-elsewhere' is not used as its noise floor" in m]
    assert named and "data_fingerprint" in named[0] and named[0].startswith("ral-matched")


def test_a_loss_diverging_in_40_percent_of_trials_is_never_less_sensitive(make_store):
    # RAL's survivors are calm (a fifth of ASL's sensitivity) but 40 % of its trials diverge.
    url = make_store(_matched("asl", 100, 0.10), _matched("ral", 100, 0.02, diverge_rate=0.4))
    result = analyse(url, **FAST)
    (comp,) = result.comparisons
    ral = result.summaries["ral-matched"]
    assert ral.survivor_stats["std"].value < result.summaries["asl-matched"].survivor_stats["std"].value
    assert comp.direction != "less sensitive" and "RAL is less sensitive" not in comp.verdict
    div = next(m for m in comp.measures if m.key == "divergence_rate")
    assert div.better == "a" and div.p_value < 0.001 and div.method.endswith("Boschloo exact test")
    assert comp.direction in ("more sensitive", "mixed evidence")


def test_identical_studies_are_not_distinguishable(make_store):
    url = make_store(_matched("asl", 100, 0.05, diverge_rate=0.1), _matched("ral", 100, 0.05, diverge_rate=0.1))
    (comp,) = analyse(url, **FAST).comparisons
    assert comp.direction == "not distinguishable" and comp.p_value >= 0.05
    assert "not distinguishable on this data" in comp.verdict


def test_different_swept_sets_are_refused(make_store):
    url = make_store(
        StudySpec("asl-full", "asl", 40, space_mode="full", sensitivity=0.1),
        StudySpec("ral-full", "ral", 40, space_mode="full", sensitivity=0.02),
    )
    (comp,) = analyse(url, **FAST).comparisons
    assert comp.direction == "no verdict" and comp.mode == "full" and not comp.fair
    assert comp.refusal.startswith("the studies sweep different hyperparameters (3 vs 6: gamma_pos, gamma_neg, clip vs")
    assert comp.refusal.endswith("compare them with --space-mode matched")
    assert comp.swept == ("gamma_pos", "gamma_neg", "clip")


def test_too_few_trials_and_zero_spread_get_no_interval_and_no_direction(make_store):
    url = make_store(_matched("asl", 30, 0.1), _matched("ral", 4, 0.02))
    (comp,) = analyse(url, **FAST).comparisons
    assert comp.direction == "no verdict" and comp.refusal.startswith("too few trials (ASL 30, RAL 4")
    url = make_store(_matched("asl", 30, 0.1), _matched("ral", 30, 0.0, noise=0.0))
    (comp,) = analyse(url, **FAST).comparisons
    assert comp.direction == "no verdict" and comp.refusal == "RAL has zero spread (no interval, no direction)"
    assert not any(m.primary for m in comp.measures)  # no spread measure (hence no interval) at all


def test_a_mismatched_seeds_study_is_named_not_used(make_store):
    url = make_store(
        _matched("ral", 30, 0.05, replicates=2, noise=0.01),
        StudySpec("ral-seeds", "ral", 10, space_mode="seeds", replicates=1),
    )
    result = analyse(url, **FAST)
    s = result.summaries["ral-matched"]
    assert any(
        "'ral-seeds' is not used as its noise floor: it differs in replicates (2 vs 1)" in m for m in result.messages
    )
    reps = [r for r in result.trials.query("study == 'ral-matched'")["replicate_values"] if len(r) == 2]
    assert s.seed_floor_std == pytest.approx(math.sqrt(np.mean([np.var(r, ddof=1) for r in reps])) / math.sqrt(2))


def test_matched_seeds_study_gives_tunability(make_store):
    url = make_store(
        _matched("asl", 60, 0.10),
        _matched("ral", 60, 0.02),
        StudySpec("asl-seeds", "asl", 20, space_mode="seeds"),
        StudySpec("ral-seeds", "ral", 20, space_mode="seeds"),
    )
    result = analyse(url, **FAST)
    (comp,) = result.comparisons
    tun = next(m for m in comp.measures if m.key == "tunability")
    fa = {n: result.trials.query("study == @n")["value_failure_aware"].dropna().to_numpy() for n in result.summaries}
    for value, sweep, seeds in ((tun.value_a, "asl-matched", "asl-seeds"), (tun.value_b, "ral-matched", "ral-seeds")):
        assert value == pytest.approx(np.quantile(fa[sweep], 0.95) - fa[seeds].mean())
    assert tun.contrast.value == pytest.approx(tun.value_b - tun.value_a) and tun.contrast.has_ci


def test_replicates_give_variance_components_and_the_verdict_rests_on_sigma_hp(make_store):
    url = make_store(
        _matched("asl", 60, 0.10, replicates=3, noise=0.004, seed_effect=0.01),
        _matched("ral", 60, 0.02, replicates=3, noise=0.004, seed_effect=0.01),
    )
    result = analyse(url, **FAST)
    asl = result.summaries["asl-matched"]
    assert asl.n_replicates == 3 and set(asl.variance_components) == {"hp", "seed", "interaction"}
    for e in asl.variance_components.values():
        assert e.has_ci and 0 <= e.low <= e.value <= e.high
    assert asl.variance_components["interaction"].low < 0.004**2 < asl.variance_components["interaction"].high
    (comp,) = result.comparisons
    primary = next(m for m in comp.measures if m.primary)
    assert primary.key == "variance_hp" and primary.contrast.value == pytest.approx(primary.value_b / primary.value_a)
    assert comp.direction == "less sensitive" and any(m.key == "spread" and not m.primary for m in comp.measures)


def test_one_primary_comparison_the_others_holm_adjusted(make_store):
    url = make_store(_matched("asl", 40, 0.10), _matched("ral", 40, 0.02), _matched("focal", 40, 0.05))
    result = analyse(url, delta=0.02, **FAST)
    primary = [c for c in result.comparisons if c.primary]
    assert len(primary) == 1 and (primary[0].a, primary[0].b) == ("asl-matched", "ral-matched")
    secondary = [c for c in result.comparisons if not c.primary]
    assert len(secondary) == 2
    raw = [next(m for m in c.measures if m.primary).p_value for c in secondary]
    from analysis.measures import holm

    assert [c.p_value for c in secondary] == pytest.approx(holm(raw))
    assert all(c.verdict.startswith("Secondary comparison") for c in secondary)
    assert any(m.name == "near-best fraction (δ = 0.02)" for m in primary[0].measures)
    with pytest.raises(ValueError, match="delta must be a positive number"):
        analyse(url, delta=0, **FAST)


def test_floor_without_recorded_chance_is_the_lowest_complete_value(make_store):
    url = make_store(_matched("asl", 30, 0.1, diverge_rate=0.2, chance=None), _matched("ral", 30, 0.02, chance=None))
    result = analyse(url, **FAST)
    done = result.trials.query("status == 'complete'")["value"]
    assert result.summaries["asl-matched"].floor_value == pytest.approx(done.min())
    assert any("lowest complete mAP on this data" in m for m in result.messages)
