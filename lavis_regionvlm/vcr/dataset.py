"""`VcrDataset`: one item per VCR question, with its image and one region per referenced object."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from lavis_regionvlm.vcr.data import VcrExample, VcrFormatError, object_region


class VcrDataset(Dataset):
    """VCR questions of one split.

    An item: `image` (3, S, S) processed; `annot_id`; `example` (`VcrExample`); `regions`
    {object id: `Region`} for every object a prompt can name (`VcrExample.region_ids`: the
    objects the question, answers or rationales refer to, and the digits of their ids, which
    the released parser, `vcr_object_parser: digits_bug`, reads as objects).
    Point text is written by the task, which knows the model's K and quantisation.
    """

    def __init__(self, examples: Sequence[VcrExample], image_root: str | Path,
                 vis_processor: Callable[[Image.Image], torch.Tensor]):
        self.examples = list(examples)
        self.image_root = Path(image_root)
        self.vis_processor = vis_processor
        self._metadata = lru_cache(maxsize=256)(self._read_metadata)

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def annot_ids(self) -> list[str]:
        return [e.annot_id for e in self.examples]

    def _read_metadata(self, metadata_fn: str) -> dict:
        path = self.image_root / metadata_fn
        if not path.is_file():
            raise FileNotFoundError(f"VCR metadata {path} (metadata_fn {metadata_fn!r}) does not exist")
        with path.open() as f:
            return json.load(f)

    def regions(self, example: VcrExample) -> dict:
        metadata = self._metadata(example.metadata_fn)
        try:
            return {i: object_region(metadata, i) for i in example.region_ids}
        except VcrFormatError as error:
            raise VcrFormatError(f"{example.annot_id} ({example.metadata_fn}): {error}") from error

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        with Image.open(self.image_root / example.img_fn) as image:
            pixels = self.vis_processor(image.convert("RGB"))
        return {"image": pixels, "annot_id": example.annot_id, "example": example,
                "regions": self.regions(example)}

    def collater(self, samples: list[dict]) -> dict:
        """Images stacked (B, 3, S, S); everything else as B-lists."""
        return {
            "image": torch.stack([s["image"] for s in samples]),
            "annot_id": [s["annot_id"] for s in samples],
            "example": [s["example"] for s in samples],
            "regions": [s["regions"] for s in samples],
        }
