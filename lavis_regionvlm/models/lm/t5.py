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
computed once instead of once per candidate. Inputs sharing one candidate list (RIS, the
predictor) share one concatenated target, so there is no padding at all.

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
        """B piece lists -> inputs_embeds (B, S, D) in the input dtype, attention_mask (B, S)."""
        embed = self.model.encoder.embed_tokens
        device, dtype = embed.weight.device, self.numerics.input_dtype
        rows = []
        for pieces in batch:
            parts = []
            for piece in self.token_pieces(pieces, max_text_tokens):
                if isinstance(piece, list):
                    if piece:
                        parts.append(embed(torch.tensor(piece, device=device)).to(dtype))
                else:
                    parts.append(piece.to(device=device, dtype=dtype))
            parts.append(embed(torch.tensor([self.tokenizer.eos_token_id], device=device)).to(dtype))
            rows.append(torch.cat(parts, dim=0))
        if not rows:
            raise ValueError("no inputs to embed")
        length = max(row.shape[0] for row in rows)
        pad = embed(torch.tensor([self.tokenizer.pad_token_id], device=device)).to(dtype)
        inputs = pad.expand(len(rows), length, -1).clone()
        mask = torch.zeros((len(rows), length), dtype=torch.long, device=device)
        for i, row in enumerate(rows):
            inputs[i, : row.shape[0]] = row
            mask[i, : row.shape[0]] = 1
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
        (`encode`'s output; RIS encodes once and scores expression groups as they come)."""
        if reduction not in SCORE_REDUCTIONS:
            raise ValueError(f"reduction must be one of {SCORE_REDUCTIONS}, got {reduction!r}")
        rows = hidden.shape[0]
        table, shared = candidate_rows(candidates, rows)
        out = torch.empty((rows, len(table[0])), dtype=torch.float32, device=hidden.device)
        # inputs with the same candidate list share one concatenated target
        groups: dict[tuple[str, ...], list[int]] = {}
        for row, texts in enumerate(table):
            groups.setdefault(tuple(texts), []).append(row)
        for texts, members in groups.items():
            index = torch.tensor(members, device=hidden.device)
            out[index] = self._candidates_nll(hidden[index], atts[index], texts, reduction)
        return out

    def _candidates_nll(
        self, hidden: torch.Tensor, atts: torch.Tensor, texts: Sequence[str], reduction: str
    ) -> torch.Tensor:
        """(m, C) NLL of C candidate texts for m encoder rows, in groups of concatenated targets
        of at most `MAX_GROUP_TOKENS`, at most `token_budget` decoder tokens per call."""
        rows = hidden.shape[0]
        targets = self._targets(texts, hidden.device)
        out = torch.empty((rows, len(targets)), dtype=torch.float32, device=hidden.device)
        for group in _groups([len(t) for t in targets], MAX_GROUP_TOKENS):
            length = sum(len(targets[c]) for c in group)
            step = max(1, self.token_budget // length)
            for start in range(0, rows, step):
                chunk = slice(start, start + step)
                out[chunk, group[0] : group[-1] + 1] = self._group_nll(
                    hidden[chunk], atts[chunk], [targets[c] for c in group], reduction
                )
        return out

    def _group_nll(
        self, hidden: torch.Tensor, atts: torch.Tensor, targets: list[torch.Tensor], reduction: str
    ) -> torch.Tensor:
        """(m, G) NLL of G targets (each (T_g,) ids ending in `</s>`) for m encoder rows, in one
        decoder pass over their concatenation (T = sum of T_g) with a block-diagonal mask."""
        t5 = self.model
        device = hidden.device
        labels = torch.cat(targets)  # (T,)
        segment = torch.cat([torch.full((len(t),), g, device=device) for g, t in enumerate(targets)])
        start = torch.tensor([t5.config.decoder_start_token_id], device=device)
        decoder_ids = torch.cat([torch.cat([start, t[:-1]]) for t in targets])  # each target shifted right
        positions = torch.arange(len(labels), device=device)
        mask = (segment[:, None] == segment[None, :]) & (positions[None, :] <= positions[:, None])  # (T, T)
        rows = hidden.shape[0]
        with self.autocast():
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
        total = token_nll @ one_hot  # (m, G)
        return total if reduction == "sum" else total / one_hot.sum(0)

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
