"""LM-loss scores of referring expressions given regions, at the compute floor and below it.

Cost per image with M = proposals x draws region rows and E expressions:
- the Q-Former runs once over the M rows, with the image's cross-attention keys/values
  computed once (`shared_image_query_outputs`);
- the language model scores every expression for every row in one `model.lm.score` call, the
  scorer every caller uses: its input part runs once per row and serves every expression (T5:
  the encoder once per row, then the decoder once per row for ALL expressions together,
  concatenated along the sequence with a block-diagonal causal mask; see `models/lm/t5.py`).
`naive_expression_nll` is the official script's loop (the whole model per pair), the reference
the fast path is tested and benchmarked against.

Scores are mean token NLLs (nats), the end token included: `model.score`'s definition.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch
from torch import nn

from lavis_regionvlm.models.qformer_cached import shared_image_query_outputs

__all__ = ["point_text_nll", "image_rows_nll", "region_rows_nll", "naive_expression_nll"]


def region_rows_nll(
    model: nn.Module,
    region_embeds: torch.Tensor,
    expressions: Sequence[str],
    token_budget: int | None = None,
) -> torch.Tensor:
    """Scores of E expressions after M soft prompts (M, N, D) with no prompt text: (M, E)
    float32, through `model.lm.score` (`token_budget`: most target tokens per LM pass, None
    the LM's default; memory only, not the scores)."""
    lm = model.lm.with_token_budget(token_budget)
    return lm.score([[z, ""] for z in region_embeds], list(expressions), max_text_tokens=model.max_prompt_tokens)


def point_text_nll(
    model: nn.Module,
    image_embeds: torch.Tensor,
    point_texts: Sequence[str],
    expressions: Sequence[str],
    token_budget: int | None = None,
    timings: dict[str, float] | None = None,
) -> torch.Tensor:
    """Scores of E expressions for M point-text regions of one image: (M, E) float32.

    image_embeds (1, L, C) from `model.encode_image`; M point texts. `timings`, when a dict,
    receives the seconds spent in each stage ("qformer": Q-Former and projection; "lm": the
    language model's scoring; the device is synchronised between stages): for benchmarks.
    """
    clock = _StageClock(timings, image_embeds.device)
    with model.qformer_precision():
        queries = shared_image_query_outputs(model, image_embeds, point_texts)
    region = model.lm_projection(queries)
    clock("qformer")
    out = region_rows_nll(model, region, expressions, token_budget)
    clock("lm")
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
    token_budget: int | None = None,
) -> torch.Tensor:
    """Scores of E expressions for M whole images with empty point text: (M, E) float32.

    The baselines' path (a red circle drawn on, or a crop of, the image): images (M, 3, S, S)
    are each encoded by the ViT.
    """
    region_embeds = model.encode_regions(model.encode_image(images), [""] * images.shape[0])
    return region_rows_nll(model, region_embeds, expressions, token_budget)


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
