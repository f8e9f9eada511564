"""Every docstring example (``>>>``) in the packages runs as a doctest.

Modules are found by their source containing ``>>>``, so a new example is tested without being
listed here. ``benchmarks`` and ``__main__`` modules are left out: importing them must not be
needed to check an example, and a ``__main__`` runs its command when imported.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("study", "search_spaces", "runners", "analysis", "reports")


def _modules_with_examples() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "__main__.py" or ">>>" not in path.read_text(encoding="utf-8"):
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = _modules_with_examples()


def test_the_examples_are_found():
    # A guard for the discovery itself: these modules are known to carry examples.
    assert {"search_spaces", "analysis", "analysis.stats"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"{name} has '>>>' in its source but no docstring example doctest can find"
    assert result.failed == 0, f"{result.failed} of {result.attempted} example(s) in {name} failed (output above)"
