"""Which proposals to score: drop small and border-hugging masks, keep at most a few.

The official RIS script's rule, with its parameters configurable:
1. In cache order (SAM's own order: predicted IoU, best first), keep masks covering at least
   `min_area_frac` of the image that do not hug the border, until `max_proposals` are kept.
2. If none is kept, keep (again in order, up to `max_proposals`) the masks covering at least
   `fallback_min_area_frac`, border or not.
A mask hugs the border when the pixel count of one of its four bands (the `border_px`
outermost rows at the top or bottom, columns at the left or right) exceeds `border_frac` x a
length, which `border_rule` picks:
- "released" (default, as the official `eval_RIS.py`): the top and bottom bands are compared
  with `border_frac` x the image HEIGHT, the left and right bands with `border_frac` x its WIDTH.
- "per_band": each band is compared with its own length (top/bottom with the width,
  left/right with the height), so the rule means the same on every side.
The two agree on square images; on a 640x480 image a top band of 400 pixels hugs under
"released" (400 > 0.7 x 480 = 336) and not under "per_band" (400 <= 0.7 x 640 = 448).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from lavis_regionvlm.regions.masks import decode_rle

BorderRule = Literal["released", "per_band"]
BORDER_RULES: tuple[str, ...] = ("released", "per_band")


@dataclass(frozen=True)
class ProposalFilter:
    """Filter parameters; the defaults are the official script's (`border_rule` "released")."""

    min_area_frac: float = 0.04
    border_px: int = 2
    border_frac: float = 0.7
    fallback_min_area_frac: float = 0.01
    max_proposals: int = 20
    border_rule: BorderRule = "released"

    def __post_init__(self) -> None:
        if self.border_rule not in BORDER_RULES:
            raise ValueError(f"border_rule must be one of {BORDER_RULES}, got {self.border_rule!r}")
        if self.max_proposals < 1:
            raise ValueError(f"max_proposals must be >= 1, got {self.max_proposals}")
        if self.border_px < 1:
            raise ValueError(f"border_px must be >= 1, got {self.border_px}")

    def select(self, records: Sequence[dict]) -> tuple[list[int], list[np.ndarray], bool]:
        """Apply the rule to proposal records (each with an RLE `segmentation`).

        Returns the kept record indices, their (H, W) bool masks, and whether the fallback
        was used. Both lists are empty when no proposal passes even the fallback.
        """
        from pycocotools import mask as mask_utils

        if not records:
            return [], [], False
        areas = [float(mask_utils.area(_compressed(r["segmentation"]))) for r in records]
        height, width = records[0]["segmentation"]["size"]
        image_area = float(height * width)
        kept, masks = [], []
        for index, area in enumerate(areas):
            if area < self.min_area_frac * image_area:
                continue
            mask = decode_rle(records[index]["segmentation"])
            if not hugs_border(mask, self.border_px, self.border_frac, self.border_rule):
                kept.append(index)
                masks.append(mask)
                if len(kept) == self.max_proposals:
                    break
        if kept:
            return kept, masks, False
        fallback = [i for i, area in enumerate(areas) if area >= self.fallback_min_area_frac * image_area]
        fallback = fallback[: self.max_proposals]
        return fallback, [decode_rle(records[i]["segmentation"]) for i in fallback], True


def hugs_border(
    mask: np.ndarray, border_px: int, border_frac: float, border_rule: BorderRule = "released"
) -> bool:
    """Whether an (H, W) bool mask hugs the border (see the module docstring).

    Args:
        mask: (H, W) bool.
        border_px: band width in pixels.
        border_frac: a band hugs when its pixel count exceeds border_frac x the rule's length.
        border_rule: "released" (top/bottom vs the height, left/right vs the width, as the
            official script) or "per_band" (each band vs its own length).
    """
    if border_rule not in BORDER_RULES:
        raise ValueError(f"border_rule must be one of {BORDER_RULES}, got {border_rule!r}")
    height, width = mask.shape
    rows_length, columns_length = (height, width) if border_rule == "released" else (width, height)
    bands = (
        (mask[:border_px].sum(), rows_length),
        (mask[-border_px:].sum(), rows_length),
        (mask[:, :border_px].sum(), columns_length),
        (mask[:, -border_px:].sum(), columns_length),
    )
    return any(count > border_frac * length for count, length in bands)


def _compressed(rle: dict) -> dict:
    """A COCO RLE with bytes counts, as pycocotools' C functions take it."""
    counts = rle["counts"]
    if isinstance(counts, list):
        from pycocotools import mask as mask_utils

        height, width = rle["size"]
        return mask_utils.frPyObjects(rle, height, width)
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
