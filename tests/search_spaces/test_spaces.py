"""Search spaces: declarations, modes, unit-cube designs, grids, hand-over to the losses, JSON round-trip."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search_spaces import MATCHED_PARAMS, MODES, ParamSpec, SearchSpace, get_space, loss_names

LOSSES = loss_names()

# The released code's defaults, written out independently of the declarations.
RELEASED_DEFAULTS = {
    "bce": {},
    "focal": {"gamma": 2.0},
    "asl": {"gamma_pos": 1.0, "gamma_neg": 4.0, "clip": 0.05},
    "hill": {"lam": 1.5, "margin": 1.0, "gamma": 2.0},
    "ral": {
        "gamma_pos": 0.0,
        "gamma_neg": 4.0,
        "clip": 0.05,
        "lam": 1.5,
        "alpha_1": 1.0,
        "alpha_2": -1.25,
        "beta_1": 0.0,
    },
}
ALL_SPACES = [
    (loss, mode, nuisance)
    for loss, mode, nuisance in itertools.product(LOSSES, MODES, (False, True))
    if not (mode == "seeds" and nuisance)
]


def test_catalogue_lists_the_five_losses_and_three_modes():
    assert LOSSES == ("asl", "bce", "focal", "hill", "ral")
    assert MODES == ("full", "matched", "seeds")


@pytest.mark.parametrize("loss,mode,nuisance", ALL_SPACES)
def test_every_space_partitions_the_loss_parameters(loss, mode, nuisance):
    space = get_space(loss, mode, nuisance=nuisance)
    assert (space.loss, space.mode, space.nuisance) == (loss, mode, nuisance)
    expected = set(RELEASED_DEFAULTS[loss]) | ({"lr", "weight_decay"} if nuisance else set())
    assert set(space.names).isdisjoint(space.fixed)
    assert set(space.names) | set(space.fixed) == expected
    if mode == "full":
        assert set(space.names) == expected
    elif mode == "seeds":
        assert space.names == ()
        assert space.fixed == RELEASED_DEFAULTS[loss]
    else:
        assert set(space.names) == (expected & (set(MATCHED_PARAMS) | {"lr", "weight_decay"}))
    # Held values are the released defaults.
    for name, value in space.fixed.items():
        assert value == RELEASED_DEFAULTS[loss][name]
    # Nuisance parameters come last, in a fixed order.
    if nuisance:
        assert space.names[-2:] == ("lr", "weight_decay")


@pytest.mark.parametrize("loss", LOSSES)
def test_defaults_are_the_released_code_and_inside_the_ranges(loss):
    space = get_space(loss, "full")
    assert space.defaults() == RELEASED_DEFAULTS[loss]
    for p in space.params:
        assert p.low < p.default < p.high or (p.default == p.low == 0.0), p  # strictly inside, or at an exponent's 0
        assert p.limits[0] <= p.low and p.high <= p.limits[1]
        assert p.doc


def test_lam_range_starts_above_one_and_polynomial_coefficients_stay_in_finite_gradient_box():
    for loss in ("hill", "ral"):
        assert get_space(loss)["lam"].low > 1.0
    ral = get_space("ral", options={"n_alpha": 4, "n_beta": 3})
    for p in ral.params:
        if p.name.startswith(("alpha_", "beta_")):
            assert -5.0 <= p.low and p.high <= 5.0 and p.limits == (-5.0, 5.0)


def test_matched_asl_and_ral_sweep_identical_ranges():
    asl, ral = get_space("asl", "matched"), get_space("ral", "matched")
    assert asl.names == ral.names == MATCHED_PARAMS

    def ranges(space):
        return [(p.name, p.low, p.high, p.log, p.limits) for p in space.params]

    assert ranges(asl) == ranges(ral)
    # ... and RAL's extra parameters are held at the released values.
    assert ral.fixed == {"lam": 1.5, "alpha_1": 1.0, "alpha_2": -1.25, "beta_1": 0.0}
    # The shared parameters have the same ranges in full mode too.
    assert ranges(get_space("asl", "full")) == ranges(get_space("ral", "full"))[:3]


def test_nuisance_defaults_are_train_config_defaults():
    from runners.config import TrainConfig

    space = get_space("asl", nuisance=True)
    assert space["lr"].default == TrainConfig().lr and space["lr"].log
    assert space["weight_decay"].default == TrainConfig().weight_decay and space["weight_decay"].log


def test_seeds_mode_refuses_nuisance():
    with pytest.raises(ValueError, match="seeds.*nuisance"):
        get_space("ral", "seeds", nuisance=True)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"loss": "poly"}, "unknown loss 'poly'"),
        ({"loss": "asl", "mode": "half"}, "unknown search-space mode 'half'"),
        ({"loss": "asl", "options": {"n_alpha": 3}}, "'asl' search space has no option n_alpha; it has none"),
        ({"loss": "ral", "options": {"n_gamma": 3}}, "no option n_gamma; its options: n_alpha, n_beta"),
        ({"loss": "ral", "options": {"n_alpha": 0}}, "n_alpha must be an integer from 1 to 8"),
        ({"loss": "ral", "options": {"n_beta": 1.5}}, "n_beta must be"),
        ({"loss": "ral", "options": {"n_beta": True}}, "n_beta must be"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_space(**kwargs)


def test_ral_coefficient_counts():
    space = get_space("ral", options={"n_alpha": 3, "n_beta": 2})
    assert space.names == ("gamma_pos", "gamma_neg", "clip", "lam", "alpha_1", "alpha_2", "alpha_3", "beta_1", "beta_2")
    kwargs = space.loss_params(space.defaults())
    assert kwargs["alpha"] == (1.0, -1.25, 0.0) and kwargs["beta"] == (0.0, 0.0)
    one = get_space("ral", options={"n_alpha": 1, "n_beta": 1})
    assert one.loss_params(one.defaults())["alpha"] == (1.0,)


# --- unit-cube designs ---------------------------------------------------------------------------
@pytest.mark.parametrize("loss,mode,nuisance", ALL_SPACES)
def test_from_unit_maps_corners_to_range_ends(loss, mode, nuisance):
    space = get_space(loss, mode, nuisance=nuisance)
    assert space.from_unit(np.zeros(space.dim)) == {p.name: p.low for p in space.params}
    assert space.from_unit(np.ones(space.dim)) == {p.name: p.high for p in space.params}


def test_from_unit_is_log_aware_at_the_midpoint():
    space = get_space("ral", "full", nuisance=True)
    mid = space.from_unit([0.5] * space.dim)
    for p in space.params:
        expected = math.sqrt(p.low * p.high) if p.log else (p.low + p.high) / 2
        assert mid[p.name] == pytest.approx(expected, rel=1e-12), p.name
    assert mid["lr"] == pytest.approx(10**-2.5)


def test_from_unit_checks_its_input():
    space = get_space("asl")
    with pytest.raises(ValueError, match="needs 3 coordinates"):
        space.from_unit([0.5, 0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        space.from_unit([0.5, 1.5, 0.5])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=9, max_size=9), st.lists(st.floats(0.0, 1.0), min_size=9, max_size=9))
def test_from_unit_stays_in_range_and_is_monotone(u, v):
    space = get_space("ral", "full", nuisance=True)
    a, b = space.from_unit(u), space.from_unit(v)
    for i, p in enumerate(space.params):
        assert p.low <= a[p.name] <= p.high
        if u[i] < v[i]:
            assert a[p.name] <= b[p.name]


def test_sobol_design_through_from_unit_covers_each_axis():
    from scipy.stats import qmc

    space = get_space("ral", "full", nuisance=True)
    points = qmc.Sobol(space.dim, scramble=True, seed=0).random(64)
    values = [space.from_unit(row) for row in points]
    for p in space.params:
        column = np.array([v[p.name] for v in values])
        scaled = np.log(column / p.low) / np.log(p.high / p.low) if p.log else (column - p.low) / (p.high - p.low)
        # a balanced Sobol design puts exactly half the points in each half of every axis
        assert np.sum(scaled < 0.5) == 32, p.name


def test_distributions_match_the_specs():
    space = get_space("ral", nuisance=True)
    dists = space.distributions()
    assert list(dists) == list(space.names)
    assert dists["lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    assert dists["clip"] == optuna.distributions.FloatDistribution(space["clip"].low, space["clip"].high)


# --- grids ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "loss,nuisance,n_points,levels",
    [
        ("focal", False, 7, 7),
        ("asl", False, 125, 5),
        ("asl", False, 100, 5),
        ("asl", False, 5, 2),
        ("ral", True, 200, 2),
        ("hill", False, 1, 2),
    ],
)
def test_grid_is_full_factorial_with_equal_levels(loss, nuisance, n_points, levels):
    space = get_space(loss, nuisance=nuisance)
    grid = space.grid(n_points)
    assert len(grid) == levels**space.dim
    assert len({tuple(sorted(g.items())) for g in grid}) == len(grid)  # no duplicates
    axes = space.grid_axes(n_points)
    for p in space.params:
        column = sorted({g[p.name] for g in grid})
        assert column == sorted(axes[p.name])
        assert column[0] == p.low and column[-1] == p.high and len(column) == levels
        steps = np.diff(np.log(column)) if p.log else np.diff(column)
        assert np.allclose(steps, steps[0])


def test_grid_of_an_empty_space_is_one_point_and_grid_rejects_zero():
    assert get_space("bce").grid(50) == [{}]
    assert get_space("asl", "seeds").grid(50) == [{}]
    with pytest.raises(ValueError, match="at least 1 point"):
        get_space("asl").grid(0)


def test_grid_axes_drive_optuna_grid_sampler():
    space = get_space("asl")
    sampler = optuna.samplers.GridSampler(space.grid_axes(8), seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(
        lambda t: sum(t.suggest_float(n, d.low, d.high) for n, d in space.distributions().items()), n_trials=8
    )
    seen = {tuple(t.params[n] for n in space.names) for t in study.trials}
    assert seen == {tuple(g[n] for n in space.names) for g in space.grid(8)}


# --- hand-over to the runners --------------------------------------------------------------------
def test_loss_params_merge_fold_and_drop_nuisance():
    space = get_space("ral", "matched", nuisance=True)
    values = {"gamma_pos": 0.5, "gamma_neg": 3.0, "clip": 0.1, "lr": 0.01, "weight_decay": 1e-5}
    assert space.loss_params(values) == {
        "gamma_pos": 0.5,
        "gamma_neg": 3.0,
        "clip": 0.1,
        "lam": 1.5,
        "alpha": (1.0, -1.25),
        "beta": (0.0,),
    }
    assert space.train_overrides(values) == {"lr": 0.01, "weight_decay": 1e-5}
    assert get_space("ral").train_overrides(get_space("ral").defaults()) == {}
    assert get_space("bce").loss_params({}) == {}
    assert get_space("focal", "seeds").loss_params({}) == {"gamma": 2.0}


def test_loss_params_reject_unknown_and_missing_values():
    space = get_space("asl")
    with pytest.raises(ValueError, match="unknown hyperparameters.*'gama'"):
        space.loss_params({**space.defaults(), "gama": 1.0})
    with pytest.raises(ValueError, match=r"missing values.*'clip'"):
        space.loss_params({"gamma_pos": 1.0, "gamma_neg": 4.0})


# --- storage round-trip --------------------------------------------------------------------------
@pytest.mark.parametrize("loss,mode,nuisance", ALL_SPACES)
def test_to_dict_round_trips_through_json(loss, mode, nuisance):
    space = get_space(loss, mode, nuisance=nuisance)
    restored = SearchSpace.from_dict(json.loads(json.dumps(space.to_dict(), allow_nan=False)))
    assert restored == space
    assert restored.distributions() == space.distributions()


def test_from_dict_reads_a_study_attribute_written_by_optuna():
    space = get_space("ral", "full", nuisance=True, options={"n_alpha": 3})
    study = optuna.create_study()
    study.set_user_attr("search_space", space.to_dict())
    assert SearchSpace.from_dict(study.user_attrs["search_space"]) == space


def test_from_dict_rejects_unknown_format():
    d = get_space("asl").to_dict()
    d["format"] = 99
    with pytest.raises(ValueError, match="format 99"):
        SearchSpace.from_dict(d)


def test_param_spec_validation_messages():
    with pytest.raises(ValueError, match="'x'.*low .* smaller than high"):
        ParamSpec("x", 1.0, 1.0, False, 1.0, "")
    with pytest.raises(ValueError, match="'x'.*log-scale range needs low > 0"):
        ParamSpec("x", 0.0, 1.0, True, 0.5, "")
    with pytest.raises(ValueError, match="'x'.*default 2 lies outside"):
        ParamSpec("x", 0.0, 1.0, False, 2.0, "")


def test_search_spaces_and_stored_spaces_do_not_import_torch():
    import subprocess
    import sys

    # Importing the package, listing the losses and using a stored space (what analysis and reports
    # do) need no torch; get_space imports the loss's module, where its defaults live.
    stored = get_space("ral").to_dict()
    code = (
        "import sys, search_spaces; names = search_spaces.loss_names(); "
        f"search_spaces.SearchSpace.from_dict({stored!r}).grid(10); print('torch' in sys.modules, len(names))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "5"]
