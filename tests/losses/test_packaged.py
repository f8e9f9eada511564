"""The ahead-of-time compiled kernels (small CPU inputs under the default ``LOSSWEEP_COMPILE=auto``): parity,
reuse from disk, clean fall-back.

Each package compiles in ~10-25 s, so this module builds two, once per session in a temporary
package directory: RAL float64 with a mask and ASL float64 without (parity to 1e-6 with the
transcriptions of the released code).
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from benchmarks.reference_losses import released
from runners.losses import AsymmetricLoss, RobustAsymmetricLoss, _packaged, create_loss
from runners.losses._compiled import ENV_VAR, FUSED_MIN_ELEMENTS, kernel_choice
from runners.losses._packaged import PackagedKernel

from .conftest import make_batch
from .test_parity import assert_grad_parity, masked_reference, value_and_grad


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("aot_packages")


@pytest.fixture
def aot(monkeypatch, package_dir):
    monkeypatch.setenv(ENV_VAR, "auto")
    monkeypatch.setattr(_packaged, "package_dir", lambda: package_dir)
    return package_dir


@pytest.mark.parametrize("setting", ["auto", "aot", ""])
def test_default_setting_chooses_packages_for_small_cpu_inputs_only(monkeypatch, setting):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setenv(ENV_VAR, setting)
    assert kernel_choice(cpu, 6656) == "packaged"
    assert kernel_choice(cpu, FUSED_MIN_ELEMENTS) == "fused"
    assert kernel_choice(cpu, 1) == "eager"  # the library is compiled for lengths >= 2
    assert kernel_choice(cuda, 6656) == "eager"
    monkeypatch.setenv(ENV_VAR, "0")
    assert kernel_choice(cpu, 6656) == "eager"


def test_aot_ral_float64_with_mask_and_mean_matches_transcription(aot):
    x, y = make_batch(seed=5)
    mask = torch.rand(x.shape, generator=torch.Generator().manual_seed(5)) < 0.7
    ours = create_loss("ral", gamma_neg=2.5, clip=0.1, alpha=(1.0, -1.0, 0.3), beta=(0.5,), reduction="mean")
    ref = released("ral", **ours.params)
    value, grad = value_and_grad(ours, x, y, mask=mask)
    kernel = RobustAsymmetricLoss.packaged_kernel
    assert kernel.failed is None and (torch.float64, True, (6, 4, 2)) in kernel._runners
    ref_value, ref_grad = masked_reference(ref, x, y, mask, mean=True)
    torch.testing.assert_close(value, ref_value, rtol=1e-6, atol=0)
    assert_grad_parity(grad, ref_grad)
    assert torch.all(grad[~mask] == 0)


@pytest.mark.parametrize("params", [{}, {"focal_grad": "through", "gamma_pos": 0.5, "clip": 0.0}])
def test_aot_asl_float64_matches_transcription_for_new_sizes_and_hyperparameters(aot, params):
    ours = create_loss("asl", **params)
    ref = released("asl", **ours.params)
    for rows, classes in [(24, 13), (3, 7)]:  # one library for every length and hyperparameter value
        x, y = make_batch(rows=max(rows, 4), classes=classes, seed=rows)
        value, grad = value_and_grad(ours, x, y)
        ref_value, ref_grad = value_and_grad(ref, x, y)
        torch.testing.assert_close(value, ref_value, rtol=1e-6, atol=0)
        assert_grad_parity(grad, ref_grad)
    kernel = AsymmetricLoss.packaged_kernel  # (other tests of this process may have loaded float32 variants)
    assert kernel.failed is None and [k for k in kernel._runners if k[0] == torch.float64] == [
        (torch.float64, False, (6,))
    ]


def test_a_package_on_disk_is_loaded_not_rebuilt(aot):
    x, y = make_batch()
    value_and_grad(create_loss("asl"), x, y)  # built (or already built) by this session
    packages = sorted(aot.glob("fused_asl-float64-nomask-*.pt2"))
    assert len(packages) == 1
    stamp = packages[0].stat().st_mtime_ns
    fresh = PackagedKernel(AsymmetricLoss.packaged_kernel.function)  # as a new process would
    flat = [t.reshape(-1) for t in (x, y)]
    loss = create_loss("asl")
    total, grad = fresh(*flat, None, *loss._fused_inputs(x))
    assert packages[0].stat().st_mtime_ns == stamp and not list(aot.glob("*.partial.pt2"))
    expected, expected_grad = value_and_grad(loss, x, y)
    torch.testing.assert_close(total, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad.view(x.shape), expected_grad, rtol=1e-12, atol=1e-15)


def _unexportable(x, y, mask, c):
    return torch.tensor(float(x.sum().item())), x.numpy()  # leaves torch: export refuses


def test_a_kernel_that_fails_to_build_falls_back_to_eager_once(aot, monkeypatch):
    broken = PackagedKernel(_unexportable)
    monkeypatch.setattr(AsymmetricLoss, "packaged_kernel", broken)
    x, y = make_batch(dtype=torch.float32)
    loss = create_loss("asl")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, "0")
        expected_value, expected_grad = value_and_grad(loss, x, y)
    with pytest.warns(RuntimeWarning, match="ahead-of-time compiled _unexportable kernel is unavailable"):
        value, grad = value_and_grad(loss, x, y)
    assert broken.failed and torch.equal(value, expected_value) and torch.equal(grad, expected_grad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once; the failed kernel is not retried
        value, grad = value_and_grad(loss, x, y)
    assert torch.equal(value, expected_value) and torch.equal(grad, expected_grad)


def test_every_process_names_a_package_alike(tmp_path):
    """The package name must not depend on the process (string hash randomisation, the working folder, the thread
    count): a name that did made every other worker rebuild its library (10-25 s)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = (
        "import torch, sys; torch.set_num_threads(int(sys.argv[1]))\n"
        "from runners.losses import AsymmetricLoss, RobustAsymmetricLoss\n"
        "print(RobustAsymmetricLoss.head_kernels.packaged._source_hash(),"
        " AsymmetricLoss.packaged_kernel._source_hash())"
    )
    names = set()
    for seed, threads, cwd in (("1", "1", root), ("2", "2", tmp_path), ("3", "1", tmp_path), ("4", "2", root)):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
        out = subprocess.run(
            [sys.executable, "-c", code, threads], cwd=cwd, env=env, capture_output=True, text=True, check=True
        )
        names.add(out.stdout.strip())
    assert len(names) == 1, names
