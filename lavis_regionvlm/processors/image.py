"""Image processing that keeps region coordinates valid.

BLIP's `blip_image_train` crops and flips at random, which moves the pixels a
region's points refer to. `region_image_train` only resizes (like
`blip_image_eval`) and offers a crop that keeps every point inside the crop and
re-normalises the points to it. Two crops (`crop_mode`):
  "sides" (the released training's): cut each side by a uniform share of the image up to
    `max_side_crop` (0.1) and up to the nearest point's distance from that side;
  "scale" (ours): a random span of at least `min_crop_scale` of each side that covers the points.
"""
from __future__ import annotations

import numpy as np
from lavis.common.registry import registry
from lavis.processors.blip_processors import BlipImageEvalProcessor
from omegaconf import OmegaConf
from PIL import Image

from lavis_regionvlm.regions.point_text import as_point_array

CROP_MODES = ("scale", "sides")


@registry.register_processor("region_image_train")
class RegionImageTrainProcessor(BlipImageEvalProcessor):
    """Resize to (image_size, image_size) and normalise; no flip, no blind crop.

    `crop_with_points` is the one augmentation: with probability `crop_prob`, a
    random crop that contains every point (`crop_mode`, see the module doc).
    """

    def __init__(self, image_size=364, mean=None, std=None, crop_prob=0.0, min_crop_scale=0.8,
                 crop_mode="scale", max_side_crop=0.1):
        super().__init__(image_size=image_size, mean=mean, std=std)
        if not 0.0 <= crop_prob <= 1.0:
            raise ValueError(f"crop_prob must lie in [0, 1], got {crop_prob}")
        if not 0.0 < min_crop_scale <= 1.0:
            raise ValueError(f"min_crop_scale must lie in (0, 1], got {min_crop_scale}")
        if crop_mode not in CROP_MODES:
            raise ValueError(f"crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")
        if not 0.0 <= max_side_crop < 0.5:
            raise ValueError(f"max_side_crop must lie in [0, 0.5), got {max_side_crop}")
        self.crop_prob = crop_prob
        self.min_crop_scale = min_crop_scale
        self.crop_mode = crop_mode
        self.max_side_crop = max_side_crop

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
        if self.crop_mode == "sides":
            return _side_crop(image, points, self.max_side_crop, rng)
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
            crop_mode=cfg.get("crop_mode", "scale"),
            max_side_crop=cfg.get("max_side_crop", 0.1),
        )


def _side_crop(
    image: Image.Image, points: np.ndarray, max_side: float, rng: np.random.Generator
) -> tuple[Image.Image, np.ndarray]:
    """The released crop: cut u_left, u_right of the width and u_top, u_bottom of the height,
    each uniform in [0, min(max_side, distance of the nearest point from that side)], drawn in
    that order; points (M, 2) in [0, 1] become (p - u_low) / (1 - u_low - u_high); the pixel
    box is [int(u_left * W), W - int(u_right * W)) x [int(u_top * H), H - int(u_bottom * H))."""
    width, height = image.size
    low = np.minimum(max_side, points.min(axis=0))
    high = np.minimum(max_side, 1.0 - points.max(axis=0))
    left, right = rng.uniform(0.0, low[0]), rng.uniform(0.0, high[0])
    top, bottom = rng.uniform(0.0, low[1]), rng.uniform(0.0, high[1])
    moved = (points - [left, top]) / [1.0 - left - right, 1.0 - top - bottom]
    box = (int(left * width), int(top * height), width - int(right * width), height - int(bottom * height))
    return image.crop(box), np.clip(moved, 0.0, 1.0)


def _crop_span(
    coords: np.ndarray, size: int, min_scale: float, rng: np.random.Generator
) -> tuple[int, int]:
    """A random [start, end) pixel span of length >= min_scale * size covering `coords`."""
    low, high = int(np.floor(coords.min())), int(np.ceil(coords.max()))
    length = int(rng.integers(max(int(np.ceil(min_scale * size)), high - low, 1), size + 1))
    start = int(rng.integers(max(0, high - length), min(low, size - length) + 1))
    return start, start + length
