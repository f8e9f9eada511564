"""Loss packs: each head equals its own loss (released-code parity, finite gradients), whatever its neighbours."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from benchmarks.reference_losses import released
from runners.losses import available_losses, create_loss, create_loss_pack
from runners.losses._compiled import ENV_VAR

from .conftest import make_batch
from .test_finite import params_by_loss
from .test_parity import CASES, assert_grad_parity, masked_reference, value_and_grad

BY_LOSS = {name: [params for n, params in CASES if n == name] for name in available_losses()}


def pack_value_and_grad(pack, x, y, **kwargs):
    x = x.detach().clone().requires_grad_(True)
    value = pack(x, y, **kwargs)
    (grad,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), grad


def stacked(x: torch.Tensor, heads: int, seed: int = 1) -> torch.Tensor:
    """(batch, classes, heads) logits: head 0 gets ``x``, the others shuffled copies (extremes kept)."""
    gen = torch.Generator().manual_seed(seed)
    flat = x.reshape(-1)
    columns = [x] + [flat[torch.randperm(flat.numel(), generator=gen)].view(x.shape) for _ in range(heads - 1)]
    return torch.stack(columns, dim=-1)


@pytest.mark.parametrize("name", sorted(BY_LOSS))
def test_every_head_matches_the_released_code_in_float64(name):
    heads = BY_LOSS[name]
    x, y = make_batch()
    xs = stacked(x, len(heads))
    pack = create_loss_pack(name, heads)
    value, grad = pack_value_and_grad(pack, xs, y)
    assert value.shape == (len(heads),)
    for k, params in enumerate(heads):
        ref = released(name, **create_loss(name, **params).params)
        ref_value, ref_grad = value_and_grad(ref, xs[..., k], y)
        torch.testing.assert_close(value[k], ref_value, rtol=1e-6, atol=0)
        assert_grad_parity(grad[..., k], ref_grad)


@pytest.mark.parametrize("name", sorted(BY_LOSS))
def test_groups_mask_and_mean_per_head(name):
    """(groups, batch, classes, heads): each group has its own batch and mask, each head its parameters."""
    heads = BY_LOSS[name][:3]
    batches = [make_batch(seed=s) for s in (3, 4)]
    xs = torch.stack([stacked(x, len(heads), seed=s) for s, (x, _) in enumerate(batches)])
    ys = torch.stack([y for _, y in batches])
    masks = torch.rand(ys.shape, generator=torch.Generator().manual_seed(9)) < 0.7
    grid = [[{**params, "reduction": "mean"} for params in heads]] * 2
    value, grad = pack_value_and_grad(create_loss_pack(name, grid), xs, ys, mask=masks)
    assert value.shape == (2, len(heads))
    for g in range(2):
        for k, params in enumerate(heads):
            ref = released(name, **create_loss(name, **params).params)
            ref_value, ref_grad = masked_reference(ref, xs[g, ..., k], ys[g], masks[g].double(), mean=True)
            torch.testing.assert_close(value[g, k], ref_value, rtol=1e-6, atol=0)
            assert_grad_parity(grad[g, ..., k], ref_grad)
            assert torch.all(grad[g, ..., k][~masks[g]] == 0)


@pytest.mark.parametrize("name", sorted(BY_LOSS))
def test_a_head_does_not_depend_on_its_neighbours(name):
    heads = BY_LOSS[name]
    x, y = make_batch(dtype=torch.float32, seed=6)
    xs = stacked(x, len(heads)).contiguous()
    value, grad = pack_value_and_grad(create_loss_pack(name, heads), xs, y)
    # Two heads, not one: a pack of one head per group runs the single loss's kernel (another formula).
    alone_value, alone_grad = pack_value_and_grad(create_loss_pack(name, heads[-2:]), xs[..., -2:].contiguous(), y)
    # Equal up to float rounding: vectorised and scalar loops round some functions differently, and a
    # sum's order depends on the layout.
    torch.testing.assert_close(value[-2:], alone_value, rtol=1e-6, atol=0)
    assert_grad_parity(grad[..., -2:], alone_grad)


@pytest.mark.parametrize("name", sorted(BY_LOSS))
def test_float32_heads_are_as_accurate_as_the_released_code(name):
    """The training path: no further from the float64 truth than the released code in float32 (as test_compiled)."""
    heads = BY_LOSS[name]
    x64, y64 = make_batch(seed=2)
    xs64 = stacked(x64, len(heads))
    value, grad = pack_value_and_grad(create_loss_pack(name, heads), xs64.float(), y64.float())
    assert value.dtype == grad.dtype == torch.float32
    for k, params in enumerate(heads):
        ref = released(name, **create_loss(name, **params).params)
        truth_value, truth_grad = value_and_grad(ref, xs64[..., k], y64)
        ref_value, ref_grad = value_and_grad(ref, xs64[..., k].float(), y64.float())
        error = abs(value[k].double() - truth_value).item()
        assert error <= max(2 * abs(ref_value.double() - truth_value).item(), 1e-6 * abs(truth_value.item())), params
        finite = torch.isfinite(ref_grad) & torch.isfinite(truth_grad)
        scale = truth_grad[finite].abs().max().item()
        grad_error = (grad[..., k].double() - truth_grad)[finite].abs().max().item()
        ref_grad_error = (ref_grad.double() - truth_grad)[finite].abs().max().item()
        assert grad_error <= max(2 * ref_grad_error, 1e-6 * scale), params


head_lists = {name: st.lists(strategy, min_size=1, max_size=4) for name, strategy in params_by_loss.items()}
logits = arrays(np.float32, (5, 7), elements=st.floats(-50.0, 50.0, width=32))
targets = arrays(np.bool_, (5, 7))


@pytest.mark.parametrize("name", sorted(head_lists))
def test_gradients_are_finite_for_any_tensor_of_parameters(name):
    """The property test of test_finite.py, with the hyperparameters drawn per head."""

    @given(heads=head_lists[name], x=logits, y=targets)
    def check(heads, x, y):
        pack = create_loss_pack(name, heads)
        xs = torch.from_numpy(x).unsqueeze(-1).expand(-1, -1, len(heads))
        value, grad = pack_value_and_grad(pack, xs, torch.from_numpy(y).float())
        assert torch.isfinite(value).all(), (heads, value)
        assert torch.isfinite(grad).all(), heads

    check()


def test_bad_heads_and_shapes_are_refused_with_the_head_named():
    with pytest.raises(ValueError, match=r"head 1: .*gamma_neg"):
        create_loss_pack("asl", [{}, {"gamma_neg": -1.0}])
    with pytest.raises(ValueError, match="unknown loss"):
        create_loss_pack("nope", [{}])
    with pytest.raises(ValueError, match="one reduction"):
        create_loss_pack("bce", [{"reduction": "sum"}, {"reduction": "mean"}])
    with pytest.raises(ValueError, match="one reduction"):
        create_loss_pack("bce", [{"reduction": "none"}])
    with pytest.raises(ValueError, match="non-empty"):
        create_loss_pack("bce", [])
    pack = create_loss_pack("ral", [{}, {}])
    with pytest.raises(ValueError, match="3 head"):
        pack(torch.zeros(4, 5, 3), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="targets must be shaped"):
        pack(torch.zeros(4, 5, 2), torch.zeros(4, 5, 2))


@pytest.mark.parametrize("mode", ["1", "auto"])
def test_compiled_pack_kernels_match_the_formula_and_never_recompile_for_new_values(monkeypatch, mode):
    """``1``: torch.compile; ``auto`` on CPU: the AOTInductor library. New values and sizes reuse the same code."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv(ENV_VAR, mode)
    x, y = make_batch(dtype=torch.float32, seed=8)
    heads = [{"gamma_neg": 0.5, "clip": 0.0}, {"alpha": (1.0, 2.0, -1.0), "beta": (0.5,)}, {}]
    pack = create_loss_pack("ral", heads)
    xs = stacked(x, 3).contiguous()
    value, grad = pack_value_and_grad(pack, xs, y)
    kernel = pack.kernels.fused if mode == "1" else pack.kernels.packaged
    assert not kernel.failed, kernel.failed
    monkeypatch.setenv(ENV_VAR, "0")
    eager_value, eager_grad = pack_value_and_grad(pack, xs, y)
    torch.testing.assert_close(value, eager_value, rtol=1e-5, atol=0)
    assert_grad_parity(grad, eager_grad, rtol=1e-5)
    monkeypatch.setenv(ENV_VAR, mode)
    before = counters["stats"]["unique_graphs"], dict(getattr(kernel, "_runners", {}))
    for gamma in (0.0, 1.5, 7.0):  # new values and batch size; the same heads and polynomial lengths
        other = create_loss_pack(
            "ral", [{"gamma_neg": gamma, "alpha": (1.0, gamma, -0.5)}, {"clip": gamma / 20}, {"lam": 1.0 + gamma}]
        )
        v, g = pack_value_and_grad(other, xs[: 10 + int(gamma)], y[: 10 + int(gamma)])
        assert torch.isfinite(v).all() and torch.isfinite(g).all()
    assert counters["stats"]["unique_graphs"] == before[0]
    assert getattr(kernel, "_runners", {}).keys() == before[1].keys()


@pytest.mark.parametrize("name", sorted(BY_LOSS))
def test_one_head_per_group_is_each_heads_own_loss(name):
    """(groups, batch, classes, 1): each group's single head runs its own loss's kernel, with its gradient."""
    heads = BY_LOSS[name][:2]
    batches = [make_batch(seed=s) for s in (11, 12)]
    xs = torch.stack([x for x, _ in batches]).unsqueeze(-1)[: len(heads)]
    ys = torch.stack([y for _, y in batches])[: len(heads)]
    value, grad = pack_value_and_grad(create_loss_pack(name, [[p] for p in heads]), xs, ys)
    assert value.shape == (len(heads), 1)
    for g, params in enumerate(heads):
        ref = released(name, **create_loss(name, **params).params)
        ref_value, ref_grad = value_and_grad(ref, xs[g, ..., 0], ys[g])
        torch.testing.assert_close(value[g, 0], ref_value, rtol=1e-6, atol=0)
        assert_grad_parity(grad[g, ..., 0], ref_grad)


def test_a_loss_without_a_per_head_formula_runs_each_heads_own_loss():
    """A plugin loss need not write a pack formula: each head then runs its own loss, with the same result."""
    heads = BY_LOSS["hill"]
    x, y = make_batch()
    xs = stacked(x, len(heads))
    value, grad = pack_value_and_grad(create_loss_pack("hill", heads), xs, y)
    fallback = create_loss_pack("hill", heads)
    fallback.kernels = None
    fallback_value, fallback_grad = pack_value_and_grad(fallback, xs, y)
    torch.testing.assert_close(fallback_value, value, rtol=1e-6, atol=0)
    assert_grad_parity(fallback_grad, grad)
