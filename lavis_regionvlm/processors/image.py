"""Image processing that keeps region coordinates valid.

BLIP's `blip_image_train` crops and flips at random, which moves the pixels a
region's points refer to. `region_image_train` only resizes (like
`blip_image_eval`) and offers a crop that keeps every point inside the crop and
re-normalises the points to it, as the released RegionVLM training does.
"""
from __future__ import annotations

import numpy as np
from lavis.common.registry import registry
from lavis.processors.blip_processors import BlipImageEvalProcessor
from omegaconf import OmegaConf
from PIL import Image

from lavis_regionvlm.regions.point_text import as_point_array


@registry.register_processor("region_image_train")
class RegionImageTrainProcessor(BlipImageEvalProcessor):
    """Resize to (image_size, image_size) and normalise; no flip, no blind crop.

    `crop_with_points` is the one augmentation: with probability `crop_prob`, a
    random crop of at least `min_crop_scale` of each side that contains every point.
    """

    def __init__(self, image_size=364, mean=None, std=None, crop_prob=0.0, min_crop_scale=0.8):
        super().__init__(image_size=image_size, mean=mean, std=std)
        if not 0.0 <= crop_prob <= 1.0:
            raise ValueError(f"crop_prob must lie in [0, 1], got {crop_prob}")
        if not 0.0 < min_crop_scale <= 1.0:
            raise ValueError(f"min_crop_scale must lie in (0, 1], got {min_crop_scale}")
        self.crop_prob = crop_prob
        self.min_crop_scale = min_crop_scale

    def crop_with_points(
        self, image: Image.Image, points: np.ndarray, rng: np.random.Generator
    ) -> tuple[Image.Image, np.ndarray]:
        """Randomly crop `image` around all `points` (M, 2), relative xy.

        Returns the cropped PIL image and the points (M, 2) relative to the crop, still
        in [0, 1]. With probability 1 - crop_prob, or without points, nothing changes.
        """
        points = as_point_array(points) if len(points) else np.zeros((0, 2))
        if len(points) == 0 or rng.random() >= self.crop_prob:
            return image, points
        width, height = image.size
        x0, x1 = _crop_span(points[:, 0] * width, width, self.min_crop_scale, rng)
        y0, y1 = _crop_span(points[:, 1] * height, height, self.min_crop_scale, rng)
        cropped = image.crop((x0, y0, x1, y1))
        moved = np.stack(
            [(points[:, 0] * width - x0) / (x1 - x0), (points[:, 1] * height - y0) / (y1 - y0)],
            axis=1,
        )
        return cropped, np.clip(moved, 0.0, 1.0)

    @classmethod
    def from_config(cls, cfg=None):
        cfg = cfg if cfg is not None else OmegaConf.create()
        return cls(
            image_size=cfg.get("image_size", 364),
            mean=cfg.get("mean", None),
            std=cfg.get("std", None),
            crop_prob=cfg.get("crop_prob", 0.0),
            min_crop_scale=cfg.get("min_crop_scale", 0.8),
        )


def _crop_span(
    coords: np.ndarray, size: int, min_scale: float, rng: np.random.Generator
) -> tuple[int, int]:
    """A random [start, end) pixel span of length >= min_scale * size covering `coords`."""
    low, high = int(np.floor(coords.min())), int(np.ceil(coords.max()))
    length = int(rng.integers(max(int(np.ceil(min_scale * size)), high - low, 1), size + 1))
    start = int(rng.integers(max(0, high - length), min(low, size - length) + 1))
    return start, start + length
