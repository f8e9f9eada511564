"""How a loss declares its search space: ranges only, with the defaults read from the loss class.

A loss module (``runners/losses/<name>.py``) passes one :class:`Space` to ``@register_loss(name,
space=...)``. The space lists each swept hyperparameter's sampling range, scale, hard limits and why
(:class:`Range`), and, for a loss whose number of parameters is a choice (RAL's polynomial lengths),
integer :class:`Option` s and :class:`Series` of parameters whose length an option sets. It does not
repeat the defaults: :meth:`Space.specs` takes them from the class's ``defaults`` mapping (a series
``alpha_1..alpha_M`` from the tuple ``defaults["alpha"]``, 0 past its end), so a loss's default lives
in exactly one place.

These types are plain data (no torch) so that a loss module can declare its space at import time and
``search_spaces`` can turn it into a :class:`~search_spaces.SearchSpace`.

>>> space = Space(Range("gamma", 0.0, 5.0, doc="focusing exponent"))
>>> [(p.name, p.low, p.high, p.default) for p in space.specs({"gamma": 2.0, "reduction": "sum"})]
[('gamma', 0.0, 5.0, 2.0)]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._space import ParamSpec

INF = math.inf


@dataclass(frozen=True)
class Range:
    """One swept hyperparameter without its default: ``[low, high]`` on a linear or log scale.

    ``limits`` are the hard bounds a ``--space`` override may not leave; ``doc`` says what the
    parameter does (it is stored with the study, so rewording it makes old studies look different).
    """

    name: str
    low: float
    high: float
    log: bool = False
    doc: str = ""
    limits: tuple[float, float] = (-INF, INF)

    def spec(self, default: float) -> ParamSpec:
        return ParamSpec(self.name, self.low, self.high, self.log, default, self.doc, self.limits)


@dataclass(frozen=True)
class Series:
    """Parameters ``<stem>_1 .. <stem>_n`` sharing one range, n set by the space's option ``count``.

    ``like`` is the range of each, named by the stem; its ``doc`` may contain ``{i}``, replaced by the
    parameter's index. Their defaults are the loss class's ``defaults[stem]`` sequence, 0 beyond its
    end (which, for polynomial coefficients, leaves the loss unchanged); a shorter series truncates it.
    """

    like: Range
    count: str

    def ranges(self, n: int) -> tuple[Range, ...]:
        stem, doc = self.like.name, self.like.doc
        return tuple(dataclasses.replace(self.like, name=f"{stem}_{i}", doc=doc.format(i=i)) for i in range(1, n + 1))


@dataclass(frozen=True)
class Option:
    """An integer choice that shapes a space (e.g. how many polynomial coefficients RAL sweeps)."""

    default: int
    low: int
    high: int
    doc: str = ""

    def check(self, name: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise ValueError(f"{name} must be an integer from {self.low} to {self.high}, got {value!r}")
        return int(value)


Entry = Range | Series


class Space:
    """A loss's search-space declaration: its ranges in sweep order, and the options that shape them.

    The order of the entries is the order of the study's parameters (the columns of its design), so
    reordering them changes every design drawn from the space.
    """

    def __init__(self, *entries: Entry, options: Mapping[str, Option] | None = None) -> None:
        self.entries: tuple[Entry, ...] = tuple(entries)
        self.options: dict[str, Option] = dict(options or {})
        for entry in self.entries:
            if not isinstance(entry, (Range, Series)):
                raise TypeError(f"a Space holds Range and Series entries, got {entry!r}")
            if isinstance(entry, Series) and entry.count not in self.options:
                raise ValueError(
                    f"series {entry.like.name!r} is sized by option {entry.count!r}, which the space lacks"
                )

    def resolve_options(self, given: Mapping[str, object] | None = None, loss: str = "") -> dict[str, int]:
        """Every option's value: ``given`` where set (checked), the declared default otherwise."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            which = f"the {loss!r} search space" if loss else "this search space"
            has = f"its options: {', '.join(self.options)}" if self.options else "it has none"
            raise ValueError(f"{which} has no option {', '.join(unknown)}; {has}")
        return {name: option.check(name, given.get(name, option.default)) for name, option in self.options.items()}

    def ranges(self, options: Mapping[str, object] | None = None, loss: str = "") -> tuple[Range, ...]:
        values = self.resolve_options(options, loss)
        out: list[Range] = []
        for entry in self.entries:
            out.extend(entry.ranges(values[entry.count]) if isinstance(entry, Series) else (entry,))
        return tuple(out)

    def specs(
        self, defaults: Mapping[str, Any], options: Mapping[str, object] | None = None, loss: str = ""
    ) -> tuple[ParamSpec, ...]:
        """The parameters with their defaults taken from ``defaults`` (a loss class's ``defaults``)."""
        return tuple(r.spec(_default(defaults, r.name, loss)) for r in self.ranges(options, loss))

    def __repr__(self) -> str:
        return f"Space({', '.join(map(repr, self.entries))}, options={self.options!r})"


def _default(defaults: Mapping[str, Any], name: str, loss: str) -> float:
    if name in defaults:
        return float(defaults[name])
    stem, _, index = name.rpartition("_")
    series = defaults.get(stem)
    if index.isdigit() and isinstance(series, Sequence) and not isinstance(series, str):
        i = int(index) - 1
        return float(series[i]) if i < len(series) else 0.0
    which = f"the {loss!r} search space" if loss else "a search space"
    also = f" or {stem!r} sequence" if index.isdigit() else ""
    raise ValueError(
        f"{which} sweeps {name!r} but the loss class's defaults have no {name!r}{also}; add its default there"
    )
