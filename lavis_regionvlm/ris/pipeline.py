"""Zero-shot RIS for one image: filter proposals, score every expression, pick a mask each.

Used by the `zero_shot_ris` task (many images) and `segment` (one image, one expression).
Method "points" is RegionVLM's: K points per proposal for R seeded draws, score = mean token
NLL of the expression, minimum over draws, argmin over proposals. "red_circle" and "crop" are
the paper's baselines (one image per proposal, empty point text, no draws).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from lavis_regionvlm.regions import PIXEL_COORDS
from lavis_regionvlm.ris.baselines import BASELINES, baseline_images
from lavis_regionvlm.ris.filtering import ProposalFilter
from lavis_regionvlm.ris.points import proposal_point_texts
from lavis_regionvlm.ris.scoring import image_rows_nll, point_text_nll

METHODS = ("points", *BASELINES)


@dataclass(frozen=True)
class RisOptions:
    """How proposals are scored.

    method: "points" | "red_circle" | "crop".
    num_points: K points per draw (None: the model's `num_points`).
    draws: R draws per proposal (points method).
    quantize: "floor" | "round" for the point text (None: the model's `point_quantize`).
    dilation_px: grow proposal masks by this many pixels before sampling points (the
        predicted mask stays the proposal).
    seed: base seed of the point draws.
    pixel_coords: how a mask pixel becomes a point: "corner_float32" (as the official script)
        or "centre" (see `lavis_regionvlm.regions.pixel_points`).
    proposal_filter: which proposals are scored.
    token_budget: how much one scoring pass of the language model may hold (memory bound;
        T5: rows x concatenated expression tokens; OPT: pairs x positions); None: the LM's own
        default (T5 2048, OPT 4096). Scores do not depend on it.
    """

    method: str = "points"
    num_points: Optional[int] = None
    draws: int = 5
    quantize: Optional[str] = None
    dilation_px: int = 0
    seed: int = 0
    pixel_coords: str = "corner_float32"
    proposal_filter: ProposalFilter = field(default_factory=ProposalFilter)
    token_budget: Optional[int] = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.num_points is not None and self.num_points < 1:
            raise ValueError(f"num_points must be >= 1 or None (the model's), got {self.num_points}")
        if self.draws < 1:
            raise ValueError(f"draws must be >= 1, got {self.draws}")
        if self.dilation_px < 0:
            raise ValueError(f"dilation_px must be >= 0, got {self.dilation_px}")
        if self.pixel_coords not in PIXEL_COORDS:
            raise ValueError(f"pixel_coords must be one of {PIXEL_COORDS}, got {self.pixel_coords!r}")


@dataclass
class Ranking:
    """The outcome for one image.

    proposal_ids: P kept proposals (indices into the cache records).
    masks: their P (H, W) bool masks.
    fallback: whether the small-area fallback chose them.
    scores: (P, E) score of each expression per proposal (min over draws), nats.
    choice: (E,) index into proposal_ids of each expression's pick; -1 when P == 0.
    """

    proposal_ids: list[int]
    masks: list[np.ndarray]
    fallback: bool
    scores: np.ndarray
    choice: np.ndarray

    def chosen_mask(self, expression: int) -> Optional[np.ndarray]:
        """(H, W) bool mask picked for expression `expression`, None when nothing was scored."""
        index = int(self.choice[expression])
        return None if index < 0 else self.masks[index]


def rank_proposals(
    model: nn.Module,
    proposals: Sequence[dict],
    expressions: Sequence[str],
    options: RisOptions,
    *,
    image_id: int | str,
    image_embeds: Optional[torch.Tensor] = None,
    raw_image: Optional[Image.Image] = None,
    vis_processor: Optional[Callable[[Image.Image], torch.Tensor]] = None,
) -> Ranking:
    """Filter `proposals` (cache records) and pick one for each of E expressions.

    The points method needs `image_embeds` (1, L, C) from `model.encode_image`; the
    baselines need `raw_image` and the model's `vis_processor` instead.
    """
    proposal_ids, masks, fallback = options.proposal_filter.select(proposals)
    if not proposal_ids:
        return Ranking([], [], fallback, np.zeros((0, len(expressions)), np.float32), np.full(len(expressions), -1))
    if options.method == "points":
        if image_embeds is None:
            raise ValueError("the points method needs image_embeds from model.encode_image")
        draws = options.draws
        spec = model.point_spec.replace(num_points=options.num_points, quantize=options.quantize,
                                        pixel_coords=options.pixel_coords)
        texts = proposal_point_texts(masks, proposal_ids, spec=spec, draws=draws, seed=options.seed,
                                     image_id=image_id, dilation_px=options.dilation_px)
        nll = point_text_nll(model, image_embeds, texts, expressions, options.token_budget)
    else:
        if raw_image is None or vis_processor is None:
            raise ValueError(f"the {options.method} baseline needs raw_image and vis_processor")
        draws = 1
        images = baseline_images(options.method, raw_image, masks, vis_processor).to(model.device)
        nll = image_rows_nll(model, images, expressions, options.token_budget)
    scores = nll.view(len(proposal_ids), draws, len(expressions)).min(dim=1).values.cpu().numpy()
    return Ranking(proposal_ids, masks, fallback, scores, scores.argmin(axis=0))
