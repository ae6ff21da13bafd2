"""Every option of ``python training/train.py`` (a flag each, or a config-file entry)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.frames.transform import IMAGENET, Normalisation

from .model import AdaFocusConfig, Classifier, FrameOrder, GlanceResize, Variant

Method = Literal["adafocus_v2", "adafocus_v1"]
Optimizer = Literal["adamw", "sgd"]
Confidence = Literal["max_prob", "max_logit", "entropy"]
V1Policy = Literal["grid", "gaussian"]
# Named configurations (training/adafocus/presets.py: the architecture and the training recipe).
Preset = Literal["paper_activitynet", "paper_minikinetics"]
PolicyHeadInit = Literal["centre", "pytorch"]
# The default architecture: one source for the model options below.
_ARCHITECTURE = AdaFocusConfig(num_classes=1)


def _help(text: str) -> Any:
    return {"help": text}


@dataclass
class TrainConfig:
    # -- a named configuration (training/adafocus/presets.py) ----------------------------
    preset: Preset | None = field(
        default=None,
        metadata=_help(
            "start from a named configuration: paper_activitynet (also FCVID) or paper_minikinetics, the "
            "AdaFocusV2 authors' architecture and training recipe; --config and explicit flags override it"
        ),
    )
    # -- data ---------------------------------------------------------------------------
    data: str | None = field(
        default=None,
        metadata=_help("dataset folder or list (see training/data/splits.py); none: the synthetic benchmark"),
    )
    out: str = field(default="runs/adafocus", metadata=_help("run folder"))
    method: Method = field(default="adafocus_v2", metadata=_help("training method: adafocus_v2 or adafocus_v1"))
    calibration_fraction: float = field(
        default=0.1, metadata=_help("share of training videos held out for calibration when there is no such split")
    )
    resize: int | None = field(
        default=None,
        metadata=_help("shorter side before the centre crop (none: frame size on the synthetic data, else 8/7 of it)"),
    )
    # -- model (see training/adafocus/model.py; the defaults are AdaFocusConfig's) --------
    variant: Variant = field(
        default=_ARCHITECTURE.variant,
        metadata=_help("adafocus_v2, or a baseline: random_patch, centre_patch, glance_only, full_frame"),
    )
    num_frames: int = field(default=_ARCHITECTURE.num_frames, metadata=_help("frames sampled per video (T)"))
    frame_size: int = field(default=_ARCHITECTURE.frame_size, metadata=_help("side of the model's square frame"))
    glance_size: int = field(
        default=_ARCHITECTURE.glance_size, metadata=_help("side of the global network's downsampled view")
    )
    glance_resize: GlanceResize = field(
        default=_ARCHITECTURE.glance_resize,
        metadata=_help("auto (average pooling for an integer factor, else bilinear) or bilinear_align_corners"),
    )
    patch_size: int = field(default=_ARCHITECTURE.patch_size, metadata=_help("side of the focus patch"))
    global_model: str = field(default=_ARCHITECTURE.global_model, metadata=_help("registry name of the global network"))
    global_kwargs: dict = field(
        default_factory=lambda: dict(_ARCHITECTURE.global_kwargs),
        metadata=_help("global network builder arguments, as JSON"),
    )
    local_model: str = field(default=_ARCHITECTURE.local_model, metadata=_help("registry name of the local network"))
    local_kwargs: dict = field(
        default_factory=lambda: dict(_ARCHITECTURE.local_kwargs),
        metadata=_help("local network builder arguments, as JSON"),
    )
    global_weights: str | None = field(
        default=None,
        metadata=_help(
            "start the global network from these weights (a torchvision ImageNet file, say; docs/import.md); "
            "not reloaded when the run resumes"
        ),
    )
    local_weights: str | None = field(
        default=None, metadata=_help("start the local network from these weights (as --global-weights)")
    )
    policy_channels: int = field(default=_ARCHITECTURE.policy_channels, metadata=_help("policy 1x1-conv width"))
    policy_hidden: int = field(default=_ARCHITECTURE.policy_hidden, metadata=_help("policy GRU width"))
    classifier: Classifier = field(default=_ARCHITECTURE.classifier, metadata=_help("pooling or gru"))
    classifier_width: int = field(default=_ARCHITECTURE.classifier_width, metadata=_help("classifier hidden width"))
    shared_head: bool = field(default=_ARCHITECTURE.shared_head, metadata=_help("one classifier head for every step"))
    dropout: float = field(default=_ARCHITECTURE.dropout, metadata=_help("classifier dropout"))
    aux_dropout: float = field(
        default=_ARCHITECTURE.aux_dropout, metadata=_help("dropout before the two auxiliary heads")
    )
    frame_order: FrameOrder = field(
        default=_ARCHITECTURE.frame_order, metadata=_help("chronological or coarse_to_fine")
    )
    # -- normalisation (recorded with the model and in the manifest; the service applies it) --
    mean: tuple[float, float, float] = field(
        default=IMAGENET.mean, metadata=_help("RGB mean of the frames on [0, 1] pixels (ImageNet's by default)")
    )
    std: tuple[float, float, float] = field(
        default=IMAGENET.std, metadata=_help("RGB standard deviation of the frames on [0, 1] pixels")
    )
    # -- optimisation -------------------------------------------------------------------
    epochs: int = field(default=5, metadata=_help("training epochs"))
    batch_size: int = field(default=32, metadata=_help("videos per step (over all processes)"))
    optimizer: Optimizer = field(default="adamw", metadata=_help("adamw or sgd (momentum, see --nesterov)"))
    lr: float = field(default=2e-3, metadata=_help("peak learning rate"))
    momentum: float = field(default=0.9, metadata=_help("SGD momentum"))
    nesterov: bool = field(default=True, metadata=_help("SGD with Nesterov momentum (--no-nesterov: plain momentum)"))
    weight_decay: float = field(
        default=1e-4, metadata=_help("weight decay (not on BN or biases unless --decay-all-parameters)")
    )
    decay_all_parameters: bool = field(
        default=False, metadata=_help("weight decay on every parameter, BN and biases included")
    )
    warmup_epochs: float = field(default=0.5, metadata=_help("linear warm-up length"))
    label_smoothing: float = field(default=0.0, metadata=_help("label smoothing (single-label data)"))
    lr_policy: float = field(default=0.1, metadata=_help("learning-rate multiplier of the policy"))
    lr_global: float = field(
        default=1.0, metadata=_help("learning-rate multiplier of the global network and its auxiliary head")
    )
    lr_local: float = field(
        default=1.0, metadata=_help("learning-rate multiplier of the local network and its auxiliary head")
    )
    lr_classifier: float = field(default=1.0, metadata=_help("learning-rate multiplier of the classifier"))
    # -- the one-stage scheme's three fixes (switch off for ablations) -------------------
    random_patch_branch: bool = field(default=True, metadata=_help("second branch on random patches"))
    auxiliary_losses: bool = field(default=True, metadata=_help("per-frame losses on both networks"))
    stop_gradient: bool = field(default=True, metadata=_help("the policy reads detached global features"))
    # -- additions to the paper's recipe (docs/adafocus.md, "Why the policy stayed at the centre") --
    policy_noise: float = field(
        default=0.0,
        metadata=_help(
            "Gaussian noise on the policy branch's locations in training (standard deviation as a share of "
            "the location range), decaying linearly to 0 by the end; 0: off (the paper)"
        ),
    )
    policy_head_init: PolicyHeadInit = field(
        default="centre",
        metadata=_help(
            "the policy's last layer at the start: centre (zeros: every patch starts at the centre) or "
            "pytorch (PyTorch's default, as the authors' code: patches start spread by the glance)"
        ),
    )
    crop_gradient_blur: float = field(
        default=0.0,
        metadata=_help("the crop's location gradient through a frame blurred by this many pixels; 0: off (the paper)"),
    )
    # -- AdaFocus V1 (--method adafocus_v1; see training/adafocus/v1/trainer.py) ---------
    v1_policy: V1Policy = field(default="grid", metadata=_help("V1 policy: grid (7x7 corners, PPO) or gaussian"))
    v1_stage_epochs: list[int] = field(
        default_factory=lambda: [1, 3, 2, 1],
        metadata=_help("V1 epochs of stages 0-3: full frames, random patches, PPO, fine-tuning (JSON list)"),
    )
    v1_skip_cost: float | None = field(
        default=None,
        metadata=_help(
            "V1 frame skipping: the policy may also skip a frame's focus; this is the reward cost of "
            "focusing (none: no skipping)"
        ),
    )
    ppo_lr: float = field(default=3e-4, metadata=_help("V1 stage 2: Adam learning rate of the policy"))
    ppo_gamma: float = field(default=0.7, metadata=_help("V1 stage 2: reward discount"))
    ppo_clip: float = field(default=0.2, metadata=_help("V1 stage 2: PPO ratio clip"))
    ppo_value_coef: float = field(default=0.5, metadata=_help("V1 stage 2: critic loss weight"))
    ppo_entropy_coef: float = field(default=0.01, metadata=_help("V1 stage 2: entropy bonus weight"))
    # -- conditional exit ---------------------------------------------------------------
    confidence: Confidence = field(default="max_prob", metadata=_help("max_prob, max_logit or entropy"))
    # -- running ------------------------------------------------------------------------
    workers: int = field(default=1, metadata=_help("data-loading processes per training process"))
    eval_batch_size: int = field(default=50, metadata=_help("videos per evaluation batch"))
    seed: int = field(default=0, metadata=_help("random seed"))
    device: str = field(default="auto", metadata=_help("cpu, cuda, cuda:N or auto"))
    amp: bool = field(default=True, metadata=_help("bfloat16 autocast on GPU (ignored on CPU)"))
    checkpoint_every: int = field(default=100, metadata=_help("steps between checkpoints (also at every epoch end)"))
    max_steps: int | None = field(
        default=None, metadata=_help("stop (resumably) after this many steps; the schedule is unchanged")
    )
    restart: bool = field(default=False, metadata=_help("discard an existing checkpoint in --out instead of resuming"))
    strict_data: bool = field(default=False, metadata=_help("stop on an unreadable video instead of skipping it"))
    frame_cache: str | None = field(
        default=None, metadata=_help("folder for an on-disk cache of decoded frames (none: decode every time)")
    )
    frame_cache_gb: float = field(default=8.0, metadata=_help("size cap of the frame cache"))
    progress: bool = field(default=True, metadata=_help("show a progress bar"))

    @property
    def normalisation(self) -> Normalisation:
        """How frames are normalised for this run's model (training, the record, the manifest)."""
        return Normalisation(tuple(self.mean), tuple(self.std))

    def model_config(self, num_classes: int) -> AdaFocusConfig:
        v1 = self.method == "adafocus_v1"
        if v1 and self.variant != "adafocus_v2":
            raise ValueError(f"--method adafocus_v1 trains the V1 model; --variant {self.variant} is a V2 baseline")
        if v1 and (not self.nesterov or self.decay_all_parameters):
            # V1's staged optimisers are built their own way (training/adafocus/v1/trainer.py).
            raise ValueError("--no-nesterov and --decay-all-parameters apply to --method adafocus_v2 only")
        if not 0 <= self.policy_noise <= 1:
            raise ValueError(f"--policy-noise is a share of the location range, in [0, 1]; got {self.policy_noise}")
        if self.crop_gradient_blur < 0:
            raise ValueError(f"--crop-gradient-blur is a width in pixels, at least 0; got {self.crop_gradient_blur}")
        return AdaFocusConfig(
            num_classes=num_classes,
            num_frames=self.num_frames,
            frame_size=self.frame_size,
            glance_size=self.glance_size,
            glance_resize=self.glance_resize,
            patch_size=self.patch_size,
            global_model=self.global_model,
            global_kwargs=dict(self.global_kwargs),
            local_model=self.local_model,
            local_kwargs=dict(self.local_kwargs),
            policy_channels=self.policy_channels,
            policy_hidden=self.policy_hidden,
            # V1 is defined with the recurrent classifier (its stage 1 trains a GRU).
            classifier="gru" if v1 else self.classifier,
            classifier_width=self.classifier_width,
            shared_head=self.shared_head,
            dropout=self.dropout,
            aux_dropout=self.aux_dropout,
            variant="adafocus_v1" if v1 else self.variant,
            frame_order=self.frame_order,
            policy=self.v1_policy if v1 else "regression",
            skip_frames=v1 and self.v1_skip_cost is not None,
        )
