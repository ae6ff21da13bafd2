"""The weight formula of the import formats' reference data (shared by their tests and bench/bench_import.py).

Tensor number ``n`` of a layout (file order) with ``c`` elements takes
``u = uniform(100000 * seed + n, c)`` (splitmix64 of the element index, in [-1, 1)) and, by
its name: conv/linear ``weight`` ``u * sqrt(3 * gain / fan_in)`` (gain 2 for convs), BN
``weight`` ``1 + 0.2 u``, ``bias`` and ``running_mean`` ``0.1 u``, ``running_var``
``1 + 0.25 (u + 1)``, ``num_batches_tracked`` 0. Only integer arithmetic and one division
per value: every machine computes the same float32 bits, so the data's authors' outputs
need no stored weights.
"""

from __future__ import annotations

import numpy as np


def uniform(number: int, count: int) -> np.ndarray:
    """``count`` values in [-1, 1): splitmix64 of ``number * 2**32 + i``."""
    with np.errstate(over="ignore"):
        x = np.arange(count, dtype=np.uint64) + np.uint64(number) * np.uint64(1 << 32)
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53) * 2.0 - 1.0


def tensor_value(key: str, shape: list[int], number: int, seed: int) -> np.ndarray:
    """Tensor number ``number`` of a layout, named ``key``: see the module docstring."""
    count = int(np.prod(shape)) if shape else 1
    u = uniform(seed * 100_000 + number, count).reshape(shape)
    name = key.rsplit(".", 1)[-1]
    if name == "num_batches_tracked":
        return np.zeros(shape, np.int64)
    if name == "running_var":
        return (1.0 + 0.25 * (u + 1.0)).astype(np.float32)
    if name in ("running_mean", "bias"):
        return (0.1 * u).astype(np.float32)
    if name == "weight" and len(shape) == 1:  # BN gamma
        return (1.0 + 0.2 * u).astype(np.float32)
    gain = 2.0 if len(shape) == 4 else 1.0
    return (u * np.sqrt(3.0 * gain / int(np.prod(shape[1:])))).astype(np.float32)
