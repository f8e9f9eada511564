"""runners.metrics.compute against values worked out by hand on tiny arrays, plus its error messages."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from runners.metrics import class_groups, compute


def hand_ap(labels: list[int], scores: list[float]) -> float:
    """Average precision written out: the mean, over positives, of the precision at each positive's rank
    (scores are distinct, so ranks are unambiguous)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    hits, total = 0, 0.0
    for rank, i in enumerate(order, start=1):
        if labels[i]:
            hits += 1
            total += hits / rank
    return total / hits


def hand_auc(labels: list[int], scores: list[float]) -> float:
    """Share of (positive, negative) pairs ranked correctly; ties count a half."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


# Four samples, three classes; class 2 has no positive.
Y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 1, 0]])
S = np.array([[0.9, 0.5, 0.1], [0.8, 0.6, 0.2], [0.3, 0.4, 0.3], [0.1, 0.7, 0.4]])


def test_hand_written_references_are_what_they_claim():
    # Precision at the positives' ranks: class 0 at ranks 1 and 3 -> (1/1 + 2/3) / 2.
    assert hand_ap([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1]) == pytest.approx(5 / 6)
    # Class 1: positives at ranks 1, 2, 4 -> (1 + 1 + 3/4) / 3.
    assert hand_ap([0, 1, 1, 1], [0.5, 0.6, 0.4, 0.7]) == pytest.approx(11 / 12)


def test_four_sample_case_matches_hand_computed_values():
    result = compute(Y, S)
    assert result["per_class_ap"][0] == pytest.approx(5 / 6)
    assert result["per_class_ap"][1] == pytest.approx(11 / 12)
    assert result["per_class_ap"][2] is None
    assert result["mAP"] == pytest.approx((5 / 6 + 11 / 12) / 2)  # the empty class is not averaged in as 0
    # AUC: class 0 orders 3 of its 4 pairs correctly, class 1 2 of 3.
    assert result["mAUC"] == pytest.approx((3 / 4 + 2 / 3) / 2)
    # F1 at 0.5 (a score of exactly 0.5 is positive): class 0 TP 1 FP 1 FN 1 -> 1/2; class 1 TP 2 FP 1 FN 1 -> 2/3.
    assert result["mF1"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert result["excluded_classes"] == [2]
    assert (result["n_classes"], result["n_classes_scored"]) == (3, 2)
    assert math.isnan(result["mAP_head"]) and result["head_classes"] == []


def test_class_with_only_positives_has_ap_but_no_auc():
    y = np.array([[1, 1], [0, 1], [1, 1]])
    s = np.array([[0.9, 0.2], [0.1, 0.3], [0.8, 0.9]])
    result = compute(y, s)
    assert result["per_class_ap"] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert result["mAUC"] == pytest.approx(1.0)  # class 0 only: class 1 has no negative
    assert result["excluded_classes"] == []


def test_head_medium_tail_thirds_by_training_positives():
    perfect = ([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1])  # AP 1
    reversed_ = ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1])  # positives at ranks 3 and 4: (1/3 + 2/4) / 2
    worst = hand_ap(*reversed_)
    assert worst == pytest.approx(5 / 12)
    # Classes in an order unrelated to their frequency: counts rank them 1, 3 | 2, 5 | 4, 0.
    train_positives = [1, 100, 30, 50, 5, 10]
    columns = {1: perfect, 3: perfect, 2: reversed_, 5: reversed_, 4: perfect, 0: reversed_}
    y = np.array([columns[c][0] for c in range(6)]).T
    s = np.array([columns[c][1] for c in range(6)]).T
    result = compute(y, s, train_positives=train_positives)
    assert result["head_classes"] == [1, 3] and result["medium_classes"] == [2, 5] and result["tail_classes"] == [0, 4]
    assert result["mAP_head"] == pytest.approx(1.0)
    assert result["mAP_medium"] == pytest.approx(worst)
    assert result["mAP_tail"] == pytest.approx((1.0 + worst) / 2)


def test_class_groups_sizes_for_26_classes():
    groups = class_groups(np.arange(26)[::-1])
    assert [len(groups[g]) for g in ("head", "medium", "tail")] == [9, 9, 8]
    assert groups["head"].tolist() == list(range(9))


def test_masked_entries_are_left_out_of_every_metric():
    # A fifth sample that would change every metric if counted: a positive scored lowest for class 0,
    # a negative scored highest (and predicted positive) for class 1.
    y = np.vstack([Y, [1, 0, 0]])
    s = np.vstack([S, [0.0, 0.99, 0.5]])
    mask = np.ones_like(y, dtype=bool)
    mask[4, :2] = False
    masked, plain = compute(y, s, mask=mask), compute(Y, S)
    for key in ("mAP", "mAUC", "mF1"):
        assert masked[key] == pytest.approx(plain[key]), key
    assert compute(y, s)["mAP"] != pytest.approx(plain["mAP"])  # unmasked, the fifth row does count


def test_auc_equals_pairwise_counting_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (40, 5))
    s = rng.integers(0, 6, (40, 5)) / 5.0  # few distinct values: many ties
    expected = np.mean([hand_auc(y[:, c].tolist(), s[:, c].tolist()) for c in range(5)])
    assert compute(y, s)["mAUC"] == pytest.approx(expected)
    assert compute(y, s)["mAUC"] == pytest.approx(np.mean([roc_auc_score(y[:, c], s[:, c]) for c in range(5)]))


def test_single_class_input():
    result = compute([[1], [0], [1], [0]], [[0.9], [0.8], [0.3], [0.1]])
    assert result["mAP"] == pytest.approx(5 / 6) and result["mAUC"] == pytest.approx(3 / 4)


# ----- errors name the problem -----


@pytest.mark.parametrize(
    "y_true, y_score, kwargs, message",
    [
        (Y, S[:3], {}, r"y_true has shape \(4, 3\) but y_score has shape \(3, 3\)"),
        (Y[:, 0], S[:, 0], {}, r"must be 2-D"),
        (np.where(Y == 1, 2, 0), S, {}, r"y_true must be binary \(0/1\); found \[2\]"),
        (Y, np.where(S > 0.5, np.nan, S), {}, r"y_score contains 4 NaN/Inf values"),
        (Y, S * 10 - 5, {}, r"probabilities in \[0, 1\].*apply a sigmoid"),
        (Y, S, {"train_positives": [1, 2]}, r"train_positives must have one count per class, shape \(3,\)"),
        (Y, S, {"mask": np.ones((4, 2), bool)}, r"mask has shape \(4, 2\) but y_true has shape \(4, 3\)"),
        (np.zeros((0, 3)), np.zeros((0, 3)), {}, r"y_true is empty"),
    ],
)
def test_bad_input_raises_a_named_value_error(y_true, y_score, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute(y_true, y_score, **kwargs)
