"""A backbone's parameters and MACs per sample, computed from the model (``adafocus-profile``)."""

from __future__ import annotations

import torch
from torch import nn

from training.models import create_model
from training.models.macs import count_macs, count_params


def inference_form(model: nn.Module) -> nn.Module:
    """The form that is deployed: converted for condensing models, the model itself otherwise."""
    convert = getattr(model, "convert", None)
    if convert is None:
        return model
    if not model.condensation_complete:
        model.condense(1.0)
    return convert()


def profile_model(
    name: str,
    input_size: int = 224,
    num_classes: int | None = None,
    rules: str = "standard",
    training_form: bool = False,
) -> dict:
    """Parameters and MACs per sample of the registered model ``name``."""
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    model = create_model(name, **kwargs)
    form = "training"
    if not training_form:
        model = inference_form(model)
        form = "converted" if getattr(model, "converted", False) else "standard"
    inputs = torch.randn(1, 3, input_size, input_size)
    report = count_macs(model, inputs, rules=rules)  # type: ignore[arg-type]
    return {
        "model": name,
        "input_size": input_size,
        "num_classes": getattr(model, "num_classes", None),
        "form": form,
        "rules": rules,
        "params": count_params(model),
        "macs": report.total,
        "gmacs": round(report.gmacs, 6),
    }
