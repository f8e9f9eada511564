"""Device strings: cpu, cuda, cuda:N, mps, auto; a typo or a missing GPU is a ValueError that says what to use."""

from __future__ import annotations

import pytest
import torch

from runners.device import resolve_device


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cuda:-1", "tpu", ""])
def test_unknown_device_is_a_value_error(spec):
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device(spec)


def test_non_string_device_is_a_value_error():
    with pytest.raises(ValueError, match="must be a string"):
        resolve_device(0)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_gpu_says_so(spec):
    with pytest.raises(ValueError, match="no CUDA device is visible"):
        resolve_device(spec)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_index_beyond_the_visible_devices_is_refused():
    count = torch.cuda.device_count()
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match=f"only {count} CUDA"):
        resolve_device(f"cuda:{count}")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="checks the message on a machine without MPS")
def test_mps_without_apple_gpu_says_so():
    with pytest.raises(ValueError, match="MPS is not available"):
        resolve_device("mps")
