"""Deterministic file writers: the same objects give the same bytes."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

JPEG_QUALITY = 95


def write_json(path: Path, obj: object) -> None:
    """Write `obj` as one JSON document (UTF-8)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write one JSON object a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def write_pickle(path: Path, obj: object) -> None:
    """Pickle `obj` with a fixed protocol (2, readable by the Python 2 era REFER tools)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def encode(image: np.ndarray, fmt: str) -> bytes:
    """(H, W, 3) uint8 RGB as PNG or JPEG (quality JPEG_QUALITY) bytes."""
    buffer = io.BytesIO()
    options = {"quality": JPEG_QUALITY} if fmt == "JPEG" else {}
    Image.fromarray(image).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def write_bytes(path: Path, data: bytes) -> None:
    """Write raw bytes, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
