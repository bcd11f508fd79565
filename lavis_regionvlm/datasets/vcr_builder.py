"""`vcr`: the LAVIS dataset builder for zero-shot VCR evaluation.

Config (`datasets: vcr:`); paths relative to the working directory (`~` and `regionvlm://`
allowed):

    build_info:
      ann_dir: data/vcr                 # {split}.jsonl
      images: data/vcr/vcr1images       # img_fn and metadata_fn are relative to this
      splits: [val]                     # any of train, val, test; each becomes a dataset
      limit: null                       # first N questions of each split (quick runs)
    vis_processor: {eval: {name: blip_image_eval, image_size: 364}}
"""
from __future__ import annotations

from pathlib import Path

from lavis.common.registry import registry
from lavis.datasets.builders.base_dataset_builder import BaseDatasetBuilder

from lavis_regionvlm.datasets.config import ConfigError
from lavis_regionvlm.paths import config_path, resolve_path
from lavis_regionvlm.vcr.data import load_examples
from lavis_regionvlm.vcr.dataset import VcrDataset


@registry.register_builder("vcr")
class VcrBuilder(BaseDatasetBuilder):
    """VCR questions in the released format, one dataset per split."""

    eval_dataset_cls = VcrDataset
    DATASET_CONFIG_DICT = {"default": config_path("datasets/vcr.yaml")}

    def _download_data(self) -> None:
        """Nothing is downloaded: the files must exist (checked in `build`)."""

    def build(self) -> dict[str, VcrDataset]:
        self.build_processors()
        info = self.config.get("build_info")
        if info is None:
            raise ConfigError("vcr: build_info is not set")
        ann_dir = _folder(info.get("ann_dir"), "build_info.ann_dir")
        images = _folder(info.get("images"), "build_info.images")
        splits = list(info.get("splits") or [])
        if not splits:
            raise ConfigError("vcr: build_info.splits is empty; e.g. [val]")
        limit = info.get("limit", None)
        datasets = {}
        for split in splits:
            path = ann_dir / f"{split}.jsonl"
            if not path.is_file():
                raise ConfigError(f"vcr: build_info.splits names {split!r} but {path} does not exist")
            datasets[split] = self.eval_dataset_cls(
                load_examples(path, limit), images, self.vis_processors["eval"]
            )
        return datasets


def _folder(value, key: str) -> Path:
    if not value:
        raise ConfigError(f"vcr: {key} is not set")
    path = Path(resolve_path(str(value)))
    if not path.is_dir():
        raise ConfigError(f"vcr: {key} = {path} is not a folder")
    return path
