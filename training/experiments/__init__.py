"""Experiments: AdaFocusV2 against its baselines and ablations, and V1 against V2."""
