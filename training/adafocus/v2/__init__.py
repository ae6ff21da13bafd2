"""AdaFocusV2: the differentiable location regressor and the one-stage training."""
