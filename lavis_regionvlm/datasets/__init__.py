"""Training datasets registered with LAVIS.

Builders: `localized_narratives` (image and video LN, prepared by
`python -m lavis_regionvlm.preparation.prepare_ln`), `vg_region` (Visual Genome regions),
`global_caption` (COCO-captions JSON and webdataset shards) and `region_global_mix` (region
and global data at a fixed ratio per batch). Every training sample has the keys `image`,
`region_text` (point text, "" for a global pair), `text_input` (the language model's prompt, "") and
`text_output` (target). Config schemas: `lavis_regionvlm/configs/datasets/*.yaml`.
"""
from lavis_regionvlm.datasets.base import SAMPLE_KEYS, SkippingDataset
from lavis_regionvlm.datasets.builders import (
    GlobalCaptionBuilder,
    LocalizedNarrativesBuilder,
    RegionGlobalMixBuilder,
    VGRegionBuilder,
)
from lavis_regionvlm.datasets.config import ConfigError, SamplingConfig
from lavis_regionvlm.datasets.epoch import set_epoch
from lavis_regionvlm.datasets.global_caption import GlobalCaptionDataset
from lavis_regionvlm.datasets.localized_narratives import LocalizedNarrativesDataset
from lavis_regionvlm.datasets.mix import RegionGlobalMixDataset
from lavis_regionvlm.datasets.visual_genome import VGRegionDataset

__all__ = [
    "SAMPLE_KEYS",
    "ConfigError",
    "GlobalCaptionBuilder",
    "GlobalCaptionDataset",
    "LocalizedNarrativesBuilder",
    "LocalizedNarrativesDataset",
    "RegionGlobalMixBuilder",
    "RegionGlobalMixDataset",
    "SamplingConfig",
    "SkippingDataset",
    "VGRegionBuilder",
    "VGRegionDataset",
    "set_epoch",
]
