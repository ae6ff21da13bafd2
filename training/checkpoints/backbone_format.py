"""``backbone``: our own backbone files (``model_converted.pt`` of an image run or of an import,
:mod:`training.models.serialization`), read as strictly as any other format.

With it a run folder is a starting point of its own: ``--weights RUN_DIR/model_converted.pt``
fine-tunes an imported or trained image classifier without its original file.
"""

from __future__ import annotations

from typing import Any

from training.models import create_model
from training.models.serialization import FORMAT as BACKBONE_FORMAT

from .formats import ImportedModel, ImportFormat, ImportOptions
from .reader import CheckpointError, TensorReader, load_mapped


def _is_backbone_file(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("format") == BACKBONE_FORMAT


def build_backbone(reader: TensorReader, options: ImportOptions) -> ImportedModel:
    """The model a ``backbone/1`` file describes, every tensor of the file loaded."""
    if options.patch_size is not None:
        raise CheckpointError("--patch-size applies to the AdaFocus formats, not to backbone (an image classifier)")
    payload = reader.payload
    try:
        name, kwargs, converted = payload["model"], dict(payload["model_kwargs"]), bool(payload["converted"])
        model = create_model(name, **kwargs)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{reader.source}: a backbone file that does not describe a model of ours: {error}"
        ) from None
    if converted:  # as load_backbone: any full condensation gives the converted shapes
        model.condense(1.0)
        model = model.convert()
    expected = model.state_dict()
    mapping = {key: reader.take(key, tuple(value.shape)) for key, value in expected.items() if key in reader}
    load_mapped(model, mapping, reader.source)
    num_classes = int(kwargs.pop("num_classes", getattr(model, "num_classes", 0)))
    return ImportedModel(
        kind="image", model=model.eval(), model_name=name, model_kwargs=kwargs, num_classes=num_classes
    )


FORMATS = [
    ImportFormat(
        "backbone",
        "our own backbone files (model_converted.pt of an image run or of an import)",
        build=build_backbone,
        matches_file=_is_backbone_file,
    )
]
