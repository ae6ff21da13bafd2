"""Print a backbone's parameters and MACs per sample as JSON, computed from the model.

    python -m training.profile_model condensenetv2_a --input-size 224 --rules paper
    python -m training.profile_model resnet50 --input-size 96 --num-classes 0

Models that condense (CondenseNetV2) are measured in their converted inference form unless
``--training-form`` is given; the measurement condenses a fresh model fully to get there
(the counts do not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import sys

from training.models import list_models
from training.models.profile import profile_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.profile_model", description=__doc__.split("\n")[0])
    parser.add_argument("model", help=f"one of: {', '.join(list_models())}")
    parser.add_argument("--input-size", type=int, default=224, help="square input side in pixels")
    parser.add_argument("--num-classes", type=int, default=None, help="classifier size (0: no head)")
    parser.add_argument(
        "--rules",
        choices=("standard", "paper"),
        default="standard",
        help="standard: conv + linear MACs; paper: CondenseNetV2 rules (activations and pooling too)",
    )
    parser.add_argument("--training-form", action="store_true", help="measure the unconverted model")
    args = parser.parse_args(argv)
    if args.model not in list_models():
        parser.error(f"unknown model {args.model!r}; known models: {', '.join(list_models())}")
    if args.input_size < 1:
        parser.error("--input-size must be positive")
    try:
        result = profile_model(args.model, args.input_size, args.num_classes, args.rules, args.training_form)
    except RuntimeError as error:  # e.g. an input too small for the network's strides
        parser.error(f"{args.model} cannot run at {args.input_size}x{args.input_size}: {error}")
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
