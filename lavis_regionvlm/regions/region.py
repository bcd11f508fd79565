"""``Region``: what a user points at (clicks, a scribble, a box or a mask), and its K points.

Coordinates are relative to the image, in [0, 1], x first. Masks are (H, W) bool arrays in
pixels. Every random choice goes through a ``numpy.random.Generator`` built from the caller's
seed, so the same seed always gives the same points.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

import numpy as np
from numpy.typing import ArrayLike

from . import masks
from .point_text import (
    PIXEL_COORDS,
    PixelCoords,
    QuantizeMode,
    RegionError,
    as_point_array,
    pixel_points,
    points_to_text,
)

__all__ = ["Region", "RegionError", "RegionKind", "Seed", "STRATEGIES"]

RegionKind = Literal["points", "scribble", "box", "mask"]
Seed = Union[int, np.integer, np.random.Generator, None]

# Sampling strategies per kind; the first one is the default.
STRATEGIES: dict[str, tuple[str, ...]] = {
    "points": ("random_sorted", "even"),
    "scribble": ("even", "random_sorted"),
    "box": ("uniform",),
    "mask": ("uniform",),
}

# from_json: the key naming each kind and the extra keys it may carry.
_JSON_KEYS: dict[str, tuple[str, ...]] = {
    "points": (),
    "scribble": (),
    "box": ("box_format", "image_size"),
    "rle": (),
    "polygons": ("height", "width"),
}

_Draw = Callable[[np.random.Generator], np.ndarray]


@dataclass(frozen=True, eq=False, repr=False)
class Region:
    """An immutable region. Build it with a ``from_*`` classmethod.

    Attributes:
        kind: ``"points"`` (clicks), ``"scribble"`` (a polyline), ``"box"`` or ``"mask"``.
        data: read-only array: (N, 2) float64 relative xy for points and scribble, (4,) float64
            relative xyxy for a box, (H, W) bool for a mask.
    """

    kind: RegionKind
    data: np.ndarray

    def __post_init__(self) -> None:
        if self.kind not in STRATEGIES:
            raise RegionError(f"unknown region kind {self.kind!r}; expected one of {tuple(STRATEGIES)}")
        dtype = bool if self.kind == "mask" else np.float64
        data = np.array(self.data, dtype=dtype)  # always a private copy
        expected = {"points": "(N, 2)", "scribble": "(N, 2)", "box": "(4,)", "mask": "(H, W)"}[self.kind]
        ok = {
            "points": data.ndim == 2 and data.shape[1:] == (2,) and len(data) > 0,
            "scribble": data.ndim == 2 and data.shape[1:] == (2,) and len(data) > 0,
            "box": data.shape == (4,),
            "mask": data.ndim == 2 and data.any(),
        }[self.kind]
        if not ok:
            raise RegionError(
                f"{self.kind} region data must be a non-empty {expected} array, got shape {data.shape}"
            )
        if self.kind != "mask" and not (np.isfinite(data).all() and (data >= 0).all() and (data <= 1).all()):
            raise RegionError(
                f"{self.kind} region data must be finite relative coordinates in [0, 1], "
                f"got {data.tolist()!r:.80}"
            )
        if self.kind == "box" and not (data[0] < data[2] and data[1] < data[3]):
            raise RegionError(f"box region data must have x1 < x2 and y1 < y2, got {data.tolist()}")
        data.setflags(write=False)
        object.__setattr__(self, "data", data)

    # ----------------------------------------------------------------------- constructors

    @classmethod
    def from_points(cls, points: ArrayLike) -> Region:
        """Clicks: (N, 2) relative xy, N >= 1, clipped to [0, 1]."""
        return cls("points", as_point_array(points, "points"))

    @classmethod
    def from_scribble(cls, points: ArrayLike) -> Region:
        """A polyline (mouse trace) in drawing order: (N, 2) relative xy, N >= 1, clipped to [0, 1]."""
        return cls("scribble", as_point_array(points, "scribble"))

    @classmethod
    def from_box(
        cls,
        box: ArrayLike,
        *,
        fmt: Literal["xyxy", "xywh"] = "xyxy",
        image_size: Optional[tuple[float, float]] = None,
    ) -> Region:
        """A box, clipped to the image.

        Args:
            box: 4 numbers, ``[x1, y1, x2, y2]`` (``fmt="xyxy"``) or ``[x, y, w, h]`` (``"xywh"``).
                Relative by default; in pixels when ``image_size`` is given.
            fmt: ``"xyxy"`` or ``"xywh"``.
            image_size: ``(width, height)`` in pixels, to normalise a pixel box.

        Raises:
            RegionError: a bad format, non-finite values, an inverted or zero-area box, a box
                outside the image, or a bad ``image_size``.
        """
        if fmt not in ("xyxy", "xywh"):
            raise RegionError(f"unknown box format {fmt!r}; expected 'xyxy' or 'xywh'")
        try:
            arr = np.asarray(box, dtype=np.float64)
        except (TypeError, ValueError):
            raise RegionError(f"box must be 4 numbers, got {box!r:.80}") from None
        if arr.shape != (4,):
            raise RegionError(f"box must be 4 numbers [{', '.join(_BOX_NAMES[fmt])}], got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise RegionError(f"box has a NaN or infinite value: {arr.tolist()}")
        if fmt == "xywh":
            arr = np.concatenate([arr[:2], arr[:2] + arr[2:]])
        if arr[2] < arr[0] or arr[3] < arr[1]:
            raise RegionError(f"box is inverted (x2 < x1 or y2 < y1): {_fmt_box(arr, fmt)}")
        if arr[2] == arr[0] or arr[3] == arr[1]:
            raise RegionError(f"box has zero area: {_fmt_box(arr, fmt)}")
        if image_size is not None:
            arr = arr / np.tile(_check_image_size(image_size), 2)
        clipped = np.clip(arr, 0.0, 1.0)
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            raise RegionError(f"box lies outside the image: relative {_fmt_box(arr, 'xyxy')}")
        return cls("box", clipped)

    @classmethod
    def from_mask(cls, mask: ArrayLike) -> Region:
        """A mask: (H, W) bool or 0/1 array with at least one foreground pixel."""
        arr = masks.check_mask(mask)
        if not arr.any():
            raise RegionError(f"mask is empty: no foreground pixel in the {arr.shape[0]}x{arr.shape[1]} mask")
        return cls("mask", arr)

    @classmethod
    def from_rle(cls, rle: Mapping[str, Any]) -> Region:
        """A mask from COCO RLE ``{"size": [h, w], "counts": str | bytes | list}``."""
        return cls.from_mask(masks.decode_rle(rle))

    @classmethod
    def from_polygons(cls, polygons: Sequence[Sequence[float]], height: int, width: int) -> Region:
        """A mask from COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` in pixels, on a height x width image."""
        return cls.from_mask(masks.polygons_to_mask(polygons, height, width))

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Region:
        """A region from its JSON form (CLI, web API). Exactly one kind key:

        ``{"points": [[x, y], ...]}``, ``{"scribble": [[x, y], ...]}``,
        ``{"box": [x1, y1, x2, y2], "box_format"?: "xyxy" | "xywh", "image_size"?: [w, h]}``,
        ``{"rle": {"size": [h, w], "counts": ...}}``,
        ``{"polygons": [[x1, y1, ...], ...], "height": h, "width": w}``.
        """
        accepted = ", ".join(repr(k) for k in _JSON_KEYS)
        if not isinstance(obj, Mapping):
            raise RegionError(
                f"region JSON must be an object with one of the keys {accepted}, got {type(obj).__name__}"
            )
        kinds = [key for key in _JSON_KEYS if key in obj]
        if len(kinds) != 1:
            found = f"keys {kinds}" if kinds else f"none of them (keys given: {sorted(map(str, obj))})"
            raise RegionError(f"region JSON must have exactly one of the keys {accepted}; found {found}")
        kind = kinds[0]
        extra = sorted(map(str, set(obj) - {kind, *_JSON_KEYS[kind]}))
        if extra:
            raise RegionError(
                f"unexpected keys {extra} in a {kind!r} region JSON; "
                f"allowed extra keys: {list(_JSON_KEYS[kind])}"
            )
        if kind == "points":
            return cls.from_points(obj["points"])
        if kind == "scribble":
            return cls.from_scribble(obj["scribble"])
        if kind == "box":
            fmt = obj.get("box_format", "xyxy")
            return cls.from_box(obj["box"], fmt=fmt, image_size=obj.get("image_size"))
        if kind == "rle":
            return cls.from_rle(obj["rle"])
        missing = [key for key in ("height", "width") if key not in obj]
        if missing:
            raise RegionError(f"a 'polygons' region JSON needs 'height' and 'width'; missing {missing}")
        return cls.from_polygons(obj["polygons"], obj["height"], obj["width"])

    def to_json(self) -> dict[str, Any]:
        """JSON form that :meth:`from_json` reads back to an equal region (masks as compressed RLE)."""
        if self.kind == "mask":
            return {"rle": masks.mask_to_rle(self.data)}
        return {self.kind: self.data.tolist()}

    # ------------------------------------------------------------------------- geometry

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool read-only mask of a mask region. Other kinds: use :meth:`to_mask`."""
        if self.kind != "mask":
            raise RegionError(f"a {self.kind!r} region has no mask; use to_mask(height, width) for a box")
        return self.data

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Relative xyxy: the box itself, or the tight box of the mask pixels (pixel edges) or of
        the points (zero width or height when they are collinear on an axis)."""
        if self.kind == "box":
            x1, y1, x2, y2 = self.data.tolist()
        elif self.kind == "mask":
            height, width = self.data.shape
            ys, xs = np.nonzero(self.data)
            x1, y1 = xs.min() / width, ys.min() / height
            x2, y2 = (xs.max() + 1) / width, (ys.max() + 1) / height
        else:
            (x1, y1), (x2, y2) = self.data.min(axis=0).tolist(), self.data.max(axis=0).tolist()
        return float(x1), float(y1), float(x2), float(y2)

    def dilate(self, pixels: int) -> Region:
        """A mask region grown by ``pixels`` (every pixel within that Euclidean distance; a disk
        kernel via cv2.dilate). ``pixels == 0`` gives an equal region.

        Raises:
            RegionError: not a mask region, or ``pixels`` not a non-negative int.
        """
        if self.kind != "mask":
            raise RegionError(f"dilation needs a mask region, got a {self.kind!r} region")
        return Region("mask", masks.dilate_mask(self.data, pixels))

    def to_mask(self, height: int, width: int) -> np.ndarray:
        """(height, width) bool mask, a new writable array.

        A mask region must already have that size (no resizing: a size mismatch is an error).
        A box covers every pixel it overlaps with positive area, so a pixel box with integer
        corners ``(x1, y1, x2, y2)`` gives columns x1..x2-1 and rows y1..y2-1.

        Raises:
            RegionError: points or a scribble (no area), a bad size, or a mask of another size.
        """
        height, width = masks.check_size([height, width])
        if self.kind == "mask":
            if self.data.shape != (height, width):
                mask_h, mask_w = self.data.shape
                raise RegionError(f"mask is {mask_h}x{mask_w}, asked for {height}x{width}")
            return self.data.copy()
        if self.kind != "box":
            raise RegionError(
                f"a {self.kind!r} region has no area, so no mask; sample points or use a box or mask"
            )
        eps = 1e-6  # absorbs float error in pixel -> relative -> pixel round trips
        x1, y1, x2, y2 = self.data * np.array([width, height, width, height])
        c0, r0 = int(np.floor(x1 + eps)), int(np.floor(y1 + eps))
        c1, r1 = max(int(np.ceil(x2 - eps)), c0 + 1), max(int(np.ceil(y2 - eps)), r0 + 1)
        out = np.zeros((height, width), dtype=bool)
        out[r0:r1, c0:c1] = True
        return out

    # ------------------------------------------------------------------------- sampling

    def sample_points(
        self, k: int, seed: Seed = None, *, strategy: Optional[str] = None,
        pixel_coords: PixelCoords = "corner_float32",
    ) -> np.ndarray:
        """K points that stand for this region.

        Strategies (first = default):
            points: ``"random_sorted"`` (k of the N clicks without replacement, in their original
                order) or ``"even"`` (evenly spaced indices). If N < k both upsample evenly:
                indices ``round(linspace(0, N - 1, k))``, in order, every click at least once.
            scribble: ``"even"`` (k points evenly spaced by arc length, both ends included,
                linearly interpolated) or ``"random_sorted"`` (k uniform arc-length positions,
                sorted along the stroke). Arc length is measured in relative coordinates; k = 1
                with "even" gives the start. A scribble of zero length gives its point k times.
            box: ``"uniform"``: k points uniform inside the box.
            mask: ``"uniform"``: k foreground pixels at random (without replacement when the mask
                has >= k pixels), made relative by ``pixel_coords``.

        Args:
            k: number of points, >= 1.
            seed: int, ``numpy.random.Generator`` (used and advanced) or None (fresh entropy).
            strategy: see above; None for the kind's default.
            pixel_coords: how a mask pixel (row, col) becomes a point (mask regions only; see
                :func:`~lavis_regionvlm.regions.point_text.pixel_points`): ``"corner_float32"``
                (default, the released ``col / W`` in float32) or ``"centre"``
                (``(col + 0.5) / W`` in float64).

        Returns:
            (k, 2) relative xy in [0, 1]: float64, but float32 for a mask with
            ``"corner_float32"`` (so its point text is computed in float32, as released).
        """
        return self._drawer(k, strategy, pixel_coords)(_as_rng(seed))

    def sample_point_draws(
        self, k: int, draws: int, seed: Seed = None, *, strategy: Optional[str] = None,
        pixel_coords: PixelCoords = "corner_float32",
    ) -> np.ndarray:
        """``draws`` independent :meth:`sample_points` draws from one generator: (draws, k, 2),
        the dtype of :meth:`sample_points`.

        The first draw equals ``sample_points(k, seed)`` for the same int seed.
        """
        if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
            raise RegionError(f"draws must be an int >= 1, got {draws!r}")
        draw = self._drawer(k, strategy, pixel_coords)
        rng = _as_rng(seed)
        return np.stack([draw(rng) for _ in range(int(draws))])

    def to_text(
        self, k: int, seed: Seed = None, *, quantize: QuantizeMode = "floor", strategy: Optional[str] = None,
        pixel_coords: PixelCoords = "corner_float32",
    ) -> str:
        """Point text of :meth:`sample_points`: ``"[x y] [x y] ..."`` (``quantize`` as in
        :func:`~lavis_regionvlm.regions.point_text.points_to_text`, default ``"floor"``)."""
        points = self.sample_points(k, seed, strategy=strategy, pixel_coords=pixel_coords)
        return points_to_text(points, quantize=quantize)

    def _drawer(self, k: int, strategy: Optional[str], pixel_coords: str = "corner_float32") -> _Draw:
        """Validate ``k``, ``strategy`` and ``pixel_coords``, precompute what the kind needs,
        return rng -> (k, 2)."""
        if pixel_coords not in PIXEL_COORDS:
            raise RegionError(f"unknown pixel_coords {pixel_coords!r}; expected one of {PIXEL_COORDS}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise RegionError(f"k (number of points) must be an int >= 1, got {k!r}")
        k = int(k)
        valid = STRATEGIES[self.kind]
        strategy = valid[0] if strategy is None else strategy
        if strategy not in valid:
            raise RegionError(f"unknown strategy {strategy!r} for a {self.kind!r} region; valid: {valid}")
        if self.kind == "points":
            return _points_drawer(self.data, k, strategy)
        if self.kind == "scribble":
            return _scribble_drawer(self.data, k, strategy)
        if self.kind == "box":
            low, high = self.data[:2], self.data[2:]
            return lambda rng: rng.uniform(low, high, size=(k, 2))
        return _mask_drawer(self.data, k, pixel_coords)

    # ----------------------------------------------------------------------- value type

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Region):
            return NotImplemented
        return self.kind == other.kind and np.array_equal(self.data, other.data)

    def __hash__(self) -> int:
        return hash((self.kind, self.data.shape, self.data.tobytes()))

    def __repr__(self) -> str:
        if self.kind == "mask":
            return f"Region(kind='mask', shape={self.data.shape}, area={int(self.data.sum())})"
        if self.kind == "box":
            return f"Region(kind='box', box={[round(v, 4) for v in self.data.tolist()]})"
        return f"Region(kind={self.kind!r}, n={len(self.data)})"


_BOX_NAMES = {"xyxy": ("x1", "y1", "x2", "y2"), "xywh": ("x", "y", "w", "h")}


def _fmt_box(box: np.ndarray, fmt: str) -> str:
    """``[x1, y1, x2, y2]`` for messages (xywh input is shown after conversion)."""
    return f"[{', '.join(f'{v:g}' for v in box.tolist())}] (xyxy{', from xywh' if fmt == 'xywh' else ''})"


def _check_image_size(image_size: Any) -> np.ndarray:
    """``(width, height)`` positive finite numbers -> (2,) float64."""
    try:
        size = np.asarray(image_size, dtype=np.float64)
    except (TypeError, ValueError):
        size = np.empty(0)
    if size.shape != (2,) or not np.isfinite(size).all() or (size <= 0).any():
        raise RegionError(f"image_size must be (width, height) in pixels, both > 0, got {image_size!r:.80}")
    return size


def _as_rng(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
        return np.random.default_rng(seed)
    raise RegionError(f"seed must be an int, a numpy.random.Generator or None, got {type(seed).__name__}")


def _even_indices(n: int, k: int) -> np.ndarray:
    """k indices into range(n), evenly spaced, first and last included (repeats when n < k)."""
    return np.round(np.linspace(0, n - 1, k)).astype(np.int64)


def _points_drawer(points: np.ndarray, k: int, strategy: str) -> _Draw:
    n = len(points)
    if strategy == "even" or n < k:
        chosen = points[_even_indices(n, k)]
        return lambda rng: chosen.copy()
    return lambda rng: points[np.sort(rng.choice(n, size=k, replace=False))]


def _scribble_drawer(points: np.ndarray, k: int, strategy: str) -> _Draw:
    segment = np.linalg.norm(np.diff(points, axis=0), axis=1)
    keep = np.concatenate([[True], segment > 0])  # drop repeated points: arc length strictly increases
    points = points[keep]
    arc = np.concatenate([[0.0], np.cumsum(segment[segment > 0])])
    length = float(arc[-1])
    if length == 0.0:
        return lambda rng: np.repeat(points[:1], k, axis=0)

    def at(positions: np.ndarray) -> np.ndarray:
        xs, ys = np.interp(positions, arc, points[:, 0]), np.interp(positions, arc, points[:, 1])
        return np.stack([xs, ys], axis=1)

    if strategy == "even":
        fixed = at(np.linspace(0.0, length, k))
        return lambda rng: fixed.copy()
    return lambda rng: at(np.sort(rng.uniform(0.0, length, size=k)))


def _mask_drawer(mask: np.ndarray, k: int, pixel_coords: str) -> _Draw:
    height, width = mask.shape
    rows, cols = np.nonzero(mask)
    points = pixel_points(rows, cols, height, width, pixel_coords)
    n = len(points)
    return lambda rng: points[rng.choice(n, size=k, replace=n < k)]
