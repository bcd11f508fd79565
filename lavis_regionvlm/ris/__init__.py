"""Zero-shot referring image segmentation (RIS) with RegionVLM and SAM proposals.

- `refer`: RefCOCO/+/g in the REFER layout, grouped by image.
- `proposals` (command), `sam`, `proposal_cache`: SAM proposals cached per image as COCO RLE.
- `filtering`, `points`, `scoring`, `baselines`, `pipeline`: rank proposals per expression.
- `metrics`, `results`: IoU, mIoU, oIoU, precision@t; merging ranks.
- `dataset`: the `refcoco_ris` LAVIS dataset (one item per image); its builder is
  `lavis_regionvlm.datasets.refcoco_ris_builder`.
- `segment`: the single-image path (image + expression -> mask, scores, overlay).
The LAVIS task is `lavis_regionvlm.tasks.zero_shot_ris` (`zero_shot_ris`).
"""
from lavis_regionvlm.ris.filtering import ProposalFilter
from lavis_regionvlm.ris.metrics import intersection_union, summarize
from lavis_regionvlm.ris.pipeline import Ranking, RisOptions, rank_proposals

__all__ = ["ProposalFilter", "Ranking", "RisOptions", "intersection_union", "rank_proposals", "summarize"]
