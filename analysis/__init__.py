"""lossweep: analysis — robustness statistics of loss-hyperparameter studies, from the store alone (no torch).

>>> from analysis import analyse
>>> result = analyse("sqlite:///lossweep.db")          # doctest: +SKIP
>>> print(result.comparisons[0].verdict)                # doctest: +SKIP
>>> result.write("report/")                             # doctest: +SKIP
"""

from __future__ import annotations

from analysis.analyse import analyse, default_pairs
from analysis.load import load_studies
from analysis.results import Analysis, Comparison, Difference, Estimate, StudySummary

__all__ = [
    "analyse",
    "default_pairs",
    "load_studies",
    "Analysis",
    "Comparison",
    "Difference",
    "Estimate",
    "StudySummary",
]
