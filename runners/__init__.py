"""lossweep runners: everything that touches torch (losses, metrics, data sets, backbones, protocols).

``runners.prepare(config)`` builds the data set and the embedding cache once; ``runners.run_trial(config,
loss_name, loss_params, seed, replicates=1)`` trains and scores one loss configuration. Both are
imported lazily, so ``import runners`` does not load torch until a trial is actually prepared or run:
``study``'s parent process imports the torch-free modules ``runners.config``, ``runners.catalogue``
and ``runners.checksum`` (its workers also ``runners.result``). ``analysis`` and ``reports`` never
import ``runners``; they read what the store holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .trial import Prepared, prepare, replicate_seeds, run_trial

__all__ = ["Prepared", "prepare", "replicate_seeds", "run_trial"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import trial

        return getattr(trial, name)
    raise AttributeError(f"module 'runners' has no attribute {name!r}")
