"""Read an uploaded image within the demo's limits, with messages that say what was wrong.

The size of the file is checked while reading (a client may send no Content-Length, or a
false one; the request body as a whole is also counted while it streams in, see `guard`),
and decoding is `image_io.load_image`'s: EXIF orientation applied, truncated files refused,
the pixel count checked from the image header before any pixel is decoded (so a small file
that would decode to a huge image, a "decompression bomb", is refused cheaply).

A region mask is uploaded the same way (`read_mask_upload`): a PNG whose non-zero pixels are
the region, at the image's size (or that size scaled down), within the mask limit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image

from lavis_regionvlm.image_io import ImageInputError, ImageLimits, load_image

__all__ = ["UploadLimits", "UploadError", "read_upload", "read_mask_upload", "mask_pixels"]

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
    return load_image(_read_bytes(stream, limits, filename), name=repr(filename), limits=limits.image_limits())


def read_mask_upload(stream: BinaryIO, limits: UploadLimits, image_size: tuple[int, int], max_mask_pixels: int,
                     filename: str = "mask.png") -> np.ndarray:
    """Bytes of a mask PNG -> (h, w) bool mask: its non-zero pixels (see `mask_pixels`).

    Args:
        image_size: (width, height) of the session's image; the mask must have that size, or
            that size scaled down (the same aspect ratio, to within a pixel).
        max_mask_pixels: largest mask (server option --max-mask-mp), checked before decoding.

    Raises:
        UploadError: 413 for a file over --max-upload-mb or a mask over --max-mask-mp; 400
            for a file that is not a PNG, is truncated, has another size, or has no non-zero pixel.
    """
    data = _read_bytes(stream, limits, filename)
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise UploadError(f"mask {filename!r} is not a PNG file: give a PNG whose non-zero pixels are the region "
                          "(a lossy JPEG has no exact zeros)")
    pixel_limit = ImageLimits(max_mask_pixels, None, "server option --max-mask-mp")
    image = load_image(bytes(data), name=f"mask {filename!r}", limits=pixel_limit, mode=None)
    width, height = image.size
    image_width, image_height = image_size
    if not (width <= image_width and abs(width * image_height / image_width - height) <= 1):
        raise UploadError(f"mask {filename!r} is {width}x{height} pixels, the image is {image_width}x{image_height}: "
                          "a mask must have the image's size (or be that size scaled down)")
    mask = mask_pixels(image)
    if not mask.any():
        raise UploadError(f"mask {filename!r} has no non-zero pixel: the region is its non-zero pixels")
    return mask


def mask_pixels(image: Image.Image) -> np.ndarray:
    """(h, w) bool: the pixels of a mask picture that belong to the region. Grey, 1-bit and
    integer pictures: non-zero values; palette pictures: a non-zero palette index; colour:
    any non-zero channel; with an alpha channel, also non-zero alpha (so white on transparent
    and white on opaque black both mean the white pixels)."""
    if image.mode == "P":
        return np.asarray(image) != 0
    bands = image.getbands()
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        return pixels != 0
    colour = pixels[..., [i for i, band in enumerate(bands) if band != "A"]].any(axis=-1)
    return colour & (pixels[..., bands.index("A")] != 0) if "A" in bands else colour


def _read_bytes(stream: BinaryIO, limits: UploadLimits, filename: str) -> bytes:
    """The whole file, refused (413) as soon as it is over `limits.max_bytes`."""
    data = bytearray()
    while chunk := stream.read(CHUNK_BYTES):
        data += chunk
        if len(data) > limits.max_bytes:
            raise UploadError(
                f"{filename!r} is larger than the upload limit of {_mib(limits.max_bytes)} "
                "(server option --max-upload-mb)", 413,
            )
    return bytes(data)


def _mib(count: int) -> str:
    return f"{count / (1024 * 1024):.1f} MiB"
