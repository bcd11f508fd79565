"""Counts of skipped data, by kind: bad data never stops a run and is never silent."""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

# What each kind means and what is dropped. Prepare-time kinds are counted by
# `lavis_regionvlm.preparation.prepare_ln`; the rest by the datasets while they build or load.
SKIP_KINDS: dict[str, str] = {
    "malformed_json": "a line that is not a JSON object (the line is skipped)",
    "missing_keys": "a required key is absent (the record, actor narrative or region is skipped)",
    "bad_value": "a value of the wrong type, or a NaN/infinite coordinate (the record, actor or region is skipped)",
    "empty_trace": "a narrative without a single trace point (skipped)",
    "empty_caption": "a narrative whose caption splits into no phrase (skipped)",
    "utterance_not_in_caption": "an utterance that is not found in the caption, in order (that utterance is skipped)",
    "bad_keyframe_index": "an actor narrative with trace points whose kf_idx names no keyframe (those points are skipped)",
    "group_subject": "a video actor narrative whose subject is \"group\" (dropped in video_mode subject, as released)",
    "phrase_without_points": "a phrase during whose words no trace point was recorded (the phrase is dropped)",
    "missing_image": "a sample whose image file does not exist (the sample is dropped)",
    "corrupt_image": "an image that fails to decode while loading (another sample is used instead)",
    "missing_image_data": "a Visual Genome region whose image is not in image_data.json (skipped)",
    "bad_box": "a Visual Genome box with no area inside the image (skipped)",
    "box_too_large": "a Visual Genome box over the configured share of the image (skipped, as in the paper)",
    "empty_text": "a region phrase or caption that is empty (skipped)",
    "incomplete_sample": "a webdataset sample without an image or without a caption member (.txt or .json) (skipped)",
    "bad_caption": "a webdataset .txt that is empty or not UTF-8, or a .json (no .txt) that is unreadable or has no 'caption' string (another sample is used)",
}


def format_counts(counts: Mapping[str, int]) -> str:
    """``"kind=n, kind=n"`` for the non-zero counts, sorted by kind; ``"none"`` when there are none."""
    items = sorted((kind, n) for kind, n in counts.items() if n)
    return ", ".join(f"{kind}={n}" for kind, n in items) if items else "none"


def merge_counts(*counts: Mapping[str, int]) -> Counter:
    """Sum of several count mappings."""
    total: Counter = Counter()
    for part in counts:
        total.update(part)
    return total
