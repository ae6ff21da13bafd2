"""The run folder an import writes: the layout of the training command of the model's kind.

An AdaFocus video model (``kind == "adafocus"``) gets what ``python training/train.py`` leaves:
``model.pt`` (:class:`~training.adafocus.record.ModelRecord`: the architecture, classes, frame
geometry, normalisation, exit criterion and operating points, MACs counted from the model)
and ``summary.json``; ``python training/export.py RUN_DIR`` exports it unchanged. Without a
calibration split the only operating point is ``full`` (every frame; its accuracy unmeasured).

A whole-clip TSM model (``kind == "adafocus_tsm"``, the Sth-Sth / Jester family) gets
``model.pt`` (:class:`~training.adafocus.sthsth_record.TsmModelRecord`: the architecture,
classes, frame geometry, normalisation and the MACs of one pass) and ``summary.json``; it
has no operating points (no early exit), and ``python training/export.py RUN_DIR`` exports
it as one ``clip`` graph.

An image classifier (``kind == "image"``) gets what ``python training/train_image.py`` leaves
at the end of a run: ``model_converted.pt`` (:func:`~training.models.serialization.save_backbone`,
with the classes and where the weights came from), ``config.json`` (an
:class:`~training.image.trainer.ImageTrainConfig` with the model, its builder arguments and
the input size the weights were trained at) and ``summary.json``. There is no
``checkpoint.pt``: a fine-tuning run starts from the weights (``--weights``), not by
resuming the import.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from pipeline.early_exit import NEVER, OperatingPoint
from pipeline.frames.transform import FrameGeometry, Normalisation
from training.image.trainer import ImageTrainConfig
from training.models.serialization import save_backbone

from .formats import ImportedModel
from .reader import CheckpointError

IMAGE_MODEL_FILE = "model_converted.pt"


def read_labels(path: Path | None, num_classes: int) -> tuple[list[str], str | None]:
    """The class names (one a line in ``path``) and a warning when there is no file."""
    if path is None:
        return [
            f"class_{i}" for i in range(num_classes)
        ], f"no --labels: the classes are named class_0..{num_classes - 1}"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"cannot read --labels {path}: {error}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    labels = [line.strip() for line in lines]
    if len(labels) != num_classes:
        raise CheckpointError(f"--labels {path} has {len(labels)} lines, the model has {num_classes} classes")
    blank = [i + 1 for i, label in enumerate(labels) if not label]
    if blank:
        raise CheckpointError(f"--labels {path}: empty label on line(s) {', '.join(map(str, blank[:10]))}")
    return labels, None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_out_folder(out: Path) -> None:
    """Refuse a folder that already holds files: an import never mixes with another run."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(f"--out {out} exists and is not an empty folder; choose a new one")


def write_run_folder(
    imported: ImportedModel, out: Path, classes: list[str], source: Path, format_name: str
) -> dict[str, Any]:
    """Write the run folder of ``imported`` into ``out``; returns its ``summary.json``."""
    if imported.kind not in ("image", "adafocus", "adafocus_tsm"):
        raise CheckpointError(f"no run folder layout for a {imported.kind} model yet")
    check_out_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    origin = {"file": str(source), "sha256": sha256_of(source), "format": format_name, "notes": imported.notes}
    if imported.kind == "adafocus":
        return _write_adafocus(imported, out, classes, origin)
    if imported.kind == "adafocus_tsm":
        return _write_adafocus_tsm(imported, out, classes, origin)
    model_kwargs = {"num_classes": imported.num_classes, **imported.model_kwargs}
    save_backbone(
        imported.model, out / IMAGE_MODEL_FILE, imported.model_name, model_kwargs, classes=classes, imported=origin
    )
    config = _image_config(imported, out, source, format_name)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
    summary = {
        "model": imported.model_name,
        "model_kwargs": model_kwargs,
        "converted": bool(getattr(imported.model, "converted", False)),
        "classes": classes,
        "preprocessing": imported.preprocessing,
        "imported": origin,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _image_config(imported: ImportedModel, out: Path, source: Path, format_name: str) -> ImageTrainConfig:
    """The image-training options that go with these weights (model, input size, eval crop)."""
    pre = imported.preprocessing
    changes: dict[str, Any] = {"out": str(out), "model": imported.model_name, "model_kwargs": imported.model_kwargs}
    if "input_size" in pre:
        changes["input_size"] = pre["input_size"]
        if "resize" in pre:
            changes["eval_crop"] = pre["input_size"] / pre["resize"]
    changes["weights"] = str(source)
    changes["weights_format"] = format_name
    return dataclasses.replace(ImageTrainConfig(), **changes)


def full_operating_point(num_frames: int, gmacs_per_frame: float) -> OperatingPoint:
    """The ``full`` point: every frame processed (no early exit), accuracy not measured."""
    return OperatingPoint(
        thresholds=[NEVER] * (num_frames - 1) + [-NEVER],
        expected_gmacs=gmacs_per_frame * num_frames,
        accuracy=None,
        exit_fractions=[0.0] * (num_frames - 1) + [1.0],
        name="full",
        names=["full"],
    )


def _write_adafocus(imported: ImportedModel, out: Path, classes: list[str], origin: dict) -> dict[str, Any]:
    """``model.pt`` and ``summary.json`` of an imported AdaFocus model (a run of train.py's layout)."""
    # Imported late: the image importers must not pull in the video model's modules.
    from training.adafocus.costs import step_costs
    from training.adafocus.record import ModelRecord, save_model

    model, pre = imported.model, imported.preprocessing
    costs = step_costs(model)
    point = full_operating_point(model.config.num_frames, costs.total / 1e9)
    record = ModelRecord(
        config=model.config,
        method="adafocus_v2",
        classes=classes,
        multi_label=False,
        geometry=FrameGeometry(resize=pre["resize"], crop=pre["input_size"]),
        normalisation=Normalisation(tuple(pre["mean"]), tuple(pre["std"])),  # type: ignore[arg-type]
        confidence=imported.confidence or "max_prob",
        operating_points=[point.as_dict()],
        step_macs=costs.as_dict(),
        train_config={"imported": origin},
    )
    save_model(out / "model.pt", model, record)
    summary = {
        "method": record.method,
        "variant": model.config.variant,
        "config": model.config.as_dict(),
        "classes": classes,
        "preprocessing": pre,
        "confidence": record.confidence,
        "step_macs": costs.as_dict(),
        "gmacs_per_frame": costs.total / 1e9,
        "gmacs_per_video_full": point.expected_gmacs,
        "operating_points": record.operating_points,
        "imported": origin,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _write_adafocus_tsm(imported: ImportedModel, out: Path, classes: list[str], origin: dict) -> dict[str, Any]:
    """``model.pt`` (:class:`~training.adafocus.sthsth_record.TsmModelRecord`) and ``summary.json``
    of an imported whole-clip TSM model; ``python training/export.py`` exports it as one graph."""
    from training.adafocus.sthsth_record import TsmModelRecord, clip_macs, save_tsm_model

    model, pre = imported.model, imported.preprocessing
    record = TsmModelRecord(
        config=model.config,
        classes=classes,
        multi_label=False,
        geometry=FrameGeometry(resize=pre["resize"], crop=pre["input_size"]),
        normalisation=Normalisation(tuple(pre["mean"]), tuple(pre["std"])),  # type: ignore[arg-type]
        macs_per_clip=clip_macs(model),
        train_config={"imported": origin},
    )
    save_tsm_model(out / "model.pt", model, record)
    summary = {
        "method": "adafocus_v2",
        "variant": "adafocus_v2_tsm",
        "temporal": "whole_clip",
        "config": model.config.as_dict(),
        "classes": classes,
        "preprocessing": pre,
        "gmacs_per_clip": record.macs_per_clip / 1e9,
        "imported": origin,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
