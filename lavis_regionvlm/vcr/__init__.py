"""Zero-shot VCR (Visual Commonsense Reasoning) with RegionVLM.

- `data`: the released VCR files (`{split}.jsonl`, per-image metadata) -> `VcrExample`s, and
  one `Region` per referenced object (its polygon mask, or its box without one).
- `prompt`: T5 prompt layouts: text pieces interleaved with object slots.
- `embed`: pieces + soft prompts -> padded `inputs_embeds` and attention mask.
- `choose`: pick one of four choices by generation (first number parsed) or by LM ranking.
- `metrics`: Q->A, QA->R and Q->AR accuracies.
- `dataset`, `builder`: the `vcr` LAVIS dataset builder. The task is `zero_shot_vcr`.
"""
from lavis_regionvlm.vcr.data import VcrExample, load_examples, mention, object_region, render_tokens  # noqa: F401
from lavis_regionvlm.vcr.metrics import parse_choice, vcr_accuracies  # noqa: F401
