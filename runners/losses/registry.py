"""Name -> loss class registry, in the style of timm's model registry.

Adding a loss is one :class:`~runners.losses.base.MultiLabelLoss` subclass decorated with
``@register_loss("name")``; ``create_loss`` and ``available_losses`` then know it, and so does every
caller that builds losses by name (the study CLI, the search spaces' checks, the benchmark).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

_LOSSES: dict[str, type] = {}

T = TypeVar("T", bound=type)


def register_loss(name: str) -> Callable[[T], T]:
    """Class decorator: make ``create_loss(name, ...)`` build the decorated class.

    The class must accept its hyperparameters as keyword arguments and expose them with their
    defaults in a ``defaults`` class attribute (a mapping), so that callers can list them.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"loss name must be an identifier such as 'ral', got {name!r}")

    def decorate(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"register_loss({name!r}) decorates torch.nn.Module subclasses, got {cls!r}")
        if not isinstance(getattr(cls, "defaults", None), dict):
            raise TypeError(f"{cls.__name__} must define a 'defaults' dict of its hyperparameters")
        registered = _LOSSES.get(name)
        if registered is not None and registered is not cls:
            raise ValueError(
                f"loss name {name!r} is already registered to {registered.__qualname__}; pick another name"
            )
        _LOSSES[name] = cls
        cls.name = name  # type: ignore[attr-defined]  # a MultiLabelLoss class (checked above: a Module)
        return cls

    return decorate


def available_losses() -> list[str]:
    """The registered loss names, sorted."""
    return sorted(_LOSSES)


def loss_class(name: str) -> type:
    """The class registered under ``name``; ValueError naming the valid ones otherwise."""
    try:
        return _LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(available_losses())}") from None


def create_loss(name: str, **params) -> nn.Module:
    """Build the loss registered as ``name`` with hyperparameters ``params`` (unset ones take defaults).

    Raises ValueError for an unknown name, an unknown parameter (listing the valid ones) or an
    invalid value (saying what range is allowed).
    """
    return loss_class(name)(**params)
