"""``@register_loss(name, space=...)`` and building a loss by name, in the style of timm's model registry.

The decorator records a class under its name as its module is imported; which modules exist, and
importing them when a loss is asked for, is the catalogue's job (``runners.catalogue``), so
:func:`create_loss`, :func:`loss_class` and :func:`available_losses` know every discovered loss
(built-in or a ``LOSSWEEP_LOSS_MODULES`` plugin) and every class registered in this process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

from search_spaces.declare import Space

from .. import catalogue

_LOSSES: dict[str, type] = {}

T = TypeVar("T", bound=type)


def register_loss(name: str, *, space: Space | None = None) -> Callable[[T], T]:
    """Class decorator: make ``create_loss(name, ...)`` build the decorated class.

    The class must accept its hyperparameters as keyword arguments and expose them with their
    defaults in a ``defaults`` class attribute (a mapping). ``space`` declares the ranges a study
    sweeps (:class:`search_spaces.declare.Space`); its defaults are read from ``defaults``, and a
    parameter without one is refused here, when the module is imported.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"loss name must be an identifier such as 'ral', got {name!r}")
    if space is not None and not isinstance(space, Space):
        raise TypeError(f"register_loss({name!r}, space=...) takes a search_spaces.declare.Space, got {space!r}")

    def decorate(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"register_loss({name!r}) decorates torch.nn.Module subclasses, got {cls!r}")
        defaults = getattr(cls, "defaults", None)
        if not isinstance(defaults, dict):
            raise TypeError(f"{cls.__name__} must define a 'defaults' dict of its hyperparameters")
        registered = _LOSSES.get(name)
        if registered is not None and registered is not cls:
            raise ValueError(
                f"loss name {name!r} is already registered to {registered.__qualname__}; pick another name"
            )
        if space is not None:
            space.specs(defaults, loss=name)  # every swept parameter has a default, inside its range
        _LOSSES[name] = cls
        cls.name = name  # type: ignore[attr-defined]  # a MultiLabelLoss class (checked above: a Module)
        cls.space = space  # type: ignore[attr-defined]
        return cls

    return decorate


def registered(name: object) -> type | None:
    """The class registered as ``name`` in this process so far, or None (no module is imported)."""
    return _LOSSES.get(name) if isinstance(name, str) else None


def registered_names() -> tuple[str, ...]:
    return tuple(_LOSSES)


def available_losses() -> list[str]:
    """Every loss name: the catalogue's and those registered in this process, sorted."""
    return sorted({*catalogue.loss_names(), *_LOSSES})


def loss_class(name: str) -> type:
    """The class registered under ``name`` (importing its module); ValueError naming the valid ones otherwise."""
    return catalogue.loss_class(name)


def create_loss(name: str, **params) -> nn.Module:
    """Build the loss registered as ``name`` with hyperparameters ``params`` (unset ones take defaults).

    Raises ValueError for an unknown name, an unknown parameter (listing the valid ones) or an
    invalid value (saying what range is allowed).
    """
    return loss_class(name)(**params)
