"""VCR prompts (text and object slots) as language-model input pieces: each `ObjectSlot`
becomes its object's soft prompt, text stays text. `model.lm` embeds, generates from and
scores them (one truncation rule: `models/lm/base.py`)."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from lavis_regionvlm.vcr.prompt import ObjectSlot, Piece


def interleaved_pieces(
    prompts: Sequence[Sequence[Piece]],
    region_embeds: Sequence[Mapping[int, torch.Tensor]],
) -> list[list]:
    """B prompts -> B piece lists for `model.lm` (text `str`, soft prompts (N, D)).

    Args:
        prompts: per row, pieces: text (`str`) or `ObjectSlot`s.
        region_embeds: per row, {object id: (N, D) soft prompt} for its slots.
    """
    if len(prompts) != len(region_embeds):
        raise ValueError(f"{len(prompts)} prompts but {len(region_embeds)} soft-prompt maps")
    return [[_slot_embedding(piece, slots) for piece in pieces] for pieces, slots in zip(prompts, region_embeds)]


def _slot_embedding(piece: Piece, slots: Mapping[int, torch.Tensor]):
    """An `ObjectSlot` -> its object's (N, D) soft prompt; text stays text."""
    if not isinstance(piece, ObjectSlot):
        return piece
    if piece.object_id not in slots:
        raise KeyError(f"no soft prompt for object {piece.object_id}")
    return slots[piece.object_id]
