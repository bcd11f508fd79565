"""A training loader whose position (epoch, batch) can be saved and restored exactly."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class ResumableDistributedSampler(Sampler[int]):
    """`DistributedSampler`'s order (seeded shuffle per epoch, padded to equal shards),
    started at any batch of the epoch.

    Indices for epoch e are a permutation drawn from `seed + e`, padded with repeats so
    every rank gets `num_samples` of them, then strided by rank. `start_batch` skips the
    first batches of that rank's shard without loading them.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, batch_size: int,
                 seed: int = 0, shuffle: bool = True) -> None:
        self.dataset_size = len(dataset)
        if self.dataset_size == 0:
            raise ValueError("the training dataset is empty")
        self.num_replicas, self.rank = num_replicas, rank
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.num_samples = math.ceil(self.dataset_size / num_replicas)
        self.epoch, self.start_batch = 0, 0

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def _shard(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.dataset_size, generator=generator).tolist()
        else:
            order = list(range(self.dataset_size))
        total = self.num_samples * self.num_replicas
        order += (order * math.ceil(total / len(order)))[: total - len(order)]
        return order[self.rank : total : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self._shard()[self.start_batch * self.batch_size :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start_batch * self.batch_size)


@dataclass
class RunningLoss:
    """One rank's training loss so far in the epoch: `total` (sum of per-batch losses) and
    `count` (batches). Saved in mid-epoch checkpoints, so a resumed epoch's mean covers the
    batches trained before the interruption too."""

    total: float = 0.0
    count: int = 0

    def add(self, loss: float) -> None:
        self.total += loss
        self.count += 1


class ResumableLoader:
    """Iterates one epoch of batches from (epoch, start_iter), calling `on_step_done(i)`
    when the training step for batch i-1 has finished (at the fetch of batch i).

    `start_iter` tells the training loop which iteration number to continue from, so
    the learning-rate schedule continues too; `running_loss` is where it adds each
    batch's loss, starting from what the batches before `start_iter` added. `__len__`
    counts the batches left.
    """

    def __init__(self, loader: DataLoader, sampler: ResumableDistributedSampler) -> None:
        self.loader, self.sampler = loader, sampler
        self.epoch, self.start_iter = 0, 0
        self.running_loss = RunningLoss()
        self.on_step_done: Callable[[int, int], None] | None = None

    @property
    def iters_per_epoch(self) -> int:
        """Full-epoch length in batches (drop_last)."""
        return self.sampler.num_samples // self.sampler.batch_size

    def set_position(self, epoch: int, start_iter: int = 0, running_loss: Optional[RunningLoss] = None) -> None:
        """Continue at batch `start_iter` of `epoch`, with the loss sums of the batches
        before it (none: zero). The DataLoader's own generator (worker seeds) is reseeded
        from the epoch, so starting an epoch draws nothing from the global RNG, whose state
        a resumed run restores exactly."""
        self.epoch, self.start_iter = epoch, start_iter
        self.running_loss = running_loss if running_loss is not None else RunningLoss()
        self.sampler.set_position(epoch, start_iter)
        self.loader.generator.manual_seed(self.sampler.seed * 100_003 + epoch)

    def __len__(self) -> int:
        return self.iters_per_epoch - self.start_iter

    def __iter__(self):
        for done, batch in enumerate(self.loader, start=self.start_iter):
            if done > self.start_iter and self.on_step_done is not None:
                self.on_step_done(self.epoch, done)
            yield batch
