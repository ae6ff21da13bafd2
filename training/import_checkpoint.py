"""Import a checkpoint of another code base into a run folder of ours.

    python training/import_checkpoint.py resnet50-11ad3fa6.pth --format torchvision-resnet \\
        --labels imagenet_classes.txt --out runs/resnet50_imagenet
    python training/import_checkpoint.py mobilenet_v2-7ebf99e0.pth --format torchvision-mobilenetv2 --out runs/mbv2

Every tensor of the file is used or reported by name; a file of another format, a truncated
file or a shape mismatch is an error naming the key (exit 2). The run folder has the layout
of the model's training command (docs/import.md), so our tools evaluate, fine-tune and
export it like a run of their own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.checkpoints.formats import FORMATS, ImportOptions, format_names, import_file
from training.checkpoints.reader import CheckpointError
from training.checkpoints.run_folder import check_out_folder, read_labels, write_run_folder


def _formats_help() -> str:
    names = format_names()  # registers the built-in formats
    lines = [f"  {name}: {FORMATS[name].summary}" for name in names if FORMATS[name].implemented]
    planned = [f"  {name}: {FORMATS[name].summary}" for name in names if not FORMATS[name].implemented]
    text = "formats:\n" + "\n".join(lines)
    if planned:
        text += "\nplanned (refused for now):\n" + "\n".join(planned)
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python training/import_checkpoint.py",
        description=__doc__.split("\n")[0],
        epilog=_formats_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, help="the checkpoint file (.pth / .pt / .tar)")
    parser.add_argument("--format", required=True, metavar="FORMAT", help="one of the formats below")
    parser.add_argument("--patch-size", type=int, help="focus patch side (AdaFocus formats)")
    parser.add_argument("--labels", type=Path, help="class names, one a line (default: class_0..N-1, with a warning)")
    parser.add_argument("--out", type=Path, required=True, help="the run folder to write (new or empty)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_out_folder(args.out)  # before the (possibly long) read
        imported = import_file(args.file, args.format, ImportOptions(patch_size=args.patch_size))
        classes, warning = read_labels(args.labels, imported.num_classes)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        write_run_folder(imported, args.out, classes, args.file, args.format)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for note in imported.notes:
        print(f"note: {note}", file=sys.stderr)
    what = f"{imported.model_name}, {imported.num_classes} classes"
    print(f"imported {args.file} ({args.format}) as {what}, into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
