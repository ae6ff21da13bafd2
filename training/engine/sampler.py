"""A resumable, seeded epoch sampler."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, epoch)`` pairs in an order fixed by ``seed`` and the epoch.

    Passing the epoch along lets a dataset seed its augmentation per (epoch, index), which
    makes a run reproducible whatever the number of loader workers, and lets a resumed run
    skip the ``start`` batches of its epoch that were already trained on.
    Shard ``rank`` of ``world_size`` takes every ``world_size``-th index of the permutation.
    """

    def __init__(
        self,
        size: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch, and skip its first ``start`` samples (of this shard)."""
        self.epoch = epoch
        self.start = start

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        shard = self._order()[self.rank :: self.world_size]
        for index in shard[self.start :]:
            yield index, self.epoch

    def __len__(self) -> int:
        return max(0, len(range(self.rank, self.size, self.world_size)) - self.start)
