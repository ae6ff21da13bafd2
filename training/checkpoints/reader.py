"""The strict checkpoint reader every import format is built on.

Three steps, each with a clear :class:`CheckpointError` when the file is not what it claims:

1. :func:`read_checkpoint` loads a file with ``torch.load(weights_only=True)``: tensors and
   plain containers only, plus exactly the globals the caller names (never a full unpickle
   of an untrusted file);
2. :func:`unwrap_state_dict` finds the state dict in it (``state_dict`` entry, a leading
   ``module.`` prefix of DataParallel);
3. a :class:`TensorReader` hands out the tensors by name, checking each shape, and at the
   end insists that every tensor of the file was used or reported by name;
   :func:`load_mapped` fills every parameter and buffer of one of our modules from the
   mapping the format built.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


class CheckpointError(ValueError):
    """The file cannot be imported: unreadable, of another format, or not matching the model."""


def read_checkpoint(path: str | Path, safe_globals: Sequence[Any] = ()) -> Any:
    """The object stored in ``path``, loaded on the CPU with ``weights_only=True``.

    ``safe_globals`` are the only classes (beyond tensors and plain containers) the file may
    hold, e.g. ``argparse.Namespace`` for the ``args`` entry of a timm training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist or is not a file")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # weights_only refused the file: name the object it met, without torch's long advice.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        refused = next((line for line in lines if "Unsupported global" in line), None)
        if refused is None:  # not a pickle of anything torch knows: garbage or another kind of file
            detail = next((line for line in lines if line.startswith("Unsupported")), "not a pickle torch reads")
            raise CheckpointError(
                f"cannot read {path} as a PyTorch checkpoint (truncated or not one?): {detail}"
            ) from None
        raise CheckpointError(
            f"{path} holds objects this format does not allow, so it was not loaded ({refused}); "
            "is it a file of another format?"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as error:
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint (truncated or not one?): {error}") from None


def unwrap_state_dict(
    payload: Any, source: str, entries: Sequence[str] = ("state_dict",), prefix: str = "module."
) -> dict[str, Tensor]:
    """The state dict in ``payload``: the first of ``entries`` present, or the payload itself.

    A leading ``prefix`` (DataParallel's ``module.``) is removed when every key carries it.
    Every value must be a tensor.
    """
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"{source} holds a {type(payload).__name__}, not a state dict")
    state: Any = payload
    for entry in entries:
        if entry in payload:
            state = payload[entry]
            break
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{source} holds no state dict (looked for {', '.join(entries)} or tensors at the top)")
    not_tensors = sorted(str(key) for key, value in state.items() if not isinstance(value, Tensor))
    if not_tensors:
        raise CheckpointError(f"{source}: entries that are not tensors: {_names(not_tensors)}")
    keys = list(state)
    if prefix and all(key.startswith(prefix) for key in keys):
        return {key[len(prefix) :]: value for key, value in state.items()}
    return dict(state)


class TensorReader:
    """Hands out a state dict's tensors by name and keeps count of what was used.

    :meth:`take` checks the shape and names the key on a mismatch; :meth:`report` marks
    tensors as deliberately unused with the reason (an ImageNet head, say); :meth:`finish`
    fails, naming them, if any tensor of the file was neither.
    """

    def __init__(self, state: Mapping[str, Tensor], source: str, payload: Any = None) -> None:
        self.state = dict(state)
        self.source = source
        self.payload = payload  # the whole file (for a format's metadata entries), or None
        self.used: set[str] = set()
        self.notes: list[str] = []

    def __contains__(self, key: str) -> bool:
        return key in self.state

    def keys(self) -> list[str]:
        return list(self.state)

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of ``key`` (without using it)."""
        return tuple(self._get(key).shape)

    def take(self, key: str, shape: Sequence[int] | None = None) -> Tensor:
        """The tensor ``key``, checked against ``shape`` when given."""
        tensor = self._get(key)
        if shape is not None and tuple(tensor.shape) != tuple(shape):
            raise CheckpointError(f"{self.source}: {key} has shape {list(tensor.shape)}, the model needs {list(shape)}")
        self.used.add(key)
        return tensor

    def take_optional(self, key: str, shape: Sequence[int] | None = None) -> Tensor | None:
        """Like :meth:`take`, ``None`` when the file lacks ``key``."""
        return self.take(key, shape) if key in self.state else None

    def report(self, keys: Iterable[str], reason: str) -> None:
        """Mark ``keys`` as read but deliberately not used, with a note saying why."""
        keys = list(keys)
        missing = [key for key in keys if key not in self.state]
        if missing:
            raise CheckpointError(f"{self.source}: no tensor {_names(missing)}")
        if keys:
            self.used.update(keys)
            self.notes.append(f"{reason} {', '.join(keys)}")

    def with_prefix(self, prefix: str) -> list[str]:
        """The keys starting with ``prefix``, in file order."""
        return [key for key in self.state if key.startswith(prefix)]

    def unused(self) -> list[str]:
        return [key for key in self.state if key not in self.used]

    def finish(self) -> list[str]:
        """The notes (reported tensors); a :class:`CheckpointError` if any tensor is unaccounted for."""
        unused = self.unused()
        if unused:
            raise CheckpointError(f"{self.source}: tensors this format does not know (not imported): {_names(unused)}")
        return list(self.notes)

    def _get(self, key: str) -> Tensor:
        try:
            return self.state[key]
        except KeyError:
            raise CheckpointError(f"{self.source}: no tensor {key} (is it a file of another format?)") from None


def load_mapped(module: nn.Module, mapping: Mapping[str, Tensor], source: str) -> None:
    """Fill every parameter and buffer of ``module`` from ``mapping`` (our key -> tensor).

    A key of ours the mapping lacks, a key the mapping has that ``module`` does not, and a
    shape mismatch are errors naming the keys: nothing is left at its initial value.
    """
    ours = module.state_dict()
    missing = [key for key in ours if key not in mapping]
    extra = [key for key in mapping if key not in ours]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"not filled: {_names(missing)}")
        if extra:
            parts.append(f"no such parameter in the model: {_names(extra)}")
        raise CheckpointError(f"{source} does not fill the model ({'; '.join(parts)})")
    for key, tensor in mapping.items():
        if tuple(tensor.shape) != tuple(ours[key].shape):
            raise CheckpointError(
                f"{source}: {key} has shape {list(tensor.shape)}, the model needs {list(ours[key].shape)}"
            )
    module.load_state_dict({key: tensor.to(ours[key].dtype) for key, tensor in mapping.items()}, strict=True)


def _names(keys: Sequence[str], limit: int = 12) -> str:
    """``a, b, c`` (and ``... and N more`` past ``limit``)."""
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown} ... and {len(keys) - limit} more"
