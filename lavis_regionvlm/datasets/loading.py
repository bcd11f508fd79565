"""Reading one sample's files, with failures named by skip kind (see `data.skips.SKIP_KINDS`)."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from PIL import Image


class SampleError(Exception):
    """A sample that cannot be loaded; `kind` is a skip kind ("missing_image", ...)."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def open_rgb(source: str | Path | bytes, name: str | None = None) -> Image.Image:
    """Decode an image file (a path, or the file's bytes) fully, as RGB.

    Raises:
        SampleError: "missing_image" (no such file) or "corrupt_image" (any decoding failure,
            truncated files included).
    """
    label = name or str(source if not isinstance(source, bytes) else "<bytes>")
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise SampleError("missing_image", label) from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise SampleError("corrupt_image", f"{label}: {exc}") from None


def read_json(path: str | Path) -> Any:
    """A whole JSON annotation file; a file that does not parse raises ValueError naming it."""
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
