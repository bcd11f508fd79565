"""`LocalizedNarrativesDataset`: phrases of image and video Localized Narratives with their traces."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from lavis_regionvlm.preparation.ln_prepared import PreparedNarratives
from lavis_regionvlm.preparation.narratives import index_rule
from lavis_regionvlm.preparation.skips import merge_counts
from lavis_regionvlm.datasets.config import SamplingConfig
from lavis_regionvlm.datasets.region import RegionDataset, RegionRecord
from lavis_regionvlm.regions import Region


class LocalizedNarrativesDataset(RegionDataset):
    """The samples of several prepared folders (see `lavis_regionvlm.preparation.prepare_ln`), in order.

    A sample's region is the phrase's stored trace points (up to 20, time order). With
    `sampling.stored_points` (released) they are first repeated or subsampled to that count by
    the released index rule; K of them are drawn at load time, kept in time order
    ("random_sorted"). A record is one narrative (see `lavis_regionvlm.preparation.ln_prepared`).
    Only the folders' offsets are held in memory; samples are read when used.
    """

    point_strategy = "random_sorted"

    def __init__(self, vis_processor: Any, text_processor: Any, sampling: SamplingConfig,
                 folders: Sequence[tuple[Path, Optional[Path]]], name: str = "localized_narratives"):
        """folders: (prepared folder, image root or None for the root given to prepare_ln)."""
        self.parts = [PreparedNarratives(folder) for folder, _ in folders]
        self.roots = [Path(root) if root is not None else Path(part.meta["images"])
                      for part, (_, root) in zip(self.parts, folders)]
        self.ends = np.cumsum([len(part) for part in self.parts], dtype=np.int64)
        starts = [part.record_starts[1:] + (self.ends[i - 1] if i else 0) for i, part in enumerate(self.parts)]
        self.record_starts = np.concatenate([np.zeros(1, np.int64), *starts]).astype(np.int64)
        skips = merge_counts(*(part.meta["skip_counts"] for part in self.parts))
        super().__init__(vis_processor, text_processor, sampling, name, skips)

    def record(self, sample: int) -> RegionRecord:
        part = int(np.searchsorted(self.ends, sample, side="right"))
        stored = self.parts[part][sample - (int(self.ends[part - 1]) if part else 0)]
        return RegionRecord(str(self.roots[part] / stored.image), Region.from_points(stored.points), stored.text)

    def stored_points(self, sample: int, record: RegionRecord) -> np.ndarray:
        """The phrase's trace points repeated / subsampled to `sampling.stored_points` by the
        released index rule (3 points -> ten of the first, nine of the second, one of the third)."""
        points = record.region.data
        return points[index_rule(len(points), self.sampling.stored_points)]
