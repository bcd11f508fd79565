"""The Q-Former for many regions of ONE image, with its cross-attention keys/values computed once.

In `RegionBlip2.query_outputs`, each of R rows carries its own copy of the image embedding
and every cross-attention layer projects it to keys and values: R times the same
(L, C) -> (L, H) products. Here they are computed once per image, shape (1, heads, L, d), and
the queries of all R rows attend to them in one product (the rows are folded into the query
axis: R * N queries against L keys). Everything else runs the model's own modules: the
embeddings, each layer's self-attention block, the cross-attention's query projection and
output block, and the query/text feed-forwards. The point-token outputs of the last layer are
dropped by the model, so that layer's text feed-forward is skipped.

Shapes: R region rows, N query tokens, T text tokens, L image tokens, C ViT width,
H Q-Former width, h heads, d = H / h.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def image_cross_kv(qformer_bert: nn.Module, image_embeds: torch.Tensor) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Keys and values of every cross-attention layer for one image.

    Args:
        qformer_bert: the Q-Former's `BertModel` (`model.Qformer.bert`).
        image_embeds: (1, L, C) image embedding from `encode_image`.

    Returns:
        {layer index: (key, value)}, each (1, h, L, d).
    """
    if image_embeds.dim() != 3 or image_embeds.shape[0] != 1:
        raise ValueError(f"image_embeds must be (1, L, C) for one image, got {tuple(image_embeds.shape)}")
    cache = {}
    for index, layer in enumerate(qformer_bert.encoder.layer):
        if layer.has_cross_attention:
            attention = layer.crossattention.self
            if attention.position_embedding_type != "absolute":
                raise NotImplementedError(
                    f"cached cross-attention needs absolute position embeddings, layer {index} "
                    f"uses {attention.position_embedding_type!r}"
                )
            cache[index] = (
                attention.transpose_for_scores(attention.key(image_embeds)),
                attention.transpose_for_scores(attention.value(image_embeds)),
            )
    return cache


def _shared_cross_attention(
    block: nn.Module, hidden: torch.Tensor, key: torch.Tensor, value: torch.Tensor
) -> torch.Tensor:
    """A `BertAttention` cross-attention block for R rows that attend to the same image.

    hidden (R, N, H) query states; key, value (1, h, L, d). Returns (R, N, H): the block's
    output (attention, `output.dense`, residual, LayerNorm). Eval mode: no dropout, no mask
    (every image token is visible, as in the model's pass).
    """
    attention = block.self
    rows, tokens, _ = hidden.shape
    heads, head_dim = attention.num_attention_heads, attention.attention_head_size
    query = attention.query(hidden).view(rows * tokens, heads, head_dim).transpose(0, 1)
    context = F.scaled_dot_product_attention(query.unsqueeze(0), key, value)  # (1, h, R*N, d)
    context = context[0].transpose(0, 1).reshape(rows, tokens, heads * head_dim)
    return block.output(context, hidden)


def shared_image_query_outputs(
    model: nn.Module, image_embeds: torch.Tensor, region_text: Sequence[str]
) -> torch.Tensor:
    """`model.query_outputs` for R rows that all use one image, with cached keys/values.

    Args:
        model: a region model (`RegionBlip2`) in eval mode (dropout would make the result random).
        image_embeds: (1, L, C) from `model.encode_image`, or (L, C).
        region_text: R point texts. "" follows `model.global_region_mode` as in
            `query_outputs` ("empty_text": the [CLS][SEP] pass; "query_only": the stock
            query-only pass, computed once and shared, since it depends on the image alone).

    Returns:
        (R, N, H) query outputs Z_hat, equal to `model.query_outputs(image_embeds.expand(R, -1, -1),
        region_text)` up to float rounding.
    """
    if model.training:
        raise RuntimeError("shared_image_query_outputs is an inference path: call model.eval() first")
    if image_embeds.dim() == 2:
        image_embeds = image_embeds.unsqueeze(0)
    region_text = list(region_text)
    query_only = [text == "" and model.global_region_mode == "query_only" for text in region_text]
    num_query = model.query_tokens.shape[1]
    out = image_embeds.new_empty((len(region_text), num_query, model.query_tokens.shape[2]))
    if any(query_only):
        out[torch.tensor(query_only)] = model.query_outputs(image_embeds, [""])
    with_text = [i for i, flag in enumerate(query_only) if not flag]
    if with_text:
        out[with_text] = _text_rows(model, image_embeds, [region_text[i] for i in with_text])
    return out


def _text_rows(model: nn.Module, image_embeds: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """Q-Former on `[Z; BERT(text)]` for len(texts) rows of one image: (R, N, H)."""
    bert = model.Qformer.bert
    device = image_embeds.device
    rows, num_query = len(texts), model.query_tokens.shape[1]
    tokens = model.tokenizer(
        texts, padding="longest", truncation=True, max_length=model.region_max_len, return_tensors="pt"
    ).to(device)
    hidden = bert.embeddings(
        input_ids=tokens.input_ids, query_embeds=model.query_tokens.expand(rows, -1, -1)
    )
    mask = torch.cat(
        [torch.ones((rows, num_query), dtype=tokens.attention_mask.dtype, device=device), tokens.attention_mask],
        dim=1,
    )
    extended_mask = bert.get_extended_attention_mask(mask, hidden.shape[:2], device, False)
    cross_kv = image_cross_kv(bert, image_embeds)
    layers = bert.encoder.layer
    for index, layer in enumerate(layers):
        attended = layer.attention(hidden, extended_mask)[0]
        queries = attended[:, :num_query]
        if layer.has_cross_attention:
            queries = _shared_cross_attention(layer.crossattention, queries, *cross_kv[index])
        queries = layer.feed_forward_chunk_query(queries)
        if index == len(layers) - 1:
            return queries  # the point-token outputs of the last layer are never used
        hidden = torch.cat([queries, layer.feed_forward_chunk(attended[:, num_query:])], dim=1)
    raise ValueError("the Q-Former has no layers")
