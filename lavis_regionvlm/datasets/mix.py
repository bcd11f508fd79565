"""`RegionGlobalMixDataset`: region samples mixed with global (whole-image) caption samples.

Two ways to mix (`region_ratio` or `region_per_group`/`global_per_group`):

- "ratio" (as released): item i is a region sample with probability `region_ratio` (0.6 in the
  released code) and a global one otherwise, drawn with the plugin's seeded stream
  (seed, epoch, i). A region item is item i of the concatenated region sources (with
  `sampling.epoch_unit: image`, one random phrase of image record i); a global item is a draw
  from the global sources (`GlobalCaptionDataset.draw_index`: by the files' weights, e.g. 10%
  COCO and 90% LAION as released). An epoch has one item per region item, so it visits every
  image record once, about `region_ratio` of them as region samples. Batches hold the ratio on
  average only.

- "group" (ours): an item is a GROUP of `region_per_group` region samples followed by
  `global_per_group` global samples. Whatever the sampler does (shuffling,
  DistributedSampler's split across ranks and its padding), every batch of B groups holds
  exactly B * region_per_group region samples and B * global_per_group global ones, so LAVIS's
  `batch_size_train` counts groups: B * (region_per_group + global_per_group) samples per batch
  and rank. One epoch visits every region item once (group g holds region items g, g + L,
  g + 2L, ... of the concatenated region sources, L = len(self)); global samples are taken in
  the same way, shifted by L * global_per_group each epoch, so a large global pool is walked
  through across epochs instead of repeating its first part.

In both modes an item is returned as a group (of one sample in "ratio" mode) and `collater`
flattens a batch of groups into one batch of samples.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
from torch.utils.data import ConcatDataset, Dataset
from torch.utils.data.dataloader import default_collate

from lavis_regionvlm.common.seeding import seeded_rng
from lavis_regionvlm.datasets.base import SAMPLE_KEYS

NAME = "region_global_mix"


class RegionGlobalMixDataset(Dataset):
    """Region and global samples, mixed by ratio or in fixed groups (see the module doc)."""

    def __init__(self, region_sources: Mapping[str, Dataset], global_sources: Mapping[str, Dataset],
                 region_per_group: int = 1, global_per_group: int = 1, region_ratio: Optional[float] = None,
                 seed: int = 0):
        """region_ratio: None for groups; else the probability (in [0, 1]) that an item is a
        region sample, and the group sizes are not used. seed: the mixture's draws."""
        if region_ratio is None and (region_per_group < 1 or global_per_group < 0):
            raise ValueError(f"a group needs region >= 1 and global >= 0 samples, got "
                             f"region={region_per_group}, global={global_per_group}")
        if region_ratio is not None and not 0.0 <= region_ratio <= 1.0:
            raise ValueError(f"region_ratio must lie in [0, 1], got {region_ratio}")
        self.region_sources, self.global_sources = dict(region_sources), dict(global_sources)
        self.region_per_group, self.global_per_group = region_per_group, global_per_group
        self.region_ratio, self.seed = region_ratio, seed
        self._region = ConcatDataset(list(self.region_sources.values())) if self.region_sources else None
        self._global = ConcatDataset(list(self.global_sources.values())) if self.global_sources else None
        if self._region is None or len(self._region) == 0:
            raise ValueError("the mixture has no region sample; check its region_sources")
        needs_global = global_per_group > 0 if region_ratio is None else region_ratio < 1.0
        if needs_global and (self._global is None or len(self._global) == 0):
            raise ValueError("the mixture takes global samples, but global_sources give none")
        self.epoch = 0

    def __len__(self) -> int:
        if self.region_ratio is not None:
            return len(self._region)
        return math.ceil(len(self._region) / self.region_per_group)

    def group_indices(self, group: int) -> tuple[list[int], list[int]]:
        """Indices into the concatenated region and global sources of item `group` this epoch."""
        if not 0 <= group < len(self):
            raise IndexError(f"item {group} out of range [0, {len(self)})")
        size = len(self)
        if self.region_ratio is not None:
            rng = seeded_rng(self.seed, NAME, self.epoch, group)
            if rng.random() < self.region_ratio:
                return [group], []
            return [], [self._draw_global(rng)]
        region = [(group + j * size) % len(self._region) for j in range(self.region_per_group)]
        shift = self.epoch * size * self.global_per_group
        globals_ = [(shift + group + j * size) % len(self._global) for j in range(self.global_per_group)]
        return region, globals_

    def _draw_global(self, rng: np.random.Generator) -> int:
        """A global sample drawn with `rng`: a source (by size), then its own `draw_index`."""
        sources = list(self.global_sources.values())
        sizes = np.array([len(source) for source in sources], dtype=np.float64)
        which = int(rng.choice(len(sources), p=sizes / sizes.sum())) if len(sources) > 1 else 0
        source = sources[which]
        draw = getattr(source, "draw_index", None)
        local = draw(rng) if draw is not None else int(rng.integers(len(source)))
        return int(sizes[:which].sum()) + local

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
        """Use `epoch`'s draws (before the DataLoader iterator is made)."""
        self.epoch = int(epoch)
        for source in (*self.region_sources.values(), *self.global_sources.values()):
            source.set_epoch(epoch)

    @property
    def skip_counts(self) -> dict[str, Any]:
        """Skip counts of every source, by source name."""
        sources = {**self.region_sources, **self.global_sources}
        return {name: getattr(source, "skip_counts", {}) for name, source in sources.items()}

    def summary(self) -> str:
        """The mixing, the sizes and the sources' skip counts, for the log."""
        sources = {**self.region_sources, **self.global_sources}
        parts = [f"{name}: {source.summary()}" if hasattr(source, "summary") else f"{name}: {len(source)} samples"
                 for name, source in sources.items()]
        if self.region_ratio is not None:
            mixing = f"{len(self)} items, each a region sample with probability {self.region_ratio}"
        else:
            mixing = f"{len(self)} groups of {self.region_per_group} region + {self.global_per_group} global samples"
        return f"{mixing}; " + "; ".join(parts)
