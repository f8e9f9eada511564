"""Gradients stay finite over the whole search space, where the released code's do not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from benchmarks.reference_losses import released
from runners.losses import create_loss

from .conftest import make_batch

gammas = st.one_of(st.floats(0.0, 8.0), st.floats(0.0, 1.0), st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0, 8.0]))
clips = st.one_of(st.floats(0.0, 0.5), st.sampled_from([0.0, 1e-9, 0.05, 0.5]))
lams = st.floats(1.0, 3.0, exclude_min=True)
coefs = st.lists(st.floats(-5.0, 5.0), min_size=0, max_size=3).map(tuple)
focal_grads = st.sampled_from(["detach", "through"])

params_by_loss = {
    "bce": st.just({}),
    "focal": st.fixed_dictionaries({"gamma": gammas, "focal_grad": focal_grads}),
    "asl": st.fixed_dictionaries({"gamma_pos": gammas, "gamma_neg": gammas, "clip": clips, "focal_grad": focal_grads}),
    "hill": st.fixed_dictionaries(
        {"gamma": gammas, "lam": lams, "margin": st.floats(0.0, 2.0), "focal_grad": focal_grads}
    ),
    "ral": st.fixed_dictionaries(
        {
            "gamma_pos": gammas,
            "gamma_neg": gammas,
            "clip": clips,
            "lam": lams,
            "alpha": coefs,
            "beta": coefs,
            "focal_grad": focal_grads,
        }
    ),
}

logits = arrays(np.float32, (6, 7), elements=st.floats(-50.0, 50.0, width=32))
targets = arrays(np.bool_, (6, 7))


def grad_of(loss, x, y, **kwargs):
    x = x.detach().clone().requires_grad_(True)
    value = loss(x, y, **kwargs)
    (grad,) = torch.autograd.grad(value, x)
    return value, grad


@pytest.mark.parametrize("name", list(params_by_loss))
@given(data=st.data(), x=logits, y=targets)
def test_finite_value_and_gradient_float32(name, data, x, y):
    params = data.draw(params_by_loss[name])
    loss = create_loss(name, **params)
    value, grad = grad_of(loss, torch.from_numpy(x), torch.from_numpy(y).float())
    assert value.dtype == torch.float32
    assert torch.isfinite(value)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("name", list(params_by_loss))
@given(data=st.data(), x=logits, y=targets)
def test_finite_under_cpu_autocast_bf16(name, data, x, y):
    params = data.draw(params_by_loss[name])
    loss = create_loss(name, **params)
    weight = torch.eye(7, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits_bf16 = torch.from_numpy(x) @ weight  # a bf16 matmul, as a head under autocast produces
        assert logits_bf16.dtype == torch.bfloat16
        value = loss(logits_bf16, torch.from_numpy(y).float())
    assert value.dtype == torch.float32
    (grad,) = torch.autograd.grad(value, weight)
    assert torch.isfinite(value)
    assert torch.isfinite(grad).all()


def test_bf16_input_computes_in_float32():
    x, y = make_batch(dtype=torch.float32)
    x16 = x.bfloat16()
    loss = create_loss("ral")
    assert loss(x16, y).dtype == torch.float32
    torch.testing.assert_close(loss(x16, y), loss(x16.float(), y))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("gamma_neg", [0.25, 0.5, 0.9])
def test_ral_gamma_neg_below_one_released_is_nan_ours_is_the_limit(dtype, gamma_neg):
    """Negatives with p < clip: the released code's gradient is NaN, ours is 0 (the weight is 0 there).

    Elsewhere ours equals the released gradient, so the only change is the limit at the kink.
    """
    clip = 0.05
    x = torch.tensor([[-6.0, -4.0, -3.5, 0.0, 2.0, 1.0]], dtype=dtype)  # p = 0.0025, 0.018, 0.029 < clip
    y = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]], dtype=dtype)
    ours = create_loss("ral", gamma_neg=gamma_neg, clip=clip)
    ref = released("ral", **ours.params)
    ref_value, ref_grad = grad_of(ref, x, y)
    value, grad = grad_of(ours, x, y)
    below = torch.sigmoid(x) < clip
    assert below.sum() == 3
    assert torch.isnan(ref_grad[below]).all(), "the transcription should reproduce the released NaN"
    assert torch.isfinite(grad).all()
    assert torch.all(grad[below] == 0)
    torch.testing.assert_close(value, ref_value)
    torch.testing.assert_close(grad[~below], ref_grad[~below], rtol=1e-5, atol=1e-7)


def test_ral_gamma_neg_below_one_right_of_the_kink_matches_finite_differences():
    """Just above p = clip the slope is large but finite, and equal to a float64 central difference."""
    clip, gamma_neg = 0.05, 0.5
    logit_clip = torch.logit(torch.tensor(clip, dtype=torch.float64))
    x = logit_clip + torch.tensor([[1e-3, 1e-2, 1e-1]], dtype=torch.float64)
    y = torch.zeros_like(x)
    loss = create_loss("ral", gamma_neg=gamma_neg, clip=clip, reduction="none")
    _, grad = grad_of(lambda a, b: loss(a, b).sum(), x, y)
    h = 1e-7
    numeric = (loss(x + h, y) - loss(x - h, y)) / (2 * h)
    torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=0)


@pytest.mark.parametrize(
    "name,params",
    [
        ("asl", {"focal_grad": "through", "gamma_neg": 0.5, "gamma_pos": 0.5}),
        ("focal", {"gamma": 0.5}),
        ("hill", {"gamma": 0.5}),
        ("ral", {"gamma_pos": 0.5, "gamma_neg": 0.5}),
    ],
)
def test_released_nan_points_are_finite_here(name, params):
    """Saturated logits (p rounds to 0 or 1 in float32) with 0 < gamma < 1 make the released weights' slope NaN."""
    x = torch.tensor([[40.0, -40.0, 40.0, -40.0, -6.0]])
    y = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0]])
    ours = create_loss(name, **params)
    ref = released(name, **ours.params)
    _, ref_grad = grad_of(ref, x, y)
    _, grad = grad_of(ours, x, y)
    assert not torch.isfinite(ref_grad).all()
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize(
    "name,params",
    [
        ("focal", {"gamma": 1.7}),
        ("asl", {"focal_grad": "through", "gamma_pos": 1.3, "gamma_neg": 2.6, "clip": 0.1}),
        ("asl", {"clip": 0.0, "gamma_neg": 3.0, "focal_grad": "through"}),
        ("hill", {"gamma": 1.5, "lam": 2.0, "margin": 0.5}),
        ("ral", {"gamma_pos": 1.2, "gamma_neg": 2.7, "clip": 0.1, "alpha": (1.0, -1.0, 0.5), "beta": (0.3, 0.2)}),
        ("ral", {"clip": 0.0, "gamma_neg": 1.5}),
    ],
)
def test_gradcheck_against_finite_differences(name, params):
    """The closed-form gradients are the derivatives of the values (float64, away from kinks)."""
    gen = torch.Generator().manual_seed(7)
    x = (torch.randn(4, 5, generator=gen, dtype=torch.float64) * 3).clamp(-8, 8)
    if "clip" in params and params["clip"] > 0:
        x = x.clamp(min=float(torch.logit(torch.tensor(params["clip"] + 0.02, dtype=torch.float64))))
    y = (torch.rand(4, 5, generator=gen) < 0.4).double()
    loss = create_loss(name, **params)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: loss(a, y), (x,), eps=1e-6, atol=1e-6, rtol=1e-5)
