"""Dataset builders registered with LAVIS: `localized_narratives`, `vg_region`, `global_caption`
and `region_global_mix`. Their config schemas are documented in the default YAMLs under
`lavis_regionvlm/configs/datasets/`.

Unlike LAVIS's stock builders, nothing is downloaded and no path is guessed: every file comes
from the config, relative paths start at the working directory, and a missing file raises a
`ConfigError` that names the config key and the path.
"""
from __future__ import annotations

import logging
from typing import Any

from lavis.common.registry import registry
from lavis.datasets.builders.base_dataset_builder import BaseDatasetBuilder, load_dataset_config
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from lavis_regionvlm.preparation.ln_prepared import read_meta
from lavis_regionvlm.datasets.config import (
    ConfigError,
    SamplingConfig,
    entry_list,
    existing_path,
    require,
    to_dict,
)
from lavis_regionvlm.datasets.global_caption import CocoCaptions, GlobalCaptionDataset
from lavis_regionvlm.datasets.localized_narratives import LocalizedNarrativesDataset
from lavis_regionvlm.datasets.mix import RegionGlobalMixDataset
from lavis_regionvlm.datasets.tar_shards import TarShards, expand_shards
from lavis_regionvlm.datasets.visual_genome import VGRegionDataset
from lavis_regionvlm.paths import config_path

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class LocalDataBuilder(BaseDatasetBuilder):
    """Base of the plugin's builders: one dataset per split in `build_info.annotations`.

    `where` prefixes config keys in error messages (``datasets.<name>``; a mixture's source
    builder gets its place in the mixture's config).
    """

    name = ""

    def __init__(self, cfg: Any = None, where: str | None = None):
        super().__init__(cfg)
        self.where = where or f"datasets.{self.name}"

    def _download_data(self) -> None:
        """LAVIS downloads annotation URLs here; this data is local only (build() checks it)."""

    def build(self) -> dict[str, Dataset]:
        self.build_processors()
        annotations = require(require(self.config, "build_info", self.where), "annotations",
                              f"{self.where}.build_info")
        if not annotations:
            raise ConfigError(
                f"{self.where}.build_info.annotations lists no split; give at least one of "
                f"{SPLITS} (see the builder's default YAML for its keys)"
            )
        datasets = {}
        for split in annotations:
            where = f"{self.where}.build_info.annotations.{split}"
            if split not in SPLITS:
                raise ConfigError(f"{where}: unknown split {split!r}; expected one of {SPLITS}")
            stage = "train" if split == "train" else "eval"
            vis, text = self.vis_processors[stage], self.text_processors[stage]
            for kind, processor in (("vis_processor", vis), ("text_processor", text)):
                if processor is None:
                    raise ConfigError(f"{self.where}.{kind}.{stage} is not set (needed by split {split!r})")
            datasets[split] = self.build_split(annotations[split], where, vis, text)
            if split != "train":
                datasets[split].use_for_evaluation()
            logger.info("%s (%s): %s", self.where, split, datasets[split].summary())
        return datasets

    def build_split(self, node: Any, where: str, vis_processor: Any, text_processor: Any) -> Dataset:
        """The dataset of one split from its `build_info.annotations.<split>` node."""
        raise NotImplementedError

    def sampling(self) -> SamplingConfig:
        """The `sampling` block (K, quantisation, seed, Q-Former text limit)."""
        return SamplingConfig.from_config(self.config.get("sampling"), self.where)


def _check_keys(entry: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; allowed: {sorted(allowed)}")


@registry.register_builder("localized_narratives")
class LocalizedNarrativesBuilder(LocalDataBuilder):
    """Image and video Localized Narratives, prepared by `python -m lavis_regionvlm.preparation.prepare_ln`."""

    name = "localized_narratives"
    DATASET_CONFIG_DICT = {"default": config_path("datasets/localized_narratives.yaml")}

    def build_split(self, node: Any, where: str, vis_processor: Any, text_processor: Any) -> Dataset:
        folders = []
        for i, entry in enumerate(entry_list(node.get("files"), f"{where}.files")):
            at = f"{where}.files[{i}]"
            _check_keys(entry, {"path", "images"}, at)
            folder = existing_path(entry.get("path"), f"{at}.path", "folder")
            try:
                recorded = read_meta(folder)["images"]
            except (FileNotFoundError, ValueError) as exc:
                raise ConfigError(f"{at}.path: {exc}") from None
            if entry.get("images") is not None:
                images = existing_path(entry["images"], f"{at}.images", "folder")
            else:
                images = existing_path(recorded, f"{at}.images (not set; the root prepare_ln recorded)", "folder")
            folders.append((folder, images))
        return LocalizedNarrativesDataset(vis_processor, text_processor, self.sampling(), folders, name=self.name)


@registry.register_builder("vg_region")
class VGRegionBuilder(LocalDataBuilder):
    """Visual Genome region descriptions (v1.0 or v1.2)."""

    name = "vg_region"
    DATASET_CONFIG_DICT = {"default": config_path("datasets/vg_region.yaml")}

    def build_split(self, node: Any, where: str, vis_processor: Any, text_processor: Any) -> Dataset:
        entry = to_dict(node, where)
        _check_keys(entry, {"region_descriptions", "image_data", "images"}, where)
        max_box_area = self.config.get("max_box_area", 0.5)
        if not isinstance(max_box_area, (int, float)) or not 0 < max_box_area <= 1:
            raise ConfigError(f"{self.where}.max_box_area must lie in (0, 1], got {max_box_area!r}")
        return VGRegionDataset(
            vis_processor, text_processor, self.sampling(),
            region_descriptions=existing_path(entry.get("region_descriptions"), f"{where}.region_descriptions"),
            image_data=existing_path(entry.get("image_data"), f"{where}.image_data"),
            images=existing_path(entry.get("images"), f"{where}.images", "folder"),
            max_box_area=float(max_box_area), name=self.name,
        )


@registry.register_builder("global_caption")
class GlobalCaptionBuilder(LocalDataBuilder):
    """Whole-image caption pairs: COCO-captions JSON files and LAION-style webdataset shards."""

    name = "global_caption"
    DATASET_CONFIG_DICT = {"default": config_path("datasets/global_caption.yaml")}

    def build_split(self, node: Any, where: str, vis_processor: Any, text_processor: Any) -> Dataset:
        sources, weights = [], []
        for i, entry in enumerate(entry_list(node.get("files"), f"{where}.files")):
            at = f"{where}.files[{i}]"
            weight = entry.pop("weight", None)
            if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0):
                raise ConfigError(f"{at}.weight must be a number >= 0, got {weight!r}")
            weights.append(weight)
            if "shards" in entry:
                _check_keys(entry, {"shards"}, at)
                patterns = entry["shards"] if isinstance(entry["shards"], list) else [entry["shards"]]
                shards = [existing_path(p, f"{at}.shards") for p in expand_shards(patterns)]
                sources.append(TarShards(shards))
            else:
                _check_keys(entry, {"path", "images"}, at)
                sources.append(CocoCaptions(existing_path(entry.get("path"), f"{at}.path"),
                                            existing_path(entry.get("images"), f"{at}.images", "folder")))
        if any(w is None for w in weights) and not all(w is None for w in weights):
            raise ConfigError(f"{where}.files: give every entry a weight, or none (got {weights})")
        try:
            return GlobalCaptionDataset(vis_processor, text_processor, sources, seed=self.sampling().seed,
                                        name=self.name, weights=None if weights[0] is None else weights)
        except ValueError as exc:
            raise ConfigError(f"{where}.files: {exc}") from None


@registry.register_builder("region_global_mix")
class RegionGlobalMixBuilder(LocalDataBuilder):
    """One training dataset mixing region and global sources at a fixed ratio per batch.

    `region_sources` / `global_sources` map a registered builder name to that builder's
    dataset config (what would sit under `datasets.<name>`), merged over the builder's default
    YAML; the mixture's `vis_processor`, `text_processor` and `sampling` come in between (a
    source's own keys win). Only the sources' train splits are used.
    """

    name = "region_global_mix"
    DATASET_CONFIG_DICT = {"default": config_path("datasets/region_global_mix.yaml")}

    def build(self) -> dict[str, Dataset]:
        ratio, group = self.config.get("region_ratio"), self.config.get("group")
        if (ratio is None) == (group is None):
            raise ConfigError(f"{self.where}: set exactly one of region_ratio (as released: each sample is a "
                              f"region sample with this probability) and group (ours: fixed counts per "
                              f"batch) and the other to null; got region_ratio={ratio!r}, group={group!r}")
        counts = [1, 1]
        if group is not None:
            group = to_dict(group, f"{self.where}.group")
            _check_keys(group, {"region", "global"}, f"{self.where}.group")
            counts = [group.get(k) for k in ("region", "global")]
            if any(isinstance(n, bool) or not isinstance(n, int) for n in counts) or counts[0] < 1 or counts[1] < 0:
                raise ConfigError(f"{self.where}.group must be {{region: int >= 1, global: int >= 0}}, got {group}")
        elif isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            raise ConfigError(f"{self.where}.region_ratio must be a number in [0, 1], got {ratio!r}")
        region_sources, global_sources = self._sources("region_sources"), self._sources("global_sources")
        weighted = [name for name, source in global_sources.items() if getattr(source, "weights", None) is not None]
        if group is not None and weighted:
            raise ConfigError(f"{self.where}.global_sources.{weighted[0]}: file weights need region_ratio mixing "
                              "(groups walk the global samples in order); drop the weights or use region_ratio")
        dataset = RegionGlobalMixDataset(region_sources, global_sources, *counts,
                                         region_ratio=None if ratio is None else float(ratio), seed=self.sampling().seed)
        logger.info("%s: %s", self.where, dataset.summary())
        return {"train": dataset}

    def _sources(self, key: str) -> dict[str, Dataset]:
        node = self.config.get(key) or {}
        if not isinstance(node, DictConfig):
            raise ConfigError(f"{self.where}.{key} must map builder names to dataset configs, got {node!r:.80}")
        shared = {k: self.config[k] for k in ("vis_processor", "text_processor", "sampling") if k in self.config}
        sources = {}
        for name, block in node.items():
            where = f"{self.where}.{key}.{name}"
            builder_cls = registry.get_builder_class(name)
            if builder_cls is None or not issubclass(builder_cls, LocalDataBuilder) or builder_cls is type(self):
                raise ConfigError(f"{where}: {name!r} is not one of this plugin's source builders "
                                  "(localized_narratives, vg_region, global_caption)")
            cfg = OmegaConf.merge(load_dataset_config(builder_cls.default_config_path()), shared, block or {})
            splits = builder_cls(cfg, where=where).build()
            if set(splits) != {"train"}:
                raise ConfigError(f"{where}.build_info.annotations: a mixture source gives training data "
                                  f"only; it has splits {sorted(splits)}")
            sources[name] = splits["train"]
        return sources
