"""The AdaFocus model family: the glance-focus-classify model that AdaFocusV2, AdaFocus V1 (``v1/``)
and the baselines share, its losses, costs, evaluation and the end of a run."""

from .classifiers import PoolingClassifier, RecurrentClassifier
from .costs import StepCosts, step_costs
from .crop import PatchCrop
from .model import VARIANTS, AdaFocusConfig, AdaFocusV2, ClipOutput, StepState, coarse_to_fine_order
from .v2.policy import PatchPolicy

__all__ = [
    "VARIANTS",
    "AdaFocusConfig",
    "AdaFocusV2",
    "ClipOutput",
    "PatchCrop",
    "PatchPolicy",
    "PoolingClassifier",
    "RecurrentClassifier",
    "StepCosts",
    "StepState",
    "coarse_to_fine_order",
    "step_costs",
]
