"""Open an image file the way every entry point of this package does (demo, CLI, predictor, RIS).

    >>> image = load_image("photo.jpg", name="--image")                # RGB, upright, decoded
    >>> image = load_image(data, name="'upload.png'", limits=ImageLimits(max_pixels=24_000_000))

What `load_image` guarantees, so that every entry sees the same pixels:

- **EXIF orientation applied** (`ImageOps.exif_transpose`): a phone photo stored sideways with
  an Orientation tag comes out upright, as browsers show it. The demo page draws the image
  the browser decoded; the server reads the same pixels, so a click lands where it was made.
- **Fully decoded, truncation refused**: a PNG or JPEG cut short is an `ImageInputError`, not a
  partly grey/black picture. LAVIS sets PIL's global `ImageFile.LOAD_TRUNCATED_IMAGES = True`
  on import (its training datasets tolerate damaged files; that is LAVIS's choice and stays
  so). `load_image` turns the flag off only for the duration of its own decode, under a lock
  (`_strict_decode`), and restores it. Caveat: another thread decoding with plain PIL during
  those milliseconds sees the flag off too; our own decodes are serialised by the lock.
- **Size limits before decoding**: width, height and width x height are read from the header
  and checked against `ImageLimits` before any pixel is decoded, so a small file that would
  decode to a huge image is refused cheaply (PIL's own decompression-bomb guard still applies).
- **Clear errors**: every failure is an `ImageInputError` (a `ValueError`) whose message names
  the file and what is wrong (missing, empty, not an image, truncated/corrupt, too large and
  which option to change). A missing path raises `ImageNotFoundError`, which is also a
  `FileNotFoundError`.
"""
from __future__ import annotations

import io
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Union

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = ["ImageInputError", "ImageNotFoundError", "ImageLimits", "ImageSource", "load_image"]

ImageSource = Union[str, PathLike, bytes, bytearray, BinaryIO]

_DECODE_LOCK = threading.Lock()


class ImageInputError(ValueError):
    """An image that cannot be used: missing, empty, not an image, truncated or corrupt, or over
    a limit. `status`: the HTTP status a server answers with (400, or 413 for a limit)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class ImageNotFoundError(ImageInputError, FileNotFoundError):
    """The image path does not name a file."""


@dataclass(frozen=True)
class ImageLimits:
    """Largest image accepted, checked from the header before decoding.

    max_pixels: largest width * height (None: PIL's own decompression-bomb guard only).
    max_side: largest width or height in pixels (None: no limit).
    options: how the caller changes these limits, quoted in the refusal (e.g. "server options
        --max-image-side, --max-image-mp").
    """

    max_pixels: Optional[int] = None
    max_side: Optional[int] = None
    options: str = ""

    def check(self, width: int, height: int, name: str) -> None:
        """Raise `ImageInputError` (status 413) when a width x height image is over a limit."""
        over_side = self.max_side is not None and max(width, height) > self.max_side
        over_pixels = self.max_pixels is not None and width * height > self.max_pixels
        if over_side or over_pixels:
            side = f"{self.max_side} pixels a side" if self.max_side is not None else "no limit a side"
            total = f"{self.max_pixels / 1e6:.1f} MP in all" if self.max_pixels is not None else "no pixel limit"
            hint = f" ({self.options})" if self.options else ""
            raise ImageInputError(
                f"{name} is {width}x{height} pixels ({width * height / 1e6:.1f} MP); the limits are "
                f"{side} and {total}{hint}", 413,
            )


def load_image(source: ImageSource, *, name: Optional[str] = None, limits: Optional[ImageLimits] = None) -> Image.Image:
    """An image file -> RGB PIL image, EXIF-transposed and fully decoded.

    Args:
        source: a path (str or PathLike), the file's bytes, or a binary file object (read from
            its current position).
        name: how messages call the image (e.g. "--image", "'upload.png'"); default: the
            quoted path, or "the image".
        limits: size limits checked from the header before decoding (None: none of ours).

    Returns:
        The decoded RGB image (width, height after the EXIF orientation), detached from the file.

    Raises:
        ImageNotFoundError: a path that is not a file.
        ImageInputError: empty, not an image, truncated or corrupt (400); over `limits` or
            PIL's decompression-bomb guard (413).
    """
    if isinstance(source, (str, PathLike)):
        path = Path(source)
        name = name or repr(str(path))
        if not path.is_file():
            raise ImageNotFoundError(f"image file not found: {name}")
        with open(path, "rb") as stream:
            return _decode(stream, name, limits)
    name = name or "the image"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode(io.BytesIO(source), name, limits)
    if hasattr(source, "read"):
        return _decode(source, name, limits)
    raise TypeError(f"image source must be a path, bytes or a binary file, got {type(source).__name__}")


def _decode(stream: BinaryIO, name: str, limits: Optional[ImageLimits]) -> Image.Image:
    if not stream.seekable():  # PIL seeks while reading headers
        stream = io.BytesIO(stream.read())
    start = stream.tell()
    if not stream.read(1):
        raise ImageInputError(f"cannot read {name}: it is empty; give an image file (PNG, JPEG, ...)")
    stream.seek(start)
    try:
        image = Image.open(stream)
    except UnidentifiedImageError:
        raise ImageInputError(f"cannot read {name}: it is not an image file (PNG, JPEG, WebP, ...)") from None
    except Image.DecompressionBombError as exc:
        raise ImageInputError(f"{name} is too large an image: {exc}", 413) from None
    except Exception as exc:  # noqa: BLE001  (a header cut short fails in many ways)
        raise ImageInputError(f"cannot read {name}: it is truncated or corrupt (in its header: {exc})") from None
    with image:
        if limits is not None:
            limits.check(*image.size, name)
        try:
            with _strict_decode():
                image.load()
            upright = ImageOps.exif_transpose(image)
            return upright.convert("RGB")
        except Image.DecompressionBombError as exc:
            raise ImageInputError(f"{name} is too large an image: {exc}", 413) from None
        except Exception as exc:  # noqa: BLE001  (decoders raise OSError, SyntaxError, struct.error, ...)
            raise ImageInputError(f"cannot read {name}: it is truncated or corrupt ({exc})") from None


@contextmanager
def _strict_decode() -> Iterator[None]:
    """PIL's `LOAD_TRUNCATED_IMAGES` off for the duration of one decode (then restored), so a
    truncated file raises instead of decoding to a partly blank image. Serialised by a lock so
    that two of our decodes never restore each other's value."""
    with _DECODE_LOCK:
        saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved
