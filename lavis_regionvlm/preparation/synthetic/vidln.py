"""Video Localized Narratives records, in the released JSONL schema (google/video-localized-narratives).

A "video" is FRAMES_PER_VIDEO consecutive scenes used as its keyframes. One record per
(video, annotator):
  {"vidln_id", "dataset_id", "video_id", "keyframe_names", "actor_narratives", "annotator_id"},
and per actor (every shape of every keyframe, then a final "Background" actor, as in the real
data where the last narrative describes the background):
  {"actor_name", "keyframe_selection_indices", "recording_start_time_ms_since_epoch",
   "traces_start_time_ms_since_epoch", "caption",
   "traces": [[{"x", "y", "time_ms_since_epoch", "kf_idx"}]],
   "noun_segments": [[start_char, end_char]],
   "time_alignment": [{"end_ms", "referenced_word", "referenced_word_end_idx",
                       "referenced_word_start_idx", "start_ms"}],
   "recording_filename"}.
start_ms/end_ms count from recording_start_time_ms_since_epoch; a trace point's absolute time is
time_ms_since_epoch; caption[referenced_word_start_idx:referenced_word_end_idx] == referenced_word.
Keyframe images: {frames_root}/{video_id}/{keyframe_name}.jpg.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .ln import location_phrase
from .narration import narration_trace, phrase_windows, timeline
from .scene import Scene

DATASET_ID = "synthetic_vidln"
FRAMES_PER_VIDEO = 3
MAX_VIDEOS = 4
_EPOCH_MS = 1_646_800_000_000  # recordings start around March 2022, like the released data
_BACKGROUND_CAPTION = "In the background, there is a plain light wall."


def video_id(index: int) -> str:
    """Id of the index-th synthetic video."""
    return f"synthetic_video_{index:04d}"


def keyframe_names(count: int) -> list[str]:
    """OVIS-style frame names of `count` keyframes, 7 frames apart."""
    return [f"img_{7 * k + 3:07d}" for k in range(count)]


def _alignment(caption: str, times: list[tuple[float, float]]) -> list[dict]:
    """time_alignment of the space-separated words of `caption` (punctuation excluded)."""
    entries, cursor = [], 0
    for word, (start, end) in zip(caption.split(" "), times):
        bare = word.rstrip(".,")
        entries.append({"end_ms": round(end * 1000), "referenced_word": bare,
                        "referenced_word_end_idx": cursor + len(bare),
                        "referenced_word_start_idx": cursor, "start_ms": round(start * 1000)})
        cursor += len(word) + 1
    return entries


def _noun_segments(caption: str, nouns: tuple[str, ...]) -> list[list[int]]:
    """[start, end) character spans of the words of `caption` listed in `nouns`."""
    spans, cursor = [], 0
    for word in caption.split(" "):
        bare = word.rstrip(".,")
        if bare in nouns:
            spans.append([cursor, cursor + len(bare)])
        cursor += len(word) + 1
    return spans


class Actor(NamedTuple):
    """What one actor narrative is about: its caption, nouns, and pixels on keyframe kf_idx."""

    name: str
    caption: str
    nouns: tuple[str, ...]
    mask: np.ndarray  # (H, W) bool
    kf_idx: int


def actors(scenes: list[Scene]) -> list[Actor]:
    """Every shape of every keyframe, then the background of keyframe 0."""
    found = [Actor(f"{s.colour} {s.kind}".capitalize(),
                   f"A {s.colour} {s.kind} is {location_phrase(s.position)}.", (s.kind,), s.mask, k)
             for k, scene in enumerate(scenes) for s in scene.shapes]
    background = ~np.logical_or.reduce([s.mask for s in scenes[0].shapes + scenes[0].dots])
    return found + [Actor("Background", _BACKGROUND_CAPTION, ("background", "wall"), background, 0)]


def actor_narrative(rng: np.random.Generator, actor: Actor, size: int, start_ms: int,
                    recording: str) -> dict:
    """One actor narrative: the trace scribbles inside the actor's mask on its keyframe while
    the whole caption is spoken. `size`: image side, pixels."""
    words = actor.caption.split(" ")
    times = timeline(rng, words, [0] * len(words), start_s=float(rng.uniform(0.6, 1.2)))
    samples = narration_trace(rng, [actor.mask], phrase_windows(times, [0] * len(words), 1), size)
    return {
        "actor_name": actor.name,
        "keyframe_selection_indices": [actor.kf_idx],
        "recording_start_time_ms_since_epoch": start_ms,
        "traces_start_time_ms_since_epoch": start_ms - int(rng.integers(200, 600)),
        "caption": actor.caption,
        "traces": [[{"x": round(float(x), 5), "y": round(float(y), 5),
                     "time_ms_since_epoch": start_ms + round(t * 1000), "kf_idx": actor.kf_idx}
                    for t, x, y in samples]],
        "noun_segments": _noun_segments(actor.caption, actor.nouns),
        "time_alignment": _alignment(actor.caption, times),
        "recording_filename": recording,
    }


def video_narrative(rng: np.random.Generator, vidln_id: int, scenes: list[Scene]) -> dict:
    """The VidLN record of one video whose keyframes are `scenes`; actors are recorded one
    after the other, 15-40 s apart."""
    start_ms = _EPOCH_MS + int(rng.integers(0, 10**9))
    narratives = []
    for i, actor in enumerate(actors(scenes)):
        recording = f"recordings/{DATASET_ID}/{vidln_id}_{i}.webm"
        narratives.append(actor_narrative(rng, actor, scenes[0].size, start_ms, recording))
        start_ms += int(rng.integers(15_000, 40_000))
    return {
        "vidln_id": vidln_id,
        "dataset_id": DATASET_ID,
        "video_id": video_id(vidln_id),
        "keyframe_names": keyframe_names(len(scenes)),
        "actor_narratives": narratives,
        "annotator_id": int(rng.integers(1, 200)),
    }
