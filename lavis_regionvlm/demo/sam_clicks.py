"""SAM click-to-mask for the demo: positive / negative clicks (and a box) -> one mask.

Each session gets a `ClickSegmenter`: segment-anything's own `SamPredictor` on the session's
work image (the image scaled to at most `--max-work-side` pixels a side, as /segment uses),
whose image embedding is computed once, on the session's first click, and kept for every
later click, as SAM's predictor is meant to be used. Its memory is the embedding (for SAM
ViT-H, 256 x 64 x 64 floats: 4 MiB) and the last low-resolution logits (256 x 256 floats),
dropped with the session.

Refining: the page sends every click each time (the request holds the whole prompt, so the
API is stateless as to *what* is asked). When a request's prompt extends the session's
previous one (the same box, the previous clicks first, one or more added), the previous
prediction's low-resolution logits go in as SAM's `mask_input`, as SAM's own predictor example
refines a mask with added clicks; otherwise SAM starts afresh. A single click with no box
asks SAM for its three masks and keeps the one it scores best (SAM's advice for an ambiguous
prompt); any other prompt asks for one. The same prompt sent twice gets the same answer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from lavis_regionvlm.demo.limits import LimitError

__all__ = ["ClickPrompt", "ClickResult", "ClickSegmenter"]


@dataclass(frozen=True)
class ClickPrompt:
    """What the user gave SAM. points: (N, 2) relative xy in [0, 1]; labels: (N,) 1 (object)
    or 0 (not the object); box: relative xyxy or None. N + (box given) >= 1."""

    points: tuple[tuple[float, float], ...]
    labels: tuple[int, ...]
    box: Optional[tuple[float, float, float, float]] = None

    @classmethod
    def from_request(cls, points: Sequence[Sequence[float]], labels: Optional[Sequence[int]],
                     box: Optional[Sequence[float]], max_clicks: int) -> "ClickPrompt":
        """Check a request's prompt; raises ValueError (400) saying which field is wrong, or
        `LimitError` (413) for more than `max_clicks` clicks."""
        if len(points) > max_clicks:
            raise LimitError(f"points: {len(points)} clicks, over the limit of {max_clicks} "
                             "(server option --max-sam-clicks)")
        labels = [1] * len(points) if labels is None else list(labels)
        if len(labels) != len(points):
            raise ValueError(f"labels: {len(labels)} labels for {len(points)} points; give one label a point "
                             "(1: on the object, 0: not on it)")
        for i, point in enumerate(points):
            if len(point) != 2:
                raise ValueError(f"points[{i}]: a point is [x, y], got {len(point)} numbers")
            _check_relative(point, f"points[{i}]")
        for i, label in enumerate(labels):
            if label not in (0, 1) or isinstance(label, bool):
                raise ValueError(f"labels[{i}]: a label is 1 (on the object) or 0 (not on it), got {label!r}")
        if box is not None:
            if len(box) != 4:
                raise ValueError(f"box: a box is [x1, y1, x2, y2], got {len(box)} numbers")
            _check_relative(box, "box")
            if not (box[0] < box[2] and box[1] < box[3]):
                raise ValueError(f"box: needs x1 < x2 and y1 < y2, got {list(box)}")
        if not points and box is None:
            raise ValueError("points / box: give at least one click or a box")
        return cls(tuple((float(x), float(y)) for x, y in points), tuple(int(v) for v in labels),
                   None if box is None else tuple(float(v) for v in box))

    def extends(self, earlier: "ClickPrompt") -> bool:
        """This prompt is `earlier` with clicks added (same box, earlier's clicks first)."""
        count = len(earlier.points)
        return (self.box == earlier.box and len(self.points) > count
                and self.points[:count] == earlier.points and self.labels[:count] == earlier.labels)


@dataclass(frozen=True)
class ClickResult:
    """mask: (h, w) bool at the work image's size; score: SAM's predicted IoU of the mask;
    refined: the previous prediction's logits were SAM's `mask_input`."""

    mask: np.ndarray
    score: float
    refined: bool


class ClickSegmenter:
    """`SamPredictor` on one image, its embedding computed here once.

    Args:
        sam: a `segment_anything.modeling.Sam` (shared; the caller serialises model calls).
        image: the work image (RGB PIL); masks come back at its size.
    """

    def __init__(self, sam: Any, image: Image.Image):
        from segment_anything import SamPredictor

        self.size = image.size  # (width, height)
        self.predictor = SamPredictor(sam)
        self.predictor.set_image(np.asarray(image.convert("RGB")))
        self._last: Optional[tuple[ClickPrompt, ClickResult, np.ndarray]] = None  # prompt, result, (1, h, w) logits

    def predict(self, prompt: ClickPrompt) -> ClickResult:
        """The mask SAM gives for `prompt` (see the module docstring for refining)."""
        if self._last is not None and self._last[0] == prompt:
            return self._last[1]
        mask_input = self._last[2] if self._last is not None and prompt.extends(self._last[0]) else None
        width, height = self.size
        scale = np.array([width, height], np.float64)
        coords = np.asarray(prompt.points, np.float64).reshape(-1, 2) * scale if prompt.points else None
        labels = np.asarray(prompt.labels, np.int64) if prompt.points else None
        box = np.asarray(prompt.box, np.float64) * np.tile(scale, 2) if prompt.box is not None else None
        multimask = mask_input is None and box is None and len(prompt.points) == 1
        masks, scores, logits = self.predictor.predict(point_coords=coords, point_labels=labels, box=box,
                                                       mask_input=mask_input, multimask_output=multimask)
        best = int(np.argmax(scores))
        result = ClickResult(mask=np.asarray(masks[best], bool), score=float(scores[best]),
                             refined=mask_input is not None)
        self._last = (prompt, result, logits[best][None])
        return result


def _check_relative(values: Sequence[float], what: str) -> None:
    for value in values:
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1):
            raise ValueError(f"{what}: coordinates are relative to the image, finite numbers in [0, 1]; "
                             f"got {list(values)}")
