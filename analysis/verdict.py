"""The verdict: its direction, by a fixed rule, and the plain-words paragraph a report leads with.

Rule (README "Verdict"), applied by :func:`decide`:

1. **Refused** (``direction = "no verdict"``, ``refusal`` says why): an adaptive sampler (TPE: its
   spread measures how it exploits, not sensitivity), different swept-parameter sets, any other
   difference in data, protocol, backbone, training, replicate count or space (the budget and the
   study seed are flagged but not refused), fewer than ``MIN_TRIALS`` failure-aware trials, or a
   zero spread in either study (no interval, no direction).
2. Otherwise the **primary measure** decides: σ_hp ratio when both studies have R ≥ 2 replicate
   seeds (gated by the spread test, analysis.compare.gate), else the failure-aware spread ratio
   (analysis.spread, gated by Brown–Forsythe). Not significant at the primary level
   ``PRIMARY_ALPHA`` = 2.5 % two-sided (Holm-adjusted for a secondary comparison; why 2.5 % and not
   5 %: analysis.spread): "not distinguishable".
3. Significant: "less sensitive" / "more sensitive" from the estimate's direction, unless a
   secondary measure (divergence rate, near-best fraction, tunability, expected-best area, or the
   spread ratio when σ_hp is primary) significantly favours the other study at 5 %: then
   "mixed evidence", naming it. So a loss whose divergence rate is significantly higher is never
   called less sensitive.
"""

from __future__ import annotations

import math

from analysis.fairness import describe
from analysis.results import Comparison, Difference, Estimate, Measure, StudySummary
from analysis.spread import ALPHA as PRIMARY_ALPHA
from analysis.stats import MIN_TRIALS

# Secondary measures are read at 5 %: a contradiction found more easily can only withdraw a claim.
ALPHA = 0.05
TPE_REFUSAL = "not a sensitivity design: use qmc, random or grid"


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _ci(e: Estimate, digits: int = 3, level: float = ALPHA) -> str:
    if not e.has_ci:
        return "no interval"
    return f"{100 * (1 - level):g} % CI {_num(e.low, digits)}–{_num(e.high, digits)}"


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


def significant(p: float, level: float = ALPHA) -> bool:
    return math.isfinite(p) and p < level


def better(m: Measure, p: float | None = None) -> str | None:
    """ "a" or "b": the study more robust on ``m`` when its test is significant, else None.

    The primary measure is read at ``PRIMARY_ALPHA``, every other one at ``ALPHA``.
    """
    p = m.p_value if p is None else p
    if not significant(p, PRIMARY_ALPHA if m.primary else ALPHA) or not math.isfinite(m.contrast.value):
        return None
    up = m.contrast.value > (1.0 if m.kind == "ratio" else 0.0)
    if m.contrast.value == (1.0 if m.kind == "ratio" else 0.0):
        return None
    return "b" if up == m.higher_is_more_robust else "a"


def decide(comp: Comparison) -> tuple[str, list[Measure]]:
    """(direction, the secondary measures that contradict the primary one) from ``comp``'s measures and p."""
    if comp.refusal:
        return "no verdict", []
    primary = next((m for m in comp.measures if m.primary), None)
    if primary is None:
        return "no verdict", []
    winner = better(primary, comp.p_value)
    if winner is None:
        return "not distinguishable", []
    against = [m for m in comp.measures if not m.primary and m.better is not None and m.better != winner]
    if against:
        return "mixed evidence", against
    return ("less sensitive" if winner == "b" else "more sensitive"), []


def _rate(e: Estimate) -> str:
    if not math.isfinite(e.value):
        return "n/a"
    text = f"{100 * e.value:.1f} %"
    return text + (f", 95 % CI {100 * e.low:.1f}–{100 * e.high:.1f} %" if e.has_ci else "")


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


def _failure_sentence(s: StudySummary, name: str) -> str:
    if s.n_trials == 0:
        return f"{name} has no finished trials"
    return (
        f"{name}: {s.n_failed + s.n_diverged} of {s.n_trials} trials failed ({_rate(s.failure_rate)}), "
        f"{s.n_diverged} of them diverged ({_rate(s.divergence_rate)}; counted at the floor mAP "
        f"{_num(s.floor_value, 3)})"
    )


def _measure_words(m: Measure, names: dict[str, str]) -> str:
    sign = "ratio" if m.kind == "ratio" else "difference"
    if m.better:
        who = f"favours {names[m.better]}"
    elif significant(m.p_value, PRIMARY_ALPHA if m.primary else ALPHA):
        who = "significant, but a refused comparison reads no direction from it"
    else:
        who = "no significant difference"
    contrast = f"{names['b']} vs {names['a']} {sign} {_num(m.contrast.value)}"
    return f"{m.name} ({contrast}, {_ci(m.contrast)}, {_p(m.p_value)}: {who})"


def write_verdict(
    comp: Comparison, a: StudySummary, b: StudySummary, against: list[Measure], differences: list[Difference]
) -> str:
    """The verdict paragraph comparing study ``b`` against study ``a``, from the decided comparison."""
    name_a, name_b = label(a, b), label(b, a)
    names = {"a": name_a, "b": name_b}
    parts: list[str] = []
    if not comp.primary:
        parts.append("Secondary comparison (p-values Holm-adjusted across the secondary comparisons).")
    if differences:
        parts.append(f"Unfair comparison: the studies differ in {describe(differences)}.")
    primary = next((m for m in comp.measures if m.primary), None)
    counts = (
        f"{a.n_complete + a.n_diverged} trials each"
        if a.n_complete + a.n_diverged == b.n_complete + b.n_diverged
        else f"{b.n_complete + b.n_diverged} {name_b} and {a.n_complete + a.n_diverged} {name_a} trials"
    )
    if primary is not None and math.isfinite(primary.contrast.value):
        parts.append(
            f"Across {counts} (diverged trials at the floor), {name_b}'s {primary.name} was "
            f"{primary.contrast.value:.2f}x {name_a}'s ({_ci(primary.contrast, 2, PRIMARY_ALPHA)}; {primary.method}, "
            f"{_p(comp.p_value)})."
        )
    else:
        parts.append(
            f"Across {counts}, the ratio of {name_b}'s to {name_a}'s spread of validation mAP cannot be computed."
        )
    if comp.direction == "no verdict":
        parts.append(f"No verdict: {comp.refusal}.")
    elif comp.direction == "less sensitive":
        parts.append(f"{name_b} is less sensitive to its hyperparameters than {name_a} on this data.")
    elif comp.direction == "more sensitive":
        parts.append(f"{name_b} is more sensitive to its hyperparameters than {name_a} on this data.")
    elif comp.direction == "mixed evidence":
        side = "less" if better(primary, comp.p_value) == "b" else "more"  # type: ignore[arg-type]
        parts.append(
            f"Mixed evidence: the primary measure says {name_b} is {side} sensitive than {name_a}, but "
            + "; ".join(_measure_words(m, names) for m in against)
            + "."
        )
    else:
        parts.append("Their sensitivity to hyperparameters is not distinguishable on this data.")
    others = [m for m in comp.measures if not m.primary and m not in against and math.isfinite(m.contrast.value)]
    if others:
        parts.append("Other measures: " + "; ".join(_measure_words(m, names) for m in others) + ".")
    if math.isfinite(comp.mean_diff.value):
        parts.append(
            f"Mean mAP differed by {comp.mean_diff.value:+.4f} ({name_b} − {name_a}; {_ci(comp.mean_diff, 4)}) and a "
            f"random {name_b} trial beat a random {name_a} trial with probability "
            f"{_num(comp.p_b_beats_a.value, 2)} ({_ci(comp.p_b_beats_a, 2)})."
        )
    parts.append(_seed_sentence(b, name_b) + "; " + _seed_sentence(a, name_a) + ".")
    parts.append(_failure_sentence(b, name_b) + "; " + _failure_sentence(a, name_a) + ".")
    return " ".join(parts)


def too_few(a: StudySummary, b: StudySummary, na: int, nb: int) -> str:
    name_a, name_b = label(a, b), label(b, a)
    return f"too few trials ({name_a} {na}, {name_b} {nb} complete or diverged; at least {MIN_TRIALS} each are needed)"
