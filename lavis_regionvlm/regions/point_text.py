"""Point text: K relative points written as ``"[x y] [x y] ..."`` (RegionVLM's region prompt).

A point ``(x, y)`` in relative image coordinates ([0, 1], x first) is written as the integers
``x * 100`` and ``y * 100`` in brackets; pairs are separated by one space. The released
checkpoint was trained with ``int(v * 100)`` (``quantize="floor"``, the default everywhere):
``[[0.324, 0.643], [0.369, 0.622]]`` becomes ``"[32 64] [36 62]"`` (the paper's example rounds
it to ``"[32 64] [37 62]"``, ``quantize="round"``).

Mask pixels become relative points here too (:func:`pixel_points`), by the released rule
(pixel corner, float32 division) or by pixel centres.

This module also holds :class:`RegionError`, the one error type of the region package (it sits
here because this is the package's lowest layer; ``region.py`` and ``masks.py`` import it).
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

QuantizeMode = Literal["round", "floor"]
QUANTIZE_MODES: tuple[str, ...] = ("round", "floor")
PixelCoords = Literal["corner_float32", "centre"]
PIXEL_COORDS: tuple[str, ...] = ("corner_float32", "centre")

_PAIR = re.compile(r"\[([^\[\]]*)\]")
_PAIR_BODY = re.compile(r"\s*(\d{1,3})\s+(\d{1,3})\s*")


class RegionError(ValueError):
    """Invalid region input: bad points, box, mask, RLE, JSON, strategy or point text."""


def as_point_array(points: ArrayLike, what: str = "points", *, keep_float32: bool = False) -> np.ndarray:
    """Validate points and clip them to the image.

    Args:
        points: (N, 2) array-like of relative (x, y) coordinates, N >= 1.
        what: name used in error messages (e.g. ``"scribble"``).
        keep_float32: return a float32 input as float32 (for :func:`points_to_text`).

    Returns:
        (N, 2) float64 array (float32 for a float32 input with ``keep_float32``), a new
        array, clipped to [0, 1].

    Raises:
        RegionError: non-numeric or ragged input, empty input, wrong shape, NaN or infinity.
    """
    try:
        raw = np.asarray(points)
    except (TypeError, ValueError) as exc:
        raise RegionError(f"{what} must be an (N, 2) array of numbers; could not read it: {exc}") from None
    if raw.size == 0:
        raise RegionError(f"{what} is empty; need at least one (x, y) point")
    if raw.dtype.kind not in "biuf":
        raise RegionError(f"{what} must be an (N, 2) array of numbers, got dtype {raw.dtype}: {points!r:.80}")
    if raw.ndim != 2 or raw.shape[1] != 2:
        raise RegionError(f"{what} must have shape (N, 2) (x, y pairs), got shape {raw.shape}")
    arr = raw.astype(np.float32 if keep_float32 and raw.dtype == np.float32 else np.float64)
    bad_rows = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad_rows.size:
        i = int(bad_rows[0])
        word = "a NaN" if np.isnan(arr[i]).any() else "an infinite"
        raise RegionError(f"{what}: point {i} has {word} coordinate: [{arr[i, 0]}, {arr[i, 1]}]")
    return np.clip(arr, 0.0, 1.0)


def points_to_text(points: ArrayLike, quantize: QuantizeMode = "floor") -> str:
    """Write relative points as point text.

    The scaling by 100 is done in the points' own precision: float32 points (mask points by
    the released rule, :func:`pixel_points`) in float32, as the released scripts compute
    ``(points * 100).astype(int)`` on a float32 array; anything else in float64.

    Args:
        points: (N, 2) array-like of relative (x, y), N >= 1; values outside [0, 1] are clipped.
        quantize: ``"floor"`` (default): ``int(v * 100)``, as the released checkpoint's
            preprocessing (on float64 ``0.29 -> 28`` because ``0.29 * 100 == 28.999999999999996``;
            on float32 ``0.29 -> 29`` because the product rounds to ``29.0``).
            ``"round"``: round half up, ``floor(v * 100 + 0.5)`` (the paper's example).

    Returns:
        ``"[x0 y0] [x1 y1] ..."`` with integers in 0..100.

    Raises:
        RegionError: invalid points (see :func:`as_point_array`) or an unknown ``quantize``.
    """
    if quantize not in QUANTIZE_MODES:
        raise RegionError(f"unknown quantize mode {quantize!r}; expected one of {QUANTIZE_MODES}")
    arr = as_point_array(points, keep_float32=True)
    scaled = arr * arr.dtype.type(100)
    if quantize == "round":
        scaled = scaled + arr.dtype.type(0.5)
    # Values are >= 0 after clipping, so floor equals Python's int() truncation.
    ints = np.floor(scaled).astype(np.int64)
    return " ".join(f"[{x} {y}]" for x, y in ints.tolist())


def pixel_points(
    rows: ArrayLike, cols: ArrayLike, height: int, width: int, pixel_coords: PixelCoords = "corner_float32"
) -> np.ndarray:
    """Relative (x, y) of mask pixels (row, col) on a height x width mask.

    Args:
        rows, cols: (n,) pixel indices (row = y, col = x), as ``np.nonzero(mask)`` gives them.
        height, width: the mask's size in pixels.
        pixel_coords: ``"corner_float32"`` (default, as released in ``eval_RIS.py`` and
            ``eval_VCR.py``): the pixel's top-left corner divided in float32,
            ``x = float32(col) / float32(W)``, ``y = float32(row) / float32(H)``; returned as
            float32 so that :func:`points_to_text` scales it by 100 in float32 as they do
            (e.g. col 265 of W = 500 gives float32 0.53 = 0.52999997..., times 100 in float32
            52.999996, text 52; float64 would give 53). ``"centre"``: the pixel centre
            ``((col + 0.5) / W, (row + 0.5) / H)`` in float64: the pixel's own position (the
            corner rule is biased half a pixel up and left, and mirroring the image does
            not mirror its points).

    Returns:
        (n, 2) float32 (``"corner_float32"``) or float64 (``"centre"``) relative xy in [0, 1).

    Raises:
        RegionError: an unknown ``pixel_coords``.
    """
    if pixel_coords not in PIXEL_COORDS:
        raise RegionError(f"unknown pixel_coords {pixel_coords!r}; expected one of {PIXEL_COORDS}")
    rows, cols = np.asarray(rows), np.asarray(cols)
    if pixel_coords == "centre":
        return np.stack([(cols + 0.5) / width, (rows + 0.5) / height], axis=1)
    xs = cols.astype(np.float32) / np.float32(width)
    ys = rows.astype(np.float32) / np.float32(height)
    return np.stack([xs, ys], axis=1).astype(np.float32, copy=False)


def text_to_points(text: str) -> np.ndarray:
    """Read point text back into relative points (the inverse of :func:`points_to_text`).

    Whitespace around and between the bracketed pairs is ignored.

    Args:
        text: ``"[x y] [x y] ..."`` with integers in 0..100, or ``""`` (no points).

    Returns:
        (N, 2) float64 array of value / 100, in [0, 1]; shape (0, 2) for empty text.

    Raises:
        RegionError: not a string, text outside the brackets, a malformed pair or a value > 100;
            the message quotes the offending part.
    """
    if not isinstance(text, str):
        raise RegionError(f"point text must be a str, got {type(text).__name__}")
    values: list[tuple[int, int]] = []
    end = 0
    for match in _PAIR.finditer(text):
        _check_gap(text, end, match.start())
        body = _PAIR_BODY.fullmatch(match.group(1))
        if body is None:
            raise RegionError(
                f"malformed point {match.group(0)!r} at character {match.start()} of point text; "
                "expected '[x y]' with two integers 0..100"
            )
        x, y = int(body.group(1)), int(body.group(2))
        if x > 100 or y > 100:
            raise RegionError(f"point {match.group(0)!r} at character {match.start()} has a value above 100")
        values.append((x, y))
        end = match.end()
    _check_gap(text, end, len(text))
    return np.asarray(values, dtype=np.float64).reshape(-1, 2) / 100.0


def is_point_text(text: object) -> bool:
    """Whether ``text`` parses as point text. ``""`` is valid (the empty, whole-image prompt)."""
    try:
        text_to_points(text)  # type: ignore[arg-type]
    except RegionError:
        return False
    return True


def _check_gap(text: str, start: int, stop: int) -> None:
    """Raise if ``text[start:stop]`` (between bracketed pairs) holds anything but whitespace."""
    gap = text[start:stop]
    if gap.strip():
        raise RegionError(
            f"unexpected text {gap.strip()!r} at character {start} of point text {text!r:.80}; "
            "expected only '[x y]' pairs separated by spaces"
        )
