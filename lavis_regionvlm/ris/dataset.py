"""`RefCocoRisDataset`: one item per IMAGE, with all its expressions, so the ViT runs once per image."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from lavis_regionvlm.ris.proposal_cache import ImageKey, find_proposal_file, image_fingerprint, read_proposals
from lavis_regionvlm.ris.refer import ReferImage


class RefCocoRisDataset(Dataset):
    """Images of a REFER split with their expressions, ground truth and cached proposals.

    An item: `image` (3, S, S) processed; `image_id`; `file_name`; `image_path`; `height`,
    `width` (pixels); `expressions` [{`id`, `ref_id`, `sent_id`, `ann_id`, `raw`, `text`}]
    (`text` is `raw` after the text processor); `segmentations` {ann_id: COCO
    segmentation}; `proposals` (cache records, at the image's size).

    An image's proposal file is found by file name, stem or image id (`find_proposal_file`)
    and checked against the image (`read_proposals`): a missing, ambiguous, corrupted or
    foreign file is an error naming it.
    """

    def __init__(
        self,
        images: Sequence[ReferImage],
        image_root: str | Path,
        proposals_dir: str | Path,
        vis_processor: Callable[[Image.Image], torch.Tensor],
        text_processor: Optional[Callable[[str], str]] = None,
    ):
        self.images = list(images)
        self.image_root = Path(image_root)
        self.proposals_dir = Path(proposals_dir)
        self.vis_processor = vis_processor
        self.text_processor = text_processor
        stems: dict[str, list[str]] = {}
        for image in self.images:
            stems.setdefault(str(Path(image.file_name).with_suffix("")), []).append(image.file_name)
        self._same_stem = {name: [n for n in names if n != name] for names in stems.values() for name in names}

    def __len__(self) -> int:
        return len(self.images)

    @property
    def expression_ids(self) -> list[str]:
        """Every expression id of the split, once each."""
        return [e.id for image in self.images for e in image.expressions]

    def __getitem__(self, index: int) -> dict:
        info = self.images[index]
        path = self.image_root / info.file_name
        cache = find_proposal_file(self.proposals_dir, info.file_name, info.image_id,
                                   same_stem=self._same_stem.get(info.file_name, ()))
        with Image.open(path) as image:
            image = image.convert("RGB")
        if image.size != (info.width, info.height):
            raise ValueError(f"{path} is {image.size[0]}x{image.size[1]}, annotations say {info.width}x{info.height}")
        key = ImageKey(info.file_name, info.height, info.width, info.image_id, **image_fingerprint(path))
        proposals = read_proposals(cache, key)
        expressions = [
            {"id": e.id, "ref_id": e.ref_id, "sent_id": e.sent_id, "ann_id": e.ann_id, "raw": e.text,
             "text": self.text_processor(e.text) if self.text_processor else e.text}
            for e in info.expressions
        ]
        return {
            "image": self.vis_processor(image), "image_id": info.image_id, "file_name": info.file_name,
            "image_path": str(path), "height": info.height, "width": info.width,
            "expressions": expressions, "segmentations": dict(info.segmentations),
            "proposals": proposals,
        }

    @staticmethod
    def collater(samples: list[dict]) -> dict:
        """A batch of images: {"image": (B, 3, S, S), "items": the B items without "image"}."""
        return {
            "image": torch.stack([s["image"] for s in samples]),
            "items": [{k: v for k, v in s.items() if k != "image"} for s in samples],
        }
