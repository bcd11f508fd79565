"""Zero-shot VCR (Visual Commonsense Reasoning) with RegionVLM.

- `data`: the released VCR files (`{split}.jsonl`, per-image metadata) -> `VcrExample`s, and
  one `Region` per referenced object (its polygon mask, or its box without one).
- `prompt`: the prompts: text pieces interleaved with object slots; by default the released
  evaluation's prompts (one fix: `[12]` is object 12), other layouts as options.
- `embed`: object slots -> soft prompts: the language model's input pieces (`model.lm`).
- `choose`: pick one of four choices by generation (as released: 5 beams, 30 new tokens, the
  first number parsed, none = choice 1) or by LM ranking.
- `metrics`: Q->A, QA->R and Q->AR accuracies.
- `dataset`: the `vcr` LAVIS dataset; its builder is `lavis_regionvlm.datasets.vcr_builder`.
  The task is `zero_shot_vcr`.
"""
from lavis_regionvlm.vcr.data import (  # noqa: F401
    VcrExample, join_tokens, load_examples, mention, object_region, render_tokens,
)
from lavis_regionvlm.vcr.metrics import parse_choice, vcr_accuracies  # noqa: F401
