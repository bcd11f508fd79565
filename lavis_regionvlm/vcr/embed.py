"""VCR prompts (text and object slots) as a padded T5 encoder input, through the shared
`lavis_regionvlm.models.pieces.embed_pieces`."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch

from lavis_regionvlm.models.pieces import embed_pieces
from lavis_regionvlm.vcr.prompt import ObjectSlot, Piece


def interleaved_inputs(
    model,
    prompts: Sequence[Sequence[Piece]],
    region_embeds: Sequence[Mapping[int, torch.Tensor]],
    max_len: Optional[int] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """B prompts -> `inputs_embeds` (B, S, D) and `attention_mask` (B, S), right-padded.

    Args:
        model: a `Blip2T5Region`.
        prompts: per row, pieces: text (`str`) or `ObjectSlot`s.
        region_embeds: per row, {object id: (N, D) soft prompt} for its slots.
        max_len: keep at most this many positions per row (the end, with `</s>`, is kept);
            None keeps all.
    """
    if len(prompts) != len(region_embeds):
        raise ValueError(f"{len(prompts)} prompts but {len(region_embeds)} soft-prompt maps")
    return embed_pieces(
        model,
        [[_slot_embedding(piece, slots) for piece in pieces] for pieces, slots in zip(prompts, region_embeds)],
        max_len,
    )


def _slot_embedding(piece: Piece, slots: Mapping[int, torch.Tensor]):
    """An `ObjectSlot` -> its object's (N, D) soft prompt; text stays text."""
    if not isinstance(piece, ObjectSlot):
        return piece
    if piece.object_id not in slots:
        raise KeyError(f"no soft prompt for object {piece.object_id}")
    return slots[piece.object_id]
