"""User overrides of a search space from a TOML file (``--space FILE``).

Format::

    loss = "ral"          # optional; when present it must match the study's loss
    [gamma_neg]           # one table per parameter, any subset of:
    low = 0.0
    high = 6.0
    log = false
    default = 4.0         # the reference value (held value in the `matched` / `seeds` modes)
    [lam]
    fixed = 1.5           # hold at a value instead of sweeping (not combinable with low/high/log)

Every mistake is a ValueError that names the file and the parameter, because a silently ignored
typo in a sweep definition costs a whole study.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from ._space import ParamSpec

_TOP_LEVEL_KEYS = ("loss",)
_PARAM_KEYS = ("low", "high", "log", "default", "fixed")


@dataclass(frozen=True)
class Overrides:
    """Parameter specs after the file's changes, and the values the file asks to hold fixed."""

    specs: tuple[ParamSpec, ...]
    fixed: dict[str, float]


def _number(path: str, param: str, key: str, value: object) -> float:
    # bool is an int subclass: `low = true` is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{path}: [{param}] {key} must be a number, got {value!r}")
    return float(value)


def apply(path: str | os.PathLike, loss: str, specs: tuple[ParamSpec, ...]) -> Overrides:
    """Read ``path`` and apply it to ``specs`` (the loss's parameters, nuisance ones included)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ValueError(f"{path}: search-space file not found") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, expected a TOML search-space file") from None
    except tomllib.TOMLDecodeError as exc:  # its message carries "(at line L, column C)"
        raise ValueError(f"{path}: invalid TOML: {exc}") from None

    by_name = {s.name: s for s in specs}
    file_loss = doc.get("loss")
    if file_loss is not None and file_loss != loss:
        raise ValueError(
            f"{path}: the file is for loss {file_loss!r} but the study's loss is {loss!r}; fix 'loss =' or "
            "pass the right file"
        )

    fixed: dict[str, float] = {}
    new_specs = dict(by_name)
    for key, table in doc.items():
        if key in _TOP_LEVEL_KEYS:
            continue
        if not isinstance(table, dict) and key in by_name:
            raise ValueError(
                f"{path}: {key} = {table!r} must be a table: write [{key}] and then 'fixed = {table!r}' or low/high"
            )
        if not isinstance(table, dict):
            raise ValueError(
                f"{path}: unknown top-level key {key!r}; allowed: {', '.join(_TOP_LEVEL_KEYS)} and one [table] "
                "per parameter"
            )
        if key not in by_name:
            hint = " (lr and weight_decay need nuisance mode: --nuisance)" if key in ("lr", "weight_decay") else ""
            raise ValueError(
                f"{path}: [{key}] is not a parameter of the {loss!r} space{hint}; parameters: {', '.join(by_name)}"
            )
        unknown = set(table) - set(_PARAM_KEYS)
        if unknown:
            raise ValueError(
                f"{path}: [{key}] unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(_PARAM_KEYS)}"
            )
        spec = by_name[key]
        if "fixed" in table:
            others = set(table) - {"fixed"}
            if others:
                raise ValueError(
                    f"{path}: [{key}] 'fixed' holds the parameter at one value; remove {', '.join(sorted(others))}"
                )
            value = _number(path, key, "fixed", table["fixed"])
            lo, hi = spec.limits
            if not lo <= value <= hi:
                raise ValueError(f"{path}: [{key}] fixed = {value:g} is outside the allowed [{lo:g}, {hi:g}]")
            fixed[key] = value
            new_specs[key] = dataclasses.replace(spec, default=value) if spec.low <= value <= spec.high else spec
            continue
        changes: dict[str, object] = {}
        for k in ("low", "high", "default"):
            if k in table:
                changes[k] = _number(path, key, k, table[k])
        if "log" in table:
            if not isinstance(table["log"], bool):
                raise ValueError(f"{path}: [{key}] log must be true or false, got {table['log']!r}")
            changes["log"] = table["log"]
        merged = {**dataclasses.asdict(spec), **changes}
        merged["limits"] = spec.limits
        try:
            new_specs[key] = ParamSpec(**merged)
        except ValueError as exc:
            raise ValueError(f"{path}: [{key}] {str(exc).split(': ', 1)[-1]}") from None
    return Overrides(specs=tuple(new_specs[s.name] for s in specs), fixed=fixed)
