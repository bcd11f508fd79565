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
reads back. :class:`PointTextSpec` is how a model writes regions (K, quantisation, sampling
strategy, pixel convention) with the plugin's one seed rule; every entry point (processor,
predictor, chat, demo, CLI, RIS, VCR) turns regions into point text through it. Torch-free
(numpy only).
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Optional, Union

from lavis_regionvlm.common.seeding import SeedKey, seeded_rng

from .point_text import PixelCoords, QuantizeMode, RegionError, points_to_text, text_to_points
from .region import Region, Seed

__all__ = ["POINT_TEXT_KEY", "PointTextSpec", "RegionInput", "is_single_region", "read_region", "region_json",
           "region_point_text"]

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


@dataclasses.dataclass(frozen=True)
class PointTextSpec:
    """How a model writes a region as point text: the model owns one (`model.point_spec`), and
    every entry point writes regions through it.

    Attributes:
        num_points: K points per region.
        quantize: "floor" (as the released checkpoint) or "round".
        strategy: the sampling strategy (None: the region kind's default, see ``Region``).
        pixel_coords: how a mask pixel becomes a relative point (``regions.pixel_points``).

    The seed rule: ``seed`` alone is used as given (an int, a ``numpy.random.Generator`` or
    None); ``seed`` with ``keys`` draws from ``common.seeding.seeded_rng(seed, *keys)``, a stream
    of its own for what the keys name (an image and a proposal, a question and an object).
    """

    num_points: int = 10
    quantize: QuantizeMode = "floor"
    strategy: Optional[str] = None
    pixel_coords: PixelCoords = "corner_float32"

    def __post_init__(self) -> None:
        if isinstance(self.num_points, bool) or not isinstance(self.num_points, int) or self.num_points < 1:
            raise RegionError(f"num_points must be an int >= 1, got {self.num_points!r}")
        if self.quantize not in ("floor", "round"):
            raise RegionError(f"quantize must be 'floor' or 'round', got {self.quantize!r}")

    def replace(self, **changes: Any) -> "PointTextSpec":
        """A copy with some fields changed (None values leave a field as it is)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def text(self, region: Any, seed: Seed = None, *keys: SeedKey, what: str = "region") -> str:
        """Any accepted region form -> point text (:func:`region_point_text` with this spec)."""
        rng = seeded_rng(seed, *keys) if keys else seed
        return region_point_text(region, self.num_points, rng, quantize=self.quantize, strategy=self.strategy,
                                 pixel_coords=self.pixel_coords, what=what)

    def draws(self, region: Region, count: int, seed: int, *keys: SeedKey) -> list[str]:
        """``count`` point texts of one region from one stream (the first equals ``text`` with
        the same seed and keys): RIS scores several draws per proposal."""
        rng = seeded_rng(seed, *keys) if keys else seed
        return [points_to_text(points, quantize=self.quantize)
                for points in region.sample_point_draws(self.num_points, count, rng, strategy=self.strategy,
                                                        pixel_coords=self.pixel_coords)]


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
