"""Named AdaFocusV2 configurations: the authors' architectures and their training recipe.

``paper_activitynet()`` is the architecture alone (an :class:`AdaFocusConfig`). A *training
preset* adds the recipe of the authors' ``main_v2.py`` / ``scripts/train.sh`` and is what
``python training/train.py --preset NAME`` starts from:

    python training/train.py --preset paper_activitynet --data /data/actnet --out runs/actnet \\
        --global-weights mobilenet_v2.pth --local-weights resnet50.pth

The options are layered: TrainConfig's defaults, then the preset's options, then a
``--config FILE``'s entries, then the flags given on the command line (``--patch-size 96``
after ``--preset paper_activitynet`` trains the patch-96 model). The run's ``config.json``
records the preset's name with every resolved option.

The recipe (ActivityNet and FCVID; Mini-Kinetics takes lr 0.003 at batch 48): SGD with
momentum 0.9 and no Nesterov, weight decay 1e-4 on every parameter (BN and biases
included), base lr 0.002 at batch 32, cosine schedule over 50 epochs without warm-up,
learning-rate multipliers glance (and its auxiliary head) 0.5, policy 0.1, focus (and its
auxiliary head) 1, classifier 5, dropout 0.2 in the classifier and before both auxiliary
heads, frames fed coarse to fine, exit confidence the maximum raw logit. One difference
remains: their cosine steps once per epoch (and runs a 51st epoch at lr 0), ours per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from training.engine.options import build_parser, from_mapping, load_config_file

from .config import TrainConfig
from .model import AdaFocusConfig


def paper_activitynet(patch_size: int = 128, num_classes: int = 200) -> AdaFocusConfig:
    """The AdaFocusV2 ActivityNet configuration: MobileNetV2 glance on the full 224x224 frame,
    ResNet-50 focus on a ``patch_size`` patch, GRU-2048 policy, 4096-wide pooling classifier,
    16 frames fed coarse to fine, dropout 0.2 in the classifier and before the auxiliary heads.
    The paper's per-frame GMACs: 1.1010 / 1.6848 / 2.4355 at patch 96 / 128 / 160.
    """
    return AdaFocusConfig(
        num_classes=num_classes,
        num_frames=16,
        frame_size=224,
        glance_size=224,
        patch_size=patch_size,
        global_model="mobilenetv2",
        global_kwargs={},
        local_model="resnet50",
        local_kwargs={},
        policy_channels=64,
        policy_hidden=2048,
        classifier="pooling",
        classifier_width=4096,
        dropout=0.2,
        aux_dropout=0.2,
        frame_order="coarse_to_fine",
    )


PRESETS = {"paper_activitynet": paper_activitynet}

# The authors' recipe for ActivityNet and FCVID (main_v2.py with scripts/train.sh's flags).
PAPER_RECIPE: dict[str, Any] = {
    "optimizer": "sgd",
    "nesterov": False,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "decay_all_parameters": True,
    "lr": 2e-3,
    "batch_size": 32,
    "epochs": 50,
    "warmup_epochs": 0.0,
    "label_smoothing": 0.0,
    "lr_global": 0.5,
    "lr_policy": 0.1,
    "lr_local": 1.0,
    "lr_classifier": 5.0,
    "random_patch_branch": True,
    "auxiliary_losses": True,
    "stop_gradient": True,
    "confidence": "max_logit",
}

# Architecture entries a preset does not set: the classes come from the data, and the rest are
# not training options (the V1 policy and frame skipping follow from --method).
_NOT_OPTIONS = {"num_classes", "policy", "skip_frames"}


def _architecture_options(architecture: AdaFocusConfig) -> dict[str, Any]:
    return {key: value for key, value in architecture.as_dict().items() if key not in _NOT_OPTIONS}


TRAINING_PRESETS: dict[str, dict[str, Any]] = {
    "paper_activitynet": {**_architecture_options(paper_activitynet()), **PAPER_RECIPE},
    "paper_minikinetics": {
        **_architecture_options(paper_activitynet()),
        **PAPER_RECIPE,
        "lr": 3e-3,
        "batch_size": 48,
    },
}


def preset_options(name: str | None) -> dict[str, Any]:
    """The TrainConfig options of the training preset ``name`` (none: no options)."""
    if name is None:
        return {}
    if name not in TRAINING_PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(TRAINING_PRESETS)}")
    return {**_copy(TRAINING_PRESETS[name]), "preset": name}


def _copy(options: dict[str, Any]) -> dict[str, Any]:
    return {key: dict(value) if isinstance(value, dict) else value for key, value in options.items()}


def resolve_options(explicit: dict[str, Any], file_values: dict[str, Any] | None = None) -> TrainConfig:
    """A TrainConfig from the layers: defaults < the preset < ``file_values`` < ``explicit``.

    The preset is the one ``explicit`` names, else the one ``file_values`` names.
    """
    file_values = dict(file_values or {})
    name = explicit.get("preset", file_values.get("preset"))
    return from_mapping(TrainConfig, {**preset_options(name), **file_values, **explicit})


def train_config(preset: str | None = None, **overrides: Any) -> TrainConfig:
    """The TrainConfig of ``preset`` with ``overrides`` (as flags would give them)."""
    return resolve_options({**overrides, **({"preset": preset} if preset else {})})


def parse_train_config(argv: Sequence[str] | None = None, **parser_kwargs: Any) -> TrainConfig:
    """``python training/train.py``'s options: defaults, ``--preset``, ``--config FILE``, flags."""
    parser = build_parser(TrainConfig, **parser_kwargs)
    explicit = vars(parser.parse_args(argv))  # only the flags given: the others are suppressed
    config_path = explicit.pop("config", None)
    file_values: dict[str, Any] = {}
    if config_path is not None:
        try:
            file_values = load_config_file(config_path)
        except (OSError, ValueError) as error:
            parser.error(f"cannot read --config {config_path}: {error}")
    try:
        return resolve_options(explicit, file_values)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits
