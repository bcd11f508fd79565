"""Processors registered with LAVIS: `region_image_train`, `region_points`."""
from lavis_regionvlm.processors.image import RegionImageTrainProcessor
from lavis_regionvlm.processors.point_text import RegionPointsProcessor

__all__ = ["RegionImageTrainProcessor", "RegionPointsProcessor"]
