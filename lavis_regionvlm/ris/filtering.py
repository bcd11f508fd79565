"""Which proposals to score: drop small and border-hugging masks, keep at most a few.

The official RIS script's rule, with its parameters configurable:
1. In cache order (SAM's own order: predicted IoU, best first), keep masks covering at least
   `min_area_frac` of the image that do not hug the border, until `max_proposals` are kept.
2. If none is kept, keep (again in order, up to `max_proposals`) the masks covering at least
   `fallback_min_area_frac`, border or not.
A mask hugs a side when more than `border_frac` x (that side's length) of its pixels lie in
the `border_px` outermost rows or columns on that side. (The official script compares the
top/bottom bands with the image height and the left/right bands with its width; here each
band is compared with its own side, which only differs for non-square images.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lavis_regionvlm.regions.masks import decode_rle


@dataclass(frozen=True)
class ProposalFilter:
    """Filter parameters; the defaults are the official script's."""

    min_area_frac: float = 0.04
    border_px: int = 2
    border_frac: float = 0.7
    fallback_min_area_frac: float = 0.01
    max_proposals: int = 20

    def __post_init__(self) -> None:
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
            if not hugs_border(mask, self.border_px, self.border_frac):
                kept.append(index)
                masks.append(mask)
                if len(kept) == self.max_proposals:
                    break
        if kept:
            return kept, masks, False
        fallback = [i for i, area in enumerate(areas) if area >= self.fallback_min_area_frac * image_area]
        fallback = fallback[: self.max_proposals]
        return fallback, [decode_rle(records[i]["segmentation"]) for i in fallback], True


def hugs_border(mask: np.ndarray, border_px: int, border_frac: float) -> bool:
    """Whether an (H, W) bool mask has more than border_frac x side pixels in any side's band."""
    height, width = mask.shape
    bands = (
        (mask[:border_px].sum(), width),
        (mask[-border_px:].sum(), width),
        (mask[:, :border_px].sum(), height),
        (mask[:, -border_px:].sum(), height),
    )
    return any(count > border_frac * side for count, side in bands)


def _compressed(rle: dict) -> dict:
    """A COCO RLE with bytes counts, as pycocotools' C functions take it."""
    counts = rle["counts"]
    if isinstance(counts, list):
        from pycocotools import mask as mask_utils

        height, width = rle["size"]
        return mask_utils.frPyObjects(rle, height, width)
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
