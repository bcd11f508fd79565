"""Cache SAM proposals for the images of a REFER split (or of a folder).

    python -m lavis_regionvlm.ris.proposals --config proposals.yaml [key=value ...]

Config (YAML; `key=value` arguments override it, e.g. `sam.device=cuda`):

    sam:
      model_type: vit_h             # vit_h | vit_l | vit_b | tiny (random weights, tests)
      checkpoint: ~/sam_vit_h_4b8939.pth
      device: cuda
    generator:                      # SamAutomaticMaskGenerator arguments (output_mode is coco_rle)
      points_per_side: 32
      pred_iou_thresh: 0.88
      stability_score_thresh: 0.95
    images:
      root: data/coco/images/train2014
      refer:                        # optional: only the images of these REFER splits
        ann_dir: data/refer/refcoco
        split_by: unc
        splits: [val, testA, testB]
    output_dir: data/sam_proposals/refcoco
    shard: {index: 0, count: 1}     # process images[index::count] (several GPUs, one folder)

Each image gets `<output_dir>/<file name>.json` (e.g. `cat.jpg.json`; see `proposal_cache`),
written atomically, recording the image's file name, id, size and content fingerprint;
`run_config.json` records the SAM type, checkpoint and generator parameters. A rerun skips
images whose file exists, so a crashed run resumes where it stopped; a rerun with a
different SAM or generator config into the same folder is refused, and so is a folder
holding files of the older `<stem>.json` layout (move them away or use a new output_dir).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
from omegaconf import OmegaConf
from PIL import Image

from lavis_regionvlm.common.progress import Progress
from lavis_regionvlm.config_resolvers import register_resolvers
from lavis_regionvlm.paths import resolve_path
from lavis_regionvlm.ris.proposal_cache import (
    RUN_CONFIG,
    image_fingerprint,
    proposal_candidates,
    proposal_path,
    remove_stale_temps,
    write_json_atomic,
)
from lavis_regionvlm.ris.refer import load_split

logger = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def list_images(images_cfg: dict) -> list[tuple[str, Optional[int]]]:
    """(file name relative to `images.root`, image_id or None), sorted by file name.

    With `images.refer`, the images holding refs of the listed splits; otherwise every
    .jpg/.jpeg/.png file directly under the root.
    """
    root = Path(resolve_path(images_cfg["root"]))
    refer = images_cfg.get("refer")
    if refer:
        found = {}
        for split in refer["splits"]:
            for image in load_split(resolve_path(refer["ann_dir"]), refer.get("split_by", "unc"), split):
                found[image.file_name] = image.image_id
        return sorted(found.items())
    return [(p.name, None) for p in sorted(root.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]


def run_record(config: dict) -> dict:
    """What `run_config.json` holds: the settings that determine the proposals."""
    import segment_anything

    sam = config["sam"]
    return {
        "sam": {"model_type": sam["model_type"], "checkpoint": sam.get("checkpoint")},
        "generator": {**dict(config.get("generator") or {}), "output_mode": "coco_rle"},
        "segment_anything_version": getattr(segment_anything, "__version__", "unknown"),
    }


def check_run_config(output_dir: Path, record: dict) -> None:
    """Write `run_config.json`, or check that an existing one matches `record`."""
    path = output_dir / RUN_CONFIG
    if path.is_file():
        with open(path) as f:
            existing = json.load(f)
        if existing != record:
            raise SystemExit(
                f"{output_dir} holds proposals made with another configuration:\n  existing: "
                f"{json.dumps(existing)}\n  now:      {json.dumps(record)}\n"
                "use a new output_dir, or delete that folder to start over"
            )
        return
    write_json_atomic(path, record)


def check_layout(images: Iterable[tuple[str, Optional[int]]], output_dir: Path) -> None:
    """Refuse an output folder holding proposal files of the older `<stem>.json` layout for
    these images: a rerun would write `<file name>.json` beside them, and the evaluation
    would then find two files for one image."""
    old = [stem for name, _ in images if not proposal_path(output_dir, name).is_file()
           for stem in proposal_candidates(output_dir, name)[1:2] if stem.is_file()]
    if old:
        raise SystemExit(
            f"{output_dir} holds {len(old)} proposal files named by image stem (the older layout), "
            f"e.g. {old[0].name}; files are now named <file name>.json and record their image. "
            "Use a new output_dir, or move the old files away to regenerate them here"
        )


def generate(generator, images: Iterable[tuple[str, Optional[int]]], root: Path, output_dir: Path) -> dict[str, int]:
    """Run `generator` over images without a cache file yet; returns {"done", "skipped"}."""
    images = list(images)
    check_layout(images, output_dir)
    todo = [(name, image_id) for name, image_id in images if not proposal_path(output_dir, name).is_file()]
    skipped = len(images) - len(todo)
    logger.info("%d images, %d already done, %d to do", len(images), skipped, len(todo))
    progress = Progress("proposals", len(todo), interval_s=30.0)
    for name, image_id in todo:
        with Image.open(root / name) as image:
            pixels = np.asarray(image.convert("RGB"))
        records = generator.generate(pixels)
        if not records:
            logger.warning("SAM found no mask in %s", name)
        write_json_atomic(proposal_path(output_dir, name), {
            "file_name": name, "image_id": image_id, "height": int(pixels.shape[0]),
            "width": int(pixels.shape[1]), **image_fingerprint(root / name),
            "num_proposals": len(records), "proposals": records,
        })
        progress.update(1)
    return {"done": len(todo), "skipped": skipped}


def main(argv: Optional[list[str]] = None) -> dict[str, int]:
    """Parse arguments, build SAM and its generator, and fill the cache."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config (see above)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. sam.device=cuda")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    register_resolvers()  # the config may use ${regionvlm_data:...}
    config: dict[str, Any] = OmegaConf.to_container(
        OmegaConf.merge(OmegaConf.load(args.config), OmegaConf.from_dotlist(args.overrides)), resolve=True
    )
    from segment_anything import SamAutomaticMaskGenerator

    from lavis_regionvlm.ris.sam import build_sam

    output_dir = Path(resolve_path(config["output_dir"]))
    output_dir.mkdir(parents=True, exist_ok=True)
    record = run_record(config)
    check_run_config(output_dir, record)
    for path in remove_stale_temps(output_dir):
        logger.info("removed %s, left by an interrupted run", path.name)
    sam_cfg = config["sam"]
    checkpoint = sam_cfg.get("checkpoint")
    sam = build_sam(sam_cfg["model_type"], resolve_path(checkpoint) if checkpoint else None,
                    sam_cfg.get("device", "cpu"))
    generator = SamAutomaticMaskGenerator(sam, **record["generator"])
    shard = config.get("shard") or {}
    images = list_images(config["images"])[shard.get("index", 0) :: shard.get("count", 1)]
    counts = generate(generator, images, Path(resolve_path(config["images"]["root"])), output_dir)
    logger.info("done: %d new, %d skipped", counts["done"], counts["skipped"])
    return counts


if __name__ == "__main__":
    main(sys.argv[1:])
