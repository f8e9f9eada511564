"""Who is who in a report: short study labels, sweeps versus seed floors, and the primary comparison.

A report may hold six studies (ASL and RAL in matched and full mode, plus each loss's seeds-mode
study). Their names are too long for axis ticks and say nothing about their role, so every figure
and card uses a short label ("ASL", "RAL (matched)", "ASL seeds") and the report lists the full
names once. Seeds-mode studies (the default configuration over many seeds) are not rivals of the
sweeps: they are each sweep's noise floor, drawn as a reference band, and only when they were run
under the same data, protocol, epochs, backbone and replicates as the sweep they are drawn beside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from analysis.fairness import differences
from analysis.results import Analysis, Comparison, StudySummary

SEEDS_MODE = "seeds"

# Settings a sweep and its seeds-mode floor differ in by design (a floor has its own budget, seeds and
# no search space); every other difference means the floor was measured under other conditions.
FLOOR_DESIGN_DIFFERENCES = (
    "n_trials",
    "space_mode",
    "sampler",
    "seed",
    "nuisance",
    "finished_trials",
    "swept_parameters",
)

# How a card header and a figure name the hyperparameters (search_spaces' names).
SYMBOLS = {
    "gamma_pos": "γ⁺",
    "gamma_neg": "γ⁻",
    "clip": "τ",
    "lam": "λ",
    "gamma": "γ",
    "margin": "m",
    "lr": "lr",
    "weight_decay": "wd",
}
_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def symbol(param: str) -> str:
    """``γ⁻`` for gamma_neg, ``α₁`` for alpha_1; unknown names unchanged."""
    if param in SYMBOLS:
        return SYMBOLS[param]
    for prefix, letter in (("alpha_", "α"), ("beta_", "β")):
        if param.startswith(prefix) and param[len(prefix) :].isdigit():
            return letter + param[len(prefix) :].translate(_SUBSCRIPTS)
    return param


@dataclass
class Roles:
    """Labels, sweeps and floors of one analysis, computed once per report."""

    labels: dict[str, str]  # study name -> short label
    sweeps: list[str]  # studies that sweep hyperparameters, in report order
    floors: list[str]  # seeds-mode studies
    floor_of: dict[str, str]  # sweep -> the seeds-mode study drawn as its noise floor
    floor_notes: list[str] = field(default_factory=list)  # floors not drawn, and why

    def label(self, name: str) -> str:
        return self.labels.get(name, name)


def _loss_word(loss: str, name: str) -> str:
    return loss.upper() if loss and loss != "unknown" else name


def _mode(analysis: Analysis, name: str) -> str:
    s = analysis.summaries.get(name)
    if s is not None:
        return s.space_mode
    config = analysis.settings.get(name, {}).get("config") or {}
    return str(config.get("space_mode") or "") if isinstance(config, dict) else ""


def _loss(analysis: Analysis, name: str) -> str:
    s = analysis.summaries.get(name)
    return s.loss if s is not None else str(analysis.settings.get(name, {}).get("loss") or "unknown")


def short_labels(analysis: Analysis, order: Sequence[str]) -> dict[str, str]:
    """ "ASL", "RAL (matched)", "ASL seeds": the loss, plus the space mode where sweeps' modes differ.

    Falls back to the study's own name where two studies would get the same label (two ASL sweeps in
    the same mode) or the study was not made by lossweep.
    """
    sweeps = [n for n in order if _mode(analysis, n) != SEEDS_MODE]
    modes = {_mode(analysis, n) for n in sweeps}
    labels: dict[str, str] = {}
    for name in order:
        loss, mode = _loss(analysis, name), _mode(analysis, name)
        word = _loss_word(loss, name)
        if word == name:
            labels[name] = name
        elif mode == SEEDS_MODE:
            labels[name] = f"{word} seeds"
        elif len(modes) > 1 and mode:
            labels[name] = f"{word} ({mode})"
        else:
            labels[name] = word
    counts: dict[str, int] = {}
    for text in labels.values():
        counts[text] = counts.get(text, 0) + 1
    return {name: (text if counts[text] == 1 else name) for name, text in labels.items()}


def floor_mismatch(sweep: dict[str, Any], floor: dict[str, Any]) -> list[str]:
    """Settings on which a seeds-mode study was run differently from a sweep (empty: it is the sweep's floor)."""
    if not sweep or not floor:
        return []  # a study not made by lossweep stores nothing to compare
    out = []
    for d in differences(sweep, floor):
        if d.setting in FLOOR_DESIGN_DIFFERENCES or d.setting.startswith("search_space."):
            continue
        out.append(d.setting)
    return out


def roles(analysis: Analysis, order: Sequence[str]) -> Roles:
    """Sweeps, floors and labels; each sweep's floor is a seeds-mode study of its loss run the same way."""
    labels = short_labels(analysis, order)
    sweeps = [n for n in order if _mode(analysis, n) != SEEDS_MODE]
    floors = [n for n in order if _mode(analysis, n) == SEEDS_MODE]
    floor_of: dict[str, str] = {}
    notes: list[str] = []
    for sweep in sweeps:
        candidates = [f for f in floors if _loss(analysis, f) == _loss(analysis, sweep)]
        rejected = []
        for cand in candidates:
            mismatch = floor_mismatch(analysis.settings.get(sweep, {}), analysis.settings.get(cand, {}))
            if not mismatch:
                floor_of[sweep] = cand
                break
            rejected.append(f"{labels[cand]} differs from {labels[sweep]} in {', '.join(mismatch[:4])}")
        else:
            notes += rejected
    return Roles(labels, sweeps, floors, floor_of, notes)


# -- comparisons ----------------------------------------------------------------------------------


def primary_index(comparisons: Sequence[Comparison], summaries: dict[str, StudySummary]) -> int | None:
    """The primary comparison: the one the analysis marked, else ASL vs RAL (matched, then full), else the first."""
    if not comparisons:
        return None
    for i, c in enumerate(comparisons):
        if c.primary:
            return i

    def losses(c: Comparison) -> set[str]:
        return {s.loss for s in (summaries.get(c.a), summaries.get(c.b)) if s is not None}

    for mode in ("matched", "full"):
        for i, c in enumerate(comparisons):
            if losses(c) == {"asl", "ral"} and comparison_mode(c, summaries) == mode:
                return i
    return 0


def comparison_mode(c: Comparison, summaries: dict[str, StudySummary]) -> str:
    """The space mode both studies share, from the comparison or (older analyses) its summaries."""
    if c.mode:
        return c.mode
    a, b = summaries.get(c.a), summaries.get(c.b)
    if a is None or b is None:
        return ""
    return a.space_mode if a.space_mode == b.space_mode else "mixed"


def comparison_swept(c: Comparison, summaries: dict[str, StudySummary], settings: dict[str, dict]) -> list[str]:
    """Hyperparameters both studies sweep, in the first study's order."""
    if c.swept:
        return list(c.swept)

    def names(study: str) -> list[str]:
        s = summaries.get(study)
        if s is not None and s.swept:
            return list(s.swept)
        params = ((settings.get(study) or {}).get("search_space") or {}).get("params") or []
        if isinstance(params, dict):
            return [str(k) for k in params]
        return [str(p.get("name")) for p in params if isinstance(p, dict)]

    other = set(names(c.b))
    return [p for p in names(c.a) if p in other]


def mode_header(mode: str, swept: Sequence[str]) -> str:
    """ "matched space: γ⁺, γ⁻, τ" / "full space" / "mixed spaces"."""
    symbols = ", ".join(symbol(p) for p in swept)
    if mode == "full":
        return "full space"
    if mode == "mixed":
        return "mixed spaces" + (f": shared {symbols}" if symbols else "")
    if not mode:
        return f"space: {symbols}" if symbols else "space not recorded"
    return f"{mode} space" + (f": {symbols}" if symbols else "")


def finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
