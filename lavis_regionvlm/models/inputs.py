"""Checks on the `samples` dicts that LAVIS passes to models, with messages that say
what is wrong and where."""
from __future__ import annotations

from typing import Iterable

import torch

from lavis_regionvlm.regions.point_text import is_point_text


def validate_samples(samples, required: Iterable[str]) -> None:
    """Raise if `samples` is not a dict holding `required` keys and a (B, 3, H, W) image."""
    if not isinstance(samples, dict):
        raise TypeError(f"samples must be a dict, got {type(samples).__name__}")
    missing = [key for key in required if key not in samples]
    if missing:
        raise KeyError(
            f"samples lacks {missing}; it has {sorted(samples)}. A region model reads "
            "'image', 'region_text' (point text, '' for the whole image), 'text_input' "
            "(language-model prompt) and 'text_output' (target)"
        )
    image = samples.get("image")
    if image is not None and (not isinstance(image, torch.Tensor) or image.dim() != 4):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"samples['image'] must be a (B, 3, H, W) tensor, got {shape}")


def region_texts_for(samples: dict, batch: int) -> list[str]:
    """`samples['region_text']` checked: `batch` point texts; absent means all global ("")."""
    texts = samples.get("region_text")
    if texts is None:
        return [""] * batch
    if isinstance(texts, str):
        texts = [texts] * batch
    texts = list(texts)
    if len(texts) != batch:
        raise ValueError(f"samples['region_text'] has {len(texts)} entries for a batch of {batch}")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not is_point_text(text):
            raise ValueError(
                f"samples['region_text'][{i}] = {text!r} is not point text; expected "
                "'[x y] [x y] ...' with integers 0-100 (see lavis_regionvlm.points_to_text), "
                "or '' for the whole image"
            )
    return texts
