"""Localized Narratives records -> (image, phrase, trace points) samples, grouped by record.

Image Localized Narratives (one JSON object per image x annotator):
  ``caption``, ``timed_caption`` [{``utterance``, ``start_time``, ``end_time``}] (seconds),
  ``traces`` [[{``x``, ``y``, ``t``}]] (relative x, y; t in seconds on the same clock),
  ``image_id``, ``dataset_id``.
Video Localized Narratives (one per video x annotator): ``video_id``, ``keyframe_names``,
  ``actor_narratives`` [{``caption``, ``noun_segments`` [[start, end], ...], ``time_alignment``
  [{``referenced_word``, ``start_ms``, ``end_ms``}], ``traces`` [[{``x``, ``y``,
  ``time_ms_since_epoch``, ``kf_idx``}]], ``recording_start_time_ms_since_epoch``}]; a trace
  point lies on keyframe ``kf_idx``.

As the released RegionVLM preprocessing does: the caption is split on periods, commas and
" and "; a phrase gets every trace point whose time lies inside (ends included) one of the
utterances that make it up; phrases without points are dropped; at most `MAX_STORED_POINTS`
points are kept per phrase, chosen by the released index rule (`index_rule`). Unlike the
released code, utterances are placed by walking the caption (character offsets, whole words),
a phrase that occurs twice stays two samples, and coordinates are clipped to [0, 1].

Video narratives have two modes (`VIDEO_MODES`):
  "subject" (as released, `generate_video_data_sentence.py`): the last actor narrative (the
    background) is dropped, and so is an actor whose first noun segment is "group"/"Group";
    the words up to and including the first "is" (or, when the caption has no " is ", up to
    the last word of the subject) are taken, the "is" (or that word) twice, as released; a word
    spans [origin + start_ms, origin + end_ms] where the origin is the FIRST TRACE POINT's time
    (not the recording start); the trace points inside, in trace order, are split by keyframe;
    each keyframe gives one sample whose text is the WHOLE caption.
  "phrases" (ours): every actor narrative is split into phrases like an image narrative, with
    word times measured from the recording start; a phrase gives one sample per keyframe its
    points fall on.

A record (what `parse_narrative` returns a list of) is what the released training draws one
sample from per epoch: an image narrative's phrases; in "subject" mode one (actor, keyframe)
sample; in "phrases" mode the samples of one actor narrative.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

MAX_STORED_POINTS = 20
VIDEO_MODES = ("subject", "phrases")
_DELIMITER = re.compile(r"\.|,| and ")


class Phrase(NamedTuple):
    """A piece of the caption: its stripped text and [start, end) character offsets."""

    text: str
    start: int
    end: int


class Utterance(NamedTuple):
    """A spoken word or words and their [start, end] time (the trace's clock and unit)."""

    text: str
    start: float
    end: float


class NarrativeSample(NamedTuple):
    """One training sample.

    fields: what names the image: ``image_id`` and ``dataset_id`` (image LN); ``video_id``,
        ``keyframe_name``, ``kf_idx`` and ``dataset_id`` (video LN). Formatted into the
        configured image file template.
    text: the phrase.
    points: (M, 2) float64 relative (x, y) in [0, 1], time order, 1 <= M <= MAX_STORED_POINTS.
    """

    fields: dict[str, Any]
    text: str
    points: np.ndarray


class RecordError(Exception):
    """A record (or actor narrative) that cannot be used; `kind` is a key of SKIP_KINDS."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


def split_phrases(caption: str) -> list[Phrase]:
    """Split on ".", "," and " and " (case-sensitive, as released); empty pieces are dropped."""
    phrases: list[Phrase] = []
    start = 0
    for cut in [*((m.start(), m.end()) for m in _DELIMITER.finditer(caption)), (len(caption), len(caption))]:
        piece = caption[start:cut[0]]
        text = piece.strip()
        if text:
            offset = start + len(piece) - len(piece.lstrip())
            phrases.append(Phrase(text, offset, offset + len(text)))
        start = cut[1]
    return phrases


def align_utterances(caption: str, texts: Sequence[str]) -> list[tuple[int, int] | None]:
    """[start, end) offsets of each utterance in `caption`, searched in order as whole words.

    Each utterance is looked for after the end of the last one found; None when it is not
    there (the cursor then stays where it was).
    """
    spans: list[tuple[int, int] | None] = []
    cursor = 0
    for raw in texts:
        text = raw.strip()
        found = None
        pos = caption.find(text, cursor) if text else -1
        while pos != -1:
            end = pos + len(text)
            before_ok = pos == 0 or not (caption[pos - 1].isalnum() and text[0].isalnum())
            after_ok = end == len(caption) or not (caption[end].isalnum() and text[-1].isalnum())
            if before_ok and after_ok:
                found = (pos, end)
                break
            pos = caption.find(text, pos + 1)
        spans.append(found)
        if found is not None:
            cursor = found[1]
    return spans


def phrase_masks(
    caption: str, utterances: Sequence[Utterance], times: np.ndarray, skips: Counter
) -> list[tuple[Phrase, np.ndarray]]:
    """Each phrase and the (T,) bool mask of the trace times inside its utterances.

    times: (T,) trace point times, the utterances' clock. Counts utterances not found in the
    caption. Raises RecordError("empty_caption") when the caption has no phrase.
    """
    phrases = split_phrases(caption)
    if not phrases:
        raise RecordError("empty_caption", repr(caption[:80]))
    spans = align_utterances(caption, [u.text for u in utterances])
    skips["utterance_not_in_caption"] += sum(span is None for span in spans)
    result = []
    for phrase in phrases:
        windows = np.array(
            [(u.start, u.end) for u, span in zip(utterances, spans)
             if span is not None and span[0] < phrase.end and span[1] > phrase.start],
            dtype=np.float64,
        ).reshape(-1, 2)
        inside = (times[:, None] >= windows[:, 0]) & (times[:, None] <= windows[:, 1])
        result.append((phrase, inside.any(axis=1)))
    return result


def index_rule(n: int, m: int) -> list[int]:
    """The released rule that picks `m` of `n` items: ``int((n - 1) / (m - 1) * (j - 1))`` for
    j = 1..m, in Python floats (so ``index_rule(54, 20)`` ends at 52, not 53). With n < m it
    repeats items (``index_rule(3, 20)`` is ten 0s, nine 1s and one 2); m = 1 gives [0].

    The released code uses it to store 20 points per phrase and to upsample fewer than K points.
    """
    if n < 1 or m < 1:
        raise ValueError(f"index_rule needs n >= 1 and m >= 1, got n={n}, m={m}")
    if m == 1:
        return [0]
    return [int((n - 1) / (m - 1) * (j - 1)) for j in range(1, m + 1)]


def subsample(points: np.ndarray, max_points: int = MAX_STORED_POINTS) -> np.ndarray:
    """(M, 2) -> at most `max_points` rows, chosen by `index_rule` when there are more."""
    if len(points) <= max_points:
        return points
    return points[index_rule(len(points), max_points)]


def trace_array(traces: Any, keys: Sequence[str], sort: bool = True) -> np.ndarray:
    """LN traces [[{key: number}]] -> (T, len(keys)) float64, sorted (stably) by keys[0]
    (`sort`; otherwise in trace order).

    Raises RecordError: "missing_keys", "bad_value" (not numbers, NaN, infinity, wrong
    nesting) or "empty_trace".
    """
    if not isinstance(traces, list) or not all(isinstance(seg, list) for seg in traces):
        raise RecordError("bad_value", "traces must be a list of lists of points")
    try:
        rows = [[point[k] for k in keys] for seg in traces for point in seg]
    except KeyError as exc:
        raise RecordError("missing_keys", f"trace point lacks {exc}") from None
    except TypeError:
        raise RecordError("bad_value", "a trace point is not an object") from None
    if not rows:
        raise RecordError("empty_trace")
    try:
        arr = np.array(rows)
    except ValueError:
        raise RecordError("bad_value", "a trace value is not a number") from None
    if arr.dtype.kind not in "iuf" or arr.ndim != 2:
        raise RecordError("bad_value", "a trace value is not a number")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise RecordError("bad_value", "a trace value is NaN or infinite")
    return arr[np.argsort(arr[:, 0], kind="stable")] if sort else arr


def parse_narrative(record: Any, skips: Counter, video_mode: str = "subject") -> list[list[NarrativeSample]]:
    """The records (lists of samples, see the module doc) of one image or video LN line (video
    when it has ``actor_narratives``); `video_mode` is one of `VIDEO_MODES`.

    Problems are counted in `skips` by kind; a record-level problem gives no sample.
    """
    if video_mode not in VIDEO_MODES:
        raise ValueError(f"video_mode must be one of {VIDEO_MODES}, got {video_mode!r}")
    if not isinstance(record, Mapping):
        skips["malformed_json"] += 1
        return []
    try:
        if "actor_narratives" in record:
            return _video_records(record, skips, video_mode)
        samples = _image_samples(record, skips)
        return [samples] if samples else []
    except RecordError as exc:
        skips[exc.kind] += 1
        return []


def _get(obj: Mapping, key: str, types: type | tuple[type, ...]) -> Any:
    if key not in obj:
        raise RecordError("missing_keys", key)
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, types):
        raise RecordError("bad_value", f"{key} is {type(value).__name__}")
    return value


def _utterances(entries: Any, text_key: str, start_key: str, end_key: str, offset: float) -> list[Utterance]:
    if not isinstance(entries, list):
        raise RecordError("bad_value", "the timed words must be a list")
    words = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise RecordError("bad_value", "a timed word is not an object")
        words.append(Utterance(
            _get(entry, text_key, str),
            offset + _get(entry, start_key, (int, float)),
            offset + _get(entry, end_key, (int, float)),
        ))
    return words


def _image_samples(record: Mapping, skips: Counter) -> list[NarrativeSample]:
    fields = {"image_id": str(_get(record, "image_id", (str, int))),
              "dataset_id": str(record.get("dataset_id", ""))}
    caption = _get(record, "caption", str)
    utterances = _utterances(_get(record, "timed_caption", list), "utterance", "start_time", "end_time", 0.0)
    trace = trace_array(_get(record, "traces", list), ("t", "x", "y"))
    samples = []
    for phrase, mask in phrase_masks(caption, utterances, trace[:, 0], skips):
        if not mask.any():
            skips["phrase_without_points"] += 1
            continue
        points = np.clip(trace[mask, 1:], 0.0, 1.0)
        samples.append(NarrativeSample(fields, phrase.text, subsample(points)))
    return samples


def _video_records(record: Mapping, skips: Counter, video_mode: str) -> list[list[NarrativeSample]]:
    video_id = str(_get(record, "video_id", (str, int)))
    keyframes = _get(record, "keyframe_names", list)
    if not all(isinstance(name, str) for name in keyframes):
        raise RecordError("bad_value", "keyframe_names must be strings")
    dataset_id = str(record.get("dataset_id", ""))
    actors = _get(record, "actor_narratives", list)
    if video_mode == "subject":
        actors = actors[:-1]  # as released: the last narrative (the background) is not used
    actor_records = _subject_records if video_mode == "subject" else _phrase_records
    records = []
    for actor in actors:
        try:
            if not isinstance(actor, Mapping):
                raise RecordError("bad_value", "an actor narrative is not an object")
            records += actor_records(actor, video_id, keyframes, dataset_id, skips)
        except RecordError as exc:  # one bad actor narrative does not spoil the others
            skips[exc.kind] += 1
    return records


def _keyframe_trace(actor: Mapping, keyframes: list[str], skips: Counter, sort: bool) -> tuple[np.ndarray, np.ndarray]:
    """(T, 4) trace rows (time_ms, x, y, kf_idx) and the (T,) mask of valid keyframe indices."""
    trace = trace_array(_get(actor, "traces", list), ("time_ms_since_epoch", "x", "y", "kf_idx"), sort=sort)
    kf = trace[:, 3]
    valid = (kf == np.round(kf)) & (kf >= 0) & (kf < len(keyframes))
    if not valid.all():
        skips["bad_keyframe_index"] += 1
    return trace, valid


def _fields(video_id: str, keyframes: list[str], k: int, dataset_id: str) -> dict[str, Any]:
    return {"video_id": video_id, "keyframe_name": keyframes[k], "kf_idx": k, "dataset_id": dataset_id}


def subject_words(caption: str, noun_segments: Any, words: Sequence[str]) -> list[int]:
    """Indices into `words` (the time alignment's words) whose points a "subject" sample takes.

    As released: the words up to and including the first "is" when the caption contains " is ",
    otherwise up to the first word equal to the subject's last word; that last word is listed
    twice (its points are taken twice). Without such a word, all words (each once).
    Raises RecordError("group_subject") when the subject (first noun segment) is "group"/"Group".
    """
    if (not isinstance(noun_segments, list) or not noun_segments or not isinstance(noun_segments[0], list)
            or len(noun_segments[0]) != 2 or not all(_is_int(v) for v in noun_segments[0])):
        raise RecordError("bad_value", "noun_segments must start with a [start, end] pair")
    start, end = noun_segments[0]
    subject = caption[start:end]
    if subject in ("group", "Group"):
        raise RecordError("group_subject", repr(caption[:80]))
    last = "is" if " is " in caption else subject.split(" ")[-1]
    for i, word in enumerate(words):
        if word == last:
            return [*range(i + 1), i]
    return list(range(len(words)))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _subject_records(actor: Mapping, video_id: str, keyframes: list[str], dataset_id: str,
                     skips: Counter) -> list[list[NarrativeSample]]:
    caption = _get(actor, "caption", str)
    alignment = _utterances(_get(actor, "time_alignment", list), "referenced_word", "start_ms", "end_ms", 0.0)
    chosen = subject_words(caption, _get(actor, "noun_segments", list), [u.text for u in alignment])
    trace, valid = _keyframe_trace(actor, keyframes, skips, sort=False)
    origin = trace[0, 0]  # as released: the first trace point, not the recording start
    rows = np.concatenate([np.flatnonzero((trace[:, 0] >= origin + alignment[i].start)
                                          & (trace[:, 0] <= origin + alignment[i].end) & valid)
                           for i in chosen]) if chosen else np.zeros(0, np.int64)
    if len(rows) == 0:
        skips["phrase_without_points"] += 1
        return []
    kf = trace[rows, 3].astype(np.int64)
    records = []
    for k in dict.fromkeys(kf.tolist()):  # keyframes in the order their first point comes
        points = np.clip(trace[rows[kf == k], 1:3], 0.0, 1.0)
        records.append([NarrativeSample(_fields(video_id, keyframes, k, dataset_id), caption, subsample(points))])
    return records


def _phrase_records(actor: Mapping, video_id: str, keyframes: list[str], dataset_id: str,
                    skips: Counter) -> list[list[NarrativeSample]]:
    caption = _get(actor, "caption", str)
    start = _get(actor, "recording_start_time_ms_since_epoch", (int, float))
    utterances = _utterances(_get(actor, "time_alignment", list), "referenced_word", "start_ms", "end_ms", start)
    trace, valid = _keyframe_trace(actor, keyframes, skips, sort=True)
    kf = trace[:, 3]
    samples = []
    for phrase, mask in phrase_masks(caption, utterances, trace[:, 0], skips):
        mask &= valid
        if not mask.any():
            skips["phrase_without_points"] += 1
            continue
        for k in np.unique(kf[mask]).astype(np.int64).tolist():
            points = np.clip(trace[mask & (kf == k), 1:3], 0.0, 1.0)
            samples.append(NarrativeSample(_fields(video_id, keyframes, k, dataset_id), phrase.text, subsample(points)))
    return [samples] if samples else []
