"""The referring expression as the RIS evaluation scores it.

The released `eval_RIS.py` scores `text_processors['train'](sentence)`: LAVIS's `blip_caption`
processor with its defaults (no prompt, at most 50 words), which lowercases, turns
`. ! " ( ) * # : ; ~` into spaces, collapses runs of whitespace and strips the ends:
"The dog." -> "the dog". The RIS task reads its expressions through the same processor
(`text_processor: blip_caption` in the RIS dataset YAMLs); every single-image segment path
(`ris.segment.segment`, so `python -m lavis_regionvlm.ris.segment`, `regionvlm segment`,
`RegionPredictor.segment` and the demo's `/segment`) calls `ris_expression`.
"""
from __future__ import annotations

from lavis.processors.blip_processors import BlipCaptionProcessor

__all__ = ["ris_expression"]

_PROCESSOR = BlipCaptionProcessor()  # prompt "", max_words 50: the released defaults


def ris_expression(expression: str) -> str:
    """`expression` as the RIS evaluation scores it (module docstring): "The dog." -> "the dog".

    Raises:
        TypeError: `expression` is not a str.
        ValueError: nothing is left of it (empty, or only punctuation and spaces).
    """
    if not isinstance(expression, str):
        raise TypeError(f"the expression must be a str, got {type(expression).__name__}")
    processed = _PROCESSOR(expression)
    if not processed:
        raise ValueError(f"the expression {expression!r:.80} has no words (once lowercased and stripped of "
                         "punctuation as the RIS evaluation does); write what to segment")
    return processed
