"""T5 encoder inputs built from a list of pieces: text, or a region's soft prompt.

Several regions in one prompt (dialogue, VCR) are written by interleaving text with each
region's N soft-prompt vectors, e.g. `["Let [0] be", Z0, ". Question: what is [0]? Answer:"]`.
Each text piece is tokenized on its own (no special tokens) and embedded with the T5 input
embedding; one `</s>` ends the sequence, as the model's own `t5_encoder_inputs` does.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

Piece = Union[str, torch.Tensor]

__all__ = ["Piece", "piece_lengths", "count_tokens", "embed_pieces"]


def _text_ids(model: nn.Module, text: str) -> list[int]:
    return model.t5_tokenizer(text, add_special_tokens=False).input_ids


def piece_lengths(model: nn.Module, pieces: Sequence[Piece]) -> list[int]:
    """Length of each piece in encoder positions: T5 tokens of a text, N of a (N, D) soft prompt."""
    lengths = []
    for piece in pieces:
        if isinstance(piece, str):
            lengths.append(len(_text_ids(model, piece)))
        elif isinstance(piece, torch.Tensor) and piece.dim() == 2:
            lengths.append(piece.shape[0])
        else:
            shape = tuple(piece.shape) if isinstance(piece, torch.Tensor) else type(piece).__name__
            raise TypeError(f"a piece must be a str or an (N, D) soft prompt, got {shape}")
    return lengths


def count_tokens(model: nn.Module, pieces: Sequence[Piece]) -> int:
    """Encoder length of `embed_pieces(model, pieces)`: all pieces plus the closing `</s>`."""
    return sum(piece_lengths(model, pieces)) + 1


def embed_pieces(
    model: nn.Module, batch: Sequence[Sequence[Piece]], max_len: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """B piece lists -> inputs_embeds (B, S, D) and attention_mask (B, S), right-padded.

    inputs_embeds is in `model.t5_numerics().input_dtype`, as `t5_encoder_inputs` makes it.

    Args:
        model: a `Blip2T5Region` (uses `t5_tokenizer` and `t5_model.encoder.embed_tokens`).
        batch: B lists of pieces; a soft prompt is (N, D), from `encode_regions(...)[i]`.
        max_len: keep at most this many positions per row (the closing `</s>` is kept);
            None keeps all.
    """
    embed = model.t5_model.encoder.embed_tokens
    device, dtype = embed.weight.device, model.t5_numerics().input_dtype
    eos = model.t5_tokenizer.eos_token_id
    rows = []
    for pieces in batch:
        parts = []
        for piece in pieces:
            if isinstance(piece, str):
                ids = _text_ids(model, piece)
                if ids:
                    parts.append(embed(torch.tensor(ids, device=device)).to(dtype))
            elif isinstance(piece, torch.Tensor) and piece.dim() == 2:
                parts.append(piece.to(device=device, dtype=dtype))
            else:
                shape = tuple(piece.shape) if isinstance(piece, torch.Tensor) else type(piece).__name__
                raise TypeError(f"a piece must be a str or an (N, D) soft prompt, got {shape}")
        parts.append(embed(torch.tensor([eos], device=device)).to(dtype))
        row = torch.cat(parts, dim=0)
        if max_len is not None and row.shape[0] > max_len:
            row = torch.cat([row[: max_len - 1], row[-1:]], dim=0)
        rows.append(row)
    length = max(row.shape[0] for row in rows)
    inputs = rows[0].new_zeros((len(rows), length, rows[0].shape[1]))
    mask = torch.zeros((len(rows), length), dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        inputs[i, : row.shape[0]] = row
        mask[i, : row.shape[0]] = 1
    return inputs, mask
