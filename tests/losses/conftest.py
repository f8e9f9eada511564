"""Shared fixtures for the loss tests: one thread, a hypothesis profile, seeded logits with extremes.

Every test here runs the eager kernels (``LOSSWEEP_COMPILE=0``) unless it asks for the fused ones
(``test_compiled.py``): compiling a kernel variant per dtype, mask and polynomial length would cost
more than the whole suite.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(1)

settings.register_profile(
    "losses",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.load_profile("losses")


def make_batch(rows: int = 24, classes: int = 13, dtype=torch.float64, scale: float = 6.0, seed: int = 0):
    """Logits spread over [-30, 30] with both extremes present, and targets with an all-zero and an all-one row."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, classes, generator=gen, dtype=torch.float64) * scale
    x[0, :4] = torch.tensor([30.0, -30.0, 25.0, -25.0], dtype=torch.float64)
    x[1, :4] = torch.tensor([-30.0, 30.0, -19.0, 19.0], dtype=torch.float64)
    x = x.clamp(-30, 30)
    y = (torch.rand(rows, classes, generator=gen) < 0.3).to(torch.float64)
    y[2] = 0.0
    y[3] = 1.0
    y[0, :2] = torch.tensor([1.0, 0.0])
    y[1, :2] = torch.tensor([1.0, 0.0])
    return x.to(dtype), y.to(dtype)


@pytest.fixture(autouse=True)
def eager_kernels(monkeypatch):
    monkeypatch.setenv("LOSSWEEP_COMPILE", "0")


@pytest.fixture
def batch():
    return make_batch()
