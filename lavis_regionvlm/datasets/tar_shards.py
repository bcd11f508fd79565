"""LAION-style webdataset shards as a map-style source: tar members indexed once, read by offset.

A shard is an uncompressed tar whose members are ``<key>.<ext>``; a sample is the members that
share a key (webdataset's rule: the key ends at the first dot of the file name). A sample needs
an image (jpg, jpeg, png or webp) and a caption: the ``.txt`` member (the LAION dataset-spec
layout, LAION-AI/dataset-spec: caption in ``.txt``, ``.json`` holding url/width/height), else
``caption`` of the ``.json`` member (img2dataset writes both when given a caption column).
"""
from __future__ import annotations

import json
import tarfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from webdataset.shardlists import expand_urls
from webdataset.tariterators import base_plus_ext

from lavis_regionvlm.datasets.loading import SampleError, open_rgb

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def expand_shards(patterns: Sequence[str]) -> list[str]:
    """Shard paths from paths or brace patterns (``shards/{00000..00009}.tar``)."""
    return [path for pattern in patterns for path in expand_urls(pattern)]


CAPTION_JSON, CAPTION_TXT = 0, 1  # where a sample's caption is (index column 4)


def index_shard(path: str | Path) -> tuple[np.ndarray, Counter]:
    """(n, 5) int64 [image offset, image size, caption offset, caption size, caption kind]
    (bytes; kind CAPTION_TXT for a ``.txt`` member, else CAPTION_JSON) of the complete samples
    of one shard, in tar order, and the skip counts ("incomplete_sample")."""
    members: dict[str, dict[str, tuple[int, int]]] = {}
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, ext = base_plus_ext(member.name)
            if key is not None:
                members.setdefault(key, {})[ext.lower()] = (member.offset_data, member.size)
    rows, skips = [], Counter()
    for parts in members.values():
        image = next((parts[ext] for ext in IMAGE_EXTENSIONS if ext in parts), None)
        if image is None or ("txt" not in parts and "json" not in parts):
            skips["incomplete_sample"] += 1
            continue
        caption = (*parts["txt"], CAPTION_TXT) if "txt" in parts else (*parts["json"], CAPTION_JSON)
        rows.append((*image, *caption))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 5), skips


class TarShards:
    """The samples of several shards, read by seeking into the tar files."""

    def __init__(self, shards: Sequence[str | Path]):
        self.shards = [str(s) for s in shards]
        indexed = [index_shard(s) for s in self.shards]
        self.index = np.concatenate([rows for rows, _ in indexed])
        self.shard_of = np.concatenate([np.full(len(rows), i, np.int32) for i, (rows, _) in enumerate(indexed)])
        self.skip_counts: Counter = sum((c for _, c in indexed), Counter())

    def __len__(self) -> int:
        return len(self.index)

    def _read(self, index: int, offset: int, size: int) -> bytes:
        with open(self.shards[int(self.shard_of[index])], "rb") as f:
            f.seek(offset)
            return f.read(size)

    def read(self, index: int) -> tuple[Image.Image, str]:
        """The RGB image and caption of sample `index`; raises SampleError ("bad_caption",
        "corrupt_image")."""
        image_offset, image_size, caption_offset, caption_size, kind = (int(v) for v in self.index[index])
        where = f"{self.shards[int(self.shard_of[index])]} @ {caption_offset}"
        raw = self._read(index, caption_offset, caption_size)
        try:
            caption = raw.decode("utf-8") if kind == CAPTION_TXT else json.loads(raw).get("caption")
        except (ValueError, AttributeError):
            caption = None
        if not isinstance(caption, str) or not caption.strip():
            raise SampleError("bad_caption", where)
        return open_rgb(self._read(index, image_offset, image_size), name=where), caption
