"""Importing checkpoints of other code bases: the strict reader, the formats, the run folders.

``training/import_checkpoint.py`` (``adafocus-import``) is the command; the training commands'
``--weights`` options load through :mod:`training.checkpoints.pretrained`.
"""

from .formats import FORMATS, ImportedModel, ImportFormat, ImportOptions, get_format, import_file, register_format
from .reader import CheckpointError, TensorReader, load_mapped, read_checkpoint, unwrap_state_dict

__all__ = [
    "FORMATS",
    "CheckpointError",
    "ImportFormat",
    "ImportOptions",
    "ImportedModel",
    "TensorReader",
    "get_format",
    "import_file",
    "load_mapped",
    "read_checkpoint",
    "register_format",
    "unwrap_state_dict",
]
