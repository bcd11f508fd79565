"""Geometric initialisation for models trained from scratch (the `tiny` model).

A pretrained BERT already relates the tokens "31" and "32"; random embeddings do not,
and a randomly initialised ViT knows nothing of where its patches lie. A small model
trained from scratch then takes thousands of steps before point text means anything.
These initialisers give it the geometry up front:

- number tokens "0".."100" get sinusoidal codes of their value, so nearby numbers start
  with nearby embeddings;
- ViT position embeddings get the fixed 2-D sine-cosine codes of MAE/EVA, so patch
  tokens start knowing their (x, y).

Both are plain starting values; training changes them like any other weight.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def sincos_codes(values: torch.Tensor, dim: int) -> torch.Tensor:
    """Sine-cosine codes (len(values), dim) of `values` in [0, 1], at geometric frequencies
    from 0.5 to 32 half-turns across [0, 1] (finer than the 0.01 steps of point text
    would only alias)."""
    half = dim // 2
    frequencies = torch.logspace(math.log10(0.5), math.log10(32), half, dtype=torch.float64) * math.pi
    angles = values.double()[:, None] * frequencies[None]
    codes = torch.cat([angles.sin(), angles.cos()], dim=1)
    return nn.functional.pad(codes, (0, dim - 2 * half)).float()


@torch.no_grad()
def init_number_embeddings_(word_embeddings: nn.Embedding, tokenizer, max_value: int = 100) -> None:
    """Set the embedding row of each token "0".."max_value" to the code of value/max_value."""
    ids = tokenizer.convert_tokens_to_ids([str(v) for v in range(max_value + 1)])
    if tokenizer.unk_token_id in ids:
        raise ValueError("the Q-Former vocabulary lacks some of the tokens 0-100 that point text uses")
    values = torch.arange(max_value + 1) / max_value
    codes = sincos_codes(values, word_embeddings.embedding_dim)
    scale = word_embeddings.weight.std() / codes.std()
    word_embeddings.weight[torch.tensor(ids)] = (codes * scale).to(word_embeddings.weight.dtype)


@torch.no_grad()
def init_sincos_pos_embed_(vit) -> None:
    """Set an EVA/LAVIS ViT's `pos_embed` (1, 1 + H*W, D) to 2-D sine-cosine codes:
    half the channels code the patch's x, half its y; the class token gets zeros."""
    grid_h, grid_w = vit.patch_embed.patch_shape
    dim = vit.pos_embed.shape[-1]
    ys, xs = torch.meshgrid(
        torch.arange(grid_h) / max(grid_h - 1, 1), torch.arange(grid_w) / max(grid_w - 1, 1),
        indexing="ij",
    )
    codes = torch.cat(
        [sincos_codes(xs.flatten(), dim // 2), sincos_codes(ys.flatten(), dim - dim // 2)], dim=1
    )
    # Unit-amplitude codes, as MAE uses: scaled down to the 0.02 of a learned position
    # embedding they drown under the patch embeddings and position is learned slowly.
    vit.pos_embed[0, 1:] = codes.to(vit.pos_embed.dtype)
    vit.pos_embed[0, 0] = 0
