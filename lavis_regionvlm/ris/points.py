"""K points per proposal for R draws, seeded per (image, proposal), written as point text.

The random stream of a proposal depends only on the base seed, the image id and the
proposal's index in the cache file, so results do not depend on the rank count, the batch,
or which other proposals survived the filter.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from lavis_regionvlm.regions import PointTextSpec, Region


def proposal_point_texts(
    masks: Sequence[np.ndarray],
    proposal_ids: Sequence[int],
    *,
    spec: PointTextSpec,
    draws: int,
    seed: int,
    image_id: int | str,
    dilation_px: int = 0,
) -> list[str]:
    """Point texts of every (proposal, draw), proposal-major: P * R strings.

    Args:
        masks: P (H, W) bool proposal masks.
        proposal_ids: their indices in the cache file (part of each stream's seed).
        spec: K, quantisation and pixel convention (`model.point_spec`, with the run's
            `num_points` / `quantize` / `pixel_coords` when set).
        draws: R draws per proposal.
        seed: base seed; each proposal draws from the stream (seed, image_id, proposal id).
        image_id: the image's id (part of each stream's seed).
        dilation_px: grow each mask by this many pixels before sampling (robustness study);
            the predicted mask stays the proposal itself.
    """
    texts = []
    for mask, proposal_id in zip(masks, proposal_ids):
        region = Region.from_mask(mask)
        if dilation_px:
            region = region.dilate(dilation_px)
        texts.extend(spec.draws(region, draws, seed, image_id, int(proposal_id)))
    return texts
