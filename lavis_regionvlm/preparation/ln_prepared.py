"""The prepared Localized Narratives format: what `prepare_ln` writes and the dataset reads.

A prepared folder holds:
  samples.jsonl      one sample a line: {"image": path relative to the image root,
                     "text": phrase, "points": [x0, y0, x1, y1, ...]} with the points as ints in
                     units of 1 / POINT_SCALE (exact for the 4-decimal LN coordinates), time order
  samples_index.npy  (N + 1,) int64 byte offsets of the lines
  records_index.npy  (R + 1,) int64: record r holds samples [starts[r], starts[r + 1]); a record
                     is what the released training draws one sample from per epoch (an image
                     narrative's phrases; see `narratives` for video records)
  meta.json          format, version, image root and template, inputs, counts, skip counts;
                     written last, so a folder without it is an unfinished preparation
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from lavis_regionvlm.preparation.records import IndexedJsonl

FORMAT = "regionvlm-localized-narratives"
VERSION = 2
POINT_SCALE = 10_000
SAMPLES_FILE = "samples.jsonl"
INDEX_FILE = "samples_index.npy"
RECORDS_FILE = "records_index.npy"
META_FILE = "meta.json"


def encode_points(points: np.ndarray) -> list[int]:
    """(M, 2) relative xy in [0, 1] -> the flat int list stored in a sample record."""
    return np.rint(np.asarray(points, dtype=np.float64) * POINT_SCALE).astype(np.int64).ravel().tolist()


class PreparedSample(NamedTuple):
    """A decoded sample: image path relative to the root, phrase, (M, 2) float64 points."""

    image: str
    text: str
    points: np.ndarray


def read_meta(folder: str | Path) -> dict[str, Any]:
    """meta.json of a prepared folder, checked.

    Raises:
        FileNotFoundError: no folder, or no meta.json (preparation missing or unfinished).
        ValueError: another format or version.
    """
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        state = "has no meta.json (preparation did not finish)" if folder.is_dir() else "does not exist"
        raise FileNotFoundError(
            f"{folder} {state}; make it with python -m lavis_regionvlm.preparation.prepare_ln "
            f"--input RAW.jsonl [...] --images IMAGE_ROOT --output {folder}"
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(
            f"{meta_path}: format {meta.get('format')!r} version {meta.get('version')!r}, "
            f"expected {FORMAT!r} version {VERSION}; prepare the data again"
        )
    if meta.get("num_samples") == 0:
        raise ValueError(f"{folder} holds no sample: {missing_images_hint(meta)}")
    return meta


def missing_images_hint(meta: dict[str, Any]) -> str:
    """What preparation dropped, where it looked for the images, and what to change."""
    drops = ", ".join(f"{kind}={n}" for kind, n in sorted(meta.get("skip_counts", {}).items())) or "none"
    examples = meta.get("missing_examples") or []
    tried = f" (e.g. it looked for {', '.join(examples)})" if examples else ""
    return (
        f"prepare_ln kept {meta.get('num_samples')} samples and dropped {drops}; images were looked "
        f"for under {meta.get('images')}{tried}. Check --images (the folder holding the files, or "
        f"the one above the split folders) and --image-template (default: chosen per dataset_id, "
        f"see lavis_regionvlm/preparation/ln_layouts.py), then prepare again"
    )


class PreparedNarratives:
    """Lazy reader of one prepared folder: only the offsets are held in memory.

    `record_starts`: (R + 1,) int64, the samples of record r are [record_starts[r], record_starts[r + 1]).
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.meta = read_meta(self.folder)
        self.records = IndexedJsonl(self.folder / SAMPLES_FILE, self.folder / INDEX_FILE)
        if len(self.records) != self.meta["num_samples"]:
            raise ValueError(
                f"{self.folder}: meta.json says {self.meta['num_samples']} samples, "
                f"{SAMPLES_FILE} has {len(self.records)}; prepare the data again"
            )
        self.record_starts = np.load(self.folder / RECORDS_FILE)
        if (self.record_starts.ndim != 1 or len(self.record_starts) < 1 or self.record_starts[0] != 0
                or self.record_starts[-1] != len(self.records) or (np.diff(self.record_starts) < 1).any()):
            raise ValueError(f"{self.folder}: {RECORDS_FILE} does not split the {len(self.records)} samples "
                             "into records; prepare the data again")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> PreparedSample:
        record = self.records[index]
        points = np.asarray(record["points"], dtype=np.float64).reshape(-1, 2) / POINT_SCALE
        return PreparedSample(record["image"], record["text"], points)
