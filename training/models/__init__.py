"""Backbone zoo: ``create_model(name, **kwargs)`` builds any registered backbone."""

from . import condensenetv2, mobilenetv2, resnet  # noqa: F401  (registers the builders)
from .condensenetv2 import CondensationIncompleteError, CondenseNetV2
from .layers import Backbone, BackboneOutput
from .registry import create_model, list_models, register_model

__all__ = [
    "Backbone",
    "BackboneOutput",
    "CondensationIncompleteError",
    "CondenseNetV2",
    "create_model",
    "list_models",
    "register_model",
]
