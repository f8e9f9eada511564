"""The loss catalogue: which losses exist, where each is defined, and its class and search space.

Every part of lossweep that needs to know the losses asks this module: the study CLI (``--loss``
and its help), ``python -m search_spaces``, ``search_spaces.get_space`` and, through
``runners.losses.create_loss``, the workers. ``analysis`` and ``reports`` never ask: a study's loss
and space are stored in its attributes.

A loss is one module, named after the loss, whose class is decorated with
``@register_loss("<name>", space=Space(...))`` (the space: ranges only, defaults read from the
class). Loss modules are *discovered*, never listed:

- every public module of the ``runners.losses`` package (the support modules ``base`` and
  ``registry`` and the private ``_*`` ones excepted), and
- the plugin modules named by ``LOSSWEEP_LOSS_MODULES``: entries separated by ``os.pathsep`` (``:``
  on Linux), each a path to a ``.py`` file or a dotted module name importable from ``sys.path``; the
  loss is named after the file or the module's last component. Spawned workers inherit the variable,
  so a plugin loss runs in a study exactly like a built-in one.

Why lazily: this module must be importable without torch (``study.run --help`` lists the losses
instantly and ``search_spaces`` may import only optuna), yet a loss's space defaults live in its
class, in a torch module. So names come from discovering modules *without importing them*, and a
loss's module is imported (with torch) only when its class or space is asked for: by
:func:`loss_class`, :func:`space_declaration`, the study CLI when it builds a plan, and the workers.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search_spaces.declare import Space

PACKAGE = "runners.losses"
ENV_VAR = "LOSSWEEP_LOSS_MODULES"
# Modules of the package that hold shared machinery, not a loss.
SUPPORT_MODULES = frozenset({"base", "registry"})


def _builtin_sources() -> dict[str, str]:
    spec = importlib.util.find_spec(PACKAGE)  # imports `runners` (torch-free), not the package itself
    locations = spec.submodule_search_locations if spec is not None else None
    return {
        info.name: f"{PACKAGE}.{info.name}"
        for info in pkgutil.iter_modules(list(locations or ()))
        if not info.name.startswith("_") and info.name not in SUPPORT_MODULES
    }


def _plugin_sources(builtin: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in os.environ.get(ENV_VAR, "").split(os.pathsep):
        entry = entry.strip()
        if not entry:
            continue
        if entry.endswith(".py"):
            path = Path(entry).expanduser()
            if not path.is_file():
                raise ValueError(f"{ENV_VAR}: loss module {entry} does not exist; give the path of a .py file")
            name, source = path.stem, str(path.resolve())
        else:
            name, source = entry.rpartition(".")[2], entry
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(
                f"{ENV_VAR}: {entry}: a loss module is named after its loss, an identifier such as 'smooth'"
            )
        if name in builtin or name in out:
            taken = builtin.get(name) or out[name]
            raise ValueError(f"{ENV_VAR}: {entry} names loss {name!r}, already defined by {taken}; rename the module")
        out[name] = source
    return out


def sources() -> dict[str, str]:
    """Loss name -> its module (a dotted name or a file path), built-in losses first, in name order.

    Read afresh on every call (a directory listing and an environment variable), so a plugin set in
    ``LOSSWEEP_LOSS_MODULES`` after import is seen.
    """
    builtin = _builtin_sources()
    return {**dict(sorted(builtin.items())), **_plugin_sources(builtin)}


def loss_names() -> tuple[str, ...]:
    """The names of every loss lossweep can study, without importing torch."""
    return tuple(sources())


def unknown_loss(name: object, known: tuple[str, ...] | None = None) -> ValueError:
    """The error for a loss name the catalogue does not know, listing the ones it does."""
    return ValueError(f"unknown loss {name!r}; choose one of: {', '.join(known or loss_names())}")


def _import(name: str, source: str) -> ModuleType:
    if not source.endswith(".py"):
        return importlib.import_module(source)
    module_name = f"_lossweep_plugin_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, source)
    if spec is None or spec.loader is None:
        raise ValueError(f"{ENV_VAR}: cannot load {source} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def loss_class(name: str) -> Any:
    """The class registered as ``name``, importing its module if needed; ValueError if there is none."""
    from .losses import registry  # torch

    cls = registry.registered(name)
    if cls is not None:
        return cls
    found = sources()
    if not isinstance(name, str) or name not in found:
        raise unknown_loss(name, tuple(sorted({*found, *registry.registered_names()})))
    module = _import(name, found[name])
    cls = registry.registered(name)
    if cls is None:
        raise ValueError(
            f"loss module {found[name]} registers no loss named {name!r}: decorate its class with "
            f"@register_loss({name!r}, space=Space(...)) (a loss module is named after its loss)"
        )
    if cls.__module__ != module.__name__:
        raise ValueError(f"loss {name!r} is registered by {cls.__module__}, not by its own module {found[name]}")
    return cls


def builtin_loss_classes() -> list[Any]:
    """The classes of the losses in the ``runners.losses`` package (importing their modules), by name."""
    return [loss_class(name) for name in sorted(_builtin_sources())]


def space_declaration(name: str) -> Space:
    """The :class:`~search_spaces.declare.Space` a loss declared (imports its module)."""
    cls = loss_class(name)
    space = getattr(cls, "space", None)
    if space is None:
        raise ValueError(
            f"loss {name!r} declares no search space; pass space=Space(...) to its @register_loss({name!r}, ...)"
        )
    return space


def space_specs(name: str, options: dict[str, object] | None = None) -> tuple[Any, ...]:
    """The loss's swept parameters as ``ParamSpec`` s, defaults from its class, shaped by ``options``."""
    cls = loss_class(name)
    return space_declaration(name).specs(cls.defaults, options, loss=name)
