"""Localized Narratives records (image version), in the released JSONL schema.

One record per (image, annotator):
  {"dataset_id", "image_id" (str), "annotator_id" (int), "caption",
   "timed_caption": [{"utterance", "start_time", "end_time"}] (seconds),
   "traces": [[{"x", "y", "t"}]] (relative x, y; t in seconds, same clock),
   "voice_recording"}.
The caption names every shape in turn: "A red circle at the top left, a green square in the
center, and a blue triangle at the bottom." Utterances are the caption's space-separated words
(punctuation attached) with "at the"/"on the"/"in the" sometimes spoken as one utterance, so
" ".join(utterances) == caption. While a shape's phrase is spoken the trace scribbles inside
that shape; it crosses the image between phrases. The trace has one segment per phrase.
"""

from __future__ import annotations

import numpy as np

from .narration import narration_trace, phrase_windows, timeline
from .scene import Scene, Shape

DATASET_ID = "synthetic_ln"
SECOND_ANNOTATOR_P = 0.15  # fraction of images narrated by a second annotator
_PREPOSITION = {"left": "on the", "right": "on the", "center": "in the"}


def location_phrase(position: str) -> str:
    """"at the top left", "on the left", "in the center", ... for a position word."""
    return f"{_PREPOSITION.get(position, 'at the')} {position}"


def shape_phrase(shape: Shape) -> str:
    """"a red circle at the top left": what the narrator says about one shape."""
    return f"a {shape.colour} {shape.kind} {location_phrase(shape.position)}"


def caption_words(phrases: list[str]) -> tuple[list[str], list[int | None]]:
    """Words of "P0, P1, and P2." (first letter capitalised) and the phrase each belongs to
    (None for the connector "and")."""
    words: list[str] = []
    owners: list[int | None] = []
    for i, phrase in enumerate(phrases):
        if i > 0 and i == len(phrases) - 1:
            words.append("and")
            owners.append(None)
        tokens = phrase.split()
        tokens[-1] += "." if i == len(phrases) - 1 else ","
        words += tokens
        owners += [i] * len(tokens)
    words[0] = words[0].capitalize()
    return words, owners


def group_utterances(rng: np.random.Generator, words: list[str],
                     owners: list[int | None]) -> tuple[list[str], list[int | None]]:
    """Merge "at"/"on"/"in" with the following "the" into one utterance half of the time."""
    utterances: list[str] = []
    utt_owners: list[int | None] = []
    i = 0
    while i < len(words):
        pair = i + 1 < len(words) and words[i] in ("at", "on", "in") and words[i + 1] == "the"
        if pair and rng.random() < 0.5:
            utterances.append(f"{words[i]} the")
            i += 1
        else:
            utterances.append(words[i])
        utt_owners.append(owners[i])
        i += 1
    return utterances, utt_owners


def _trace_segments(samples: np.ndarray, windows: list[tuple[float, float]]) -> list[list[dict]]:
    """Split (N, 3) [t, x, y] samples after each phrase window into LN trace dicts."""
    cuts = np.searchsorted(samples[:, 0], [w[1] for w in windows[:-1]], side="right")
    return [[{"x": round(float(x), 4), "y": round(float(y), 4), "t": round(float(t), 3)}
             for t, x, y in part] for part in np.split(samples, cuts)]


def narrative(rng: np.random.Generator, scene: Scene, annotator_id: int, split: str) -> dict:
    """One LN record of `scene` by one annotator, who names the shapes in a random order."""
    shapes = [scene.shapes[i] for i in rng.permutation(len(scene.shapes))]
    words, owners = caption_words([shape_phrase(s) for s in shapes])
    utterances, utt_owners = group_utterances(rng, words, owners)
    times = timeline(rng, utterances, utt_owners, start_s=float(rng.uniform(0.6, 1.2)))
    windows = phrase_windows(times, utt_owners, len(shapes))
    samples = narration_trace(rng, [s.mask for s in shapes], windows, scene.size)
    return {
        "dataset_id": DATASET_ID,
        "image_id": str(scene.image_id),
        "annotator_id": annotator_id,
        "caption": " ".join(words),
        "timed_caption": [{"utterance": u, "start_time": s, "end_time": e}
                          for u, (s, e) in zip(utterances, times)],
        "traces": _trace_segments(samples, windows),
        "voice_recording": f"{DATASET_ID}_{split}/{DATASET_ID}_{split}_{scene.image_id}_{annotator_id}.ogg",
    }


def image_narratives(rng: np.random.Generator, scene: Scene, split: str) -> list[dict]:
    """1 record, or 2 (distinct annotators) for SECOND_ANNOTATOR_P of the images."""
    count = 2 if rng.random() < SECOND_ANNOTATOR_P else 1
    annotators = rng.choice(np.arange(1, 200), count, replace=False)
    return [narrative(rng, scene, int(a), split) for a in annotators]
