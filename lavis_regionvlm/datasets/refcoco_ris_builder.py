"""`refcoco_ris`: the LAVIS dataset builder for zero-shot RIS evaluation.

Config (`datasets: refcoco_ris:`), paths relative to the working directory (`~` and
`regionvlm://` allowed):

    build_info:
      ann_dir: data/refcoco          # refs(<split_by>).p and instances.json
      split_by: unc                  # unc | umd | google
      splits: [val, testA, testB]    # each becomes a dataset of that name
      images: data/coco/train2014    # COCO train2014 images
      proposals: data/sam/refcoco    # proposal cache (python -m lavis_regionvlm.ris.proposals)
      sentence_key: raw              # raw | sent
    vis_processor: {eval: {name: blip_image_eval, image_size: 364}}
    text_processor: {eval: {name: blip_caption}}
"""
from __future__ import annotations

from pathlib import Path

from lavis.common.registry import registry
from lavis.datasets.builders.base_dataset_builder import BaseDatasetBuilder

from lavis_regionvlm.paths import config_path, resolve_path
from lavis_regionvlm.ris.dataset import RefCocoRisDataset
from lavis_regionvlm.ris.refer import load_split


@registry.register_builder("refcoco_ris")
class RefCocoRisBuilder(BaseDatasetBuilder):
    """RefCOCO / RefCOCO+ / RefCOCOg images with cached proposals, one dataset per split."""

    eval_dataset_cls = RefCocoRisDataset
    DATASET_CONFIG_DICT = {
        "default": config_path("datasets/refcoco_ris.yaml"),
        "refcoco": config_path("datasets/refcoco_ris.yaml"),
        "refcoco+": config_path("datasets/refcoco_ris_plus.yaml"),
        "refcocog": config_path("datasets/refcoco_ris_g.yaml"),
    }

    def _download_data(self) -> None:
        """Nothing is downloaded: the files must exist (checked in `build`)."""

    def build(self) -> dict[str, RefCocoRisDataset]:
        """{split: dataset} for every split in `build_info.splits`."""
        self.build_processors()
        info = self.config.build_info
        ann_dir = _existing(info.get("ann_dir"), "build_info.ann_dir")
        images = _existing(info.get("images"), "build_info.images")
        proposals = _existing(info.get("proposals"), "build_info.proposals")
        splits = list(info.get("splits") or [])
        if not splits:
            raise ValueError("refcoco_ris: build_info.splits is empty; e.g. [val, testA, testB]")
        return {
            split: self.eval_dataset_cls(
                load_split(ann_dir, info.get("split_by", "unc"), split, info.get("sentence_key", "raw")),
                images, proposals, self.vis_processors["eval"], self.text_processors["eval"],
            )
            for split in splits
        }


def _existing(value, key: str) -> Path:
    """A configured folder that must exist."""
    if not value:
        raise ValueError(f"refcoco_ris: {key} is not set")
    path = Path(resolve_path(str(value)))
    if not path.is_dir():
        raise FileNotFoundError(f"refcoco_ris: {key} = {path} is not a folder")
    return path
