"""Values and gradients equal the plain transcriptions of the released code (benchmarks.reference_losses)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.reference_losses import AsymmetricLoss as ReleasedASL
from benchmarks.reference_losses import PolynomialRal, Ralloss, released
from runners.losses import available_losses, create_loss

from .conftest import make_batch

CASES = [
    ("bce", {}),
    ("focal", {}),
    ("focal", {"gamma": 0.5}),
    ("focal", {"gamma": 0.0}),
    ("focal", {"gamma": 3.0, "focal_grad": "through"}),
    ("asl", {}),
    ("asl", {"focal_grad": "through"}),
    ("asl", {"gamma_pos": 0.0, "gamma_neg": 2.5, "clip": 0.3}),
    ("asl", {"gamma_pos": 2.0, "gamma_neg": 0.0}),
    ("asl", {"clip": 0.0}),
    ("asl", {"clip": 1e-9, "focal_grad": "through", "gamma_neg": 1.5}),
    ("hill", {}),
    ("hill", {"lam": 2.0, "margin": 0.3, "gamma": 0.7}),
    ("hill", {"margin": 0.0, "gamma": 0.0}),
    ("ral", {}),
    (
        "ral",
        {"gamma_pos": 1.5, "gamma_neg": 3.3, "clip": 0.2, "lam": 2.5, "alpha": (1.0, 2.0, -1.0), "beta": (0.5, 0.3)},
    ),
    ("ral", {"alpha": (), "beta": ()}),
    ("ral", {"alpha": (2.0,), "beta": (1.0,)}),
    ("ral", {"gamma_neg": 0.0}),
    ("ral", {"clip": 0.0, "gamma_neg": 2.5}),
    ("ral", {"clip": 1e-9}),
    ("ral", {"focal_grad": "detach", "gamma_pos": 2.0}),
    ("ral", {"lam": 0.8, "gamma_neg": 6.0}),
]


def value_and_grad(loss, x, y, **kwargs):
    x = x.detach().clone().requires_grad_(True)
    value = loss(x, y, **kwargs)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


def masked_reference(ref, x, y, mask, mean=False):
    """The transcription's masked loss (sum, or mean over the mask's weight) and its gradient."""
    x_ref = x.clone().requires_grad_(True)
    value = (ref.elementwise(x_ref, y) * mask).sum()
    if mean:
        value = value / mask.sum()
    (grad,) = torch.autograd.grad(value, x_ref)
    return value.detach(), grad


def assert_grad_parity(ours, ref, rtol=1e-6):
    finite = torch.isfinite(ref)
    scale = ref[finite].abs().max()
    torch.testing.assert_close(ours[finite], ref[finite], rtol=rtol, atol=rtol * scale)


def test_every_loss_is_covered():
    assert {name for name, _ in CASES} == set(available_losses())


@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_float64_value_and_gradient_match_transcription(name, params):
    x, y = make_batch()
    ours = create_loss(name, **params)
    ref = released(name, **ours.params)
    value, grad = value_and_grad(ours, x, y)
    ref_value, ref_grad = value_and_grad(ref, x, y)
    torch.testing.assert_close(value, ref_value, rtol=1e-6, atol=0)
    assert_grad_parity(grad, ref_grad)


@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_per_element_values_match_transcription(name, params):
    x, y = make_batch(seed=1)
    ours = create_loss(name, **{**params, "reduction": "none"})
    ref = released(name, **ours.params)
    per_element = ours(x, y)
    ref_elements = ref.elementwise(x, y)
    assert per_element.shape == x.shape
    torch.testing.assert_close(per_element, ref_elements, rtol=1e-6, atol=1e-6 * ref_elements.abs().max().item())


@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_float32_is_as_accurate_as_the_released_code(name, params):
    """In float32 our values and gradients are no further from the float64 truth than the released code's."""
    x64, y64 = make_batch(seed=2)
    x32, y32 = x64.float(), y64.float()
    ours = create_loss(name, **params)
    ref = released(name, **ours.params)
    truth_value, truth_grad = value_and_grad(ref, x64, y64)
    value, grad = value_and_grad(ours, x32, y32)
    ref_value, ref_grad = value_and_grad(ref, x32, y32)
    assert value.dtype == grad.dtype == torch.float32
    value_error = abs(value.double() - truth_value).item()
    ref_value_error = abs(ref_value.double() - truth_value).item()
    assert value_error <= max(2 * ref_value_error, 1e-6 * abs(truth_value.item()))
    finite = torch.isfinite(ref_grad) & torch.isfinite(truth_grad)
    scale = truth_grad[finite].abs().max().item()
    grad_error = (grad.double() - truth_grad)[finite].abs().max().item()
    ref_grad_error = (ref_grad.double() - truth_grad)[finite].abs().max().item()
    assert grad_error <= max(2 * ref_grad_error, 1e-6 * scale)


def test_released_ral_names_map_to_alpha_and_beta():
    """epsilon_pos = alpha_1, epsilon_pos_pow = 2 alpha_2 (the code halves it), epsilon_neg = beta_1."""
    x, y = make_batch(seed=3)
    released_ral = Ralloss(
        gamma_neg=3.0, gamma_pos=0.5, clip=0.1, lamb=1.8, epsilon_pos=0.7, epsilon_pos_pow=-2.2, epsilon_neg=0.4
    )
    polynomial = PolynomialRal(gamma_neg=3.0, gamma_pos=0.5, clip=0.1, lam=1.8, alpha=(0.7, -1.1), beta=(0.4,))
    ours = create_loss("ral", gamma_neg=3.0, gamma_pos=0.5, clip=0.1, lam=1.8, alpha=(0.7, -1.1), beta=(0.4,))
    expected = released_ral(x, y)
    torch.testing.assert_close(polynomial(x, y), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(ours(x, y), expected, rtol=1e-6, atol=0)


def test_defaults_are_the_released_defaults():
    x, y = make_batch(seed=4)
    pairs = [
        (create_loss("asl"), ReleasedASL()),
        (create_loss("ral"), Ralloss()),
        (create_loss("hill"), released("hill")),
    ]
    for ours, ref in pairs:
        torch.testing.assert_close(ours(x, y), ref(x, y), rtol=1e-6, atol=0)
    assert create_loss("ral").params["alpha"] == (1.0, -1.25)
    assert create_loss("ral").params["beta"] == (0.0,)
    assert create_loss("asl").params["focal_grad"] == "detach"
    assert create_loss("ral").params["focal_grad"] == "through"


@pytest.mark.parametrize("name", ["bce", "focal", "asl", "hill", "ral"])
def test_mask_drops_elements(name):
    x, y = make_batch(seed=5)
    gen = torch.Generator().manual_seed(5)
    mask = torch.rand(x.shape, generator=gen) < 0.7
    ours = create_loss(name)
    ref = released(name, **ours.params)
    value, grad = value_and_grad(ours, x, y, mask=mask)
    ref_value, ref_grad = masked_reference(ref, x, y, mask)
    torch.testing.assert_close(value, ref_value, rtol=1e-6, atol=0)
    assert_grad_parity(grad, ref_grad)
    assert torch.all(grad[~mask] == 0)


@pytest.mark.parametrize("name", ["bce", "asl", "ral"])
def test_mean_reduction_divides_by_elements_or_mask_weight(name):
    x, y = make_batch(seed=6)
    total = create_loss(name)(x, y)
    assert torch.allclose(create_loss(name, reduction="mean")(x, y), total / x.numel(), rtol=1e-12)
    mask = torch.zeros_like(x)
    mask[:, :5] = 1.0
    masked_total = create_loss(name)(x, y, mask)
    assert torch.allclose(create_loss(name, reduction="mean")(x, y, mask), masked_total / mask.sum(), rtol=1e-12)
    assert create_loss(name, reduction="mean")(x, y, torch.zeros_like(x)).item() == 0.0
