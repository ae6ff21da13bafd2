"""The AdaFocusV2 (ActivityNet / FCVID / Mini-Kinetics) reference data's weights and inputs.

Shared by the ``--format adafocusv2-actnet`` importer's parity test and bench/bench_import.py. The
data (``tests/data/checkpoints/adafocusv2_actnet_*``) was written by running the authors' code
(LeapLabTHU/AdaFocusV2 e97987c, ``Experiments on ActivityNet, FCVID and Mini-Kinetics``) ad hoc
on these weights and inputs; the repository keeps only the data.

Weights (:func:`authors_state_dict`): tensor number ``n`` of a config's layout (the authors'
``DataParallel(AdaFocus(args)).state_dict()`` order, keys with ``module.``) takes
``weight_formula.tensor_value(key, shape, n, seed)`` (``u = uniform(100000 seed + n, c)``;
conv/linear ``weight`` ``u sqrt(3 gain / fan_in)`` with gain 2 for convs, BN ``weight``
``1 + 0.2 u``, ``bias`` / ``running_mean`` ``0.1 u``, ``running_var`` ``1 + 0.25 (u + 1)``,
``num_batches_tracked`` 0; the GRU's ``weight_{ih,hh}_l0`` fall under the weight rule,
``u sqrt(3 / hidden)``), with these per-key exceptions:

- the GRU's ``policy_stn.gru.bias_{ih,hh}_l0`` take the bias rule, ``0.1 u`` (by name alone
  the formula would give them ``u sqrt(3)``): ``tensor_value`` of the key with its last name
  replaced by ``bias``, same ``n``;
- every ResNet-50 bottleneck's last BN weight (``*.layerL.N.bn3.weight``, in ``local_CNN`` and in
  a ResNet-50 ``global_CNN``) is multiplied by :data:`RESIDUAL_SCALE`, and so is every
  MobileNetV2 residual block's last BN weight (``global_CNN.features.N.conv.7.weight``, N in
  :data:`MBV2_RESIDUAL_BLOCKS`, the blocks with a skip): without it each residual sum doubles
  the activations' variance (eval-mode BN divides by fixed statistics, not the batch's);
- the 16 step heads' ``classifier.classifiers.S.1.weight`` are multiplied by
  :data:`HEAD_SCALE`, so that the step logits are a few units (max |logit| about 8) and
  their top-1 / top-2 margins not tiny;
- ``policy_stn.fc.0.weight`` is multiplied by :data:`POLICY_SCALE`, so that the (row, col)
  sigmoid outputs spread (about 0.08 to 0.92 over the test configs) without saturating.

Each multiplication is of the formula's float32 array by ``np.float32(scale)``.

Inputs: :func:`smooth_clips` (already normalised model inputs, chronological frame order: the
reference feeds them through the authors' ``input_order`` index_select, see
:data:`INPUT_ORDER`) and :func:`e2e_video` (uint8 frames for the decode-to-logits benchmark).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tests.training.checkpoints.weight_formula import tensor_value

DATA = Path(__file__).resolve().parents[2] / "data" / "checkpoints"
LAYOUT_FILE = DATA / "adafocusv2_actnet_layout.json.gz"
REFERENCE_FILE = DATA / "adafocusv2_actnet_reference.npz"
E2E_FILE = DATA / "adafocusv2_actnet_e2e.npz"

RESIDUAL_SCALE = 0.2
HEAD_SCALE = 4.0
POLICY_SCALE = 4.0
# MobileNetV2 (tonylins) blocks with a skip connection: stride 1 and inp == oup
MBV2_RESIDUAL_BLOCKS = (3, 5, 6, 8, 9, 10, 12, 13, 15, 16)

# their test_early_exit.input_order(16): the processing order of the 16 segments
INPUT_ORDER = (7, 0, 15, 3, 11, 1, 5, 9, 13, 2, 4, 6, 8, 10, 12, 14)
# p of their early_exit(): exit shares probs[k] = p**(k+1) / sum_j p**(j+1), k = 0..15
EXIT_P = (0.2, 0.4, 0.6, 1.0, 2.0)


@dataclass(frozen=True)
class Config:
    """One reference config: the authors' ``args`` that shape the model, and the data's inputs."""

    name: str
    glance_arch: str  # "mbv2" (glance at 224) or "res50" (glance at 96, align_corners=True resize)
    num_classes: int
    stn_hidden_dim: int
    patch_size: int
    clips: int  # how many smooth_clips the reference ran (0: e2e only)
    seed: int
    num_segments: int = 16
    input_size: int = 224

    @property
    def glance_size(self) -> int:
        """The glance CNN's input size."""
        return 96 if self.glance_arch == "res50" else self.input_size


MBV2 = Config("mbv2", "mbv2", num_classes=10, stn_hidden_dim=128, patch_size=128, clips=3, seed=0)
RES50 = Config("res50", "res50", num_classes=10, stn_hidden_dim=128, patch_size=96, clips=2, seed=1)
# the published ActivityNet p128 MobileNetV2 checkpoint's shapes (e2e benchmark only)
PAPER = Config("paper", "mbv2", num_classes=200, stn_hidden_dim=2048, patch_size=128, clips=0, seed=2)
CONFIGS = {c.name: c for c in (MBV2, RES50, PAPER)}
TEST_CONFIGS = ("mbv2", "res50")


def load_layout(config: str) -> list[list]:
    """The authors' ``[key, shape, dtype]`` listing of ``config`` (state-dict order)."""
    with gzip.open(LAYOUT_FILE, "rt") as f:
        return json.load(f)[config]


def load_reference(config: str) -> dict[str, np.ndarray]:
    """The authors' outputs for a test config (``<config>/<name>`` entries of the npz, prefix dropped).

    ``step_logits``, ``global_logits``, ``local_logits`` ``(clips, 16, K)`` and ``actions``
    ``(clips, 16, 2)`` (row, col) are in processing order (step ``k`` saw chronological frame
    ``order[k]``); ``p`` ``(P,)``, ``thresholds`` ``(P, 16)`` (their
    ``dynamic_eval_find_threshold``, criterion max logit, these clips' step logits as the
    "train" logits), ``exit_steps`` ``(P, clips)`` (their ``dynamic_evaluate`` with those
    thresholds on the same logits), ``order``, ``margin`` (min top-1 minus top-2 step logit)
    and ``confidence_gap`` (min gap between two clips' max logits at a step).
    """
    with np.load(REFERENCE_FILE) as data:
        prefix = f"{config}/"
        return {k[len(prefix) :]: data[k] for k in data.files if k.startswith(prefix)}


def load_e2e() -> dict[str, np.ndarray]:
    """The authors' outputs for :data:`PAPER` on :func:`e2e_video` through their val pipeline."""
    with np.load(E2E_FILE) as data:
        return {k: data[k] for k in data.files}


def _adjust(key: str, array: np.ndarray) -> np.ndarray:
    """The per-key adjustments of the module docstring."""
    parts = key.split(".")
    scale = 1.0
    if parts[-1] == "weight":
        if parts[-2] == "bn3" and parts[-4].startswith("layer"):
            scale = RESIDUAL_SCALE
        elif (
            parts[1:3] == ["global_CNN", "features"]
            and parts[4:6] == ["conv", "7"]
            and int(parts[3]) in MBV2_RESIDUAL_BLOCKS
        ):
            scale = RESIDUAL_SCALE
        elif parts[1:3] == ["classifier", "classifiers"]:
            scale = HEAD_SCALE
        elif parts[1:4] == ["policy_stn", "fc", "0"]:
            scale = POLICY_SCALE
    return array if scale == 1.0 else array * np.float32(scale)


def authors_state_dict(layout: list, seed: int) -> dict[str, torch.Tensor]:
    """The authors' ``DataParallel(AdaFocus)`` state dict of ``layout`` filled by the formula."""
    state = {}
    for number, (key, shape, _dtype) in enumerate(layout):
        if key.startswith("module.policy_stn.gru.bias_"):
            # the GRU's biases take the formula's bias rule (0.1 u), not its weight rule (u sqrt(3))
            array = tensor_value(key.rsplit(".", 1)[0] + ".bias", shape, number, seed)
        else:
            array = _adjust(key, tensor_value(key, shape, number, seed))
        state[key] = torch.from_numpy(np.array(array, copy=True))  # keeps 0-d shapes
    return state


def smooth_clips(count: int, frames: int = 16, size: int = 224) -> torch.Tensor:
    """``(count, frames, 3, size, size)`` float32 normalised model inputs, in chronological order.

    Clip ``b``, frame ``t``, channel ``c``, pixel ``(h, w)`` (float64, cast to float32):
    ``sin(fh h (c + 1) + fw w + 0.7 b + 0.4 t)
    + (0.5 + 0.3 b) cos(0.023 (h - (b - 1) w) - c + b - 0.3 t)
    + (1.5 - b) exp(-((h - y)^2 + (w - x)^2) / (2 (size / 9)^2))`` with
    ``fh = 0.045 (1 + 0.35 b)``, ``fw = 0.031 (1 - 0.25 b)`` and a blob at
    ``y = size / 5 + 0.04 size t``, ``x = size / 4 + 0.2 size b + 0.035 size t (1 - b)``
    (bright in clip 0, faint in clip 1, dark in clip 2: the clips differ in more than a phase,
    so that their confidences, which the exit rule sorts, are well apart). Meant for
    ``count <= 3``.
    """
    c, h, w = np.meshgrid(np.arange(3), np.arange(size), np.arange(size), indexing="ij")
    sigma2 = 2.0 * (size / 9.0) ** 2
    clips = []
    for b in range(count):
        fh, fw = 0.045 * (1 + 0.35 * b), 0.031 * (1 - 0.25 * b)
        clip = []
        for t in range(frames):
            y0 = size / 5 + 0.04 * size * t
            x0 = size / 4 + 0.2 * size * b + 0.035 * size * t * (1 - b)
            blob = np.exp(-((h - y0) ** 2 + (w - x0) ** 2) / sigma2)
            clip.append(
                np.sin(fh * h * (c + 1) + fw * w + 0.7 * b + 0.4 * t)
                + (0.5 + 0.3 * b) * np.cos(0.023 * (h - (b - 1) * w) - c + b - 0.3 * t)
                + (1.5 - b) * blob
            )
        clips.append(np.stack(clip))
    return torch.from_numpy(np.stack(clips).astype(np.float32))


def e2e_video(frames: int = 16, size: int = 256) -> np.ndarray:
    """``(frames, size, size, 3)`` uint8 RGB frames: integer arithmetic only (same bytes everywhere).

    Pixel ``[t, y, x, c]`` = clip to [0, 255] of: a diagonal gradient
    ``32 + 96 (x (c + 1) + y (3 - c)) // (4 (size - 1))``, plus two blobs
    ``max(0, R^2 - d^2) * A_c // R^2`` (``d`` the distance to a centre moving with ``t``;
    blob 1: centre ``(size/4 + t size/32, size/5 + t size/24)``, ``R = size/6``,
    ``A = (160, 80, 20)``; blob 2: centre ``(3 size/4 - t size/40, 3 size/4 - t size/28)``,
    ``R = size/8``, ``A = (20, 90, 150)``), plus a moving checkerboard
    ``24 ((x // 8 + y // 8 + t) mod 2)``.
    """
    t, y, x, c = np.ogrid[0:frames, 0:size, 0:size, 0:3]
    pixels = 32 + 96 * (x * (c + 1) + y * (3 - c)) // (4 * (size - 1))
    blobs = (
        (size // 4 + t * size // 32, size // 5 + t * size // 24, size // 6, (160, 80, 20)),
        (3 * size // 4 - t * size // 40, 3 * size // 4 - t * size // 28, size // 8, (20, 90, 150)),
    )
    for cy, cx, radius, amplitude in blobs:
        d2 = (y - cy) ** 2 + (x - cx) ** 2
        pixels = pixels + np.maximum(0, radius**2 - d2) * np.array(amplitude)[c] // radius**2
    pixels = pixels + 24 * ((x // 8 + y // 8 + t) % 2)
    return np.ascontiguousarray(np.clip(pixels, 0, 255), dtype=np.uint8)
