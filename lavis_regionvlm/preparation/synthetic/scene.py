"""Scenes: a plain light background with 2-3 coloured convex shapes, and their ground truth.

Coordinates are pixels, x first, with the COCO convention: pixel (row r, column c) covers
[c, c + 1) x [r, r + 1). Masks are rasterised from the polygons with pycocotools, so a loader
that decodes the written polygons gets exactly the pixels that were painted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from pycocotools import mask as mask_utils

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 30),
    "green": (30, 160, 60),
    "blue": (30, 70, 225),
    "yellow": (240, 220, 40),
    "purple": (145, 50, 190),
    "orange": (245, 125, 0),
}
BACKGROUND_RGB = (238, 238, 230)
DOT_COLOUR = "grey"
DOT_RGB = (110, 110, 110)
SHAPE_KINDS = ("circle", "square", "triangle")
EXTENT_RANGE = (14 / 64, 24 / 64)  # shape size (diameter or side) as a fraction of the image side
MIN_IMAGE_SIZE = 32  # pixels; smaller images leave no room for the dots of a crowded scene
NUM_DOTS = 9  # distractor dots of a crowded scene: 2-3 shapes + 9 dots = 11-12 objects
_VERTICES = {"circle": 32, "square": 4, "triangle": 3}
_GAP_PX = 2  # minimum free pixels between two objects


@dataclass(frozen=True, eq=False)
class Shape:
    """One drawn object.

    kind: "circle" | "square" | "triangle" | "dot".
    colour: a PALETTE name, or DOT_COLOUR for dots.
    polygon: (V, 2) float outline, pixels, x first.
    mask: (H, W) bool, the painted pixels.
    box: (x, y, w, h) int, tight pixel box of the mask.
    position: "left", "top left", "center", ... from the polygon centre.
    """

    kind: str
    colour: str
    polygon: np.ndarray
    mask: np.ndarray
    box: tuple[int, int, int, int]
    position: str


@dataclass(frozen=True, eq=False)
class Scene:
    """One image and its objects: 2-3 shapes of distinct colours, plus dots when crowded.

    image: (H, W, 3) uint8 RGB.
    """

    image_id: int
    shapes: tuple[Shape, ...]
    dots: tuple[Shape, ...]
    image: np.ndarray

    @property
    def size(self) -> int:
        """Side of the square image, pixels."""
        return int(self.image.shape[0])


def regular_polygon(center: tuple[float, float], radius: float, n: int, angle: float) -> np.ndarray:
    """(n, 2) vertices of a regular n-gon, pixels, with circumradius `radius` (pixels)."""
    theta = angle + 2 * math.pi * np.arange(n) / n
    return np.stack([center[0] + radius * np.cos(theta), center[1] + radius * np.sin(theta)], 1)


def circumradius(kind: str, extent: float) -> float:
    """Circumradius (pixels) of a shape whose diameter (circle) or side (polygon) is `extent`."""
    return extent / 2 if kind == "circle" else extent / (2 * math.sin(math.pi / _VERTICES[kind]))


def rasterize(polygon: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool mask of a (V, 2) pixel polygon, rasterised as pycocotools decodes it."""
    rles = mask_utils.frPyObjects([polygon.ravel().tolist()], size, size)
    return mask_utils.decode(rles)[..., 0].astype(bool)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight (x, y, w, h) pixel box of a non-empty (H, W) bool mask."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def position_word(center: tuple[float, float], size: int) -> str:
    """Coarse position of a point (pixels) in thirds of the image: "top left", "right", "center"..."""
    col = "left" if center[0] < size / 3 else "right" if center[0] > 2 * size / 3 else ""
    row = "top" if center[1] < size / 3 else "bottom" if center[1] > 2 * size / 3 else ""
    return " ".join(w for w in (row, col) if w) or "center"


def _dilate(mask: np.ndarray, px: int) -> np.ndarray:
    """(H, W) bool mask grown by `px` pixels (square structuring element)."""
    kernel = np.ones((2 * px + 1, 2 * px + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def _try_place(rng: np.random.Generator, kind: str, colour: str, extent: float, size: int,
               occupied: np.ndarray, tries: int = 30) -> Shape | None:
    """A shape at a random place and angle that keeps _GAP_PX away from `occupied`, or None."""
    radius = circumradius(kind, extent)
    angle_period = 2 * math.pi / _VERTICES[kind]
    for _ in range(tries):
        center = tuple(rng.uniform(radius + 1, size - radius - 1, 2))
        polygon = regular_polygon(center, radius, _VERTICES[kind], rng.uniform(0, angle_period))
        mask = rasterize(polygon, size)
        if mask.any() and not (_dilate(mask, _GAP_PX) & occupied).any():
            return Shape(kind, colour, polygon, mask, mask_box(mask), position_word(center, size))
    return None


def _place_shapes(rng: np.random.Generator, size: int) -> list[Shape]:
    """2-3 non-overlapping shapes of distinct palette colours; restarts until all fit."""
    low, high = EXTENT_RANGE[0] * size, EXTENT_RANGE[1] * size
    while True:
        count = int(rng.integers(2, 4))
        colours = rng.choice(list(PALETTE), count, replace=False)
        occupied = np.zeros((size, size), bool)
        shapes: list[Shape] = []
        for colour in colours:
            kind = SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
            shape = _try_place(rng, kind, str(colour), rng.uniform(low, high), size, occupied)
            if shape is None:
                break
            shapes.append(shape)
            occupied |= shape.mask
        if len(shapes) == count:
            return shapes


def _place_dots(rng: np.random.Generator, size: int, occupied: np.ndarray) -> list[Shape]:
    """NUM_DOTS small grey discs (diameter ~6% of the image) in the free space."""
    diameter = max(2.0, 0.06 * size)
    dots: list[Shape] = []
    while len(dots) < NUM_DOTS:
        dot = _try_place(rng, "circle", DOT_COLOUR, diameter, size, occupied, tries=200)
        if dot is None:
            raise RuntimeError(f"no room for {NUM_DOTS} dots in a {size}px image")
        dots.append(Shape("dot", DOT_COLOUR, dot.polygon, dot.mask, dot.box, dot.position))
        occupied = occupied | dot.mask
    return dots


def render(shapes: list[Shape], size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB image: background, then each shape's mask in its colour."""
    image = np.empty((size, size, 3), np.uint8)
    image[:] = BACKGROUND_RGB
    for shape in shapes:
        image[shape.mask] = PALETTE.get(shape.colour, DOT_RGB)
    return image


def make_scene(rng: np.random.Generator, image_id: int, size: int, crowded: bool) -> Scene:
    """A random scene; a crowded one also holds NUM_DOTS grey distractor dots."""
    shapes = _place_shapes(rng, size)
    occupied = np.logical_or.reduce([s.mask for s in shapes])
    dots = _place_dots(rng, size, occupied) if crowded else []
    return Scene(image_id, tuple(shapes), tuple(dots), render(shapes + dots, size))
