"""The base of the plugin's training datasets: fixed sample keys, bad samples replaced and counted.

Every training sample, region or global, is
``{"image": (3, S, S) tensor, "region_text": point text or "", "text_input": "", "text_output": str}``
so LAVIS's `ConcatDataset.collater` (which keeps the keys all samples share) keeps them all.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
from lavis.datasets.datasets.base_dataset import BaseDataset

from lavis_regionvlm.common.seeding import seeded_rng
from lavis_regionvlm.datasets.loading import SampleError
from lavis_regionvlm.preparation.skips import format_counts

logger = logging.getLogger(__name__)

SAMPLE_KEYS = ("image", "region_text", "text_input", "text_output")
MAX_SUBSTITUTES = 20


class SkippingDataset(BaseDataset):
    """A map-style dataset whose unreadable samples are replaced, never fatal, never silent.

    When `load(index)` raises `SampleError`, the kind is counted in `skip_counts`, a warning is
    logged, and a deterministic other index (a function of the seed, the index and the attempt)
    is loaded instead: the whole sample is replaced, so a text is never paired with another
    sample's image. `skip_counts` also holds what was skipped while the dataset was built. Counts
    made in DataLoader workers stay in the workers; their warnings reach the log.

    Randomness (`rng`) is seeded by (seed, dataset name, epoch, index): the same sample is the
    same every time; `set_epoch` makes the next epoch draw differently, reproducibly.
    `fixed_rng(index)` draws what stays the same in every epoch.

    `with_instance_id` (set by `use_for_evaluation`, which the builders call for val/test
    splits): samples also carry `instance_id`, the index of the sample actually loaded, for
    LAVIS's result files. Training samples never do, so every training dataset emits exactly
    SAMPLE_KEYS.
    """

    with_instance_id = False

    def __init__(self, vis_processor: Any, text_processor: Any, name: str, seed: int,
                 skip_counts: Mapping[str, int]):
        super().__init__(vis_processor=vis_processor, text_processor=text_processor, vis_root=None, ann_paths=[])
        self.name = name
        self.seed = seed
        self.epoch = 0
        self.skip_counts: Counter = Counter({kind: n for kind, n in skip_counts.items() if n})
        self._bad: set[int] = set()

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> dict[str, Any]:
        """Sample `index` with the keys SAMPLE_KEYS; raises SampleError when it cannot be read."""
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Use the draws of `epoch` from now on (call it before the epoch's DataLoader iterator is made)."""
        self.epoch = int(epoch)

    def use_for_evaluation(self) -> None:
        """Make this a val/test split: samples carry `instance_id`."""
        self.with_instance_id = True

    def rng(self, index: int) -> np.random.Generator:
        """The random stream of sample `index` in the current epoch."""
        return seeded_rng(self.seed, self.name, self.epoch, index)

    def fixed_rng(self, index: int) -> np.random.Generator:
        """The random stream of sample `index` that is the same in every epoch."""
        return seeded_rng(self.seed, self.name, index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        size = len(self)
        if not 0 <= index < size:
            raise IndexError(f"{self.name}: index {index} out of range [0, {size})")
        current = index
        for attempt in range(MAX_SUBSTITUTES + 1):
            if current not in self._bad:
                try:
                    sample = self.load(current)
                except SampleError as exc:
                    self._bad.add(current)
                    self.skip_counts[exc.kind] += 1
                    logger.warning("%s: sample %d skipped (%s); a substitute is used. Skipped in this process: %s",
                                   self.name, current, exc, format_counts(self.skip_counts))
                else:
                    if self.with_instance_id:
                        sample["instance_id"] = str(current)
                    return sample
            current = int(seeded_rng(self.seed, self.name, index, attempt).integers(size))
        raise RuntimeError(
            f"{self.name}: sample {index} and {MAX_SUBSTITUTES} substitutes could not be loaded; "
            f"skipped so far: {format_counts(self.skip_counts)}. Check the image files."
        )

    def summary(self) -> str:
        """Size and skip counts, for the log."""
        return f"{len(self)} samples, skipped: {format_counts(self.skip_counts)}"
