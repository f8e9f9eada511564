"""Multi-label metrics of one split: the numbers a trial records.

:func:`compute` is called twice per trial (validation and test) and its keys are stored as Optuna user
attributes (see :mod:`runners.result`), so the definitions here are the study's definitions:

- ``mAP``: macro average precision (as ``sklearn.metrics.average_precision_score``) over the classes with
  at least one positive. Classes without a positive have no defined AP; they are *excluded and counted*
  (``excluded_classes``), never averaged in as 0, which would make mAP depend on the split's luck.
- ``mAUC``: macro ROC-AUC over the classes with both a positive and a negative (same values as
  ``sklearn.metrics.roc_auc_score``, from the same sort as AP; see :func:`_ranked`).
- ``mF1``: macro F1 at threshold 0.5 on ``y_score`` read as probabilities, over the same classes as mAP.
- ``mAP_head`` / ``mAP_medium`` / ``mAP_tail``: mAP over the thirds of the classes ranked by their
  number of training positives (the long-tail view CXR-LT reports). NaN without ``train_positives``.
- ``chance_mAP``: the mAP of uninformative (constant) scores, i.e. the mean prevalence over the scored
  classes (the AP of a constant score is exactly the prevalence). ``analysis`` counts a diverged
  trial at this floor value.

A ``mask`` (False = label unknown) removes those entries class by class, as the "ignore" policy for
uncertain labels requires. AP, F1 and AUC equal :mod:`sklearn.metrics`' values (tests/metrics checks
it) but are computed for all classes in one vectorised pass; this module validates, selects classes
and averages.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["compute", "class_groups"]

GROUPS = ("head", "medium", "tail")


def class_groups(train_positives: Any) -> dict[str, np.ndarray]:
    """Split class indices into head / medium / tail thirds by descending training positive count.

    Ties keep class order (stable sort) so the grouping is deterministic. With C classes the groups
    have sizes ``np.array_split`` gives (26 classes -> 9, 9, 8).
    """
    counts = np.asarray(train_positives)
    order = np.argsort(-counts, kind="stable")
    return {name: np.sort(part) for name, part in zip(GROUPS, np.array_split(order, len(GROUPS)), strict=True)}


def _validate(y_true: Any, y_score: Any, train_positives: Any, mask: Any):
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score)
    if y_true.ndim != 2 or y_score.ndim != 2:
        raise ValueError(
            f"y_true and y_score must be 2-D (samples, classes); got ndim {y_true.ndim} and {y_score.ndim}"
        )
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_score has shape {y_score.shape}; they must match")
    if y_true.shape[0] == 0 or y_true.shape[1] == 0:
        raise ValueError(f"y_true is empty (shape {y_true.shape}); pass at least one sample and one class")
    if y_true.dtype == bool:
        y_true = y_true.astype(np.uint8)
    if not np.issubdtype(y_true.dtype, np.number) or not np.isin(y_true, (0, 1)).all():
        bad = (
            np.unique(y_true[~np.isin(y_true, (0, 1))])[:5] if np.issubdtype(y_true.dtype, np.number) else y_true.dtype
        )
        raise ValueError(f"y_true must be binary (0/1); found {bad}")
    if not np.issubdtype(y_score.dtype, np.number) or y_score.dtype == bool:
        raise ValueError(f"y_score must be numeric probabilities; got dtype {y_score.dtype}")
    if not np.isfinite(y_score).all():
        n_bad = int((~np.isfinite(y_score)).sum())
        raise ValueError(f"y_score contains {n_bad} NaN/Inf values; the model diverged or the scores are corrupt")
    if y_score.min() < 0.0 or y_score.max() > 1.0:
        raise ValueError(
            f"y_score must be probabilities in [0, 1] (found range [{y_score.min():.3g}, {y_score.max():.3g}]); "
            "apply a sigmoid to logits first"
        )
    n_classes = y_true.shape[1]
    if train_positives is not None:
        train_positives = np.asarray(train_positives)
        if train_positives.shape != (n_classes,):
            raise ValueError(
                f"train_positives must have one count per class, shape ({n_classes},); got {train_positives.shape}"
            )
        if not np.issubdtype(train_positives.dtype, np.number) or not np.isfinite(train_positives).all():
            raise ValueError("train_positives must hold finite counts")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != y_true.shape:
            raise ValueError(f"mask has shape {mask.shape} but y_true has shape {y_true.shape}; they must match")
        if mask.dtype != bool:
            if not np.issubdtype(mask.dtype, np.number) or not np.isin(mask, (0, 1)).all():
                raise ValueError("mask must be boolean (True = label known)")
            mask = mask.astype(bool)
        if mask.all():
            mask = None
    return y_true, y_score, train_positives, mask


def _ranked(y_true: np.ndarray, y_score: np.ndarray, known: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise (average precision, ROC-AUC) from one sort: ``sklearn.metrics.average_precision_score``
    and ``roc_auc_score``'s values.

    AP = sum over distinct score thresholds t (descending) of (R(t) - R(t_prev)) P(t): tied scores
    form one threshold, as in sklearn. AUC counts the (positive, negative) pairs ranked right, a tie a
    half (Mann-Whitney, what sklearn's trapezoids give): U = sum over thresholds of the negatives at t
    times (positives above t + half the positives at t), in integers and halves, exact in float64.
    Hand-written: one vectorised pass over all columns instead of sklearn's validation per call
    (~0.1 s per trial on 2 shared cores, as much as training a head in a pack); tests/metrics checks
    the equality. The order within a tie does not matter (a tie counts at its last row), so the sort
    need not be stable: quicksort is ~4x faster here. ``known`` (None: all) marks the entries that
    count as negatives; unknown ones carry label 0 and a score below every known one. Columns must
    hold a positive; AUC is NaN where a column has no negative.
    """
    order = np.argsort(-y_score, axis=0)
    scores = np.take_along_axis(y_score, order, axis=0)
    labels = np.take_along_axis(y_true, order, axis=0).astype(np.float64)
    negatives = 1.0 - labels if known is None else np.take_along_axis(known, order, axis=0) - labels
    tp, fp = np.cumsum(labels, axis=0), np.cumsum(negatives, axis=0)
    seen = np.arange(1, y_true.shape[0] + 1, dtype=np.float64)[:, None]
    last = np.ones_like(scores, dtype=bool)  # the last row of each group of tied scores
    last[:-1] = scores[:-1] != scores[1:]

    def before(cumulative: np.ndarray) -> np.ndarray:  # the count at the previous threshold
        out = np.zeros_like(cumulative)
        out[1:] = np.maximum.accumulate(np.where(last, cumulative, 0.0), axis=0)[:-1]
        return out

    tp_before = before(tp)
    gain = np.where(last, (tp - tp_before) / tp[-1], 0.0)  # recall added at this threshold
    ap = (gain * (tp / seen)).sum(axis=0)
    pairs = np.where(last, (fp - before(fp)) * (tp + tp_before) / 2, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = pairs / (tp[-1] * fp[-1])
    return ap, np.where(fp[-1] > 0, auc, np.nan)


def _f1(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Column-wise F1 = 2 TP / (2 TP + FP + FN), 0 where undefined: ``sklearn.metrics.f1_score`` with
    ``zero_division=0``, vectorised (see :func:`_average_precision`)."""
    tp = (y_true * y_pred).sum(axis=0, dtype=np.float64)
    fp = ((1 - y_true) * y_pred).sum(axis=0, dtype=np.float64)
    fn = (y_true * (1 - y_pred)).sum(axis=0, dtype=np.float64)
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1.0), 0.0)


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def compute(y_true: Any, y_score: Any, train_positives: Any = None, mask: Any = None) -> dict[str, Any]:
    """Metrics of one split.

    Args:
        y_true: (N, C) binary labels.
        y_score: (N, C) predicted probabilities in [0, 1] (sigmoid of the logits).
        train_positives: (C,) training positive counts, for the head/medium/tail split; optional.
        mask: (N, C) bool, False where a label is unknown; those entries are left out class by class.

    Returns:
        ``mAP``, ``mAUC``, ``mF1``, ``mAP_head``, ``mAP_medium``, ``mAP_tail`` (floats, NaN when
        undefined), ``per_class_ap`` (list, None for excluded classes), ``n_classes``,
        ``n_classes_scored`` (classes with a positive), ``excluded_classes`` (indices without one),
        and ``head_classes`` / ``medium_classes`` / ``tail_classes`` (index lists; empty without
        ``train_positives``).

    Raises:
        ValueError: on shape mismatch, wrong ndim, non-binary labels, NaN/Inf or out-of-range scores,
            or a ``train_positives`` of the wrong length.
    """
    y_true, y_score, train_positives, mask = _validate(y_true, y_score, train_positives, mask)
    n_classes = y_true.shape[1]
    ap = np.full(n_classes, np.nan)
    auc = np.full(n_classes, np.nan)
    f1 = np.full(n_classes, np.nan)
    y_pred = (y_score >= 0.5).astype(np.uint8)
    if mask is not None:
        # Unknown entries are neutralised rather than removed, so each metric stays one vectorised call:
        # F1 ignores true negatives, so (label 0, prediction 0) drops them exactly; AP only sums
        # precision where recall rises, so a negative scored below every positive (-1) never counts;
        # AUC counts known negatives only. tests/metrics checks each against sklearn on the filtered column.
        y_true = y_true * mask
        y_pred = y_pred * mask
    positives = y_true.sum(axis=0)
    n_known = mask.sum(axis=0) if mask is not None else np.full(n_classes, y_true.shape[0])
    scored = np.flatnonzero(positives > 0)
    if scored.size:  # AUC stays NaN where every known label is positive (_ranked: no negative)
        scores = y_score if mask is None else np.where(mask, y_score, -1.0)
        known = None if mask is None else mask[:, scored].astype(np.float64)
        ap[scored], auc[scored] = _ranked(y_true[:, scored], scores[:, scored], known)
        f1[scored] = _f1(y_true[:, scored], y_pred[:, scored])

    excluded = [int(c) for c in np.flatnonzero(np.isnan(ap))]
    result: dict[str, Any] = {
        "mAP": _nanmean(ap),
        "mAUC": _nanmean(auc),
        "mF1": _nanmean(f1),
        "chance_mAP": float(np.mean(positives[scored] / n_known[scored])) if scored.size else math.nan,
    }
    groups = class_groups(train_positives) if train_positives is not None else None
    for name in GROUPS:
        result[f"mAP_{name}"] = _nanmean(ap[groups[name]]) if groups is not None else math.nan
    result["per_class_ap"] = [None if math.isnan(v) else float(v) for v in ap]
    result["n_classes"] = int(n_classes)
    result["n_classes_scored"] = int(n_classes - len(excluded))
    result["excluded_classes"] = excluded
    for name in GROUPS:
        result[f"{name}_classes"] = [int(c) for c in groups[name]] if groups is not None else []
    return result
