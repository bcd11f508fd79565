"""`VGRegionDataset`: Visual Genome region descriptions, K points drawn inside each box.

A record is one image's kept regions (a run of regions of the same image, in file order, which
is one entry of region_descriptions.json); with `sampling.stored_points` (released) each box
stands for that many points drawn uniformly once (fixed by the seed and the region, rounded
to 4 decimals as released) and every sample picks K of them; without, K fresh uniform points.

Reads ``region_descriptions.json`` ([{"id" | "image_id", "regions": [{"region_id" | "id",
"image_id" | "image", "phrase", "x", "y", "width", "height"}]}], boxes in pixels) and
``image_data.json`` ([{"image_id" | "id", "width", "height", "url"}]); v1.0 and v1.2 key names
both work. The image file is ``<images>/<folder>/<file>`` with folder and file from the end of
``url`` (``.../VG_100K_2/123.jpg``), so ``VG_100K`` and ``VG_100K_2`` both resolve. As in the
paper, boxes over `max_box_area` of the image are skipped. The JSON is parsed once at build
time into numpy columns (no per-region Python objects are kept).
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from lavis_regionvlm.preparation.records import StringTable
from lavis_regionvlm.datasets.config import SamplingConfig
from lavis_regionvlm.datasets.loading import read_json
from lavis_regionvlm.datasets.region import RegionDataset, RegionRecord
from lavis_regionvlm.regions import Region


class VGRegions(NamedTuple):
    """Kept regions as columns.

    image_files: the distinct image paths, relative to the image root.
    image_index: (N,) int32 row of each region's image in `image_files` (file order).
    boxes: (N, 4) float32 relative xyxy, clipped to the image.
    phrases: N phrases.
    """

    image_files: StringTable
    image_index: np.ndarray
    boxes: np.ndarray
    phrases: StringTable


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _image_id(value: Any) -> Any:
    """An image id given as a number, a string, or a v1.0 object {"id": ...} / {"image_id": ...}."""
    if isinstance(value, Mapping):
        value = value.get("image_id", value.get("id"))
    return str(value) if value is not None else None


def read_image_data(path: Path) -> dict[str, tuple[str, float, float]]:
    """image id -> (file relative to the image root, width, height) for the usable entries.

    An entry without a usable id, url or size is left out; its regions then count as
    "missing_image_data".
    """
    images = {}
    for entry in read_json(path):
        if not isinstance(entry, Mapping):
            continue
        image_id = _image_id(entry.get("image_id", entry.get("id")))
        url, width, height = entry.get("url"), entry.get("width"), entry.get("height")
        if image_id is None or not isinstance(url, str) or not (_number(width) and _number(height)):
            continue
        if width <= 0 or height <= 0 or url.count("/") < 1:
            continue
        folder, name = url.rstrip("/").split("/")[-2:]
        images[image_id] = (f"{folder}/{name}", float(width), float(height))
    return images


def read_visual_genome(region_descriptions: Path, image_data: Path, images: Path,
                       max_box_area: float) -> tuple[VGRegions, Counter]:
    """Parse, check and filter the regions; returns the kept regions and the skip counts."""
    sizes = read_image_data(image_data)
    skips: Counter = Counter()
    exists: dict[str, bool] = {}
    files: dict[str, int] = {}
    rows: list[tuple[int, float, float, float, float]] = []
    phrases: list[str] = []
    for entry in read_json(region_descriptions):
        regions = entry.get("regions") if isinstance(entry, Mapping) else None
        if not isinstance(regions, list):
            skips["missing_keys"] += 1
            continue
        entry_image = _image_id(entry.get("id", entry.get("image_id")))
        for region in regions:
            if not isinstance(region, Mapping) or not all(k in region for k in ("phrase", "x", "y", "width", "height")):
                skips["missing_keys"] += 1
                continue
            image_id = _image_id(region.get("image_id", region.get("image"))) or entry_image
            phrase, box = region["phrase"], [region[k] for k in ("x", "y", "width", "height")]
            if not isinstance(phrase, str) or not all(_number(v) and np.isfinite(v) for v in box):
                skips["bad_value"] += 1
                continue
            if not phrase.strip():
                skips["empty_text"] += 1
                continue
            if image_id not in sizes:
                skips["missing_image_data"] += 1
                continue
            file, width, height = sizes[image_id]
            x, y, w, h = box
            x1, y1 = max(x / width, 0.0), max(y / height, 0.0)
            x2, y2 = min((x + w) / width, 1.0), min((y + h) / height, 1.0)
            if w <= 0 or h <= 0 or x2 <= x1 or y2 <= y1:
                skips["bad_box"] += 1
                continue
            if w * h / (width * height) > max_box_area:
                skips["box_too_large"] += 1
                continue
            if file not in exists:
                exists[file] = os.path.isfile(images / file)
            if not exists[file]:
                skips["missing_image"] += 1
                continue
            rows.append((files.setdefault(file, len(files)), x1, y1, x2, y2))
            phrases.append(phrase.strip())
    table = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    kept = VGRegions(StringTable(files), table[:, 0].astype(np.int32), table[:, 1:].astype(np.float32),
                     StringTable(phrases))
    return kept, skips


class VGRegionDataset(RegionDataset):
    """Visual Genome regions: points uniform inside the box (see the module doc)."""

    def __init__(self, vis_processor: Any, text_processor: Any, sampling: SamplingConfig,
                 region_descriptions: Path, image_data: Path, images: Path, max_box_area: float = 0.5,
                 name: str = "vg_region"):
        self.images = Path(images)
        self.regions, skips = read_visual_genome(Path(region_descriptions), Path(image_data), self.images,
                                                 max_box_area)
        index = self.regions.image_index
        runs = np.flatnonzero(index[1:] != index[:-1]) + 1  # where the next image's regions start
        ends = [len(index)] if len(index) else []
        self.record_starts = np.concatenate([[0], runs, ends]).astype(np.int64)
        super().__init__(vis_processor, text_processor, sampling, name, skips)

    def record(self, sample: int) -> RegionRecord:
        regions = self.regions
        image = self.images / regions.image_files[int(regions.image_index[sample])]
        return RegionRecord(str(image), Region.from_box(regions.boxes[sample].astype(np.float64)),
                            regions.phrases[sample])

    def stored_points(self, sample: int, record: RegionRecord) -> np.ndarray:
        """`sampling.stored_points` uniform points in the box, the same every epoch (as released:
        drawn once per box and rounded to 4 decimals)."""
        return np.round(record.region.sample_points(self.sampling.stored_points, self.fixed_rng(sample)), 4)
