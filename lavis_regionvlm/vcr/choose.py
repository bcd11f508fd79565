"""Choose one of four candidates after a language-model input (text and soft-prompt pieces).

- `generate` (as released): beam search, 5 beams and at most 30 new tokens by default, the
  first number of the output is the choice (`metrics.parse_choice`: an output without a
  number is choice 1 by default; a number other than 1-4 is invalid, -1, counted wrong).
- `rank`: `model.lm.score`, the one scorer (the input part runs once per prompt, every
  candidate text, the `rank_target` template filled with the choice, scored by its LM loss);
  the lowest wins. Never invalid.

Both cut the prompts at `max_text_tokens` text tokens (`models/lm/base.py`; None: no cut).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from lavis_regionvlm.vcr.metrics import parse_choice

RANK_SCORES = ("mean", "sum")


@torch.no_grad()
def generate_choices(model, inputs: Sequence[Sequence], num_beams: int = 5, max_new_tokens: int = 30,
                     min_length: int = 1, no_number: str = "choice1",
                     max_text_tokens: Optional[int] = None) -> tuple[list[int], list[str]]:
    """(B choices 0-3 or -1, B generated texts) for B piece lists (`embed.interleaved_pieces`).

    The defaults are the released evaluation's `generate` call: greedy beam search (no
    sampling) with 5 beams, at most 30 new tokens, min_length 1, length and repetition
    penalties 1, one sequence per prompt. `no_number`: see `metrics.parse_choice`.
    """
    texts = model.lm.generate(
        inputs, max_text_tokens, do_sample=False, num_beams=num_beams, max_new_tokens=max_new_tokens,
        min_length=min_length, repetition_penalty=1.0, length_penalty=1.0, num_return_sequences=1,
    )
    return [parse_choice(t, no_number=no_number) for t in texts], texts


@torch.no_grad()
def rank_choices(model, inputs: Sequence[Sequence], candidates: Sequence[Sequence[str]], score: str = "mean",
                 max_text_tokens: Optional[int] = None) -> tuple[list[int], torch.Tensor]:
    """(B choices, (B, C) scores on CPU): per row, the candidate with the lowest LM loss.

    inputs: B piece lists; candidates: B lists of C texts. score: "mean" token NLL (`</s>`
    included) or "sum" (the sequence's negative log-likelihood).
    """
    if score not in RANK_SCORES:
        raise ValueError(f"rank_score must be one of {RANK_SCORES}, got {score!r}")
    scores = model.lm.score(inputs, [list(row) for row in candidates], reduction=score,
                            max_text_tokens=max_text_tokens).float().cpu()
    return scores.argmin(dim=1).tolist(), scores
