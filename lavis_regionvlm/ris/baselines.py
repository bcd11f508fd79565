"""The paper's Table 4 baselines on the RIS pipeline: a visual prompt instead of point text.

- "red_circle": a red ellipse drawn around the proposal's box on the whole image;
- "crop": the proposal's box cropped out (then resized to the model's input by the
  processor).
Both give one image per proposal, encoded with empty point text: re-encoding the image per
proposal is the baselines' inherent cost.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

BASELINES = ("red_circle", "crop")
RED = (255, 0, 0)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight pixel box (x1, y1, x2, y2), x2/y2 exclusive, of a non-empty (H, W) bool mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("mask is empty: no box")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def red_circle(image: Image.Image, box: tuple[int, int, int, int], width_frac: float = 0.01) -> Image.Image:
    """A copy of `image` with a red ellipse around `box` (x1, y1, x2, y2 pixels).

    The ellipse circumscribes the box (its axes are the box's sides times sqrt(2)); the line
    is `width_frac` of the longer image side wide (at least 2 px).
    """
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    rx, ry = (x2 - x1) / np.sqrt(2), (y2 - y1) / np.sqrt(2)
    out = image.convert("RGB").copy()
    width = max(2, round(width_frac * max(out.size)))
    ImageDraw.Draw(out).ellipse((cx - rx, cy - ry, cx + rx, cy + ry), outline=RED, width=width)
    return out


def crop(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """The `box` (x1, y1, x2, y2 pixels) region of `image`."""
    return image.convert("RGB").crop(box)


def baseline_images(
    method: str,
    image: Image.Image,
    masks: Sequence[np.ndarray],
    vis_processor: Callable[[Image.Image], torch.Tensor],
) -> torch.Tensor:
    """One processed image per proposal mask: (P, 3, S, S)."""
    if method not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {method!r}")
    draw = red_circle if method == "red_circle" else crop
    return torch.stack([vis_processor(draw(image, mask_box(mask))) for mask in masks])
