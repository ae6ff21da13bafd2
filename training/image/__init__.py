"""Image classification training (the CondenseNetV2 recipe) for backbones."""
