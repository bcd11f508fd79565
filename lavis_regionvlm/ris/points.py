"""K points per proposal for R draws, seeded per (image, proposal), written as point text.

The random stream of a proposal depends only on the base seed, the image id and the
proposal's index in the cache file, so results do not depend on the rank count, the batch,
or which other proposals survived the filter.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from lavis_regionvlm.common.seeding import seeded_rng
from lavis_regionvlm.regions import Region, points_to_text


def proposal_point_texts(
    masks: Sequence[np.ndarray],
    proposal_ids: Sequence[int],
    *,
    num_points: int,
    draws: int,
    seed: int,
    image_id: int | str,
    quantize: str = "floor",
    dilation_px: int = 0,
    pixel_coords: str = "corner_float32",
) -> list[str]:
    """Point texts of every (proposal, draw), proposal-major: P * R strings.

    Args:
        masks: P (H, W) bool proposal masks.
        proposal_ids: their indices in the cache file (part of each stream's seed).
        num_points: K mask pixels per draw.
        draws: R draws per proposal.
        seed: base seed.
        image_id: the image's id (part of each stream's seed).
        quantize: "floor" or "round", as the model was trained ("floor" for the released
            checkpoint).
        dilation_px: grow each mask by this many pixels before sampling (robustness study);
            the predicted mask stays the proposal itself.
        pixel_coords: how a pixel becomes a relative point (`regions.pixel_points`):
            "corner_float32" (col / W in float32, as the official script) or "centre".
    """
    texts = []
    for mask, proposal_id in zip(masks, proposal_ids):
        region = Region.from_mask(mask)
        if dilation_px:
            region = region.dilate(dilation_px)
        rng = seeded_rng(seed, image_id, int(proposal_id))
        for points in region.sample_point_draws(num_points, draws, rng, pixel_coords=pixel_coords):
            texts.append(points_to_text(points, quantize=quantize))
    return texts
