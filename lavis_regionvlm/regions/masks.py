"""Binary mask helpers: COCO RLE and polygon decoding, RLE encoding, disk dilation.

Masks are (H, W) bool arrays in pixels. pycocotools and cv2 are imported where used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .point_text import RegionError


def check_mask(mask: Any, what: str = "mask") -> np.ndarray:
    """Validate a binary mask.

    Args:
        mask: (H, W) array-like of bool, or of numbers that are all 0 or 1.
        what: name used in error messages.

    Returns:
        (H, W) bool array (a new array unless ``mask`` already was a bool ndarray).

    Raises:
        RegionError: not 2-D, a zero-sized side, a non-numeric dtype or values other than 0/1.
    """
    arr = np.asarray(mask)
    if arr.ndim != 2 or 0 in arr.shape:
        raise RegionError(f"{what} must be a 2-D (H, W) array with H, W >= 1, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iuf":
        raise RegionError(f"{what} must hold bool or 0/1 numbers, got dtype {arr.dtype}")
    if not np.isin(arr, (0, 1)).all():
        raise RegionError(
            f"{what} values must be 0/1 (or bool), got values in [{arr.min()}, {arr.max()}]; "
            "binarise it first, e.g. mask > 0"
        )
    return arr != 0


def decode_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode a COCO RLE.

    Args:
        rle: ``{"size": [h, w], "counts": c}``; ``c`` is the compressed string (str or bytes)
            or the uncompressed list of run lengths (column-major, starting with a 0-run).

    Returns:
        (h, w) bool mask.

    Raises:
        RegionError: missing keys, a bad size, malformed counts, or run lengths that do not add
            up to ``h * w``. Checked here first: pycocotools 2.0.x returns uninitialised memory
            when the runs fall short of ``h * w``.
    """
    from pycocotools import mask as mask_utils

    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise RegionError(f"RLE must be a dict with 'size' and 'counts', got {rle!r:.80}")
    height, width = check_size(rle["size"])
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        text = counts.decode("ascii", errors="replace") if isinstance(counts, bytes) else counts
        runs = _runs_from_compressed(text)
        compressed = {"size": [height, width], "counts": text.encode("ascii")}
    elif isinstance(counts, Sequence) or isinstance(counts, np.ndarray):
        runs = _as_runs(counts)
        compressed = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    else:
        raise RegionError(f"RLE 'counts' must be str, bytes or a list of ints, got {type(counts).__name__}")
    if any(r < 0 for r in runs) or sum(runs) != height * width:
        raise RegionError(
            f"RLE run lengths add up to {sum(runs)} (min {min(runs, default=0)}), "
            f"but size {height}x{width} needs {height * width}"
        )
    return mask_utils.decode(compressed).astype(bool)


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygons (pixel coordinates) into one mask, as COCO's tools do.

    Args:
        polygons: list of polygons, each a flat ``[x1, y1, x2, y2, ...]`` list of at least 3
            vertices (6 numbers), in pixels.
        height, width: mask size in pixels.

    Returns:
        (height, width) bool mask: the union of the polygons.

    Raises:
        RegionError: a bad size, no polygons, or a polygon that is not an even-length list of
            >= 6 finite numbers.

    Vertices may lie outside the canvas: a polygon reaching beyond ``[-1, width + 1] x
    [-1, height + 1]`` is first clipped to that window (`clip_polygon`), which leaves the
    pixels inside the canvas as they were (up to rounding on the cut edges) and keeps the cost
    bounded (pycocotools' cost and memory grow with the length of the edges: a vertex at 1e7
    took 780 MB). Polygons wholly inside the window are rasterised unchanged.
    """
    from pycocotools import mask as mask_utils

    height, width = check_size([height, width])
    if isinstance(polygons, (str, bytes, Mapping)) or not isinstance(polygons, (Sequence, np.ndarray)):
        raise RegionError(
            f"polygons must be a list of [x1, y1, x2, y2, ...] lists, got {type(polygons).__name__}"
        )
    if len(polygons) == 0:
        raise RegionError("polygons is empty; need at least one polygon")
    flat: list[list[float]] = []
    for i, polygon in enumerate(polygons):
        try:
            coords = np.asarray(polygon, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise RegionError(f"polygon {i} is not a list of numbers: {polygon!r:.80}") from None
        if coords.size < 6 or coords.size % 2:
            raise RegionError(
                f"polygon {i} must be a flat [x1, y1, x2, y2, ...] list of >= 3 vertices, "
                f"got {coords.size} numbers"
            )
        if not np.isfinite(coords).all():
            raise RegionError(f"polygon {i} has a NaN or infinite coordinate")
        clipped = clip_polygon(coords.reshape(-1, 2), width, height)
        if len(clipped) >= 3:
            flat.append(clipped.ravel().tolist())
    if not flat:  # every polygon lies wholly outside the canvas
        return np.zeros((height, width), dtype=bool)
    rles = mask_utils.frPyObjects(flat, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def clip_polygon(vertices: np.ndarray, width: int, height: int, margin: float = 1.0) -> np.ndarray:
    """Clip a polygon to the window ``[-margin, width + margin] x [-margin, height + margin]``.

    Sutherland-Hodgman against the window's four sides (exact for any polygon, since the window
    is convex; parts outside are replaced by runs along the window's border, which lies outside
    the canvas and so paints no pixel of it).

    Args:
        vertices: (V, 2) float64 (x, y) in pixels, finite.
        width, height: canvas size in pixels.
        margin: how far beyond the canvas the window reaches, in pixels.

    Returns:
        (V', 2) float64: ``vertices`` itself when every vertex is inside the window, else the
        clipped polygon (V' < 3 when nothing of it is inside).
    """
    low = np.array([-margin, -margin])
    high = np.array([width + margin, height + margin])
    if ((vertices >= low) & (vertices <= high)).all():
        return vertices
    points = [tuple(v) for v in vertices]
    for axis, bound, keep_below in ((0, low[0], False), (0, high[0], True), (1, low[1], False), (1, high[1], True)):
        if not points:
            break
        inside = [(p[axis] <= bound) if keep_below else (p[axis] >= bound) for p in points]
        out = []
        for k, (point, is_in) in enumerate(zip(points, inside)):
            prev, prev_in = points[k - 1], inside[k - 1]
            if is_in != prev_in:  # the edge prev -> point crosses the line: add the crossing
                t = (bound - prev[axis]) / (point[axis] - prev[axis])
                crossing = [prev[0] + t * (point[0] - prev[0]), prev[1] + t * (point[1] - prev[1])]
                crossing[axis] = bound
                out.append(tuple(crossing))
            if is_in:
                out.append(point)
        points = out
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def check_mask_pixels(height: int, width: int, max_pixels: int, option: str = "") -> None:
    """Refuse a height x width mask larger than ``max_pixels`` (checked before any decoding).

    Raises:
        RegionError: over the limit; the message names ``option`` (how to raise it).
    """
    if height * width > max_pixels:
        hint = f" ({option})" if option else ""
        raise RegionError(
            f"a {height}x{width} mask ({height * width / 1e6:.1f} MP) is over the limit of "
            f"{max_pixels / 1e6:.1f} MP{hint}; masks are read relative to their size, so a smaller one works as well"
        )


def mask_to_rle(mask: Any) -> dict[str, Any]:
    """Encode a mask as compressed COCO RLE, JSON-ready.

    Args:
        mask: (H, W) bool or 0/1 array.

    Returns:
        ``{"size": [H, W], "counts": str}``.
    """
    from pycocotools import mask as mask_utils

    arr = check_mask(mask)
    rle = mask_utils.encode(np.asfortranarray(arr.astype(np.uint8)))
    return {"size": [int(arr.shape[0]), int(arr.shape[1])], "counts": rle["counts"].decode("ascii")}


def disk_kernel(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) uint8 kernel: 1 where ``dx**2 + dy**2 <= r**2`` (a digital disk)."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius * radius).astype(np.uint8)


def dilate_mask(mask: Any, pixels: int) -> np.ndarray:
    """Grow a mask by ``pixels``: add every pixel within Euclidean distance ``pixels`` of it.

    Args:
        mask: (H, W) bool or 0/1 array.
        pixels: dilation radius in pixels, >= 0 (0 returns a copy).

    Returns:
        (H, W) bool mask.

    Raises:
        RegionError: a bad mask, or ``pixels`` not a non-negative int.
    """
    arr = check_mask(mask)
    if isinstance(pixels, bool) or not isinstance(pixels, (int, np.integer)):
        raise RegionError(f"dilation pixels must be an int, got {type(pixels).__name__} {pixels!r}")
    if pixels < 0:
        raise RegionError(f"dilation pixels must be >= 0, got {pixels}")
    if pixels == 0:
        return arr.copy()
    import cv2

    return cv2.dilate(arr.astype(np.uint8), disk_kernel(int(pixels))).astype(bool)


def check_size(size: Any) -> tuple[int, int]:
    """Validate a mask size ``[height, width]`` (positive ints) and return it as a tuple."""
    try:
        height, width = size
    except (TypeError, ValueError):
        raise RegionError(f"mask size must be [height, width], got {size!r:.80}") from None
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise RegionError(f"mask {name} must be a positive int, got {value!r}")
    return int(height), int(width)


def _as_runs(counts: Any) -> list[int]:
    """Uncompressed RLE counts as a list of Python ints."""
    arr = np.asarray(counts)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise RegionError(f"uncompressed RLE counts must be a flat list of ints, got {counts!r:.80}")
    return [int(v) for v in arr]


def _runs_from_compressed(text: str) -> list[int]:
    """Decode the run lengths of a compressed COCO RLE string (pycocotools' rleFrString).

    Each run is a little-endian base-32 number in 6-bit chars offset by 48 (0x20 = more chars,
    0x10 on the last char = negative); from the third run on it is a delta to the run two back.
    """
    runs: list[int] = []
    pos = 0
    while pos < len(text):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(text):
                raise RegionError(f"compressed RLE counts end in the middle of a number: {text!r:.80}")
            char = ord(text[pos]) - 48
            if not 0 <= char < 64:
                raise RegionError(f"compressed RLE counts hold an invalid character {text[pos]!r} at {pos}")
            value |= (char & 0x1F) << shift
            more = bool(char & 0x20)
            pos += 1
            shift += 5
            if not more and char & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs
