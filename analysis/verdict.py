"""The plain-words paragraph a report leads with, written from the numbers and nothing else.

Wording rules: "less sensitive" only when the 95 % CI of std(b)/std(a) lies entirely below 1, "more
sensitive" only when it lies entirely above 1, otherwise "not distinguishable on this data". The
same paragraph states the seed noise floor (or how to measure it) and the failure and divergence
rates, and opens with "Unfair comparison" when the studies differ in anything but the loss.
"""

from __future__ import annotations

import math

from analysis.fairness import describe
from analysis.results import Difference, Estimate, StudySummary
from analysis.stats import MIN_TRIALS


def _num(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _ci(e: Estimate, digits: int = 3) -> str:
    return f"95 % CI {_num(e.low, digits)}–{_num(e.high, digits)}" if e.has_ci else "no interval"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def label(summary: StudySummary, other: StudySummary) -> str:
    """``RAL`` when the two studies are of different losses, else the study's name."""
    if summary.loss != other.loss and summary.loss != "unknown":
        return summary.loss.upper()
    return summary.name


def seed_command(loss: str) -> str:
    return f"python -m study.run --loss {loss if loss != 'unknown' else '<loss>'} --space-mode seeds --trials 30"


def _seed_sentence(s: StudySummary, name: str) -> str:
    if s.seed_floor_std is None or not math.isfinite(s.seed_floor_std):
        return f"{name}'s seed noise floor was not measured (measure it with `{seed_command(s.loss)}`)"
    ratio = s.hp_to_seed_ratio
    text = f"{name}'s seed noise floor is a std of {_num(s.seed_floor_std, 4)}"
    if ratio is not None and math.isfinite(ratio.value):
        text += f", so its hyperparameters spread mAP {ratio.value:.2f}x as much as re-seeding does ({_ci(ratio, 2)})"
        if ratio.has_ci and ratio.low <= 1:
            text += ", not clearly above seed noise"
    return text


def _rate(e: Estimate) -> str:
    if not math.isfinite(e.value):
        return "n/a"
    text = f"{100 * e.value:.1f} %"
    return text + (f", 95 % CI {100 * e.low:.1f}–{100 * e.high:.1f} %" if e.has_ci else "")


def _failure_sentence(s: StudySummary, name: str) -> str:
    if s.n_trials == 0:
        return f"{name} has no finished trials"
    return (
        f"{name}: {s.n_failed + s.n_diverged} of {s.n_trials} trials failed ({_rate(s.failure_rate)}), "
        f"{s.n_diverged} of them diverged ({_rate(s.divergence_rate)})"
    )


def write_verdict(
    a: StudySummary,
    b: StudySummary,
    std_ratio: Estimate,
    bf_p: float,
    p_b_beats_a: Estimate,
    mean_diff: Estimate,
    differences: list[Difference],
) -> str:
    """The verdict paragraph comparing study ``b`` against study ``a``."""
    name_a, name_b = label(a, b), label(b, a)
    parts: list[str] = []
    if differences:
        parts.append(
            f"Unfair comparison: the studies differ in {describe(differences)}; the numbers below mix "
            "the loss with those differences."
        )
    if not (a.enough and b.enough):
        parts.append(
            f"Too few complete trials ({name_a} {a.n_complete}, {name_b} {b.n_complete}; at least "
            f"{MIN_TRIALS} each are needed): the numbers below are unreliable."
        )
    counts = (
        f"{a.n_complete} complete trials each"
        if a.n_complete == b.n_complete
        else f"{b.n_complete} complete {name_b} and {a.n_complete} complete {name_a} trials"
    )
    if math.isfinite(std_ratio.value):
        parts.append(
            f"Across {counts}, {name_b}'s validation mAP varied {std_ratio.value:.2f}x as much as "
            f"{name_a}'s ({_ci(std_ratio, 2)}; Brown–Forsythe {_p(bf_p)})."
        )
    else:
        parts.append(
            f"Across {counts}, the ratio of {name_b}'s to {name_a}'s spread of validation mAP "
            "cannot be computed (a study has fewer than 2 complete trials or no spread at all)."
        )
    if std_ratio.has_ci and std_ratio.high < 1:
        parts.append(f"{name_b} is less sensitive to its hyperparameters than {name_a} on this data.")
    elif std_ratio.has_ci and std_ratio.low > 1:
        parts.append(f"{name_b} is more sensitive to its hyperparameters than {name_a} on this data.")
    else:
        parts.append("Their sensitivity to hyperparameters is not distinguishable on this data.")
    if math.isfinite(mean_diff.value):
        parts.append(
            f"Mean mAP differed by {mean_diff.value:+.4f} ({name_b} − {name_a}; {_ci(mean_diff, 4)}) and a "
            f"random {name_b} trial beat a random {name_a} trial with probability "
            f"{_num(p_b_beats_a.value, 2)} ({_ci(p_b_beats_a, 2)})."
        )
    parts.append(_seed_sentence(b, name_b) + "; " + _seed_sentence(a, name_a) + ".")
    parts.append(_failure_sentence(b, name_b) + "; " + _failure_sentence(a, name_a) + ".")
    return " ".join(parts)
