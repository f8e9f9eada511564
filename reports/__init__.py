"""lossweep: reports — one self-contained HTML report of the studies in a store.

``python -m reports.build`` from the command line, :func:`reports.build.build_report` from code.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    # Lazy, so that ``python -m reports.build`` does not import reports.build twice (runpy warns).
    if name == "build_report":
        from reports.build import build_report

        return build_report
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
