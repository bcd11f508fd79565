"""LM-loss scores of referring expressions given regions, at the compute floor and below it.

Cost per image with M = proposals x draws region rows and E expressions:
- the Q-Former runs once over the M rows, with the image's cross-attention keys/values
  computed once (`shared_image_query_outputs`);
- the T5 encoder runs once per row (`t5_encode`), and its output serves every expression;
- the decoder runs once per row for ALL expressions together (`expression_nll`): the
  expressions are concatenated along the sequence with a block-diagonal causal mask, so each
  token sees only its own expression, as in separate passes. Every row then has the same
  target sequence (no padding at all) and the decoder's cross-attention keys/values of a row
  are computed once instead of once per expression.
`naive_expression_nll` is the official script's loop (the whole model per pair), the reference
the fast path is tested and benchmarked against.

Scores are mean token NLLs (nats), `</s>` included: `Blip2T5Region.score`'s definition.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lavis_regionvlm.models.qformer_cached import shared_image_query_outputs

DECODER_TOKEN_BUDGET = 2048  # decoder tokens per call (rows x target length): bounds the logits' memory
MAX_GROUP_TOKENS = 128  # longest concatenation of expressions in one decoder row


def t5_encode(model: nn.Module, region_embeds: torch.Tensor, prompt: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """T5 encoder over `[soft prompt; embed(prompt)]` for M rows.

    region_embeds (M, N, D) from `t5_proj`. Returns hidden states (M, S, D) and their
    attention mask (M, S), S = N + prompt tokens.
    """
    with model.t5_autocast():
        inputs_embeds, atts = model.t5_encoder_inputs(region_embeds, [prompt] * region_embeds.shape[0])
        hidden = model.t5_model.encoder(
            inputs_embeds=inputs_embeds, attention_mask=atts, return_dict=True
        ).last_hidden_state
    return hidden, atts


def expression_nll(
    model: nn.Module,
    encoder_hidden: torch.Tensor,
    encoder_atts: torch.Tensor,
    expressions: Sequence[str],
    token_budget: int = DECODER_TOKEN_BUDGET,
) -> torch.Tensor:
    """Mean token NLL of every expression given every encoder row: (M, E) float32.

    Args:
        model: a `Blip2T5Region` (its T5 tokenizer, decoder, LM head and `max_txt_len`).
        encoder_hidden: (M, S, D) from `t5_encode`.
        encoder_atts: (M, S) its attention mask.
        expressions: E target texts, tokenized as the model's `decoder_nll` does.
        token_budget: most decoder tokens (rows x concatenated length) per decoder call.
    """
    rows, device = encoder_hidden.shape[0], encoder_hidden.device
    targets = [
        torch.tensor(ids, device=device)
        for ids in model.t5_tokenizer(
            list(expressions), truncation=True, max_length=model.max_txt_len
        ).input_ids
    ]
    out = torch.empty((rows, len(targets)), dtype=torch.float32, device=device)
    for group in _groups([len(t) for t in targets], MAX_GROUP_TOKENS):
        labels = torch.cat([targets[e] for e in group])
        step = max(1, token_budget // len(labels))
        for start in range(0, rows, step):
            chunk = slice(start, start + step)
            out[chunk, group[0] : group[-1] + 1] = _group_nll(
                model, encoder_hidden[chunk], encoder_atts[chunk], [targets[e] for e in group]
            )
    return out


def _groups(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Consecutive index groups whose summed length stays within max_tokens (a longer item alone)."""
    groups: list[list[int]] = []
    total = 0
    for index, length in enumerate(lengths):
        if groups and total + length <= max_tokens:
            groups[-1].append(index)
            total += length
        else:
            groups.append([index])
            total = length
    return groups


def _group_nll(
    model: nn.Module, hidden: torch.Tensor, atts: torch.Tensor, targets: list[torch.Tensor]
) -> torch.Tensor:
    """(m, G) mean token NLL of G targets (each (T_g,) ids ending in `</s>`) for m encoder rows,
    in one decoder pass over their concatenation."""
    t5 = model.t5_model
    device = hidden.device
    labels = torch.cat(targets)  # (T,)
    segment = torch.cat([torch.full((len(t),), g, device=device) for g, t in enumerate(targets)])
    start = torch.tensor([t5.config.decoder_start_token_id], device=device)
    decoder_ids = torch.cat([torch.cat([start, t[:-1]]) for t in targets])  # each target shifted right
    positions = torch.arange(len(labels), device=device)
    mask = (segment[:, None] == segment[None, :]) & (positions[None, :] <= positions[:, None])  # (T, T)
    rows = hidden.shape[0]
    with model.t5_autocast():
        sequence = t5.decoder(
            input_ids=decoder_ids.expand(rows, -1),
            attention_mask=mask.expand(rows, -1, -1).long(),
            encoder_hidden_states=hidden,
            encoder_attention_mask=atts,
            use_cache=False,
            return_dict=True,
        ).last_hidden_state
        if t5.config.tie_word_embeddings:  # as T5ForConditionalGeneration rescales before its head
            sequence = sequence * (t5.model_dim ** -0.5)
        logits = t5.lm_head(sequence)  # (m, T, V)
    token_nll = F.cross_entropy(
        logits.float().flatten(0, 1), labels.repeat(rows), reduction="none"
    ).view(rows, -1)
    one_hot = F.one_hot(segment, len(targets)).float()  # (T, G)
    return (token_nll @ one_hot) / one_hot.sum(0)


def point_text_nll(
    model: nn.Module,
    image_embeds: torch.Tensor,
    point_texts: Sequence[str],
    expressions: Sequence[str],
    token_budget: int = DECODER_TOKEN_BUDGET,
    timings: dict[str, float] | None = None,
) -> torch.Tensor:
    """Scores of E expressions for M point-text regions of one image: (M, E) float32.

    image_embeds (1, L, C) from `model.encode_image`; M point texts. `timings`, when a dict,
    receives the seconds spent in each stage ("qformer", "t5_encoder", "decoder"; the
    device is synchronised between stages): for benchmarks.
    """
    clock = _StageClock(timings, image_embeds.device)
    with model.qformer_precision():
        queries = shared_image_query_outputs(model, image_embeds, point_texts)
    region = model.t5_proj(queries)
    clock("qformer")
    hidden, atts = t5_encode(model, region)
    clock("t5_encoder")
    out = expression_nll(model, hidden, atts, expressions, token_budget)
    clock("decoder")
    return out


class _StageClock:
    """Calling it with a stage name adds the seconds since the previous call to `timings`
    (no-op when timings is None)."""

    def __init__(self, timings: dict[str, float] | None, device: torch.device):
        self.timings, self.device = timings, torch.device(device)
        self.last = self._now() if timings is not None else 0.0

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def __call__(self, stage: str) -> None:
        if self.timings is not None:
            now = self._now()
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.last
            self.last = now


def image_rows_nll(
    model: nn.Module,
    images: torch.Tensor,
    expressions: Sequence[str],
    token_budget: int = DECODER_TOKEN_BUDGET,
) -> torch.Tensor:
    """Scores of E expressions for M whole images with empty point text: (M, E) float32.

    The baselines' path (a red circle drawn on, or a crop of, the image): images (M, 3, S, S)
    are each encoded by the ViT.
    """
    region_embeds = model.encode_regions(model.encode_image(images), [""] * images.shape[0])
    hidden, atts = t5_encode(model, region_embeds)
    return expression_nll(model, hidden, atts, expressions, token_budget)


def naive_expression_nll(
    model: nn.Module, image: torch.Tensor, point_texts: Sequence[str], expressions: Sequence[str]
) -> torch.Tensor:
    """The official script's cost: the whole model once per (region, expression). (M, E) float32.

    image (3, S, S), one processed image. Reference for tests and benchmarks only.
    """
    out = torch.empty((len(point_texts), len(expressions)), dtype=torch.float32)
    for row, text in enumerate(point_texts):
        for column, expression in enumerate(expressions):
            out[row, column] = model.score(
                {"image": image[None], "region_text": [text], "text_output": [expression]}
            )[0]
    return out
