"""Every search space hands runners.losses.create_loss valid keyword arguments, and the losses run on them."""

from __future__ import annotations

import numpy as np
import pytest

from search_spaces import get_space, loss_names

LOSSES = loss_names()

torch = pytest.importorskip("torch")
losses = pytest.importorskip("runners.losses")
if not hasattr(losses, "create_loss"):  # the package is being written alongside
    pytest.skip("runners.losses.create_loss is not available yet", allow_module_level=True)

torch.set_num_threads(1)


def _points(space, n_random: int = 8):
    """Defaults, both corners of the cube, and scrambled Sobol points."""
    from scipy.stats import qmc

    yield "defaults", space.defaults()
    if space.dim:
        yield "low corner", space.from_unit(np.zeros(space.dim))
        yield "high corner", space.from_unit(np.ones(space.dim))
        for i, u in enumerate(qmc.Sobol(space.dim, scramble=True, seed=1).random(n_random)):
            yield f"sobol {i}", space.from_unit(u)


@pytest.mark.parametrize("loss", LOSSES)
def test_space_defaults_are_the_loss_class_defaults(loss):
    space = get_space(loss, "seeds")
    cls = losses.registry.loss_class(loss) if hasattr(losses, "registry") else type(losses.create_loss(loss))
    expected = {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in cls.defaults.items()}
    got = space.loss_params({})
    for name, value in got.items():
        assert name in expected, f"{name} is not a parameter of {cls.__name__}"
        assert value == pytest.approx(expected[name]), name


@pytest.mark.parametrize("loss,n_alpha,n_beta", [(loss, 2, 1) for loss in LOSSES] + [("ral", 3, 2), ("ral", 1, 1)])
def test_every_space_point_builds_and_runs_the_loss(loss, n_alpha, n_beta):
    options = {"n_alpha": n_alpha, "n_beta": n_beta} if loss == "ral" else {}
    space = get_space(loss, "full", options=options)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 6, generator=gen) * 4
    targets = (torch.rand(16, 6, generator=gen) < 0.3).float()
    for label, values in _points(space):
        fn = losses.create_loss(loss, **space.loss_params(values))
        x = logits.clone().requires_grad_(True)
        out = fn(x, targets)
        assert out.ndim == 0 and torch.isfinite(out), (label, values)
        out.backward()
        assert torch.isfinite(x.grad).all(), (label, values)
