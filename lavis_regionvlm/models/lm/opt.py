"""OPT behind the `RegionLM` interface: a decoder-only language model, the soft prompt and the
text in one sequence, the target after them.

Layout (as LAVIS's `blip2_opt`): `[Z; </s>; prompt; target; "\\n"]`. OPT's tokenizer opens
every text with its BOS `</s>`; LAVIS puts the tokenized text after the soft prompt, so the BOS
sits between them. In general the BOS goes after the input's leading soft prompts, before its
first text piece (at the end when it has no text): `[Z, "q"]` -> `[Z; </s>; q]`,
`["Let", Z3, "be the dog."]` -> `[</s>; Let; Z3; be the dog.]`. Each text piece is tokenized
on its own without special tokens. A target is its text followed by "\\n", tokenized on its
own (LAVIS trains `text + "\\n"` and stops generating at "\\n"); the loss and scores count the
target's tokens only, the "\\n" included; the soft prompt, BOS and prompt are masked (-100).

Scoring (`score`), the fast path every caller uses: the prefix (soft prompt + prompt) of each
input runs ONCE, left-padded, with the key/value cache on; its last position predicts every
candidate's first token, and the cache, expanded over the candidates, serves the candidates'
remaining tokens in one pass (rows = (input, candidate) pairs; at most `token_budget` positions,
pairs x (prefix + candidate tokens), per call: that bounds both the expanded cache and the logits). OPT's positions come from the attention mask (cumulative sum), so a
left-padded prefix continued from its cache gives each candidate token the same position as in
one unpadded pass.

Generation: the prefix enters as `inputs_embeds` on the first step (`OPTForRegionLM`), later
steps read the cache; Hugging Face's beam search, sampling and length penalty run unchanged on
the text tokens, and stop at "\\n", as LAVIS.

Shapes: B inputs, S prefix positions (left-padded), D OPT width, C candidates, T candidate
tokens, V vocabulary.
"""
from __future__ import annotations

from typing import Any, ContextManager, Sequence

import torch
import torch.nn.functional as F
from lavis.models.blip2_models.modeling_opt import OPTForCausalLM
from torch import nn

from lavis_regionvlm.models.lm.base import SCORE_REDUCTIONS, Candidates, Piece, RegionLM, candidate_rows
from lavis_regionvlm.models.t5_numerics import T5Numerics

# positions per scoring call, pairs x (prefix + longest candidate): bounds the memory of the cache
# expanded over the pairs (OPT-2.7b fp16: about 10 KB per position and layer) and of the logits
CANDIDATE_TOKEN_BUDGET = 4096
END_TEXT = "\n"  # the end of a target: LAVIS's `blip2_opt` trains `text + "\n"` and stops generating there

__all__ = ["OPTLM", "OPTForRegionLM", "opt_numerics", "CANDIDATE_TOKEN_BUDGET", "END_TEXT"]


class OPTForRegionLM(OPTForCausalLM):
    """LAVIS's `OPTForCausalLM` (same weights, same forward) whose generation starts from
    embeddings: `generate(input_ids=text_ids, attention_mask=..., prefix_embeds=E)`.

    On the first step the model reads `prefix_embeds` (B, S, D), the whole prefix, instead of
    `input_ids` (its text tokens only, as LAVIS's `input_ids` are the BOS and prompt while the
    soft prompt goes in `query_embeds`: what the length rules and repetition penalty count);
    beams and sampled sequences repeat each row. Later steps feed the last token with the
    cache. (LAVIS's own
    `prepare_inputs_for_generation` reads a `past` argument that transformers 4.26 no longer
    passes, so it re-runs the whole sequence at every step; this one uses the cache.)
    """

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.Tensor,
        past_key_values=None,
        attention_mask: torch.Tensor | None = None,
        use_cache: bool | None = None,
        prefix_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> dict:
        if prefix_embeds is None:  # LAVIS's own call (`query_embeds`): its behaviour, unchanged
            return super().prepare_inputs_for_generation(
                input_ids, attention_mask=attention_mask, use_cache=use_cache, past_key_values=past_key_values,
                **kwargs,
            )
        if past_key_values is not None:
            return {
                "input_ids": input_ids[:, -1:],
                "past_key_values": past_key_values,
                "attention_mask": attention_mask,
                "use_cache": use_cache,
            }
        repeats = input_ids.shape[0] // prefix_embeds.shape[0]
        return {
            "inputs_embeds": prefix_embeds.repeat_interleave(repeats, dim=0),
            "attention_mask": attention_mask,
            "use_cache": use_cache,
        }


def opt_numerics(device_type: str, weight_dtype: torch.dtype, cpu_autocast: bool = False) -> T5Numerics:
    """OPT's input dtype and autocast, as LAVIS's `blip2_opt` runs it.

    LAVIS concatenates the float32 soft prompt with OPT's fp16 token embeddings (`torch.cat`
    promotes to float32) and calls OPT under `maybe_autocast()`, fp16 autocast on a GPU: the
    residual stream is float32, the matmuls fp16. So: inputs_embeds float32; on CUDA, autocast
    to the weights' dtype when it is a half type; on CPU no autocast, or bfloat16 autocast with
    the model's `cpu_autocast`.
    """
    half = weight_dtype in (torch.float16, torch.bfloat16)
    if device_type == "cuda":
        autocast = weight_dtype if half else None
    elif device_type == "cpu" and cpu_autocast:
        autocast = torch.bfloat16
    elif half:
        raise RuntimeError(
            f"OPT's weights are {weight_dtype} and the model runs on {device_type} without autocast: "
            "set opt_precision: fp32 to run it there (or cpu_autocast: true on CPU)"
        )
    else:
        autocast = None
    return T5Numerics(torch.float32, device_type, autocast)


class OPTLM(RegionLM):
    """A view of an OPT (`OPTForRegionLM`) and its tokenizer as a `RegionLM`.

    Args:
        model: the OPT model.
        tokenizer: its tokenizer (OPT's `GPT2Tokenizer`, which adds the BOS `</s>`).
        numerics: its input dtype and autocast (`opt_numerics`).
        max_target_tokens: targets and candidates are cut at this many tokens ("\\n"
            included): the model's `max_txt_len`.
        token_budget: most positions, pairs x (prefix + longest candidate), per scoring call.
    """

    end_text = "</s>"

    default_token_budget = CANDIDATE_TOKEN_BUDGET

    def __init__(self, model: nn.Module, tokenizer: Any, numerics: T5Numerics, max_target_tokens: int,
                 token_budget: int | None = None):
        super().__init__(model, tokenizer, numerics, max_target_tokens, token_budget)
        self.end_token_id = self.text_tokens(END_TEXT)[0]

    @property
    def hidden_size(self) -> int:
        return self.model.config.word_embed_proj_dim

    # ------------------------------------------------------------------ lengths

    def text_tokens(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def special_tokens(self) -> int:
        return 1  # the BOS </s> before the first text

    def autocast(self) -> ContextManager:
        return self.numerics.autocast()

    # ------------------------------------------------------------------ inputs

    def _layout(self, pieces: Sequence[Piece], max_text_tokens: int | None) -> list:
        """Token pieces (`token_pieces`) with the BOS (a one-id list) after the leading soft
        prompts."""
        parts = self.token_pieces(pieces, max_text_tokens)
        first_text = next((i for i, p in enumerate(parts) if isinstance(p, list)), len(parts))
        return parts[:first_text] + [[self.tokenizer.bos_token_id]] + parts[first_text:]

    def _rows(
        self, batch: Sequence[Sequence[Piece]], max_text_tokens: int | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each input's embeddings (S_b, D) in the input dtype, and its text ids (the BOS and the
        text tokens, soft prompts left out: what LAVIS passes to `generate` as `input_ids`)."""
        embed = self.model.get_input_embeddings()
        device, dtype = embed.weight.device, self.numerics.input_dtype
        rows, ids = [], []
        for pieces in batch:
            parts, text_ids = [], []
            for piece in self._layout(pieces, max_text_tokens):
                if isinstance(piece, list):
                    if piece:
                        parts.append(embed(torch.tensor(piece, device=device)).to(dtype))
                        text_ids.extend(piece)
                else:
                    parts.append(piece.to(device=device, dtype=dtype))
            rows.append(torch.cat(parts, dim=0))
            ids.append(torch.tensor(text_ids, dtype=torch.long, device=device))
        if not rows:
            raise ValueError("no inputs to embed")
        return rows, ids

    def embed(
        self, batch: Sequence[Sequence[Piece]], max_text_tokens: int | None = None, padding_side: str = "right"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """B piece lists -> inputs_embeds (B, S, D) in the input dtype and attention_mask (B, S),
        padded on `padding_side` ("right", or "left" as generation and scoring need) with the pad
        token's embedding."""
        rows, _ = self._rows(batch, max_text_tokens)
        return self._pad(rows, padding_side)

    def _check_positions(self, length: int, what: str) -> None:
        """Refuse a sequence longer than OPT's learned position table (a limit T5 does not have)."""
        limit = self.model.config.max_position_embeddings
        if length > limit:
            raise ValueError(
                f"{what} needs {length} OPT positions, more than its max_position_embeddings ({limit}): "
                "shorten the text, or cut prompts with the model's max_prompt_tokens (chat: --max-input-tokens)"
            )

    def _pad(self, rows: list[torch.Tensor], padding_side: str) -> tuple[torch.Tensor, torch.Tensor]:
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        embed = self.model.get_input_embeddings()
        device = embed.weight.device
        pad_id = self.tokenizer.pad_token_id
        length = max(row.shape[0] for row in rows)
        pad = embed(torch.tensor([pad_id], device=device)).to(rows[0].dtype)
        inputs = pad.expand(len(rows), length, -1).clone()
        mask = torch.zeros((len(rows), length), dtype=torch.long, device=device)
        for i, row in enumerate(rows):
            span = slice(0, row.shape[0]) if padding_side == "right" else slice(length - row.shape[0], length)
            inputs[i, span] = row
            mask[i, span] = 1
        return inputs, mask

    def _targets(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's target ids: text + "\\n", no special tokens, cut at `max_target_tokens`."""
        return [self.text_tokens(text + END_TEXT)[: self.max_target_tokens] for text in texts]

    # ------------------------------------------------------------------ the calls

    def generate(
        self, batch: Sequence[Sequence[Piece]], max_text_tokens: int | None = None, **generate_kwargs: Any
    ) -> list[str]:
        """As `RegionLM.generate`, as LAVIS's `blip2_opt.generate`: the soft prompts enter as
        embeddings, `input_ids` are the BOS and text tokens (left-padded), so `min_length`,
        the beams' length normalisation and the repetition penalty count those tokens and the
        generated ones, as in LAVIS; generation stops at "\\n" (LAVIS's `eos_token_id`), which
        is removed."""
        with self.autocast():
            rows, ids = self._rows(batch, max_text_tokens)
            inputs_embeds, attention_mask = self._pad(rows, "left")
            self._check_positions(
                int(attention_mask.sum(1).max()) + int(generate_kwargs.get("max_new_tokens") or 0), "generation"
            )
            text_ids = torch.full(
                (len(ids), max(len(i) for i in ids)), self.tokenizer.pad_token_id, dtype=torch.long,
                device=attention_mask.device,
            )
            for row, row_ids in enumerate(ids):
                text_ids[row, text_ids.shape[1] - len(row_ids):] = row_ids
            outputs = self.model.generate(
                input_ids=text_ids,
                attention_mask=attention_mask,
                prefix_embeds=inputs_embeds,
                eos_token_id=self.end_token_id,
                pad_token_id=self.tokenizer.pad_token_id,
                **generate_kwargs,
            )
        return [self._decode(row) for row in outputs[:, text_ids.shape[1]:]]

    def _decode(self, ids: torch.Tensor) -> str:
        """Generated ids -> text, up to (without) the first "\\n", special tokens removed, stripped
        (as LAVIS's `blip2_opt` returns it: OPT's byte-level BPE starts a word with its space)."""
        ids = ids.tolist()
        if self.end_token_id in ids:
            ids = ids[: ids.index(self.end_token_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def prefix(
        self, batch: Sequence[Sequence[Piece]], max_text_tokens: int | None = None
    ) -> tuple[tuple, torch.Tensor, torch.Tensor]:
        """Run B inputs once, left-padded: their cache (per layer (key, value), each
        (B, heads, S, D/heads)), attention mask (B, S) and log-probabilities of the next token
        after each input (B, V), float32."""
        with self.autocast():
            inputs_embeds, mask = self.embed(batch, max_text_tokens, padding_side="left")
            self._check_positions(int(mask.sum(1).max()), "scoring")
            out = self.model.model.decoder(
                inputs_embeds=inputs_embeds, attention_mask=mask, use_cache=True, return_dict=True
            )
            last = self.model.lm_head(out.last_hidden_state[:, -1])
        return out.past_key_values, mask, F.log_softmax(last.float(), dim=-1)

    def score(
        self,
        batch: Sequence[Sequence[Piece]],
        candidates: Candidates,
        *,
        reduction: str = "mean",
        max_text_tokens: int | None = None,
    ) -> torch.Tensor:
        if reduction not in SCORE_REDUCTIONS:
            raise ValueError(f"reduction must be one of {SCORE_REDUCTIONS}, got {reduction!r}")
        table, _ = candidate_rows(candidates, len(batch))
        past, mask, first = self.prefix(batch, max_text_tokens)
        return self.score_prefixed(past, mask, first, table, reduction=reduction)

    def score_prefixed(
        self, past: tuple, mask: torch.Tensor, first: torch.Tensor, candidates: Candidates, *, reduction: str = "mean"
    ) -> torch.Tensor:
        """(B, C) float32 NLL of the candidates after B prefixes (`prefix`'s output; RIS runs
        the prefixes once and scores expression groups as they come)."""
        if reduction not in SCORE_REDUCTIONS:
            raise ValueError(f"reduction must be one of {SCORE_REDUCTIONS}, got {reduction!r}")
        rows = mask.shape[0]
        table, _ = candidate_rows(candidates, rows)
        count = len(table[0])
        device = mask.device
        ids: dict[str, list[int]] = {}
        for text in {t for row in table for t in row}:
            ids[text] = self._targets([text])[0]
        if any(not t for t in ids.values()):
            raise ValueError("max_txt_len leaves no room for a candidate token")
        pairs = [(b, c) for b in range(rows) for c in range(count)]
        out = torch.empty((rows, count), dtype=torch.float32, device=device)
        for b, c in pairs:  # the first token comes from the prefix's last position
            out[b, c] = -first[b, ids[table[b][c]][0]]
        self._check_positions(int(mask.sum(1).max()) + max(len(t) for t in ids.values()), "scoring")
        longest = max(len(t) for t in ids.values()) - 1  # tokens after the first
        step = max(1, self.token_budget // (mask.shape[1] + max(longest, 1)))
        for start in range(0, len(pairs) if longest else 0, step):
            chunk = pairs[start : start + step]
            tail = self._tails_nll(past, mask, chunk, [ids[table[b][c]] for b, c in chunk])
            for (b, c), value in zip(chunk, tail):
                out[b, c] += value
        if reduction == "mean":
            lengths = torch.tensor([[len(ids[t]) for t in row] for row in table], device=device)
            out = out / lengths
        return out

    def _tails_nll(
        self, past: tuple, mask: torch.Tensor, pairs: list[tuple[int, int]], targets: list[list[int]]
    ) -> torch.Tensor:
        """(P,) summed NLL of each target's tokens after the first, for P (input, candidate)
        pairs, in one pass continued from the inputs' cache (expanded over the pairs)."""
        device = mask.device
        index = torch.tensor([b for b, _ in pairs], device=device)
        length = max(len(t) for t in targets) - 1
        pad = self.tokenizer.pad_token_id
        inputs = torch.full((len(pairs), max(length, 1)), pad, dtype=torch.long, device=device)
        labels = torch.full_like(inputs, -100)
        tail_mask = torch.zeros_like(inputs)
        for row, target in enumerate(targets):
            n = len(target) - 1
            if n:
                inputs[row, :n] = torch.tensor(target[:-1], device=device)
                labels[row, :n] = torch.tensor(target[1:], device=device)
                tail_mask[row, :n] = 1
        cache = tuple(tuple(t.index_select(0, index) for t in layer) for layer in past)
        with self.autocast():
            hidden = self.model.model.decoder(
                input_ids=inputs,
                attention_mask=torch.cat([mask.index_select(0, index), tail_mask], dim=1),
                past_key_values=cache,
                use_cache=False,
                return_dict=True,
            ).last_hidden_state
            logits = self.model.lm_head(hidden)  # (P, T, V)
        nll = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), reduction="none", ignore_index=-100)
        return nll.view(len(pairs), -1).sum(dim=1)

    def loss(
        self, batch: Sequence[Sequence[Piece]], targets: Sequence[str], max_text_tokens: int | None = None
    ) -> torch.Tensor:
        """OPT's LM loss as LAVIS's `blip2_opt.forward`: the mean over every target token of the
        batch ("\\n" included), the soft prompt, BOS, prompt and padding masked with -100;
        right padding. Targets are cut at `max_target_tokens`."""
        if len(targets) != len(batch):
            raise ValueError(f"{len(targets)} targets for {len(batch)} inputs")
        embed = self.model.get_input_embeddings()
        device = embed.weight.device
        with self.autocast():
            prefixes, _ = self._rows(batch, max_text_tokens)
            rows, labels = [], []
            for prefix, target in zip(prefixes, self._targets(targets)):
                target_ids = torch.tensor(target, dtype=torch.long, device=device)
                rows.append(torch.cat([prefix, embed(target_ids).to(prefix.dtype)]) if target else prefix)
                labels.append(torch.cat([torch.full((prefix.shape[0],), -100, device=device), target_ids]))
            inputs_embeds, attention_mask = self._pad(rows, "right")
            self._check_positions(int(attention_mask.sum(1).max()), "the training input")
            label_table = torch.full(attention_mask.shape, -100, dtype=torch.long, device=device)
            for i, row in enumerate(labels):
                label_table[i, : row.shape[0]] = row
            outputs = self.model(
                inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=label_table, return_dict=True
            )
        return outputs.loss
