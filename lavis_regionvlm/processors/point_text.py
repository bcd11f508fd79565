"""`region_points`: the text processor for point text.

Region text is not a caption: this processor turns a region (a `Region`, region JSON,
an (M, 2) array of relative points, or point text) into the `"[x y] [x y] ..."` string
the model reads, with the model's K and quantisation, and rejects anything else instead
of passing it on. Every form but arrays goes through the one reader every entry point
uses (`lavis_regionvlm.regions.region_input.PointTextSpec.text`): point text is checked
and used as given.
"""
from __future__ import annotations

import numpy as np
from lavis.common.registry import registry
from lavis.processors.base_processor import BaseProcessor
from omegaconf import OmegaConf

from lavis_regionvlm.regions import points_to_text
from lavis_regionvlm.regions.region_input import PointTextSpec


@registry.register_processor("region_points")
class RegionPointsProcessor(BaseProcessor):
    """Region -> point text.

    Config: `num_points` (K, default 10), `quantize` ("floor" as the released
    checkpoint, or "round" as the paper's example), `strategy` (sampling strategy,
    None = the region kind's default).
    """

    def __init__(self, num_points: int = 10, quantize: str = "floor", strategy: str | None = None):
        super().__init__()
        self.spec = PointTextSpec(num_points=num_points, quantize=quantize, strategy=strategy)

    def __call__(self, region, seed=None) -> str:
        """`region`: a Region or region JSON (K points sampled with `seed`), an (M, 2)
        array of relative points (written as they are), point text (checked and returned
        as given), or "" / None for the whole image.

        Raises:
            RegionError: anything that is not a region.
        """
        if isinstance(region, (np.ndarray, list, tuple)):
            return points_to_text(np.asarray(region, dtype=np.float64), quantize=self.spec.quantize)
        return self.spec.text(region, seed)

    @classmethod
    def from_config(cls, cfg=None):
        cfg = cfg if cfg is not None else OmegaConf.create()
        return cls(
            num_points=cfg.get("num_points", 10),
            quantize=cfg.get("quantize", "floor"),
            strategy=cfg.get("strategy", None),
        )
