"""A small model registry: builder functions registered by name.

Usage::

    @register_model
    def resnet50(**kwargs) -> ResNet: ...

    model = create_model("resnet50", num_classes=10)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

_MODEL_BUILDERS: dict[str, Callable[..., nn.Module]] = {}

BuilderT = TypeVar("BuilderT", bound=Callable[..., nn.Module])


def register_model(builder: BuilderT) -> BuilderT:
    """Register ``builder`` under its function name; the name must be new."""
    name = builder.__name__
    if name in _MODEL_BUILDERS:
        raise ValueError(f"model {name!r} is already registered")
    _MODEL_BUILDERS[name] = builder
    return builder


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_MODEL_BUILDERS)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name``; keyword arguments go to its builder."""
    try:
        builder = _MODEL_BUILDERS[name]
    except KeyError:
        known = ", ".join(list_models())
        raise ValueError(f"unknown model {name!r}; known models: {known}") from None
    return builder(**kwargs)
