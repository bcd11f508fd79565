"""Turn what a caller gives as a region into a `Region`.

Accepted forms (one region each):
- a `Region`;
- a mapping that `Region.from_json` reads: `{"points": [[x, y], ...]}`, `{"scribble": ...}`,
  `{"box": [x1, y1, x2, y2], ...}`, `{"rle": {"size": [h, w], "counts": ...}}`,
  `{"polygons": [...], "height": h, "width": w}`;
- a string: JSON text of such a mapping (starts with "{"), or point text
  `"[32 64] [37 62]"` (integers 0..100, percent of the image width and height).
`None` (or "") stands for the whole image; it is handled by the callers, not here.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Union

from lavis_regionvlm.regions import Region, RegionError, text_to_points

RegionLike = Union[Region, Mapping, str]

__all__ = ["RegionLike", "as_region", "parse_points", "is_single_region"]


def parse_points(text: str) -> Region:
    """Point text `"[32 64] [37 62]"` -> a points region at (0.32, 0.64), (0.37, 0.62).

    Raises:
        RegionError: malformed text (the message quotes the bad part) or no point at all.
    """
    points = text_to_points(text)
    if len(points) == 0:
        raise RegionError(f"point text {text!r} holds no point; expected '[x y] [x y] ...' (0..100)")
    return Region.from_points(points)


def as_region(region: Any, what: str = "region") -> Region:
    """One region in any accepted form -> `Region`.

    Args:
        region: see the module docstring.
        what: name used in error messages (e.g. "region 2", "--region").

    Raises:
        RegionError: anything that is not a valid region, with a message saying what and why.
    """
    if isinstance(region, Region):
        return region
    if isinstance(region, Mapping):
        try:
            return Region.from_json(region)
        except RegionError as exc:
            raise RegionError(f"{what}: {exc}") from None
    if isinstance(region, str):
        text = region.strip()
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise RegionError(
                    f"{what}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg} "
                    f"(in {text!r:.80})"
                ) from None
            return as_region(obj, what)
        try:
            return parse_points(text)
        except RegionError as exc:
            raise RegionError(
                f"{what}: not region JSON (it does not start with '{{') and not point text: {exc}"
            ) from None
    raise RegionError(
        f"{what}: expected a Region, a region JSON object (dict or str) or point text "
        f"'[x y] ...', got {type(region).__name__}"
    )


def is_single_region(regions: Any) -> bool:
    """Whether `regions` is one region (or None, the whole image) rather than a list of them."""
    return regions is None or isinstance(regions, (Region, Mapping, str))
