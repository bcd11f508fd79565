"""`zero_shot_ris`: referring image segmentation by ranking SAM proposals with the LM loss.

Run config keys (`run:`), all optional:
    ris_method: points            # points | red_circle | crop (the paper's Table 4 baselines)
    num_points: null              # K per draw; null = the model's num_points
    draws: 5                      # R draws per proposal; score = min over draws
    point_quantize: null          # floor | round; null = the model's point_quantize
    dilation_px: 0                # grow proposals before sampling points (0/3/7/15 in the paper)
    seed: 0                       # base seed; each image's draws derive from it and the image id
    pixel_coords: corner_float32  # mask pixel -> point: corner_float32 (col / W in float32, as released) | centre
    min_area_frac: 0.04           # proposal filter (see lavis_regionvlm.ris.filtering)
    border_px: 2
    border_frac: 0.7
    border_rule: released         # released (top/bottom vs height, sides vs width) | per_band
    fallback_min_area_frac: 0.01
    max_proposals: 20
    decoder_token_budget: null    # LM scoring budget per call (memory bound); null: the LM's default
    save_masks: false             # add each chosen mask (COCO RLE) to the results
    progress_interval_s: 30       # seconds between progress lines

Results go to the LAVIS `result_dir`: `<split>_epoch<e>_rank<r>.json` per rank, then, on
rank 0, `<split>_epoch<e>.json` (one record per expression) and `<split>_epoch<e>_metrics.json`.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from lavis.common.dist_utils import get_rank, get_world_size, is_dist_avail_and_initialized, is_main_process
from lavis.common.registry import registry
from lavis.tasks.base_task import BaseTask
from PIL import Image

from lavis_regionvlm.common.progress import Progress
from lavis_regionvlm.regions.masks import mask_to_rle
from lavis_regionvlm.ris.filtering import ProposalFilter
from lavis_regionvlm.ris.metrics import intersection_union, iou, summarize
from lavis_regionvlm.ris.pipeline import RisOptions, rank_proposals
from lavis_regionvlm.ris.proposal_cache import ProposalFileError, write_json_atomic
from lavis_regionvlm.ris.refer import segmentation_mask
from lavis_regionvlm.ris.results import merge_rank_results

logger = logging.getLogger(__name__)


@registry.register_task("zero_shot_ris")
class ZeroShotRISTask(BaseTask):
    """Evaluate zero-shot RIS on a `refcoco_ris` dataset (one item per image)."""

    def __init__(self, options: RisOptions, save_masks: bool = False, progress_interval_s: float = 30.0):
        super().__init__()
        self.options = options
        self.save_masks = save_masks
        self.progress_interval_s = progress_interval_s
        self._vis_processor = None
        self._expected_ids: Optional[list[str]] = None

    @classmethod
    def setup_task(cls, cfg=None, **kwargs) -> "ZeroShotRISTask":
        """Read the keys listed in the module docstring from `cfg.run_cfg`."""
        run = cfg.run_cfg if cfg is not None else {}
        get = run.get
        proposal_filter = ProposalFilter(
            min_area_frac=get("min_area_frac", 0.04), border_px=get("border_px", 2),
            border_frac=get("border_frac", 0.7), border_rule=get("border_rule", "released"),
            fallback_min_area_frac=get("fallback_min_area_frac", 0.01),
            max_proposals=get("max_proposals", 20),
        )
        options = RisOptions(
            method=get("ris_method", "points"), num_points=get("num_points", None),
            draws=get("draws", 5), quantize=get("point_quantize", None),
            dilation_px=get("dilation_px", 0), seed=get("seed", 0),
            pixel_coords=get("pixel_coords", "corner_float32"),
            proposal_filter=proposal_filter, token_budget=get("decoder_token_budget", None),
        )
        return cls(options, save_masks=get("save_masks", False),
                   progress_interval_s=get("progress_interval_s", 30.0))

    def before_evaluation(self, model, dataset, **kwargs) -> None:
        """Keep the dataset's image processor (baselines re-process images) and its expression ids."""
        super().before_evaluation(model, dataset, **kwargs)
        self._vis_processor = getattr(dataset, "vis_processor", None)
        self._expected_ids = list(dataset.expression_ids) if hasattr(dataset, "expression_ids") else None

    @torch.inference_mode()
    def valid_step(self, model, samples: dict) -> list[dict]:
        """Per-expression records for a batch of images (see `RefCocoRisDataset.collater`)."""
        embeds = None
        if self.options.method == "points":
            embeds = model.encode_image(samples["image"].to(model.device))
        records = []
        for index, item in enumerate(samples["items"]):
            raw_image = None
            if self.options.method != "points":
                with Image.open(item["image_path"]) as image:
                    raw_image = image.convert("RGB")
            ranking = rank_proposals(
                model, item["proposals"], [e["text"] for e in item["expressions"]], self.options,
                image_id=item["image_id"],
                image_embeds=None if embeds is None else embeds[index : index + 1],
                raw_image=raw_image, vis_processor=self._vis_processor,
            )
            targets = {
                ann_id: segmentation_mask(segmentation, item["height"], item["width"])
                for ann_id, segmentation in item["segmentations"].items()
            }
            for column, expression in enumerate(item["expressions"]):
                pred = ranking.chosen_mask(column)
                intersection, union = intersection_union(pred, targets[expression["ann_id"]])
                choice = int(ranking.choice[column])
                record = {
                    "id": expression["id"], "image_id": item["image_id"], "ref_id": expression["ref_id"],
                    "sent_id": expression["sent_id"], "expression": expression["raw"],
                    "proposal": ranking.proposal_ids[choice] if choice >= 0 else -1,
                    "iou": iou(intersection, union), "intersection": intersection, "union": union,
                    "fallback": ranking.fallback, "proposal_ids": ranking.proposal_ids,
                    "scores": [round(float(s), 5) for s in ranking.scores[:, column]],
                }
                if self.save_masks and pred is not None:
                    record["mask"] = mask_to_rle(pred)
                records.append(record)
        return records

    def evaluation(self, model, data_loader, cuda_enabled: bool = False) -> list[dict]:
        """Run `valid_step` over this rank's images with a progress line (images/s, ETA).

        Tensors go to the model's device, so CPU runs need no CUDA (`cuda_enabled` is ignored).
        A missing, ambiguous or corrupted proposal file ends the run with its message alone.
        """
        progress = Progress(f"zero_shot_ris rank {get_rank()}", len(data_loader),
                            interval_s=self.progress_interval_s)
        results: list[dict] = []
        batches = iter(data_loader)
        while True:
            try:
                samples = next(batches)
            except StopIteration:
                break
            except (ProposalFileError, FileNotFoundError) as exc:
                # A loader worker's error arrives with the worker's traceback before the message.
                message = str(exc).strip()
                if "DataLoader worker" in message:
                    message = re.sub(r"^[\w.]*Error: ", "", message.splitlines()[-1])
                raise SystemExit(f"zero_shot_ris: {message}") from None
            results.extend(self.valid_step(model=model, samples=samples))
            progress.update(len(samples["items"]))
        if is_dist_avail_and_initialized():
            dist.barrier()
        return results

    def after_evaluation(self, val_result: list[dict], split_name: str, epoch, result_dir: Optional[str] = None,
                         **kwargs) -> dict:
        """Merge the ranks' results on rank 0 (each expression once), write them, compute metrics.

        Returns the metrics on every rank: mIoU, oIoU, prec@0.5..0.9 (percent), count, and
        `agg_metrics` = mIoU.
        """
        result_dir = Path(result_dir or registry.get_path("result_dir"))
        name = f"{split_name}_epoch{epoch}"
        write_json_atomic(result_dir / f"{name}_rank{get_rank()}.json", val_result)
        if is_dist_avail_and_initialized():
            dist.barrier()
        metrics = None
        if is_main_process():
            ranks = []
            for rank in range(get_world_size()):
                with open(result_dir / f"{name}_rank{rank}.json") as f:
                    ranks.append(json.load(f))
            merged = merge_rank_results(ranks, self._expected_ids)
            metrics = summarize(merged)
            metrics["agg_metrics"] = metrics["mIoU"]
            write_json_atomic(result_dir / f"{name}.json", merged)
            write_json_atomic(result_dir / f"{name}_metrics.json", metrics)
            logger.info("zero_shot_ris %s: %s", split_name,
                        ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if k != "agg_metrics"))
        if is_dist_avail_and_initialized():
            holder = [metrics]
            dist.broadcast_object_list(holder, src=0)
            metrics = holder[0]
        return metrics
