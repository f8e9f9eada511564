"""Failure-aware values: a diverged trial is a maximally bad outcome, not a missing one.

Every failure-aware statistic (dispersion, expected best, worst decile, the spread test and the
secondary measures) counts a diverged trial at the study's *floor value*: the chance-level mAP of
the validation split, i.e. the mAP of uninformative (constant) scores. For a class with prevalence
π, average precision of a constant score is exactly π (one threshold: precision π at recall 1),
so chance mAP is the mean validation prevalence over the scored classes; ``runners.metrics``
records it per trial as ``val_chance_mAP``. Where a store predates that attribute the floor is the
lowest complete mAP of any study on the same data (a trained model is rarely below chance, so this
is close to and at least as high as chance: a conservative floor, and the message says which was
used). Studies on the same data get the same floor, so a comparison never mixes floors.

Trials that failed for another reason (killed, out of memory, an error, interrupted) are not outcomes
of the configuration and stay out (NaN), as do unfinished trials.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

CHANCE_COLUMN = "val_chance_mAP"


def _fingerprint(settings: dict) -> object:
    return settings.get("data_fingerprint") if isinstance(settings, dict) else None


def floors(settings: dict[str, dict], by_study: dict[str, pd.DataFrame]) -> dict[str, tuple[float, str]]:
    """``study -> (floor value, where it comes from)``, shared by all studies on the same data."""
    groups: dict[object, list[str]] = {}
    for name, s in settings.items():
        fp = _fingerprint(s)
        groups.setdefault(fp if fp is not None else ("study", name), []).append(name)
    out: dict[str, tuple[float, str]] = {}
    for names in groups.values():
        chance = [
            pd.to_numeric(by_study[n][CHANCE_COLUMN], errors="coerce").to_numpy(float)
            for n in names
            if CHANCE_COLUMN in by_study[n]
        ]
        chance_v = np.concatenate(chance) if chance else np.empty(0)
        chance_v = chance_v[np.isfinite(chance_v)]
        if chance_v.size:
            floor, source = float(np.median(chance_v)), "chance-level mAP of the validation split"
        else:
            done = [by_study[n].loc[by_study[n]["status"] == "complete", "value"].to_numpy(float) for n in names]
            v = np.concatenate(done) if done else np.empty(0)
            v = v[np.isfinite(v)]
            floor = float(v.min()) if v.size else math.nan
            source = "lowest complete mAP on this data (the store does not record chance-level mAP)"
        for n in names:
            out[n] = (floor, source)
    return out


def failure_aware(part: pd.DataFrame, floor: float) -> pd.Series:
    """The value of each trial of ``part``: complete -> its mAP, diverged -> ``floor``, otherwise NaN."""
    status = part["status"].astype(str)
    value = part["value"].to_numpy(float)
    out = np.where(status == "complete", value, np.where(status == "diverged", floor, np.nan))
    return pd.Series(out, index=part.index, dtype=float)
