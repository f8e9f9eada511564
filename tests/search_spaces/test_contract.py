"""Every loss's space is what the README documents (and what main had before the loss catalogue).

Written out by hand from README's "Search spaces" table, with the order of the parameters and their
hard limits, so that moving the declarations next to the loss classes cannot change a study's
parameters, ranges, defaults, order (the columns of its design) or held values.
"""

from __future__ import annotations

import math

import pytest

from search_spaces import get_space, loss_names

INF = math.inf
# name: (low, high, log, default, limits), in sweep order.
GAMMA_POS = (0.0, 4.0, False)
GAMMA_NEG = (0.0, 6.0, False)
CLIP = (0.0, 0.4, False)
LAM = (1.1, 3.0, False)
COEF = (-2.0, 2.0, False)
EXPECTED = {
    "bce": [],
    "focal": [("gamma", 0.0, 5.0, False, 2.0, (0.0, INF))],
    "asl": [
        ("gamma_pos", *GAMMA_POS, 1.0, (0.0, INF)),
        ("gamma_neg", *GAMMA_NEG, 4.0, (0.0, INF)),
        ("clip", *CLIP, 0.05, (0.0, 1.0)),
    ],
    "hill": [
        ("lam", *LAM, 1.5, (0.0, INF)),
        ("margin", 0.0, 2.0, False, 1.0, (0.0, INF)),
        ("gamma", 0.0, 4.0, False, 2.0, (0.0, INF)),
    ],
    "ral": [
        ("gamma_pos", *GAMMA_POS, 0.0, (0.0, INF)),
        ("gamma_neg", *GAMMA_NEG, 4.0, (0.0, INF)),
        ("clip", *CLIP, 0.05, (0.0, 1.0)),
        ("lam", *LAM, 1.5, (0.0, INF)),
        ("alpha_1", *COEF, 1.0, (-5.0, 5.0)),
        ("alpha_2", *COEF, -1.25, (-5.0, 5.0)),
        ("beta_1", *COEF, 0.0, (-5.0, 5.0)),
    ],
}
NUISANCE = [("lr", 1e-4, 1e-1, True, 1e-3, (0.0, INF)), ("weight_decay", 1e-6, 1e-1, True, 1e-4, (0.0, INF))]
MATCHED = ("gamma_pos", "gamma_neg", "clip")


def rows(space):
    return [(p.name, p.low, p.high, p.log, p.default, p.limits) for p in space.params]


def test_the_catalogue_holds_the_documented_losses():
    assert set(loss_names()) == set(EXPECTED)


@pytest.mark.parametrize("loss", sorted(EXPECTED))
def test_full_space_is_the_documented_one(loss):
    assert rows(get_space(loss, "full")) == EXPECTED[loss]
    assert get_space(loss, "full").fixed == {}
    assert rows(get_space(loss, "full", nuisance=True)) == EXPECTED[loss] + NUISANCE


@pytest.mark.parametrize("loss", sorted(EXPECTED))
def test_matched_and_seeds_hold_the_documented_defaults(loss):
    defaults = {name: default for name, *_, default, _limits in EXPECTED[loss]}
    matched = get_space(loss, "matched")
    assert rows(matched) == [r for r in EXPECTED[loss] if r[0] in MATCHED]
    assert matched.fixed == {k: v for k, v in defaults.items() if k not in MATCHED}
    assert list(matched.fixed) == [k for k in defaults if k not in MATCHED]  # in declaration order
    assert rows(get_space(loss, "matched", nuisance=True)) == [r for r in EXPECTED[loss] if r[0] in MATCHED] + NUISANCE
    seeds = get_space(loss, "seeds")
    assert seeds.params == () and seeds.fixed == defaults and list(seeds.fixed) == list(defaults)


def test_ral_polynomial_lengths_are_options_of_its_space():
    space = get_space("ral", options={"n_alpha": 3, "n_beta": 2})
    coefs = [(p.name, p.default, p.doc) for p in space.params if p.name.startswith(("alpha", "beta"))]
    assert coefs == [
        ("alpha_1", 1.0, "RAL polynomial coefficient of (1-p)^1 on positives"),
        ("alpha_2", -1.25, "RAL polynomial coefficient of (1-p)^2 on positives"),
        ("alpha_3", 0.0, "RAL polynomial coefficient of (1-p)^3 on positives"),
        ("beta_1", 0.0, "RAL polynomial coefficient of q^1 on negatives"),
        ("beta_2", 0.0, "RAL polynomial coefficient of q^2 on negatives"),
    ]
    assert rows(get_space("ral", options={"n_alpha": 2, "n_beta": 1})) == EXPECTED["ral"]
    assert [p.name for p in get_space("ral", options={"n_alpha": 1}).params][-2:] == ["alpha_1", "beta_1"]
