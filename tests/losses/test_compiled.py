"""The fused (torch.compile) kernels: parity with the transcriptions, finite gradients, one compile, clean fall-back.

Each compiled variant (loss x dtype x mask) costs seconds to build, so this module compiles four:
RAL float64 (parity to 1e-6), RAL float64 with a mask, RAL and ASL float32 (the training path).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from benchmarks.reference_losses import released
from runners.losses import AsymmetricLoss, RobustAsymmetricLoss, create_loss
from runners.losses._compiled import ENV_VAR, FUSED_MIN_ELEMENTS, FusedKernel, compile_mode, wanted_on

from .conftest import make_batch
from .test_parity import CASES, assert_grad_parity, masked_reference, value_and_grad

RAL_CASES = [params for name, params in CASES if name == "ral"]
ASL_CASES = [params for name, params in CASES if name == "asl"]


@pytest.fixture
def fused(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "1")


def assert_fused_ran(loss):
    kernel = type(loss).fused_kernel
    assert not kernel.failed, kernel.failed
    assert kernel._compiled is not None


@pytest.mark.parametrize("params", RAL_CASES, ids=[str(i) for i in range(len(RAL_CASES))])
def test_fused_ral_float64_matches_transcription(fused, params):
    x, y = make_batch()
    ours = create_loss("ral", **params)
    ref = released("ral", **ours.params)
    value, grad = value_and_grad(ours, x, y)
    assert_fused_ran(ours)
    ref_value, ref_grad = value_and_grad(ref, x, y)
    torch.testing.assert_close(value, ref_value, rtol=1e-6, atol=0)
    assert_grad_parity(grad, ref_grad)


def test_fused_ral_float64_with_mask_and_mean(fused):
    x, y = make_batch(seed=5)
    mask = torch.rand(x.shape, generator=torch.Generator().manual_seed(5)) < 0.7
    ours = create_loss("ral", gamma_neg=2.5, clip=0.1, alpha=(1.0, -1.0, 0.3), beta=(0.5,), reduction="mean")
    ref = released("ral", **ours.params)
    value, grad = value_and_grad(ours, x, y, mask=mask)
    assert_fused_ran(ours)
    ref_value, ref_grad = masked_reference(ref, x, y, mask, mean=True)
    torch.testing.assert_close(value, ref_value, rtol=1e-6, atol=0)
    assert_grad_parity(grad, ref_grad)
    assert torch.all(grad[~mask] == 0)


@pytest.mark.parametrize("name,params", [("ral", p) for p in RAL_CASES] + [("asl", p) for p in ASL_CASES])
def test_fused_float32_is_as_accurate_as_the_released_code(fused, name, params):
    """The float32 training path: no further from the float64 truth than the released code (as test_parity)."""
    x64, y64 = make_batch(seed=2)
    ours = create_loss(name, **params)
    ref = released(name, **ours.params)
    truth_value, truth_grad = value_and_grad(ref, x64, y64)
    value, grad = value_and_grad(ours, x64.float(), y64.float())
    assert_fused_ran(ours)
    ref_value, ref_grad = value_and_grad(ref, x64.float(), y64.float())
    assert value.dtype == grad.dtype == torch.float32
    assert abs(value.double() - truth_value).item() <= max(
        2 * abs(ref_value.double() - truth_value).item(), 1e-6 * abs(truth_value.item())
    )
    finite = torch.isfinite(ref_grad) & torch.isfinite(truth_grad)
    scale = truth_grad[finite].abs().max().item()
    grad_error = (grad.double() - truth_grad)[finite].abs().max().item()
    ref_grad_error = (ref_grad.double() - truth_grad)[finite].abs().max().item()
    assert grad_error <= max(2 * ref_grad_error, 1e-6 * scale)


@pytest.mark.parametrize(
    "name,params",
    [
        ("ral", {"gamma_pos": 0.5, "gamma_neg": 0.5}),
        ("ral", {"gamma_neg": 0.25, "clip": 0.0, "alpha": (5.0, -5.0, 5.0), "beta": (-5.0,), "lam": 1.01}),
        ("asl", {"focal_grad": "through", "gamma_neg": 0.5, "gamma_pos": 0.5, "clip": 1e-9}),
        ("asl", {"gamma_neg": 8.0, "gamma_pos": 1e-30, "clip": 0.5}),
    ],
)
def test_fused_float32_gradients_are_finite_at_the_released_nan_points(fused, name, params):
    """Saturated logits, p below the shift, 0 < gamma < 1: finite, and no further from the float64 truth than eager.

    (Where 1 - p rounds to 0 in float32 the fused kernel, which computes 1 - p exactly, is the closer one.)
    """
    x = torch.tensor([[50.0, -50.0, 40.0, -40.0, -6.0, -3.5, 0.0, 17.0, -17.0, 1e-3]])
    y = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]])
    ours = create_loss(name, **params)
    value, grad = value_and_grad(ours, x, y)
    assert_fused_ran(ours)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, "0")
        eager_value, eager_grad = value_and_grad(ours, x, y)
        truth_value, truth_grad = value_and_grad(ours, x.double(), y.double())
    assert abs(value.double() - truth_value) <= max(abs(eager_value.double() - truth_value), 1e-6 * abs(truth_value))
    grad_error = (grad.double() - truth_grad).abs()
    assert torch.all(
        grad_error <= torch.maximum((eager_grad.double() - truth_grad).abs(), 1e-5 * truth_grad.abs().max())
    )


def test_new_batch_sizes_and_hyperparameters_do_not_recompile(fused):
    loss = create_loss("ral")
    x, y = make_batch(rows=16, classes=5, dtype=torch.float32)
    value_and_grad(loss, x, y)  # compiled (or found) here
    assert_fused_ran(loss)
    before = counters["stats"]["unique_graphs"]
    for rows, classes, params in [
        (7, 4, {}),
        (300, 26, {"gamma_neg": 2.0, "clip": 0.3}),
        (5, 6, {"lam": 3.0, "alpha": (0.5,)}),
    ]:
        x, y = make_batch(rows=rows, classes=classes, dtype=torch.float32, seed=rows)
        value, _ = value_and_grad(create_loss("ral", **params), x, y)
        assert torch.isfinite(value)
    assert counters["stats"]["unique_graphs"] == before


def _untraceable(x, y, mask, c):
    """A kernel torch.compile(fullgraph=True) refuses: compiling it fails as a missing compiler would."""
    torch._dynamo.graph_break()
    return x.sum(), x


def test_a_kernel_that_fails_to_compile_falls_back_to_eager_once(fused, monkeypatch):
    x, y = make_batch(rows=40, classes=9, dtype=torch.float32, seed=3)
    loss = create_loss("asl", focal_grad="through")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, "0")
        expected_value, expected_grad = value_and_grad(loss, x, y)
    broken = FusedKernel(_untraceable)
    monkeypatch.setattr(AsymmetricLoss, "fused_kernel", broken)
    with pytest.warns(RuntimeWarning, match="fused _untraceable kernel is unavailable on cpu.*eager kernels"):
        value, grad = value_and_grad(loss, x, y)
    assert list(broken.failed) == ["cpu"]
    assert torch.equal(value, expected_value) and torch.equal(grad, expected_grad)  # bit for bit the eager path
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once; the failed kernel is not retried
        value, grad = value_and_grad(loss, x, y)
    assert torch.equal(value, expected_value) and torch.equal(grad, expected_grad)


def test_compile_setting(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for raw, mode in [("", "auto"), ("auto", "auto"), ("1", "on"), ("0", "off"), ("OFF", "off")]:
        monkeypatch.setenv(ENV_VAR, raw)
        assert compile_mode() == mode
    monkeypatch.delenv(ENV_VAR)
    assert compile_mode() == "auto"
    assert wanted_on(cpu, FUSED_MIN_ELEMENTS) and not wanted_on(cpu, FUSED_MIN_ELEMENTS - 1)
    assert not wanted_on(cuda, 10 * FUSED_MIN_ELEMENTS)
    monkeypatch.setenv(ENV_VAR, "1")
    assert wanted_on(cuda, 1) and wanted_on(cpu, 1)
    monkeypatch.setenv(ENV_VAR, "0")
    assert not wanted_on(cpu, 10 * FUSED_MIN_ELEMENTS)
    monkeypatch.setenv(ENV_VAR, "yes please")
    with pytest.raises(ValueError, match=f"{ENV_VAR}='yes please'.*set it to 0"):
        create_loss("ral")(*make_batch())


def test_off_never_compiles(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "0")
    fresh = FusedKernel(RobustAsymmetricLoss.fused_kernel.function)
    monkeypatch.setattr(RobustAsymmetricLoss, "fused_kernel", fresh)
    x, y = make_batch()
    value, _ = value_and_grad(create_loss("ral"), x, y)
    assert fresh._compiled is None and torch.isfinite(value)


def test_auto_fuses_large_cpu_inputs_only(monkeypatch):
    """The default: batches below FUSED_MIN_ELEMENTS never go through torch.compile (nor pay for its
    guards), larger ones do."""
    monkeypatch.delenv(ENV_VAR)
    fresh = FusedKernel(RobustAsymmetricLoss.fused_kernel.function)
    monkeypatch.setattr(RobustAsymmetricLoss, "fused_kernel", fresh)
    loss = create_loss("ral")
    x, y = make_batch(rows=64, classes=26, dtype=torch.float32)
    value_and_grad(loss, x, y)
    assert fresh._compiled is None
    rows = FUSED_MIN_ELEMENTS // 26 + 1
    x, y = make_batch(rows=rows, classes=26, dtype=torch.float32, seed=11)
    value, grad = value_and_grad(loss, x, y)
    assert fresh._compiled is not None and not fresh.failed
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, "0")
        eager_value, eager_grad = value_and_grad(loss, x, y)
    torch.testing.assert_close(value, eager_value, rtol=1e-5, atol=0)
    assert_grad_parity(grad, eager_grad, rtol=1e-5)  # float32: both within rounding of the truth
