"""FlanT5 behind the `RegionLM` interface: the soft prompt and text go into the encoder,
targets come out of the decoder.

Input: `[piece, piece, ...]` -> encoder input `[embed(piece) ...; </s>]`, each text piece
tokenized on its own without special tokens, one closing `</s>`, right padding filled with the
pad token's embedding (so `[Z, text]` is exactly `[Z; embed(tokenizer(text).input_ids)]`, the
released layout, padding included).

Scoring (`score`), the fast path every caller uses: the encoder runs once per input; the
decoder runs once per input for ALL its candidates together: the candidates are concatenated
along the sequence with a block-diagonal causal mask, so each token sees only its own
candidate, as in separate passes, and the decoder's cross-attention keys/values of an input are
computed once instead of once per candidate. Inputs with their own candidate lists (VCR,
`score_regions`) run in the same pass, each row's concatenation right-padded to the longest;
inputs sharing one list (RIS, the predictor) need no padding at all.

Shapes: B inputs, S encoder positions, D T5 width, C candidates, T concatenated target tokens,
V vocabulary.
"""
from __future__ import annotations

from typing import Any, ContextManager, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lavis_regionvlm.models.lm.base import SCORE_REDUCTIONS, Candidates, Piece, RegionLM, candidate_rows
from lavis_regionvlm.models.t5_numerics import T5Numerics

DECODER_TOKEN_BUDGET = 2048  # decoder tokens per call (rows x concatenated target length): bounds the logits' memory
MAX_GROUP_TOKENS = 128  # longest concatenation of candidates in one decoder row

__all__ = ["T5LM", "DECODER_TOKEN_BUDGET", "MAX_GROUP_TOKENS"]


class T5LM(RegionLM):
    """A view of a FlanT5 (`T5ForConditionalGeneration`) and its tokenizer as a `RegionLM`.

    Args:
        model: the T5 model.
        tokenizer: its tokenizer.
        numerics: its input dtype and autocast (`t5_numerics.t5_numerics`).
        max_target_tokens: candidates and training targets are cut at this many tokens
            (`</s>` included): the model's `max_txt_len`.
        token_budget: most decoder tokens (rows x concatenated length) per scoring call.
    """

    end_text = "</s>"

    default_token_budget = DECODER_TOKEN_BUDGET

    @property
    def hidden_size(self) -> int:
        return self.model.config.d_model

    # ------------------------------------------------------------------ lengths

    def text_tokens(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def special_tokens(self) -> int:
        return 1  # the closing </s>

    def autocast(self) -> ContextManager:
        return self.numerics.autocast()

    # ------------------------------------------------------------------ inputs

    def embed(
        self, batch: Sequence[Sequence[Piece]], max_text_tokens: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """B piece lists -> inputs_embeds (B, S, D) in the input dtype, attention_mask (B, S).

        Every text token of the batch, each row's closing `</s>` and its padding come from ONE
        embedding call on a right-padded (B, T) id matrix, as from a tokenized batch: when T5's
        embeddings train (the quick start), their gradient then sums in the same order as the
        released `[Z; embed(tokenizer(prompts))]`, bit for bit.
        """
        embed = self.model.encoder.embed_tokens
        device, dtype = embed.weight.device, self.numerics.input_dtype
        rows = [self.token_pieces(pieces, max_text_tokens) for pieces in batch]
        if not rows:
            raise ValueError("no inputs to embed")
        texts = [[t for p in row if isinstance(p, list) for t in p] + [self.tokenizer.eos_token_id] for row in rows]
        soft = [sum(p.shape[0] for p in row if not isinstance(p, list)) for row in rows]
        length = max(n + len(t) for n, t in zip(soft, texts))  # S
        ids = torch.full((len(rows), max(length - n for n in soft)), self.tokenizer.pad_token_id,
                         dtype=torch.long, device=device)
        for r, text in enumerate(texts):
            ids[r, : len(text)] = torch.tensor(text, device=device)
        table = embed(ids).to(dtype)  # (B, T, D): each row's text tokens, then </s>, then padding
        out = []
        for r, row in enumerate(rows):
            parts, column = [], 0
            for piece in row:
                if isinstance(piece, list):
                    parts.append(table[r, column : column + len(piece)])
                    column += len(piece)
                else:
                    parts.append(piece.to(device=device, dtype=dtype))
            parts.append(table[r, column : column + length - soft[r] - column])  # </s> and padding
            out.append(torch.cat(parts, dim=0))
        inputs = torch.stack(out)
        mask = torch.zeros((len(rows), length), dtype=torch.long, device=device)
        for r, (n, text) in enumerate(zip(soft, texts)):
            mask[r, : n + len(text)] = 1
        return inputs, mask

    def _targets(self, texts: Sequence[str], device) -> list[torch.Tensor]:
        """Each text's target ids (T_c,), cut at `max_target_tokens`, ending in `</s>`."""
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_target_tokens).input_ids
        return [torch.tensor(i, device=device) for i in ids]

    # ------------------------------------------------------------------ the calls

    def generate(
        self, batch: Sequence[Sequence[Piece]], max_text_tokens: int | None = None, **generate_kwargs: Any
    ) -> list[str]:
        with self.autocast():
            inputs_embeds, attention_mask = self.embed(batch, max_text_tokens)
            outputs = self.model.generate(
                inputs_embeds=inputs_embeds, attention_mask=attention_mask, **generate_kwargs
            )
        return self.tokenizer.batch_decode(outputs, skip_special_tokens=True)

    def encode(
        self, batch: Sequence[Sequence[Piece]], max_text_tokens: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The T5 encoder over B inputs: hidden states (B, S, D) and their mask (B, S)."""
        with self.autocast():
            inputs_embeds, atts = self.embed(batch, max_text_tokens)
            hidden = self.model.encoder(
                inputs_embeds=inputs_embeds, attention_mask=atts, return_dict=True
            ).last_hidden_state
        return hidden, atts

    def score(
        self,
        batch: Sequence[Sequence[Piece]],
        candidates: Candidates,
        *,
        reduction: str = "mean",
        max_text_tokens: int | None = None,
    ) -> torch.Tensor:
        hidden, atts = self.encode(batch, max_text_tokens)
        return self.score_encoded(hidden, atts, candidates, reduction=reduction)

    def score_encoded(
        self, hidden: torch.Tensor, atts: torch.Tensor, candidates: Candidates, *, reduction: str = "mean"
    ) -> torch.Tensor:
        """(B, C) float32 NLL of the candidates given encoder states (B, S, D) and mask (B, S)
        (`encode`'s output).

        Candidates are grouped by index into concatenations of at most `MAX_GROUP_TOKENS`
        tokens (the longest of each index across rows counts); each chunk of rows runs one
        decoder pass of at most `token_budget` tokens (rows x concatenated length).
        """
        if reduction not in SCORE_REDUCTIONS:
            raise ValueError(f"reduction must be one of {SCORE_REDUCTIONS}, got {reduction!r}")
        rows = hidden.shape[0]
        table, _ = candidate_rows(candidates, rows)
        distinct = sorted({text for row in table for text in row})
        ids = dict(zip(distinct, self._targets(distinct, hidden.device)))
        targets = [[ids[text] for text in row] for row in table]  # B x C tensors (T_c,)
        count = len(table[0])
        lengths = [max(len(targets[r][c]) for r in range(rows)) for c in range(count)]
        out = torch.empty((rows, count), dtype=torch.float32, device=hidden.device)
        for group in _groups(lengths, MAX_GROUP_TOKENS):
            step = max(1, self.token_budget // sum(lengths[c] for c in group))
            for start in range(0, rows, step):
                chunk = slice(start, start + step)
                out[chunk, group[0] : group[-1] + 1] = self._group_nll(
                    hidden[chunk], atts[chunk], [[row[c] for c in group] for row in targets[chunk]], reduction
                )
        return out

    def _group_nll(
        self, hidden: torch.Tensor, atts: torch.Tensor, targets: list[list[torch.Tensor]], reduction: str
    ) -> torch.Tensor:
        """(m, G) NLL of G targets per row (each (T_g,) ids ending in `</s>`) for m encoder rows,
        in one decoder pass over each row's concatenation (right-padded to the longest, T) with
        a block-diagonal causal mask: a token sees only the earlier tokens of its own target."""
        t5 = self.model
        device = hidden.device
        rows, count = len(targets), len(targets[0])
        start = torch.tensor([t5.config.decoder_start_token_id], device=device)
        width = max(sum(len(t) for t in row) for row in targets)
        labels = torch.full((rows, width), -100, dtype=torch.long, device=device)
        decoder_ids = torch.full((rows, width), self.tokenizer.pad_token_id, dtype=torch.long, device=device)
        segment = torch.full((rows, width), -1, dtype=torch.long, device=device)  # -1: padding
        for r, row in enumerate(targets):
            length = sum(len(t) for t in row)
            labels[r, :length] = torch.cat(row)
            decoder_ids[r, :length] = torch.cat([torch.cat([start, t[:-1]]) for t in row])  # each shifted right
            segment[r, :length] = torch.cat([torch.full((len(t),), g, device=device) for g, t in enumerate(row)])
        positions = torch.arange(width, device=device)
        mask = ((segment[:, :, None] == segment[:, None, :]) & (segment[:, None, :] >= 0)
                & (positions[None, None, :] <= positions[None, :, None]))  # (m, T, T)
        with self.autocast():
            sequence = t5.decoder(
                input_ids=decoder_ids,
                attention_mask=mask.long(),
                encoder_hidden_states=hidden,
                encoder_attention_mask=atts,
                use_cache=False,
                return_dict=True,
            ).last_hidden_state
            if t5.config.tie_word_embeddings:  # as T5ForConditionalGeneration rescales before its head
                sequence = sequence * (t5.model_dim ** -0.5)
            logits = t5.lm_head(sequence)  # (m, T, V)
        token_nll = F.cross_entropy(
            logits.float().flatten(0, 1), labels.flatten(), reduction="none", ignore_index=-100
        ).view(rows, width)
        one_hot = F.one_hot(segment.clamp(min=0), count).float() * (segment >= 0)[..., None]  # (m, T, G)
        total = torch.einsum("mt,mtg->mg", token_nll, one_hot)
        return total if reduction == "sum" else total / one_hot.sum(1)

    def loss(
        self, batch: Sequence[Sequence[Piece]], targets: Sequence[str], max_text_tokens: int | None = None
    ) -> torch.Tensor:
        """T5's LM loss as the released `forward`: the mean over every target token of the
        batch (`</s>` included, padding excluded), targets cut at `max_target_tokens`."""
        with self.autocast():
            inputs_embeds, encoder_atts = self.embed(batch, max_text_tokens)
            tokens = self.tokenizer(
                list(targets), padding="longest", truncation=True, max_length=self.max_target_tokens,
                return_tensors="pt",
            ).to(inputs_embeds.device)
            labels = tokens.input_ids.masked_fill(tokens.input_ids == self.tokenizer.pad_token_id, -100)
            outputs = self.model(
                inputs_embeds=inputs_embeds,
                attention_mask=encoder_atts,
                decoder_attention_mask=tokens.attention_mask,
                return_dict=True,
                labels=labels,
            )
        return outputs.loss


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
