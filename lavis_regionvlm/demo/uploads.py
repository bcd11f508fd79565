"""Read an uploaded image within the demo's limits, with messages that say what was wrong.

The size of the file is checked while reading (a client may send no Content-Length, or a
false one), and the pixel count from the image header before any pixel is decoded, so a
small file that would decode to a huge image (a "decompression bomb") is refused cheaply.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

__all__ = ["UploadLimits", "UploadError", "read_upload"]

CHUNK_BYTES = 1 << 16


class UploadError(ValueError):
    """A refused upload. `status` is the HTTP status to answer with (400 or 413)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UploadLimits:
    """max_bytes: largest file accepted. max_pixels: largest width * height. max_side: largest
    width or height (pixels)."""

    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 24_000_000
    max_side: int = 8192


def read_upload(stream: BinaryIO, limits: UploadLimits, filename: str = "upload") -> Image.Image:
    """Bytes of an image file -> RGB PIL image.

    Raises:
        UploadError: 413 for a file or an image over the limits, 400 for an empty file or one
            that is not an image PIL can read.
    """
    data = bytearray()
    while chunk := stream.read(CHUNK_BYTES):
        data += chunk
        if len(data) > limits.max_bytes:
            raise UploadError(
                f"{filename!r} is larger than the upload limit of {_mib(limits.max_bytes)} "
                "(server option --max-upload-mb)", 413,
            )
    if not data:
        raise UploadError(f"{filename!r} is empty: choose an image file (PNG, JPEG, ...)")
    try:
        image = Image.open(io.BytesIO(bytes(data)))
    except UnidentifiedImageError:
        raise UploadError(f"{filename!r} is not an image file this server can read (PNG, JPEG, WebP, ...)") from None
    except Image.DecompressionBombError as exc:  # PIL's own guard, far above our limits
        raise UploadError(f"{filename!r} is too large an image: {exc}", 413) from None
    width, height = image.size
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise UploadError(
            f"{filename!r} is {width}x{height} pixels ({width * height / 1e6:.1f} MP); the limits are "
            f"{limits.max_side} pixels a side and {limits.max_pixels / 1e6:.1f} MP in all "
            "(server options --max-image-side, --max-image-mp)", 413,
        )
    try:
        return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise UploadError(f"{filename!r} could not be decoded: {exc}") from None


def _mib(count: int) -> str:
    return f"{count / (1024 * 1024):.1f} MiB"
