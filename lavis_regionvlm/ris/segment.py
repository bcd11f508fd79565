"""The single-image RIS path: an image and a referring expression in, the chosen mask out.

    python -m lavis_regionvlm.ris.segment --image photo.jpg --expression "the dog on the left" \
        (--proposals photo.json | --sam-config sam.yaml) --out result/ [--model-type tiny]

Proposals come from a cache file (`proposal_cache` format, or SAM records from elsewhere) or
from running SAM on the image (`sam` and `generator` blocks as in `proposals`). Writes
`mask.png` (0/255), `mask_rle.json` (COCO RLE, the chosen proposal, every score) and
`overlay.png` (the mask in red over the image). The interactive predictor calls `segment`
with its cached image embedding.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image
from torch import nn

from lavis_regionvlm.common.overlay import mask_overlay
from lavis_regionvlm.image_io import ImageInputError, load_image
from lavis_regionvlm.regions.masks import mask_to_rle
from lavis_regionvlm.ris.expression import ris_expression
from lavis_regionvlm.ris.pipeline import RisOptions, rank_proposals
from lavis_regionvlm.ris.proposal_cache import read_proposals


@dataclass
class SegmentResult:
    """mask: (H, W) bool, the chosen proposal (None when no proposal passed the filter).
    proposal: its index in the proposal records (-1 when none). proposal_ids / scores: every
    scored proposal and its score (nats, lower is better). fallback: the small-area fallback
    chose the candidates."""

    mask: Optional[np.ndarray]
    proposal: int
    proposal_ids: list[int]
    scores: list[float]
    fallback: bool

    def to_json(self) -> dict:
        """JSON-ready summary with the mask as COCO RLE (null when there is none)."""
        return {
            "rle": None if self.mask is None else mask_to_rle(self.mask),
            "proposal": self.proposal, "proposal_ids": self.proposal_ids,
            "scores": self.scores, "fallback": self.fallback,
        }


@torch.inference_mode()
def segment(
    model: nn.Module,
    vis_processor: Callable[[Image.Image], torch.Tensor],
    image: Image.Image,
    expression: str,
    proposals: list[dict],
    options: RisOptions = RisOptions(),
    *,
    image_embeds: Optional[torch.Tensor] = None,
    image_id: int | str = 0,
) -> SegmentResult:
    """Pick the proposal that `expression` refers to.

    Args:
        model: a region model (`RegionBlip2`) in eval mode.
        vis_processor: the model's eval image processor (PIL -> (3, S, S)).
        image: the picture, any mode (converted to RGB).
        expression: the referring expression as the user wrote it; scored as the RIS
            evaluation scores it (`ris_expression`: "The dog." -> "the dog").
        proposals: records with COCO RLE `segmentation` at the image's size.
        options: scoring and filter options.
        image_embeds: (1, L, C) from `model.encode_image`, when the caller already has it.
        image_id: seeds the point draws (with `options.seed`).
    """
    image = image.convert("RGB")
    if proposals and tuple(proposals[0]["segmentation"]["size"]) != (image.height, image.width):
        raise ValueError(
            f"proposals are {proposals[0]['segmentation']['size']} (h, w), the image is {image.height}x{image.width}"
        )
    if options.method == "points" and image_embeds is None:
        image_embeds = model.encode_image(vis_processor(image)[None].to(model.device))
    ranking = rank_proposals(
        model, proposals, [ris_expression(expression)], options, image_id=image_id,
        image_embeds=image_embeds, raw_image=image, vis_processor=vis_processor,
    )
    choice = int(ranking.choice[0])
    return SegmentResult(
        mask=ranking.chosen_mask(0),
        proposal=ranking.proposal_ids[choice] if choice >= 0 else -1,
        proposal_ids=ranking.proposal_ids,
        scores=[float(s) for s in ranking.scores[:, 0]],
        fallback=ranking.fallback,
    )


def save_result(result: SegmentResult, image: Image.Image, out_dir: str | Path) -> dict[str, Path]:
    """Write mask.png, mask_rle.json and overlay.png into `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"mask": out_dir / "mask.png", "rle": out_dir / "mask_rle.json", "overlay": out_dir / "overlay.png"}
    mask = result.mask if result.mask is not None else np.zeros((image.height, image.width), bool)
    Image.fromarray(mask.astype(np.uint8) * 255).save(paths["mask"])
    paths["rle"].write_text(json.dumps(result.to_json(), indent=1))
    mask_overlay(image, result.mask).save(paths["overlay"])
    return paths


def sam_proposals(image: Image.Image, config: dict) -> list[dict]:
    """Run SAM's automatic mask generator on one image (config: `sam` and `generator` blocks)."""
    from segment_anything import SamAutomaticMaskGenerator

    from lavis_regionvlm.paths import resolve_path
    from lavis_regionvlm.ris.sam import build_sam

    sam_cfg = config["sam"]
    checkpoint = sam_cfg.get("checkpoint")
    sam = build_sam(sam_cfg["model_type"], resolve_path(checkpoint) if checkpoint else None,
                    sam_cfg.get("device", "cpu"))
    generator = SamAutomaticMaskGenerator(sam, **{**dict(config.get("generator") or {}), "output_mode": "coco_rle"})
    return generator.generate(np.asarray(image.convert("RGB")))


def main(argv: Optional[list[str]] = None) -> SegmentResult:
    """Command line: load the model, get proposals, segment, write the outputs."""
    from lavis.models import load_model_and_preprocess
    from omegaconf import OmegaConf

    import lavis_regionvlm.registration  # noqa: F401  (the model names and the YAML resolvers)

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", required=True)
    parser.add_argument("--expression", required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--proposals", help="proposal cache file (JSON)")
    source.add_argument("--sam-config", help="YAML with `sam` and `generator` blocks")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--model-name", default="blip2_t5_region")
    parser.add_argument("--model-type", default="regionvlm_flant5xl")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--method", default="points", choices=("points", "red_circle", "crop"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:  # before the model loads: EXIF-transposed; a missing, truncated or corrupt file is refused
        image = load_image(args.image, name=f"--image {args.image!r}")
    except ImageInputError as exc:
        parser.error(str(exc))
    try:
        ris_expression(args.expression)
    except ValueError as exc:
        parser.error(f"--expression: {exc}")
    model, vis_processors, _ = load_model_and_preprocess(
        args.model_name, args.model_type, is_eval=True, device=args.device
    )
    if args.proposals:
        proposals = read_proposals(args.proposals)
    else:
        proposals = sam_proposals(image, OmegaConf.to_container(OmegaConf.load(args.sam_config), resolve=True))
    result = segment(model, vis_processors["eval"], image, args.expression, proposals,
                     RisOptions(method=args.method, seed=args.seed))
    paths = save_result(result, image, args.out)
    print(json.dumps({"proposal": result.proposal, "outputs": {k: str(v) for k, v in paths.items()}}))
    return result


if __name__ == "__main__":
    main()
