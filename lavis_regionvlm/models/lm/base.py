"""The language-model interface every region model exposes as `model.lm`.

A region model (`region_core.RegionBlip2`) turns an image and a region's point text into a
soft prompt: N vectors of the language model's width D (`model.encode_regions`). Everything
after that, whatever the language model is (FlanT5 encoder-decoder, OPT decoder-only), goes
through the four calls below, so the predictor, the chat, VCR, RIS, the LAVIS task API and
training never reach into `t5_model` / `opt_model` themselves.

An input is a list of *pieces*: text (`str`) or a soft prompt (an (N, D) tensor), e.g.
`[Z0, "what is it?"]` or `["Let", Z3, "be the dog. Why?"]`. Each text piece is tokenized on
its own, without special tokens; the language model adds its own start/end tokens (T5: one
closing `</s>`; OPT: a leading `</s>` BOS). B inputs are a batch.

One truncation rule (`embed(..., max_text_tokens=...)`): when an input's text tokens, counted
with the special tokens the LM adds, exceed `max_text_tokens`, text tokens are dropped from the
end of the last text (the special tokens stay); soft prompts are never cut. For one `[Z, text]`
input this is exactly the tokenizer's `truncation=True, max_length=max_text_tokens`. Training
(`loss`) uses the model's `max_txt_len` (as released); inference uses `max_prompt_tokens`
(None: no cut, as the released `predict_answers` and region QA).

Scores are mean token NLLs in nats over each candidate's target tokens (the end token
included), float32: lower is more likely.
"""
from __future__ import annotations

import abc
import copy
from typing import Any, ContextManager, Sequence, Union

import torch

Piece = Union[str, torch.Tensor]
Candidates = Union[Sequence[str], Sequence[Sequence[str]]]
SCORE_REDUCTIONS = ("mean", "sum")

__all__ = ["Piece", "Candidates", "SCORE_REDUCTIONS", "RegionLM", "check_pieces", "candidate_rows"]


class RegionLM(abc.ABC):
    """The frozen language model of a region model, seen through four calls.

    Attributes:
        hidden_size: D, the width of the soft prompt and token embeddings.
        end_text: the text the tokenizer reads as the end-of-text token (T5 and OPT: "</s>"),
            for layouts that close each turn with it (the released multi-turn chat).
        tokenizer: the LM's Hugging Face tokenizer; `text_tokens(text)` is
            `tokenizer(text, add_special_tokens=False).input_ids` (the demo counts request text
            with a private copy of it, off the model's lock).
        token_budget: how much one scoring pass of the LM may hold, bounding its memory (T5:
            rows x candidate tokens, the logits; OPT: pairs x (prefix + candidate) positions, the
            copied cache); None: the LM's own default. Set it with `with_token_budget`.
    """

    hidden_size: int
    end_text: str
    tokenizer: Any
    token_budget: int | None = None
    default_token_budget: int | None = None  # what `token_budget=None` means for this LM

    def __init__(self, model: Any, tokenizer: Any, numerics: Any, max_target_tokens: int,
                 token_budget: int | None = None):
        """A view of a Hugging Face language model.

        Args:
            model: the language model (T5 encoder-decoder, OPT causal LM, ...).
            tokenizer: its tokenizer.
            numerics: its input dtype and autocast (`t5_numerics.T5Numerics`).
            max_target_tokens: targets and candidates are cut at this many tokens (the end
                token included): the model's `max_txt_len`.
            token_budget: how much one scoring pass may hold (see the class docstring); None:
                the LM's `default_token_budget`.
        """
        self.model, self.tokenizer, self.numerics = model, tokenizer, numerics
        self.max_target_tokens = max_target_tokens
        self.token_budget = self.default_token_budget if token_budget is None else token_budget

    def with_token_budget(self, tokens: int | None) -> "RegionLM":
        """A copy of this view whose `score` holds at most `tokens` target tokens per pass
        (None: this view unchanged). Scores do not depend on it, only memory and speed."""
        if tokens is None:
            return self
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
            raise ValueError(f"the token budget must be a positive int, got {tokens!r}")
        view = copy.copy(self)
        view.token_budget = tokens
        return view

    # ------------------------------------------------------------------ lengths

    @abc.abstractmethod
    def text_tokens(self, text: str) -> list[int]:
        """Token ids of a text piece (no special tokens)."""

    @abc.abstractmethod
    def special_tokens(self) -> int:
        """How many special tokens `embed` adds to every input (T5: 1, the closing `</s>`)."""

    def count_tokens(self, pieces: Sequence[Piece]) -> int:
        """Sequence length of `embed([pieces])` without truncation: every piece plus the special
        tokens."""
        total = self.special_tokens()
        for piece in check_pieces(pieces):
            total += len(self.text_tokens(piece)) if isinstance(piece, str) else piece.shape[0]
        return total

    def token_pieces(self, pieces: Sequence[Piece], max_text_tokens: int | None = None) -> list:
        """`pieces` with each text as its token ids (a list), soft prompts unchanged, cut by the
        one truncation rule (module docstring): at most `max_text_tokens` text tokens counting
        the special tokens, dropped from the end of the last text first."""
        out = [self.text_tokens(p) if isinstance(p, str) else p for p in check_pieces(pieces)]
        if max_text_tokens is None:
            return out
        excess = sum(len(p) for p in out if isinstance(p, list)) - max(max_text_tokens - self.special_tokens(), 0)
        for index in range(len(out) - 1, -1, -1):
            if excess <= 0:
                break
            if isinstance(out[index], list):
                keep = max(len(out[index]) - excess, 0)
                excess -= len(out[index]) - keep
                out[index] = out[index][:keep]
        return out

    # ------------------------------------------------------------------ the four calls

    @abc.abstractmethod
    def autocast(self) -> ContextManager:
        """The precision context every call of this LM runs in (see `t5_numerics.py`)."""

    @abc.abstractmethod
    def embed(
        self, batch: Sequence[Sequence[Piece]], max_text_tokens: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """B piece lists -> inputs_embeds (B, S, D) and attention_mask (B, S) long, right-padded,
        in the LM's input dtype, truncated by the module's rule."""

    @abc.abstractmethod
    def generate(
        self, batch: Sequence[Sequence[Piece]], max_text_tokens: int | None = None, **generate_kwargs: Any
    ) -> list[str]:
        """Generate after each of B inputs: B * num_return_sequences strings, special tokens
        removed, as the stock model returns them (T5: as decoded; OPT: stripped, as LAVIS).
        generate_kwargs: Hugging Face `generate` keywords (num_beams, max_new_tokens, min_length,
        length_penalty, do_sample, top_p, temperature, ...)."""

    @abc.abstractmethod
    def score(
        self,
        batch: Sequence[Sequence[Piece]],
        candidates: Candidates,
        *,
        reduction: str = "mean",
        max_text_tokens: int | None = None,
    ) -> torch.Tensor:
        """(B, C) float32 NLL of each candidate text after each input.

        candidates: one list of C texts for every input, or B lists of C texts (one per input).
        reduction: "mean" token NLL (end token included) or "sum" (the sequence's NLL).
        Candidates are cut at the model's `max_txt_len` tokens, as training targets are.
        The input's expensive part runs once per input, not once per candidate.
        """

    @abc.abstractmethod
    def loss(
        self, batch: Sequence[Sequence[Piece]], targets: Sequence[str], max_text_tokens: int | None = None
    ) -> torch.Tensor:
        """Training loss (scalar): the LM loss of B targets after B inputs, as the model's
        `forward` defines it (the released recipe for T5: mean over all target tokens)."""


def check_pieces(pieces: Sequence[Piece]) -> Sequence[Piece]:
    """`pieces` if each is a str or an (N, D) tensor, else TypeError naming the bad one."""
    for index, piece in enumerate(pieces):
        if isinstance(piece, str) or (isinstance(piece, torch.Tensor) and piece.dim() == 2):
            continue
        shape = tuple(piece.shape) if isinstance(piece, torch.Tensor) else type(piece).__name__
        raise TypeError(f"piece {index} must be a str or an (N, D) soft prompt, got {shape}")
    return pieces


def candidate_rows(candidates: Candidates, rows: int) -> tuple[list[list[str]], bool]:
    """Candidates as `rows` lists of C texts, and whether every row has the same list.

    Raises ValueError on an empty list, a row count other than `rows`, or rows of different
    lengths; TypeError on a non-str candidate.
    """
    if isinstance(candidates, str):
        raise TypeError("candidates must be a list of texts (or one list per input), not a str")
    candidates = list(candidates)
    if not candidates:
        raise ValueError("no candidates to score")
    shared = all(isinstance(c, str) for c in candidates)
    table = [list(candidates)] * rows if shared else [list(row) for row in candidates]
    if len(table) != rows:
        raise ValueError(f"{len(table)} candidate lists for {rows} inputs")
    count = len(table[0])
    if count == 0 or any(len(row) != count for row in table):
        raise ValueError("every input needs the same, non-zero number of candidates")
    for row in table:
        for text in row:
            if not isinstance(text, str):
                raise TypeError(f"a candidate must be a str, got {type(text).__name__}")
    return table, shared
