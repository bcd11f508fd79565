"""`LocalizedNarrativesDataset`: phrases of image and video Localized Narratives with their traces."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from lavis_regionvlm.data.ln_prepared import PreparedNarratives
from lavis_regionvlm.data.skips import merge_counts
from lavis_regionvlm.datasets.config import SamplingConfig
from lavis_regionvlm.datasets.region import RegionDataset, RegionRecord
from lavis_regionvlm.regions import Region


class LocalizedNarrativesDataset(RegionDataset):
    """The samples of several prepared folders (see `lavis_regionvlm.data.prepare_ln`), in order.

    A sample's region is the phrase's stored trace points (up to 20, time order); K of them are
    drawn at load time, kept in time order ("random_sorted"), evenly repeated when fewer than K.
    Only the folders' offsets are held in memory; records are read when used.
    """

    point_strategy = "random_sorted"

    def __init__(self, vis_processor: Any, text_processor: Any, sampling: SamplingConfig,
                 folders: Sequence[tuple[Path, Optional[Path]]], name: str = "localized_narratives"):
        """folders: (prepared folder, image root or None for the root given to prepare_ln)."""
        self.parts = [PreparedNarratives(folder) for folder, _ in folders]
        self.roots = [Path(root) if root is not None else Path(part.meta["images"])
                      for part, (_, root) in zip(self.parts, folders)]
        self.ends = np.cumsum([len(part) for part in self.parts], dtype=np.int64)
        skips = merge_counts(*(part.meta["skip_counts"] for part in self.parts))
        super().__init__(vis_processor, text_processor, sampling, name, skips)

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def record(self, index: int) -> RegionRecord:
        part = int(np.searchsorted(self.ends, index, side="right"))
        sample = self.parts[part][index - (int(self.ends[part - 1]) if part else 0)]
        return RegionRecord(str(self.roots[part] / sample.image), Region.from_points(sample.points), sample.text)
