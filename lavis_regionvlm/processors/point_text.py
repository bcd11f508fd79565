"""`region_points`: the text processor for point text.

Region text is not a caption: this processor turns a region (a `Region`, an (M, 2)
array of relative points, or point text) into the canonical `"[x y] [x y] ..."`
string the model reads, with the model's K and quantisation, and rejects anything
else instead of passing it on.
"""
from __future__ import annotations

import numpy as np
from lavis.common.registry import registry
from lavis.processors.base_processor import BaseProcessor
from omegaconf import OmegaConf

from lavis_regionvlm.regions import Region, RegionError, is_point_text, points_to_text


@registry.register_processor("region_points")
class RegionPointsProcessor(BaseProcessor):
    """Region -> point text.

    Config: `num_points` (K, default 10), `quantize` ("floor" as the released
    checkpoint, or "round" as the paper's example), `strategy` (sampling strategy,
    None = the region kind's default).
    """

    def __init__(self, num_points: int = 10, quantize: str = "floor", strategy: str | None = None):
        super().__init__()
        self.num_points = num_points
        self.quantize = quantize
        self.strategy = strategy

    def __call__(self, region, seed=None) -> str:
        """`region`: a Region (K points sampled with `seed`), an (M, 2) array of relative
        points (written as they are), point text (checked and returned), or "" / None
        for the whole image."""
        if region is None or (isinstance(region, str) and region == ""):
            return ""
        if isinstance(region, str):
            if not is_point_text(region):
                raise RegionError(f"not point text: {region!r}; expected '[x y] [x y] ...'")
            return region
        if isinstance(region, Region):
            return region.to_text(
                self.num_points, seed, quantize=self.quantize, strategy=self.strategy
            )
        return points_to_text(np.asarray(region, dtype=np.float64), quantize=self.quantize)

    @classmethod
    def from_config(cls, cfg=None):
        cfg = cfg if cfg is not None else OmegaConf.create()
        return cls(
            num_points=cfg.get("num_points", 10),
            quantize=cfg.get("quantize", "floor"),
            strategy=cfg.get("strategy", None),
        )
