"""Choose one of four candidates from a T5 encoder input.

- `generate` (as released): beam search, 5 beams and at most 30 new tokens by default, the
  first number of the output is the choice (`metrics.parse_choice`: an output without a
  number is choice 1 by default; a number other than 1-4 is invalid, -1, counted wrong).
- `rank`: the encoder runs once per prompt; the decoder scores each candidate text (the
  `rank_target` template filled with the choice) by its LM loss; the lowest wins. Never
  invalid.
"""
from __future__ import annotations

from typing import Sequence

import torch

from lavis_regionvlm.vcr.metrics import parse_choice

RANK_SCORES = ("mean", "sum")


@torch.no_grad()
def generate_choices(model, inputs_embeds, attention_mask, num_beams: int = 5, max_new_tokens: int = 30,
                     min_length: int = 1, no_number: str = "choice1") -> tuple[list[int], list[str]]:
    """(B choices 0-3 or -1, B generated texts).

    The defaults are the released evaluation's `generate` call: greedy beam search (no
    sampling) with 5 beams, at most 30 new tokens, min_length 1, length and repetition
    penalties 1, one sequence per prompt. `no_number`: see `metrics.parse_choice`.
    """
    with model.t5_autocast():
        outputs = model.t5_model.generate(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, do_sample=False,
            num_beams=num_beams, max_new_tokens=max_new_tokens, min_length=min_length,
            repetition_penalty=1.0, length_penalty=1.0, num_return_sequences=1,
        )
    texts = model.t5_tokenizer.batch_decode(outputs, skip_special_tokens=True)
    return [parse_choice(t, no_number=no_number) for t in texts], texts


@torch.no_grad()
def rank_choices(model, inputs_embeds, attention_mask, candidates: Sequence[Sequence[str]],
                 score: str = "mean") -> tuple[list[int], torch.Tensor]:
    """(B choices, (B, C) scores): per row, the candidate with the lowest LM loss.

    score: "mean" token NLL (what `decoder_nll` returns, `</s>` included) or "sum" (the
    sequence's negative log-likelihood).
    """
    if score not in RANK_SCORES:
        raise ValueError(f"rank_score must be one of {RANK_SCORES}, got {score!r}")
    rows, count = len(candidates), len(candidates[0])
    if any(len(c) != count for c in candidates):
        raise ValueError("every row needs the same number of candidates")
    flat = [c for row in candidates for c in row]
    with model.t5_autocast():
        hidden = model.t5_model.encoder(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, return_dict=True
        ).last_hidden_state
        nll = model.decoder_nll(
            hidden.repeat_interleave(count, dim=0), attention_mask.repeat_interleave(count, dim=0), flat
        )
    if score == "sum":
        lengths = model.t5_tokenizer(flat, truncation=True, max_length=model.max_txt_len,
                                     return_length=True).length
        nll = nll * torch.tensor(lengths, dtype=nll.dtype, device=nll.device)
    scores = nll.float().view(rows, count).cpu()
    return scores.argmin(dim=1).tolist(), scores
