"""Fixtures of the training tests (torch)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tests.training.tiny import TINY_CONDENSENET
from training.data.synthetic import SyntheticConfig, generate
from training.models import create_model


@pytest.fixture
def tiny_condensenet() -> nn.Module:
    torch.manual_seed(0)
    return create_model("condensenetv2_cifar", **TINY_CONDENSENET)


def pytest_configure(config: pytest.Config) -> None:
    # Under pytest-xdist each worker gets one core's worth of threads: two workers with
    # two threads each on a two-core machine would fight over the cores.
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A 28-clip synthetic video dataset at 32x32, for training runs in tests."""
    root = tmp_path_factory.mktemp("tiny_synthetic")
    generate(root, SyntheticConfig(seed=3, train=12, calibration=8, test=8, frames=8, size=32), workers=1)
    return root
