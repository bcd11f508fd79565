"""Regions: what a user points at (clicks, scribble, box, mask) and its K points as text."""

from .point_text import (
    PIXEL_COORDS,
    QUANTIZE_MODES,
    RegionError,
    is_point_text,
    pixel_points,
    points_to_text,
    text_to_points,
)
from .region import STRATEGIES, Region
from .region_input import (
    PointTextSpec,
    RegionInput,
    is_single_region,
    read_region,
    region_json,
    region_point_text,
)

__all__ = [
    "PIXEL_COORDS",
    "PointTextSpec",
    "QUANTIZE_MODES",
    "STRATEGIES",
    "Region",
    "RegionError",
    "RegionInput",
    "is_single_region",
    "is_point_text",
    "pixel_points",
    "points_to_text",
    "read_region",
    "region_json",
    "region_point_text",
    "text_to_points",
]
