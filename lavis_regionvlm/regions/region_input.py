"""The one door for a user's region: any accepted form -> the point text a model reads.

Accepted forms (one region each):
- a ``Region``: K points sampled with the model's settings (K, quantize, pixel_coords, seed);
- a mapping that ``Region.from_json`` reads (``{"points": ...}``, ``{"scribble": ...}``,
  ``{"box": ...}``, ``{"rle": ...}``, ``{"polygons": ...}``): the same, sampled;
- point text ``"[32 64] [37 62]"`` (a str, or ``{"point_text": "..."}``): checked by the one rule
  of :func:`~lavis_regionvlm.regions.point_text.text_to_points` (only ``[x y]`` pairs of integers
  0..100 separated by whitespace) and used as given, never redrawn (surrounding whitespace is
  dropped; the Q-Former's tokenizer ignores it);
- a str starting with ``{``: JSON text of one of the mappings above;
- ``None``, ``""`` (or only whitespace): the whole image, point text ``""``, alone or in a list.

:func:`read_region` keeps what the user gave (a ``Region``, or point text); :func:`region_point_text`
turns any form into point text; :func:`region_json` writes what ``read_region`` gave in a form it
reads back. Torch-free (numpy only).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Optional, Union

from .point_text import PixelCoords, QuantizeMode, RegionError, text_to_points
from .region import Region, Seed

__all__ = ["POINT_TEXT_KEY", "RegionInput", "is_single_region", "read_region", "region_json", "region_point_text"]

RegionInput = Union[Region, str]
"""What :func:`read_region` returns: a ``Region``, or checked point text (``""``: the whole image)."""

POINT_TEXT_KEY = "point_text"
"""The JSON key of a region given as point text: ``{"point_text": "[32 64] [37 62]"}``."""


def read_region(region: Any, what: str = "region") -> RegionInput:
    """One region in any accepted form (module docstring) -> a ``Region`` or checked point text.

    Args:
        region: see the module docstring.
        what: name used in error messages (e.g. ``"region 2"``, ``"--points #1"``).

    Returns:
        the ``Region`` (built from a mapping or JSON text), or the point text as given without
        surrounding whitespace (``""`` for ``None`` and blank text: the whole image).

    Raises:
        RegionError: anything else, with a message saying what was wrong and where.
    """
    if region is None:
        return ""
    if isinstance(region, Region):
        return region
    if isinstance(region, Mapping):
        if POINT_TEXT_KEY in region:
            if set(region) != {POINT_TEXT_KEY}:
                extra = sorted(str(k) for k in region if k != POINT_TEXT_KEY)
                raise RegionError(f"{what}: a {POINT_TEXT_KEY!r} region takes no other key, got {extra}")
            return _checked_point_text(region[POINT_TEXT_KEY], what)
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
                    f"{what}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg} (in {text!r:.80})"
                ) from None
            if not isinstance(obj, Mapping):
                raise RegionError(f"{what}: region JSON must be an object, got {type(obj).__name__}")
            return read_region(obj, what)
        return _checked_point_text(text, what, hint=", and not region JSON (it does not start with '{')")
    raise RegionError(
        f"{what}: expected a Region, a region JSON object (dict or str), point text '[x y] ...' "
        f"or None / \"\" (the whole image), got {type(region).__name__}"
    )


def region_point_text(
    region: Any,
    num_points: int,
    seed: Seed = None,
    *,
    quantize: QuantizeMode = "floor",
    strategy: Optional[str] = None,
    pixel_coords: PixelCoords = "corner_float32",
    what: str = "region",
) -> str:
    """Any accepted region form -> the point text the model reads.

    Point text given as text is checked and returned as given (see :func:`read_region`); ``None``
    and ``""`` give ``""``; every other form is read into a ``Region`` and K = ``num_points``
    points are drawn with ``seed`` (``Region.to_text``, with ``quantize``, ``strategy`` and
    ``pixel_coords``).

    Raises:
        RegionError: an invalid region or setting (the message names ``what``).
    """
    read = read_region(region, what)
    if isinstance(read, str):
        return read
    try:
        return read.to_text(num_points, seed, quantize=quantize, strategy=strategy, pixel_coords=pixel_coords)
    except RegionError as exc:
        raise RegionError(f"{what}: {exc}") from None


def region_json(region: RegionInput) -> dict[str, Any]:
    """What :func:`read_region` gave -> JSON that it reads back: ``Region.to_json()``, or
    ``{"point_text": text}`` for point text (``""``: the whole image)."""
    if isinstance(region, Region):
        return region.to_json()
    return {POINT_TEXT_KEY: region}


def is_single_region(regions: Any) -> bool:
    """Whether ``regions`` is one region (or None, the whole image) rather than a list of them."""
    return regions is None or isinstance(regions, (Region, Mapping, str))


def _checked_point_text(text: Any, what: str, hint: str = "") -> str:
    """``text`` stripped, after checking it is point text (``""`` allowed: the whole image)."""
    if not isinstance(text, str):
        raise RegionError(f"{what}: point text must be a str, got {type(text).__name__}")
    try:
        text_to_points(text)
    except RegionError as exc:
        raise RegionError(f"{what}: {exc}; not point text '[x y] [x y] ...' (integers 0..100){hint}") from None
    return text.strip()
