"""The plugin's one seeding scheme: a NumPy generator fixed by a seed and a tuple of keys.

Every seeded random choice of the plugin (dataset sampling, RIS proposal points, VCR object
points, the synthetic data generator) draws from `seeded_rng(seed, *keys)`, so a result
depends only on the seed and on what the keys name (a dataset and an index, an image and a
proposal, a question and an object), never on the order things run in, the batch or the rank.
"""
from __future__ import annotations

import zlib
from typing import Union

import numpy as np

SeedKey = Union[int, str, np.integer]


def seed_key(key: SeedKey) -> int:
    """One key as a non-negative int: a non-negative int stays as it is; anything else (a
    string, a negative int) becomes the CRC32 of its text (`str(key)`, UTF-8)."""
    if isinstance(key, (int, np.integer)) and key >= 0:
        return int(key)
    return zlib.crc32(str(key).encode("utf-8"))


def seeded_rng(seed: int, *keys: SeedKey) -> np.random.Generator:
    """`np.random.default_rng([seed, *keys])` with each key through `seed_key`.

    Args:
        seed: the base seed, a non-negative int (a config's `seed`).
        keys: what the stream is for, e.g. ("localized_narratives", epoch, index) or
            (image_id, proposal_id); a string key such as a dataset name or an annotation id
            becomes its CRC32, so names give streams of their own.
    Raises:
        ValueError: `seed` is not a non-negative int.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"a seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(seed), *(seed_key(key) for key in keys)])
