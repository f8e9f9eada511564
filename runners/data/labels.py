"""Label values as sources ship them (1, 0, -1 for "uncertain", empty for "not mentioned") turned into
binary labels plus a mask, under the ``uncertain`` policy of :class:`~runners.config.DataConfig`.

CheXpert-style manifests (CXR-LT, MIMIC-CXR) mark a finding the report hedges as -1 and leave findings
the report does not mention empty; both are "uncertain" here. The policies are the ones the CheXpert
paper compares: ``zero`` (U-Zeros), ``one`` (U-Ones) and ``ignore`` (U-Ignore: the entry is masked out
of the loss and the metrics).
"""

from __future__ import annotations

import numpy as np

UNCERTAIN_VALUE = -1.0


def invalid_label_entries(values: np.ndarray) -> np.ndarray:
    """Bool array, True where a numeric label is not 1, 0, -1 or NaN (empty)."""
    return ~(np.isnan(values) | np.isin(values, (0.0, 1.0, UNCERTAIN_VALUE)))


def apply_uncertain_policy(values: np.ndarray, policy: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Float labels in {1, 0, -1, NaN} -> (uint8 labels, bool mask or None when every label is known).

    Callers validate the values first (see :func:`invalid_label_entries`); ``policy`` is
    ``"zero"``, ``"one"`` or ``"ignore"``.
    """
    uncertain = np.isnan(values) | (values == UNCERTAIN_VALUE)
    labels = (values == 1.0).astype(np.uint8)
    if policy == "zero":
        return labels, None
    if policy == "one":
        labels[uncertain] = 1
        return labels, None
    if policy == "ignore":
        return labels, (~uncertain if uncertain.any() else None)
    raise ValueError(f"uncertain policy must be zero, one or ignore, got {policy!r}")
