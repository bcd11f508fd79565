"""Region datasets: a sample is (image file, `Region`, phrase) -> K points as text + target."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Optional

import numpy as np
from PIL import Image

from lavis_regionvlm.preparation.narratives import index_rule
from lavis_regionvlm.preparation.skips import format_counts
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


def select_points(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """K of a region's stored points, as the released training picks them: (M, 2) -> (k, 2).

    When M < k the points are first upsampled to k by the released index rule
    (`narratives.index_rule`); then k of them are drawn without replacement and kept in
    their stored (time) order.
    """
    if len(points) < k:
        points = points[index_rule(len(points), k)]
    return Region.from_points(points).sample_points(k, rng, strategy="random_sorted")


class RegionDataset(SkippingDataset):
    """Base of the region datasets (Localized Narratives, Visual Genome).

    Samples are grouped into records (`record_starts`, set by the subclass before calling
    this `__init__`): a narrative's phrases, a Visual Genome image's regions. With
    `sampling.epoch_unit` "image" the dataset has one item per record and item i draws one of
    record i's samples each epoch; with "phrase" one item per sample.

    `load(index)`: the sample (`sample_index`), its image and K points with the image
    processor's crop if it has one (`crop_with_points`, see `_points`), the first
    `sampling.text_points` as point text; every draw uses `rng(index)`.
    """

    point_strategy: Optional[str] = None  # Region.sample_points strategy; None: the kind's default
    record_starts: np.ndarray  # (R + 1,) int64: record r holds samples [starts[r], starts[r + 1])

    def __init__(self, vis_processor: Any, text_processor: Any, sampling: SamplingConfig, name: str,
                 skip_counts: Mapping[str, int]):
        check_vis_processor(vis_processor, name)
        super().__init__(vis_processor, text_processor, name, sampling.seed, skip_counts)
        self.sampling = sampling
        self.epoch_unit = sampling.epoch_unit

    @property
    def num_samples(self) -> int:
        """Phrases / regions (samples), whatever the epoch unit."""
        return int(self.record_starts[-1])

    @property
    def num_records(self) -> int:
        """Image records: narratives, Visual Genome images."""
        return len(self.record_starts) - 1

    def __len__(self) -> int:
        return self.num_records if self.epoch_unit == "image" else self.num_samples

    def summary(self) -> str:
        """Records, samples, the epoch unit and the skip counts, for the log."""
        return (f"{self.num_records} image records, {self.num_samples} samples (an epoch: one item per "
                f"{'image record' if self.epoch_unit == 'image' else 'sample'}), skipped: "
                f"{format_counts(self.skip_counts)}")

    def use_for_evaluation(self) -> None:
        """Val/test: every sample once, with its `instance_id`."""
        super().use_for_evaluation()
        self.epoch_unit = "phrase"

    def record(self, sample: int) -> RegionRecord:
        """The stored region sample `sample` (0 <= sample < num_samples)."""
        raise NotImplementedError

    def stored_points(self, sample: int, record: RegionRecord) -> np.ndarray:
        """(sampling.stored_points, 2): the points region `sample` stands for (released scheme)."""
        raise NotImplementedError

    def sample_index(self, index: int, rng: np.random.Generator) -> int:
        """The sample item `index` uses this epoch: itself, or (epoch unit "image") one of its
        record's samples drawn with `rng`."""
        if self.epoch_unit != "image":
            return index
        start, end = int(self.record_starts[index]), int(self.record_starts[index + 1])
        return start + int(rng.integers(end - start)) if end - start > 1 else start

    def _points(self, sample: int, record: RegionRecord, image: Optional[Image.Image],
                rng: np.random.Generator) -> tuple[Optional[Image.Image], np.ndarray]:
        """The image, cropped by the processor's `crop_with_points` (when it has one and `image`
        is given), and the (K, 2) relative points in it.

        With `sampling.stored_points` (released): the crop keeps all the stored points, then K
        of them are picked (`select_points`). Without: K points are drawn from the region, then
        the crop keeps them.
        """
        crop = getattr(self.vis_processor, "crop_with_points", None) if image is not None else None
        k = self.sampling.num_points
        if self.sampling.stored_points is None:
            points = record.region.sample_points(k, rng, strategy=self.point_strategy)
            if crop is not None:
                image, points = crop(image, points, rng)
            return image, points
        stored = self.stored_points(sample, record)
        if crop is not None:
            image, stored = crop(image, stored, rng)
        return image, select_points(stored, k, rng)

    def sample_points(self, index: int) -> np.ndarray:
        """(K, 2) relative xy that `load(index)` draws this epoch when the image is not cropped."""
        rng = self.rng(index)
        sample = self.sample_index(index, rng)
        return self._points(sample, self.record(sample), None, rng)[1]

    def load(self, index: int) -> dict[str, Any]:
        rng = self.rng(index)
        sample = self.sample_index(index, rng)
        record = self.record(sample)
        image, points = self._points(sample, record, open_rgb(record.image), rng)
        region_text = "" if self.sampling.empty_points else points_to_text(
            points[: self.sampling.text_points], quantize=self.sampling.point_quantize)
        return {
            "image": self.vis_processor(image),
            "region_text": region_text,
            "text_input": "",
            "text_output": self.text_processor(record.text),
        }
