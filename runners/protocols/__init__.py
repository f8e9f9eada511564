"""Training protocols: how one loss configuration is turned into val/test predictions.

Each protocol module has ``run(config, dataset, loss_fn, seed, device) -> Predictions`` and raises
:class:`Diverged` when the loss or a prediction stops being finite. :func:`get_protocol` maps the
``TrialConfig.protocol`` name to that function; modules are imported on demand (finetune pulls in
more of timm than the probe needs).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..config import PROTOCOLS
from ._training import Diverged, Predictions

__all__ = ["Diverged", "Predictions", "get_protocol"]

_MODULES = {"linear-probe": "linear_probe", "finetune": "finetune"}


def get_protocol(name: str) -> Callable[..., Predictions]:
    """The ``run`` function of protocol ``name`` (``linear-probe`` or ``finetune``)."""
    if name not in _MODULES:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    return importlib.import_module(f"{__name__}.{_MODULES[name]}").run
