"""What one trial returns, and how it is flattened into an Optuna trial's user attributes.

The attribute names written by :meth:`TrialResult.user_attrs` are read back by ``analysis`` (which
does not import torch or ``runners``), so they are part of the store's format: rename nothing here
without updating ``analysis.load``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["complete", "diverged", "failed"]

# Scalar metrics every trial records for the validation and test split (keys of runners.metrics.compute).
SCALAR_METRICS = ("mAP", "mAUC", "mF1", "mAP_head", "mAP_medium", "mAP_tail", "chance_mAP")


def _json_float(x: Any) -> float | None:
    """JSON has no NaN/Inf: store them as None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class TrialResult:
    """The outcome of one loss configuration under one protocol.

    ``value`` is the objective (validation mAP, the mean over replicates) and is None unless
    ``status == "complete"``. ``val`` and ``test`` hold the dictionaries returned by
    ``runners.metrics.compute`` (means over replicates for scalars; per-class AP of the first
    replicate's seed set averaged element-wise).
    """

    status: Status
    value: float | None = None
    val: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    seeds: list[int] = field(default_factory=list)
    replicate_values: list[float] = field(default_factory=list)
    fail_reason: str | None = None
    diverged_step: int | None = None
    diverged_value: float | None = None

    def user_attrs(self) -> dict[str, Any]:
        """Flat, JSON-serialisable attributes, one key per stored quantity.

        Keys: ``status``, ``val_<metric>`` and ``test_<metric>`` for every name in
        :data:`SCALAR_METRICS`, ``val_per_class_ap`` and ``test_per_class_ap`` (lists with None for
        classes without positives), ``seconds``, ``seeds``, ``replicate_values``, ``fail_reason``,
        ``diverged_step``, ``diverged_value``.
        """
        attrs: dict[str, Any] = {"status": self.status}
        for split, metrics in (("val", self.val), ("test", self.test)):
            for name in SCALAR_METRICS:
                attrs[f"{split}_{name}"] = _json_float(metrics.get(name))
            attrs[f"{split}_per_class_ap"] = [_json_float(v) for v in metrics.get("per_class_ap", [])]
        attrs["seconds"] = float(self.seconds)
        attrs["seeds"] = [int(s) for s in self.seeds]
        attrs["replicate_values"] = [_json_float(v) for v in self.replicate_values]
        attrs["fail_reason"] = self.fail_reason
        attrs["diverged_step"] = self.diverged_step
        attrs["diverged_value"] = _json_float(self.diverged_value) if self.diverged_value is not None else None
        if self.diverged_value is not None and not math.isfinite(self.diverged_value):
            attrs["diverged_value"] = repr(float(self.diverged_value))  # keep 'nan' / 'inf' visible
        return attrs
