"""`GlobalCaptionDataset`: whole-image caption pairs (empty point text) from COCO-captions JSON
files and LAION-style webdataset shards, as one map-style dataset."""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from PIL import Image

from lavis_regionvlm.preparation.records import StringTable
from lavis_regionvlm.preparation.skips import merge_counts
from lavis_regionvlm.datasets.base import SkippingDataset
from lavis_regionvlm.datasets.loading import open_rgb, read_json
from lavis_regionvlm.datasets.tar_shards import TarShards


class CocoCaptions:
    """``[{"image": path relative to `images`, "caption": str or [str], "image_id"}]`` (LAVIS's
    coco_karpathy_*.json); one sample per caption; entries whose image is missing are skipped."""

    def __init__(self, path: Path, images: Path):
        self.images = Path(images)
        files, captions, skips = [], [], Counter()
        exists: dict[str, bool] = {}
        for entry in read_json(Path(path)):
            if not isinstance(entry, dict) or "image" not in entry or "caption" not in entry:
                skips["missing_keys"] += 1
                continue
            texts = entry["caption"] if isinstance(entry["caption"], list) else [entry["caption"]]
            if not isinstance(entry["image"], str) or not all(isinstance(t, str) for t in texts):
                skips["bad_value"] += 1
                continue
            if entry["image"] not in exists:
                exists[entry["image"]] = os.path.isfile(self.images / entry["image"])
            if not exists[entry["image"]]:
                skips["missing_image"] += len(texts)
                continue
            for text in texts:
                if not text.strip():
                    skips["empty_text"] += 1
                    continue
                files.append(entry["image"])
                captions.append(text)
        self.files, self.captions, self.skip_counts = StringTable(files), StringTable(captions), skips

    def __len__(self) -> int:
        return len(self.captions)

    def read(self, index: int) -> tuple[Image.Image, str]:
        """The RGB image and caption of sample `index`; raises SampleError."""
        return open_rgb(self.images / self.files[index]), self.captions[index]


Source = Union[CocoCaptions, TarShards]


class GlobalCaptionDataset(SkippingDataset):
    """Samples ``{"image", "region_text": "", "text_input": "", "text_output": caption}``.

    `weights` (one per source, or None): how often `draw_index` picks each source, e.g.
    [0.1, 0.9] for the released 10% COCO and 90% LAION; None draws every sample equally often.
    """

    def __init__(self, vis_processor: Any, text_processor: Any, sources: Sequence[Source], seed: int = 0,
                 name: str = "global_caption", weights: Optional[Sequence[float]] = None):
        self.sources = list(sources)
        self.ends = np.cumsum([len(s) for s in self.sources], dtype=np.int64)
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64)
            if weights.shape != (len(self.sources),) or not (weights >= 0).all() or weights.sum() <= 0:
                raise ValueError(f"weights must be {len(self.sources)} numbers >= 0, not all 0; got {weights.tolist()}")
            empty = [i for i, (w, s) in enumerate(zip(weights, self.sources)) if w > 0 and len(s) == 0]
            if empty:
                raise ValueError(f"sources {empty} have a weight but no usable sample")
            weights = weights / weights.sum()
        self.weights = weights
        super().__init__(vis_processor, text_processor, name, seed,
                         merge_counts(*(s.skip_counts for s in self.sources)))

    def draw_index(self, rng: np.random.Generator) -> int:
        """A sample index drawn with `rng`: a source by `weights`, then a uniform sample of it
        (without weights: uniform over all samples)."""
        if self.weights is None:
            return int(rng.integers(len(self)))
        part = int(rng.choice(len(self.sources), p=self.weights))
        return (int(self.ends[part - 1]) if part else 0) + int(rng.integers(len(self.sources[part])))

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def load(self, index: int) -> dict[str, Any]:
        part = int(np.searchsorted(self.ends, index, side="right"))
        image, caption = self.sources[part].read(index - (int(self.ends[part - 1]) if part else 0))
        return {"image": self.vis_processor(image), "region_text": "", "text_input": "",
                "text_output": self.text_processor(caption)}
