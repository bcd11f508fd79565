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

__all__ = [
    "PIXEL_COORDS",
    "QUANTIZE_MODES",
    "STRATEGIES",
    "Region",
    "RegionError",
    "is_point_text",
    "pixel_points",
    "points_to_text",
    "text_to_points",
]
