"""One verdict card per comparison: its mode, its role (primary or secondary), the direction in large
words, the verdict paragraph, any refusal, and a small table of robustness measures.

The direction is the analysis's (``Comparison.direction``). Older analyses carry no direction, no
measures and no refusal; for those the direction is read off the std ratio's interval by the rule the
verdict paragraph of that analysis used ("less/more sensitive" only when the 95 % CI of
std(b)/std(a) lies entirely below/above 1), and the measure table shows the legacy contrasts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from analysis.results import Comparison, Estimate, Measure, StudySummary
from reports.roles import Roles, comparison_mode, comparison_swept, finite, mode_header, primary_index
from reports.tables import DASH, estimate, number, p_value, plain

# Measures whose values are shares of trials, shown in percent.
PERCENT_KEYS = {"divergence_rate", "near_best", "failure_rate"}


@dataclass
class MeasureRow:
    name: str
    value_a: str
    value_b: str
    contrast: str  # "0.70 [0.60, 0.81]"
    contrast_kind: str  # "b / a" or "b − a"
    p: str  # "p = 0.012" or ""
    better: str  # the more robust study's label, or "—"
    method: str
    primary: bool = False
    sense: str = ""  # "higher is more robust" / "lower is more robust"


@dataclass
class Card:
    a: str  # labels
    b: str
    pair: str  # "RAL vs ASL"
    names: str  # "asl-matched vs ral-matched" (full study names)
    role: str  # "primary" | "secondary (Holm-adjusted)" | "secondary"
    primary: bool
    header: str  # "matched space: γ⁺, γ⁻, τ"
    direction: str  # the analysis's direction key
    words: str  # "RAL is less sensitive than ASL"
    tone: str  # "clear" | "unclear" | "mixed" | "refused"
    evidence: str  # "spread ratio RAL/ASL 0.70 [0.60, 0.81], p = 0.003"
    verdict: str
    refusal: str
    fair: bool
    differences: list[str] = field(default_factory=list)
    measures: list[MeasureRow] = field(default_factory=list)
    study_a: str = ""  # full study names
    study_b: str = ""


def has_new_fields(c: Comparison) -> bool:
    """Whether the analysis decided the direction itself (direction, measures, refusal or p-value set)."""
    return bool(c.measures) or bool(c.refusal) or finite(c.p_value) or c.direction != "not distinguishable"


def direction(c: Comparison) -> str:
    if has_new_fields(c):
        return c.direction
    ratio = c.std_ratio
    if ratio.has_ci and ratio.high < 1:
        return "less sensitive"
    if ratio.has_ci and ratio.low > 1:
        return "more sensitive"
    return "not distinguishable"


def direction_words(key: str, a: str, b: str) -> tuple[str, str]:
    """(the finding in large words, its tone)."""
    if key == "less sensitive":
        return f"{b} is less sensitive to its hyperparameters than {a}", "clear"
    if key == "more sensitive":
        return f"{b} is more sensitive to its hyperparameters than {a}", "clear"
    if key == "mixed evidence":
        return f"Mixed evidence on the sensitivity of {b} and {a}", "mixed"
    if key == "no verdict":
        return f"No verdict on the sensitivity of {b} and {a}", "refused"
    return "Sensitivity not distinguishable on this data", "unclear"


def _digits(m: Measure) -> int:
    """3 decimals, 4 where a value or bound is below 0.01 (mAP gaps of a few thousandths), never 1e-4 notation."""
    values = (m.value_a, m.value_b, m.contrast.value, m.contrast.low, m.contrast.high)
    return 4 if any(finite(v) and 0 < abs(v) < 0.01 for v in values) else 3


def _value(m: Measure, x: float) -> str:
    if m.key in PERCENT_KEYS and finite(x):
        return f"{100 * x:.1f} %"
    return number(x, _digits(m))


def _contrast(m: Measure) -> str:
    if m.key in PERCENT_KEYS and m.kind == "difference":
        return estimate(m.contrast, percent=True).replace(" %", " pp", 1).replace(" %]", "]")
    digits = 2 if m.kind == "ratio" else _digits(m)
    if m.kind == "difference" and finite(m.contrast.value):
        text = estimate(m.contrast, digits)
        return ("+" + text) if m.contrast.value > 0 else text
    return estimate(m.contrast, digits)


def card_labels(c: Comparison, summaries: dict[str, StudySummary], roles: Roles) -> tuple[str, str]:
    """ "ASL", "RAL" inside a card whose header already names the shared mode; the report labels otherwise."""
    sa, sb = summaries.get(c.a), summaries.get(c.b)
    if sa is not None and sb is not None and sa.space_mode == sb.space_mode:
        known = sa.loss not in ("", "unknown") and sb.loss not in ("", "unknown")
        if known and sa.loss != sb.loss:
            return sa.loss.upper(), sb.loss.upper()
    return roles.label(c.a), roles.label(c.b)


def measure_rows(
    c: Comparison, label_a: str, label_b: str, summaries: dict[str, StudySummary] | None = None
) -> list[MeasureRow]:
    """The card's measure table: the analysis's measures, or (older analyses) the legacy contrasts."""
    rows = []
    for m in c.measures:
        better = {"a": label_a, "b": label_b}.get(m.better or "", DASH)
        rows.append(
            MeasureRow(
                name=m.name or m.key,
                value_a=_value(m, m.value_a),
                value_b=_value(m, m.value_b),
                contrast=_contrast(m),
                contrast_kind=f"{label_b} / {label_a}" if m.kind == "ratio" else f"{label_b} − {label_a}",
                p=f"p {p_value(m.p_value) if p_value(m.p_value).startswith('<') else '= ' + p_value(m.p_value)}"
                if finite(m.p_value)
                else "",
                better=better,
                method=m.method,
                primary=m.primary,
                sense="higher is more robust" if m.higher_is_more_robust else "lower is more robust",
            )
        )
    if rows:
        return rows
    legacy: list[tuple[str, Estimate, str, str, str]] = [
        ("std of validation mAP", c.std_ratio, "ratio", "bootstrap percentile CI", "std"),
        ("mean mAP", c.mean_diff, "difference", "bootstrap percentile CI", "mean"),
        ("best mAP", c.best_diff, "difference", "bootstrap percentile CI", "best"),
        (f"P(a {label_b} trial beats a {label_a} trial)", c.p_b_beats_a, "probability", "ties count half", ""),
    ]
    sa, sb = (summaries or {}).get(c.a), (summaries or {}).get(c.b)

    def stat(s: StudySummary | None, key: str) -> str:
        e = s.stats.get(key) if s is not None and key else None
        return number(e.value) if e is not None else DASH

    for name, e, kind, method, key in legacy:
        if not finite(e.value):
            continue
        better = DASH
        if kind == "ratio" and e.has_ci and not c.refusal:
            better = label_b if e.high < 1 else (label_a if e.low > 1 else DASH)
        text = estimate(e, 2 if kind != "difference" else 3)
        rows.append(
            MeasureRow(
                name=name,
                value_a=stat(sa, key),
                value_b=stat(sb, key),
                contrast=("+" + text) if kind == "difference" and e.value > 0 else text,
                contrast_kind={"ratio": f"{label_b} / {label_a}", "difference": f"{label_b} − {label_a}"}.get(kind, ""),
                p="",
                better=better,
                method=method,
                primary=kind == "ratio",
                sense="lower is more robust" if kind == "ratio" else "",
            )
        )
    return rows


def _evidence(c: Comparison, rows: list[MeasureRow], a: str, b: str, holm: bool) -> str:
    primary = next((m for m in c.measures if m.primary), None)
    if primary is not None:
        text = f"{primary.name} {b}/{a} " if primary.kind == "ratio" else f"{primary.name} {b} − {a} "
        text += _contrast(primary)
    else:
        text = f"std ratio {b}/{a} {estimate(c.std_ratio, 2)}"
    if finite(c.p_value):
        p = p_value(c.p_value)
        text += f", p {p if p.startswith('<') else '= ' + p}" + (" (Holm-adjusted)" if holm else "")
    return text


def cards(
    comparisons: Sequence[Comparison], summaries: dict[str, StudySummary], settings: dict, roles: Roles
) -> list[Card]:
    """Verdict cards, the primary comparison first."""
    first = primary_index(comparisons, summaries)
    ordered = list(comparisons)
    if first is not None:
        ordered.insert(0, ordered.pop(first))
    marked = any(c.primary for c in comparisons)
    out = []
    for i, c in enumerate(ordered):
        a, b = card_labels(c, summaries, roles)
        key = direction(c)
        words, tone = direction_words(key, a, b)
        if c.refusal:
            tone = "refused"
        is_primary = i == 0
        role = "primary" if is_primary else ("secondary (Holm-adjusted)" if marked else "secondary")
        rows = measure_rows(c, a, b, summaries)
        out.append(
            Card(
                a=a,
                b=b,
                pair=f"{b} vs {a}",
                names=f"{c.b} vs {c.a}",
                role=role,
                primary=is_primary,
                header=mode_header(comparison_mode(c, summaries), comparison_swept(c, summaries, settings)),
                direction=key,
                words=words,
                tone=tone,
                evidence=_evidence(c, rows, a, b, holm=not is_primary and marked),
                verdict=c.verdict,
                refusal=c.refusal,
                fair=c.fair,
                differences=[
                    f"{d.setting}: {plain(d.value_a)} ({a}) vs {plain(d.value_b)} ({b})" for d in c.differences
                ],
                measures=rows,
                study_a=c.a,
                study_b=c.b,
            )
        )
    return out


def title(report_cards: Sequence[Card], roles: Roles) -> str:
    """ "RAL vs ASL: hyperparameter sensitivity" from the primary comparison (or the one sweep)."""
    if report_cards:
        return f"{report_cards[0].pair}: hyperparameter sensitivity"
    if len(roles.sweeps) == 1:
        return f"{roles.label(roles.sweeps[0])}: hyperparameter sensitivity"
    if roles.sweeps:
        return " vs ".join(roles.label(s) for s in roles.sweeps[:3]) + ": hyperparameter sensitivity"
    return "lossweep report: hyperparameter sensitivity"
