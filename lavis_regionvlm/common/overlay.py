"""A binary mask painted over an image (the RIS result picture of the CLI, the demo and
`python -m lavis_regionvlm.ris.segment`)."""
from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image


def mask_overlay(image: Image.Image, mask: Optional[np.ndarray], alpha: float = 0.5,
                 colour: tuple[int, int, int] = (255, 0, 0)) -> Image.Image:
    """The image (RGB) with the mask's pixels painted in `colour` at opacity `alpha`.

    `mask`: (H, W) bool with the image's height and width, or None (the image unchanged).
    Each masked pixel becomes `(1 - alpha) * pixel + alpha * colour`, rounded to uint8.
    """
    pixels = np.asarray(image.convert("RGB")).astype(np.float32)
    if mask is not None:
        pixels[mask] = (1 - alpha) * pixels[mask] + alpha * np.asarray(colour, np.float32)
    return Image.fromarray(pixels.round().astype(np.uint8))
