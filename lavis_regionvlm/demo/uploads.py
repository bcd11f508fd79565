"""Read an uploaded image within the demo's limits, with messages that say what was wrong.

The size of the file is checked while reading (a client may send no Content-Length, or a
false one; the request body as a whole is also counted while it streams in, see `guard`),
and decoding is `image_io.load_image`'s: EXIF orientation applied, truncated files refused,
the pixel count checked from the image header before any pixel is decoded (so a small file
that would decode to a huge image, a "decompression bomb", is refused cheaply).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image

from lavis_regionvlm.image_io import ImageInputError, ImageLimits, load_image

__all__ = ["UploadLimits", "UploadError", "read_upload"]

CHUNK_BYTES = 1 << 16

UploadError = ImageInputError  # a refused upload; `status` is the HTTP status (400 or 413)


@dataclass(frozen=True)
class UploadLimits:
    """max_bytes: largest file accepted. max_pixels: largest width * height. max_side: largest
    width or height (pixels)."""

    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 24_000_000
    max_side: int = 8192

    def image_limits(self) -> ImageLimits:
        """The pixel limits, as `image_io.load_image` checks them."""
        return ImageLimits(self.max_pixels, self.max_side, "server options --max-image-side, --max-image-mp")


def read_upload(stream: BinaryIO, limits: UploadLimits, filename: str = "upload") -> Image.Image:
    """Bytes of an image file -> RGB PIL image (EXIF-transposed, fully decoded).

    Raises:
        UploadError: 413 for a file or an image over the limits, 400 for an empty file, one
            that is not an image PIL can read, or a truncated or corrupt one.
    """
    data = bytearray()
    while chunk := stream.read(CHUNK_BYTES):
        data += chunk
        if len(data) > limits.max_bytes:
            raise UploadError(
                f"{filename!r} is larger than the upload limit of {_mib(limits.max_bytes)} "
                "(server option --max-upload-mb)", 413,
            )
    return load_image(bytes(data), name=repr(filename), limits=limits.image_limits())


def _mib(count: int) -> str:
    return f"{count / (1024 * 1024):.1f} MiB"
