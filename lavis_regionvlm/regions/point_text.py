"""Point text: K relative points written as ``"[x y] [x y] ..."`` (RegionVLM's region prompt).

A point ``(x, y)`` in relative image coordinates ([0, 1], x first) is written as the integers
``x * 100`` and ``y * 100`` in brackets; pairs are separated by one space. The paper's example
``[[0.324, 0.643], [0.369, 0.622]]`` becomes ``"[32 64] [37 62]"``.

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

_PAIR = re.compile(r"\[([^\[\]]*)\]")
_PAIR_BODY = re.compile(r"\s*(\d{1,3})\s+(\d{1,3})\s*")


class RegionError(ValueError):
    """Invalid region input: bad points, box, mask, RLE, JSON, strategy or point text."""


def as_point_array(points: ArrayLike, what: str = "points") -> np.ndarray:
    """Validate points and clip them to the image.

    Args:
        points: (N, 2) array-like of relative (x, y) coordinates, N >= 1.
        what: name used in error messages (e.g. ``"scribble"``).

    Returns:
        (N, 2) float64 array, a new array, clipped to [0, 1].

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
    arr = raw.astype(np.float64)
    bad_rows = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad_rows.size:
        i = int(bad_rows[0])
        word = "a NaN" if np.isnan(arr[i]).any() else "an infinite"
        raise RegionError(f"{what}: point {i} has {word} coordinate: [{arr[i, 0]}, {arr[i, 1]}]")
    return np.clip(arr, 0.0, 1.0)


def points_to_text(points: ArrayLike, quantize: QuantizeMode = "round") -> str:
    """Write relative points as point text.

    Args:
        points: (N, 2) array-like of relative (x, y), N >= 1; values outside [0, 1] are clipped.
        quantize: ``"round"``: round half up, ``floor(v * 100 + 0.5)`` (the paper's example).
            ``"floor"``: ``int(v * 100)`` on float64, bit-exact with the released checkpoint's
            preprocessing (so ``0.29 -> 28`` because ``0.29 * 100 == 28.999999999999996``).

    Returns:
        ``"[x0 y0] [x1 y1] ..."`` with integers in 0..100.

    Raises:
        RegionError: invalid points (see :func:`as_point_array`) or an unknown ``quantize``.
    """
    if quantize not in QUANTIZE_MODES:
        raise RegionError(f"unknown quantize mode {quantize!r}; expected one of {QUANTIZE_MODES}")
    scaled = as_point_array(points) * 100.0
    if quantize == "round":
        scaled = scaled + 0.5
    # Values are >= 0 after clipping, so floor equals Python's int() truncation.
    ints = np.floor(scaled).astype(np.int64)
    return " ".join(f"[{x} {y}]" for x, y in ints.tolist())


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
