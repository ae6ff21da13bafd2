"""The import formats by name: what ``training/import_checkpoint.py --format`` and the training
commands' ``--weights`` options accept.

A format is an :class:`ImportFormat`: how to recognise its state dicts (``matches``), which
globals its files may hold beyond tensors (``safe_globals``), and ``build``, which turns a
:class:`~training.checkpoints.reader.TensorReader` over the file's state dict into an
:class:`ImportedModel` (one of our modules, every parameter filled). A planned format has no
``build``: it is listed (``--help``) and refused with a message saying so.

A new format lives in its own module of this package with a module-level ``FORMATS`` list
of :class:`ImportFormat`; adding the module's name to :data:`BUILTIN_MODULES` registers it
(replacing the planned entry of the same name, if any).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from .reader import CheckpointError, TensorReader, read_checkpoint, unwrap_state_dict


@dataclass
class ImportOptions:
    """What the command line adds to the file (not every format uses every option)."""

    patch_size: int | None = None


@dataclass
class ImportedModel:
    """One of our models filled from a file, with what is needed to rebuild and run it.

    ``kind`` says which run folder it makes: ``"image"`` (an image classifier: a registry
    ``model_name`` and its ``model_kwargs``) or ``"adafocus"`` (an
    :class:`~training.adafocus.model.AdaFocusV2`; ``model_kwargs`` is its config).
    ``preprocessing``: how its inputs were prepared in training (``input_size``, ``resize``,
    ``mean``, ``std``); ``notes``: the tensors of the file that were reported, not used;
    ``confidence``: a video model's exit criterion in its authors' test code.
    """

    kind: str
    model: nn.Module
    model_name: str
    model_kwargs: dict[str, Any]
    num_classes: int
    preprocessing: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    confidence: str | None = None


Build = Callable[[TensorReader, ImportOptions], ImportedModel]


@dataclass(frozen=True)
class ImportFormat:
    name: str
    summary: str  # one line for --help
    build: Build | None = None  # None: planned, not implemented yet
    matches: Callable[[Mapping[str, Tensor]], bool] | None = None  # recognises its state dicts
    matches_file: Callable[[Any], bool] | None = None  # recognises the whole file (a format entry, say)
    safe_globals: tuple[Any, ...] = ()  # classes its files may hold (torch.serialization.safe_globals)
    entries: tuple[str, ...] = ("state_dict",)  # where the state dict may sit in the file

    @property
    def implemented(self) -> bool:
        return self.build is not None

    def recognises(self, payload: Any, state: Mapping[str, Tensor]) -> bool:
        """Whether the file looks like one of this format's (every check it has passes)."""
        checks = [(self.matches, state), (self.matches_file, payload)]
        return all(check(value) for check, value in checks if check is not None)


FORMATS: dict[str, ImportFormat] = {}


def register_format(fmt: ImportFormat) -> ImportFormat:
    """Add ``fmt`` under its name (a name may be registered once)."""
    if fmt.name in FORMATS:
        raise ValueError(f"import format {fmt.name!r} is already registered")
    FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str) -> ImportFormat:
    """The format ``name``; a :class:`CheckpointError` for an unknown or a planned one."""
    _register_builtin()
    fmt = FORMATS.get(name)
    if fmt is None:
        raise CheckpointError(f"unknown format {name!r}; known: {', '.join(format_names())}")
    if not fmt.implemented:
        implemented = ", ".join(f.name for f in FORMATS.values() if f.implemented)
        raise CheckpointError(f"format {name} is planned but not implemented yet (implemented: {implemented})")
    return fmt


def format_names(implemented_only: bool = False) -> list[str]:
    _register_builtin()
    return [name for name, fmt in FORMATS.items() if fmt.implemented or not implemented_only]


def import_file(path: str | Path, format_name: str, options: ImportOptions | None = None) -> ImportedModel:
    """Read ``path`` as ``format_name`` ("auto": the one implemented format whose state dicts it matches)."""
    options = options or ImportOptions()
    if format_name == "auto":
        fmt, payload, state = _detect(path)
    else:
        fmt = get_format(format_name)
        payload = read_checkpoint(path, fmt.safe_globals)
        state = unwrap_state_dict(payload, str(path), fmt.entries)
        if not fmt.recognises(payload, state):
            raise CheckpointError(
                f"{path} is not a {fmt.name} file (its keys begin {', '.join(list(state)[:4])}); "
                f"formats: {', '.join(format_names(True))}"
            )
    reader = TensorReader(state, str(path), payload)
    imported = fmt.build(reader, options)  # type: ignore[misc]  (get_format/_detect return implemented ones)
    imported.notes = reader.finish() + imported.notes
    return imported


def _detect(path: str | Path) -> tuple[ImportFormat, Any, dict[str, Tensor]]:
    implemented = [FORMATS[name] for name in format_names(True)]
    allowed = tuple({id(g): g for fmt in implemented for g in fmt.safe_globals}.values())
    payload = read_checkpoint(path, allowed)
    found = []
    for fmt in implemented:
        try:
            state = unwrap_state_dict(payload, str(path), fmt.entries)
        except CheckpointError:
            continue
        if (fmt.matches or fmt.matches_file) and fmt.recognises(payload, state):
            found.append((fmt, payload, state))
    if len(found) != 1:
        what = "no known format" if not found else f"several formats ({', '.join(f[0].name for f in found)})"
        raise CheckpointError(f"{path} matches {what}; name one (formats: {', '.join(format_names(True))})")
    return found[0]


# Modules whose ``FORMATS`` list is registered on first use (imported late: they import this one).
BUILTIN_MODULES = ("torchvision_formats", "backbone_format", "condensenetv2", "adafocusv2_actnet", "adafocusv2_sthsth")
# Formats of issue 23 not implemented yet: listed in --help, refused with a message saying so.
PLANNED = (("adafocusv2-sthsth", "AdaFocusV2 Something-Something V1/V2 and Jester checkpoints, TSM (planned)"),)
_builtin_done = False


def _register_builtin() -> None:
    """Register the formats shipped with the project, then the planned ones not yet implemented."""
    global _builtin_done
    if _builtin_done:
        return
    _builtin_done = True
    for module_name in BUILTIN_MODULES:
        module = importlib.import_module(f"{__package__}.{module_name}")
        for fmt in module.FORMATS:
            register_format(fmt)
    for name, summary in PLANNED:
        if name not in FORMATS:
            register_format(ImportFormat(name, summary))
