"""The public API: registry, parameter checking, call conventions and autograd behaviour."""

from __future__ import annotations

import math
import threading

import pytest
import torch

from benchmarks.reference_losses import released
from runners.losses import MultiLabelLoss, available_losses, create_loss, register_loss
from runners.losses import registry as registry_module
from runners.losses._closed_form import CPU_CHUNK

from .conftest import make_batch


def test_available_losses():
    assert available_losses() == ["asl", "bce", "focal", "hill", "ral"]


def test_unknown_loss_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown loss 'rals'.*asl, bce, focal, hill, ral"):
        create_loss("rals")


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) gama.*gamma_neg=4\.0"):
        create_loss("asl", gama=2)


@pytest.mark.parametrize(
    "name,params,message",
    [
        ("asl", {"gamma_neg": -1}, r"gamma_neg must be in \[0, inf\)"),
        ("asl", {"clip": 1.0}, r"clip must be in \[0, 1\)"),
        ("ral", {"clip": -0.1}, r"clip must be in \[0, 1\)"),
        ("ral", {"gamma_pos": math.nan}, "gamma_pos must be a finite number"),
        ("ral", {"lam": math.inf}, "lam must be a finite number"),
        ("ral", {"lam": 0.0}, r"lam must be in \(0, inf\)"),
        ("ral", {"alpha": 1.0}, "alpha must be a sequence"),
        ("ral", {"alpha": "1,2"}, "alpha must be a sequence"),
        ("ral", {"beta": (0.1, math.nan)}, r"beta\[1\] must be a finite number"),
        ("ral", {"eps": 0.0}, r"eps must be in \(0, 1\)"),
        ("focal", {"gamma": True}, "gamma must be a finite number"),
        ("hill", {"margin": "1"}, "margin must be a finite number"),
        ("asl", {"focal_grad": "yes"}, "focal_grad must be one of 'detach', 'through'"),
        ("bce", {"reduction": "avg"}, "reduction must be one of 'sum', 'mean', 'none'"),
    ],
)
def test_invalid_parameters_are_rejected_at_construction(name, params, message):
    with pytest.raises(ValueError, match=message):
        create_loss(name, **params)


def test_defaults_are_exposed_and_filled_in():
    assert create_loss("ral").defaults["alpha"] == (1.0, -1.25)
    loss = create_loss("ral", alpha=[2, 3], gamma_neg=2)
    assert loss.params["alpha"] == (2.0, 3.0) and loss.params["gamma_neg"] == 2.0
    assert loss.params["lam"] == 1.5
    assert "gamma_neg=2.0" in repr(loss)
    for name in available_losses():
        cls = type(create_loss(name))
        assert set(create_loss(name).params) == set(cls.defaults)


def test_a_sixth_loss_is_one_class_and_one_registration():
    @register_loss("test_squared_error")
    class SquaredError(MultiLabelLoss):
        """sum (p - y)^2: a loss whose gradient is easy to write down."""

        defaults = {"reduction": "sum"}

        def _chunk(self, x, y, mask, grad_out, loss_out):
            p = torch.sigmoid(x)
            diff = p - y
            if grad_out is not None:
                torch.mul(diff, 2 * p * (1 - p), out=grad_out)
                if mask is not None:
                    grad_out.mul_(mask)
            terms = diff * diff if mask is None else diff * diff * mask
            if loss_out is not None:
                loss_out.copy_(terms)
                return None
            return terms.sum()

    try:
        assert "test_squared_error" in available_losses()
        x, y = make_batch()
        x.requires_grad_(True)
        loss = create_loss("test_squared_error")(x, y)
        loss.backward()
        expected_x = x.detach().clone().requires_grad_(True)
        ((torch.sigmoid(expected_x) - y) ** 2).sum().backward()
        torch.testing.assert_close(loss, ((torch.sigmoid(x) - y) ** 2).sum())
        torch.testing.assert_close(x.grad, expected_x.grad)
        with pytest.raises(ValueError, match="already registered"):
            register_loss("test_squared_error")(type("Other", (MultiLabelLoss,), {"defaults": {"reduction": "sum"}}))
    finally:
        registry_module._LOSSES.pop("test_squared_error", None)


def test_bad_inputs_are_rejected():
    loss = create_loss("ral")
    x, y = make_batch()
    with pytest.raises(ValueError, match="targets shape"):
        loss(x, y[:, :3])
    with pytest.raises(ValueError, match="floating-point"):
        loss(x.long(), y)
    with pytest.raises(ValueError, match="does not broadcast"):
        loss(x, y, torch.ones(3))
    with pytest.raises(ValueError, match="targets must be a tensor"):
        loss(x, y.tolist())


@pytest.mark.parametrize("name", ["asl", "ral", "focal", "hill"])
def test_targets_and_masks_of_any_dtype(name):
    x, y = make_batch()
    loss = create_loss(name)
    expected = loss(x, y)
    torch.testing.assert_close(loss(x, y.bool()), expected)
    torch.testing.assert_close(loss(x, y.long()), expected)
    mask = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) > 0.5
    torch.testing.assert_close(loss(x, y, mask), loss(x, y, mask.double()))
    per_class = torch.tensor([1.0] * 6 + [0.0] * 7)
    torch.testing.assert_close(loss(x, y, per_class), loss(x, y, per_class.expand_as(x)))


@pytest.mark.parametrize("name", ["asl", "ral", "focal", "hill", "bce"])
def test_reduction_none_backward_with_weights(name):
    x, y = make_batch()
    weights = torch.rand(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    xa = x.clone().requires_grad_(True)
    (create_loss(name, reduction="none")(xa, y) * weights).sum().backward()
    xb = x.clone().requires_grad_(True)
    create_loss(name)(xb, y, weights).backward()
    torch.testing.assert_close(xa.grad, xb.grad)


def test_no_grad_value_equals_grad_value():
    x, y = make_batch()
    loss = create_loss("ral")
    with torch.no_grad():
        plain = loss(x, y)
    torch.testing.assert_close(loss(x.clone().requires_grad_(True), y).detach(), plain)


def test_two_losses_before_one_backward():
    """Scratch buffers are reused between calls; the gradients held for backward must not be."""
    x1, y1 = make_batch(seed=1)
    x2, y2 = make_batch(seed=2)
    loss = create_loss("ral")
    a, b = x1.clone().requires_grad_(True), x2.clone().requires_grad_(True)
    (loss(a, y1) + 2 * loss(b, y2)).backward()
    ref = released("ral")
    ra, rb = x1.clone().requires_grad_(True), x2.clone().requires_grad_(True)
    (ref(ra, y1) + 2 * ref(rb, y2)).backward()
    torch.testing.assert_close(a.grad, ra.grad)
    torch.testing.assert_close(b.grad, rb.grad)


def test_retain_graph_backward_twice():
    x, y = make_batch()
    x.requires_grad_(True)
    value = create_loss("asl")(x, y)
    value.backward(retain_graph=True)
    first = x.grad.clone()
    value.backward()
    torch.testing.assert_close(x.grad, 2 * first)


def test_create_graph_is_refused():
    x, y = make_batch()
    x.requires_grad_(True)
    value = create_loss("ral")(x, y)
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.autograd.grad(value, x, create_graph=True)


def test_non_contiguous_logits_and_head_gradients():
    x, y = make_batch()
    head = torch.nn.Linear(13, 13).double()
    loss = create_loss("ral")
    logits = head(x).t()  # non-contiguous
    loss(logits, y.t()).backward()
    grads = [p.grad.clone() for p in head.parameters()]
    head.zero_grad()
    released("ral")(head(x).t(), y.t()).backward()
    for ours, ref in zip(grads, [p.grad for p in head.parameters()], strict=True):
        torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("name", ["asl", "ral", "focal", "hill"])
def test_inputs_larger_than_one_chunk(name):
    rows = (2 * CPU_CHUNK + 123) // 26 + 1
    x, y = make_batch(rows=rows, classes=26, seed=9)
    loss = create_loss(name)
    ref = released(name, **loss.params)
    xa = x.clone().requires_grad_(True)
    value = loss(xa, y)
    value.backward()
    xb = x.clone().requires_grad_(True)
    ref_value = ref(xb, y)
    ref_value.backward()
    torch.testing.assert_close(value, ref_value, rtol=1e-6, atol=0)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-6, atol=1e-9)
    per_element = create_loss(name, reduction="none")(x, y)
    torch.testing.assert_close(per_element, ref.elementwise(x, y), rtol=1e-6, atol=1e-9)


def test_threads_do_not_share_scratch_buffers():
    loss = create_loss("ral")
    batches = [make_batch(rows=64, seed=s) for s in range(4)]
    expected = [loss(x, y) for x, y in batches]
    results: dict[int, list[torch.Tensor]] = {}

    def work(i):
        x, y = batches[i]
        results[i] = [loss(x, y) for _ in range(30)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, values in results.items():
        for v in values:
            torch.testing.assert_close(v, expected[i], rtol=0, atol=0)
