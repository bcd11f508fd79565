"""`RegionGlobalMixDataset`: region and global samples at a fixed ratio in every batch.

An item of this dataset is a GROUP of `region_per_group` region samples followed by
`global_per_group` global samples, and `collater` flattens a batch of groups into one batch of
samples. Whatever the sampler does (shuffling, DistributedSampler's split across ranks and its
padding), every batch of B groups holds exactly B * region_per_group region samples and
B * global_per_group global ones, so LAVIS's `batch_size_train` counts groups:
B * (region_per_group + global_per_group) samples per batch and rank.

One epoch visits every region sample once (group g holds region samples g, g + L, g + 2L, ...
of the concatenated region sources, L = len(self)); global samples are taken in the same way,
shifted by L * global_per_group each epoch, so a large global pool is walked through across
epochs instead of repeating its first part.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch.utils.data import ConcatDataset, Dataset
from torch.utils.data.dataloader import default_collate

from lavis_regionvlm.datasets.base import SAMPLE_KEYS


class RegionGlobalMixDataset(Dataset):
    """Groups of region + global samples (see the module doc)."""

    def __init__(self, region_sources: Mapping[str, Dataset], global_sources: Mapping[str, Dataset],
                 region_per_group: int = 1, global_per_group: int = 1):
        if region_per_group < 1 or global_per_group < 0:
            raise ValueError(f"a group needs region >= 1 and global >= 0 samples, got "
                             f"region={region_per_group}, global={global_per_group}")
        self.region_sources, self.global_sources = dict(region_sources), dict(global_sources)
        self.region_per_group, self.global_per_group = region_per_group, global_per_group
        self._region = ConcatDataset(list(self.region_sources.values())) if self.region_sources else None
        self._global = ConcatDataset(list(self.global_sources.values())) if self.global_sources else None
        if self._region is None or len(self._region) == 0:
            raise ValueError("the mixture has no region sample; check its region_sources")
        if global_per_group and (self._global is None or len(self._global) == 0):
            raise ValueError(f"groups take {global_per_group} global samples, but global_sources give none")
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self._region) / self.region_per_group)

    def group_indices(self, group: int) -> tuple[list[int], list[int]]:
        """Indices into the concatenated region and global sources of group `group` this epoch."""
        if not 0 <= group < len(self):
            raise IndexError(f"group {group} out of range [0, {len(self)})")
        size = len(self)
        region = [(group + j * size) % len(self._region) for j in range(self.region_per_group)]
        shift = self.epoch * size * self.global_per_group
        globals_ = [(shift + group + j * size) % len(self._global) for j in range(self.global_per_group)]
        return region, globals_

    def __getitem__(self, group: int) -> dict[str, list[Any]]:
        """{key: [value per sample]} for the keys SAMPLE_KEYS, region samples first."""
        region, globals_ = self.group_indices(group)
        samples = [self._region[i] for i in region] + [self._global[i] for i in globals_]
        return {key: [sample[key] for sample in samples] for key in SAMPLE_KEYS}

    def collater(self, groups: Sequence[Mapping[str, list[Any]]]) -> dict[str, Any]:
        """Flatten groups into samples and collate them: image (B * G, 3, S, S), texts lists."""
        samples = [dict(zip(group, values)) for group in groups for values in zip(*group.values())]
        return default_collate(samples)

    def set_epoch(self, epoch: int) -> None:
        """Use `epoch`'s global samples and region draws (before the DataLoader iterator is made)."""
        self.epoch = int(epoch)
        for source in (*self.region_sources.values(), *self.global_sources.values()):
            source.set_epoch(epoch)

    @property
    def skip_counts(self) -> dict[str, Any]:
        """Skip counts of every source, by source name."""
        sources = {**self.region_sources, **self.global_sources}
        return {name: getattr(source, "skip_counts", {}) for name, source in sources.items()}

    def summary(self) -> str:
        """The group, the sizes and the sources' skip counts, for the log."""
        sources = {**self.region_sources, **self.global_sources}
        parts = [f"{name}: {source.summary()}" if hasattr(source, "summary") else f"{name}: {len(source)} samples"
                 for name, source in sources.items()]
        return (f"{len(self)} groups of {self.region_per_group} region + {self.global_per_group} global "
                f"samples; " + "; ".join(parts))
