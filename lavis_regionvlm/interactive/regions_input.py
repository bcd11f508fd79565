"""Region inputs of the interactive tools: the one reader is `lavis_regionvlm.regions.region_input`.

`read_region` / `region_point_text` (re-exported here) accept a `Region`, region JSON (dict or
text), point text `"[32 64] [37 62]"` (kept as given, never redrawn) and None / "" (the whole
image). `as_region` and `parse_points` are for callers that need a `Region` object.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

from lavis_regionvlm.regions import Region, RegionError, text_to_points
from lavis_regionvlm.regions.region_input import (
    RegionInput,
    is_single_region,
    read_region,
    region_json,
    region_point_text,
)

RegionLike = Union[Region, Mapping, str]

__all__ = ["RegionInput", "RegionLike", "as_region", "is_single_region", "parse_points", "read_region",
           "region_json", "region_point_text"]


def parse_points(text: str) -> Region:
    """Point text `"[32 64] [37 62]"` -> a points region at (0.32, 0.64), (0.37, 0.62).

    Raises:
        RegionError: malformed text (the message quotes the bad part) or no point at all.
    """
    return as_region(text, "point text")


def as_region(region: Any, what: str = "region") -> Region:
    """One region in any form `read_region` accepts -> `Region` (point text becomes a points
    region; the whole image is refused: it is no `Region`).

    Raises:
        RegionError: anything that is not a valid region, with a message saying what and why.
    """
    read = read_region(region, what)
    if isinstance(read, Region):
        return read
    if not read:
        raise RegionError(f"{what}: {region!r} holds no point; expected '[x y] [x y] ...' (0..100)")
    return Region.from_points(text_to_points(read))
