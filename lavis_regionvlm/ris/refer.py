"""RefCOCO / RefCOCO+ / RefCOCOg in the REFER layout, grouped by image for RIS evaluation.

A REFER folder holds `refs(<split_by>).p` (a pickled list of refs: `ref_id`, `ann_id`,
`image_id`, `split`, `sentences` [{`raw`, `sent`, `sent_id`, ...}]) and `instances.json`
(COCO: `images`, `annotations` with polygon or RLE `segmentation`). Every sentence of a ref
is one evaluated expression; its ground truth is the ref's annotation mask.
"""
from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lavis_regionvlm.regions.masks import decode_rle, polygons_to_mask

SPLIT_BYS = ("unc", "umd", "google")


@dataclass(frozen=True)
class Expression:
    """One referring sentence. `id` is "<ref_id>_<sent_id>", unique within a REFER file."""

    id: str
    ref_id: int
    sent_id: int
    ann_id: int
    text: str


@dataclass(frozen=True)
class ReferImage:
    """An image of a split with every expression that refers into it.

    segmentations: {ann_id: COCO segmentation (polygons or RLE)} of the referred objects.
    """

    image_id: int
    file_name: str
    height: int
    width: int
    expressions: tuple[Expression, ...]
    segmentations: dict[int, Any]


def refs_path(ann_dir: str | Path, split_by: str) -> Path:
    """`<ann_dir>/refs(<split_by>).p`."""
    if split_by not in SPLIT_BYS:
        raise ValueError(f"split_by must be one of {SPLIT_BYS}, got {split_by!r}")
    return Path(ann_dir) / f"refs({split_by}).p"


class RefsFileError(ValueError):
    """A REFER refs file that is unreadable, or holds more than plain data."""


class PlainDataUnpickler(pickle.Unpickler):
    """Unpickles only what needs no import: dicts, lists, tuples, strings, bytes, numbers,
    booleans and None (REFER's refs files hold nothing else). Any class or function
    reference (the way a crafted pickle runs code) is refused before it is looked up."""

    def find_class(self, module: str, name: str):
        raise UnsafePickleError(f"it refers to {module}.{name}")


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle refers to a class or function (`PlainDataUnpickler` refuses it)."""


def load_refs(ann_dir: str | Path, split_by: str) -> list[dict]:
    """The refs list of a REFER folder.

    The file is a pickle, as the REFER toolkit ships it; it is read with
    `PlainDataUnpickler`, so a file that refers to any class or function is refused and
    nothing in it runs. Python 2 pickles with non-ASCII text are read as latin-1.
    """
    path = refs_path(ann_dir, split_by)
    if not path.is_file():
        raise FileNotFoundError(f"no REFER refs file at {path}")
    data = path.read_bytes()
    for encoding in ("ASCII", "latin1"):
        try:
            refs = PlainDataUnpickler(io.BytesIO(data), encoding=encoding).load()
            break
        except UnicodeDecodeError:
            continue
        except UnsafePickleError as exc:
            raise RefsFileError(
                f"{path} was not loaded: {exc}, but a REFER refs file holds only dicts, lists, "
                "strings and numbers, and a pickle that refers to code can run it. "
                "Download the refs file again from the REFER release"
            ) from None
        except pickle.UnpicklingError as exc:
            raise RefsFileError(f"{path} is not a readable pickle ({exc}); download it again") from None
        except (EOFError, ValueError, IndexError, KeyError, TypeError) as exc:
            raise RefsFileError(
                f"{path} is not a readable pickle ({type(exc).__name__}: {exc or 'truncated'}); download it again"
            ) from None
    if not isinstance(refs, list) or not all(isinstance(ref, dict) for ref in refs):
        raise RefsFileError(f"{path} holds a {type(refs).__name__}, not a list of ref dicts")
    return refs


def load_split(
    ann_dir: str | Path, split_by: str, split: str, sentence_key: str = "raw"
) -> list[ReferImage]:
    """Images of one split (sorted by image_id), each with all its expressions.

    Args:
        ann_dir: folder with `refs(<split_by>).p` and `instances.json`.
        split_by: "unc" (RefCOCO, RefCOCO+), "umd" or "google" (RefCOCOg).
        split: e.g. "val", "testA", "testB", "test".
        sentence_key: "raw" (as written; the official script's choice) or "sent" (REFER's
            lower-cased, tokenized form).
    """
    refs = load_refs(ann_dir, split_by)
    chosen = [ref for ref in refs if ref["split"] == split]
    if not chosen:
        available = sorted({ref["split"] for ref in refs})
        raise ValueError(f"no refs in split {split!r} of {refs_path(ann_dir, split_by)}; splits: {available}")
    instances_path = Path(ann_dir) / "instances.json"
    with open(instances_path) as f:
        instances = json.load(f)
    images = {image["id"]: image for image in instances["images"]}
    annotations = {ann["id"]: ann for ann in instances["annotations"]}
    by_image: dict[int, list[dict]] = {}
    for ref in sorted(chosen, key=lambda r: r["ref_id"]):
        by_image.setdefault(ref["image_id"], []).append(ref)
    out = []
    for image_id in sorted(by_image):
        image, image_refs = images[image_id], by_image[image_id]
        expressions = tuple(
            Expression(f"{ref['ref_id']}_{s['sent_id']}", ref["ref_id"], s["sent_id"], ref["ann_id"], s[sentence_key])
            for ref in image_refs
            for s in ref["sentences"]
        )
        segmentations = {ref["ann_id"]: annotations[ref["ann_id"]]["segmentation"] for ref in image_refs}
        out.append(ReferImage(
            image_id, image["file_name"], image["height"], image["width"], expressions, segmentations
        ))
    return out


def segmentation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(height, width) bool mask of a COCO segmentation: polygons (pixels) or RLE."""
    if isinstance(segmentation, dict):
        return decode_rle(segmentation)
    return polygons_to_mask(segmentation, height, width)
