"""Region datasets: a sample is (image file, `Region`, phrase) -> K points as text + target."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Optional

import numpy as np

from lavis_regionvlm.datasets.base import SkippingDataset
from lavis_regionvlm.datasets.config import ConfigError, SamplingConfig
from lavis_regionvlm.datasets.loading import open_rgb
from lavis_regionvlm.regions import Region, points_to_text

# Transforms that move pixels at random: the points would no longer match the image.
_GEOMETRIC = {"RandomResizedCrop", "RandomCrop", "RandomHorizontalFlip", "RandomVerticalFlip",
              "RandomAffine", "RandomRotation", "RandomPerspective", "RandomAugment"}


class RegionRecord(NamedTuple):
    """One region sample before sampling: absolute image path, region, target phrase."""

    image: str
    region: Region
    text: str


def check_vis_processor(processor: Any, where: str) -> None:
    """Refuse image processors with random crops, flips or warps (e.g. `blip2_image_train`)."""
    transforms = getattr(getattr(processor, "transform", None), "transforms", [])
    moving = sorted({type(t).__name__ for t in transforms} & _GEOMETRIC)
    if moving:
        raise ConfigError(
            f"{where}: the image processor {type(processor).__name__} applies {moving}, which move "
            "pixels away from the region's points; use `region_image_train` (resize, and an "
            "optional crop that keeps the points: crop_prob)"
        )


class RegionDataset(SkippingDataset):
    """Base of the region datasets (Localized Narratives, Visual Genome).

    `load(index)`: decode the image, draw K points from the region with `rng(index)` (strategy
    `point_strategy`), let the image processor crop around them if it can
    (`crop_with_points`, same rng), write the first `sampling.text_points` as point text.
    """

    point_strategy: Optional[str] = None  # Region.sample_points strategy; None: the kind's default

    def __init__(self, vis_processor: Any, text_processor: Any, sampling: SamplingConfig, name: str,
                 skip_counts: Mapping[str, int]):
        check_vis_processor(vis_processor, name)
        super().__init__(vis_processor, text_processor, name, sampling.seed, skip_counts)
        self.sampling = sampling

    def record(self, index: int) -> RegionRecord:
        """The stored region sample `index`."""
        raise NotImplementedError

    def sample_points(self, index: int) -> np.ndarray:
        """(K, 2) relative xy that `load(index)` draws this epoch (before any crop)."""
        return self.record(index).region.sample_points(
            self.sampling.num_points, self.rng(index), strategy=self.point_strategy)

    def load(self, index: int) -> dict[str, Any]:
        record = self.record(index)
        image = open_rgb(record.image)
        rng = self.rng(index)
        points = record.region.sample_points(self.sampling.num_points, rng, strategy=self.point_strategy)
        crop = getattr(self.vis_processor, "crop_with_points", None)
        if crop is not None:
            image, points = crop(image, points, rng)
        region_text = "" if self.sampling.empty_points else points_to_text(
            points[: self.sampling.text_points], quantize=self.sampling.point_quantize)
        return {
            "image": self.vis_processor(image),
            "region_text": region_text,
            "text_input": "",
            "text_output": self.text_processor(record.text),
        }
