"""Conditional exit for models that predict after every frame (torch-free, shared with the service).

``calibrate`` turns per-step logits on a held-out calibration split into operating points
(per-step thresholds with their expected cost and accuracy); ``exit_step`` applies one.
"""

from .calibration import (
    CONFIDENCE_KINDS,
    OperatingPoint,
    calibrate,
    choose_operating_point,
    confidence,
    exit_step,
    name_operating_points,
    simulate_exit,
)

__all__ = [
    "CONFIDENCE_KINDS",
    "OperatingPoint",
    "calibrate",
    "choose_operating_point",
    "confidence",
    "exit_step",
    "name_operating_points",
    "simulate_exit",
]
