"""VCR annotations in the released format.

`{split}.jsonl`: one question a line with `question`, `answer_choices` (4), `rationale_choices`
(4), each a token list in which a token is a word or a LIST of 0-based object ids ([0], or
[9, 10] for "them"); `answer_label`, `rationale_label` (absent in the test split); `img_fn`,
`metadata_fn` (relative to the `vcr1images` root), `objects` (class names), `annot_id`.
Metadata JSON: `boxes` [[x1, y1, x2, y2, score]] in pixels, `segms` (per object a list of
polygons, each a list of [x, y] pixel pairs; may be empty), `width`, `height`.

Two ways to write a token list as text (`lavis_regionvlm.vcr.prompt` picks one):
- `join_tokens` (as released, `eval_VCR.py`): the tokens joined by single spaces, an id list
  printed as the list it is: ["Is", [1, 10], "ok", "?"] -> "Is [1, 10] ok ?".
- `render_tokens` (ours, `vcr_prompt: natural`): no space before punctuation, an id list as
  "[i]", "[i] and [j]", "[i], [j] and [k]": "Is [1] and [10] ok?".
Both keep the ORIGINAL VCR ids, with any number of digits.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from lavis_regionvlm.regions import PointTextSpec, Region, RegionError

Token = Union[str, Sequence[int]]

_SPACE_BEFORE_PUNCT = re.compile(r" +([.,?!;:])")


class VcrFormatError(ValueError):
    """A VCR line or metadata file that does not follow the released format."""


def mention(ids: Sequence[int]) -> str:
    """Text for an object-id token: [3] -> "[3]", [1, 12] -> "[1] and [12]"."""
    names = [f"[{int(i)}]" for i in ids]
    if not names:
        raise VcrFormatError("an object reference token holds no ids")
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def _is_ref(token: Any) -> bool:
    return isinstance(token, (list, tuple))


def join_tokens(tokens: Sequence[Token]) -> str:
    """A VCR token list as the released evaluation writes it: every token as `str` prints it
    (an id list as "[1, 10]"), joined by single spaces, nothing else changed.

    >>> join_tokens(["What", "is", [1, 10], "doing", "?"])
    'What is [1, 10] doing ?'
    """
    return " ".join("[" + ", ".join(str(int(i)) for i in t) + "]" if _is_ref(t) else str(t) for t in tokens)


def render_tokens(tokens: Sequence[Token]) -> str:
    """A VCR token list as text: id lists become mentions, no space before punctuation.

    >>> render_tokens(["What", "colour", "is", [12], "?"])
    'What colour is [12]?'
    """
    words = [mention(t) if _is_ref(t) else str(t) for t in tokens]
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(words)).strip()


def referenced_ids(*token_lists: Sequence[Token]) -> list[int]:
    """Sorted distinct object ids referenced anywhere in the token lists."""
    ids = set()
    for tokens in token_lists:
        for token in tokens:
            if _is_ref(token):
                for i in token:
                    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0:
                        raise VcrFormatError(f"object id {i!r} is not an int >= 0")
                    ids.add(int(i))
    return sorted(ids)


@dataclass(frozen=True)
class VcrExample:
    """One VCR question. Labels are None in the test split. `object_ids`: every object the
    question, answers or rationales refer to (sorted); `region_ids`: those and their digits
    (every object a prompt can name, under either object parser of `vcr.prompt`)."""

    annot_id: str
    img_fn: str
    metadata_fn: str
    question: list
    answer_choices: list
    rationale_choices: list
    answer_label: Optional[int] = None
    rationale_label: Optional[int] = None
    object_names: list = field(default_factory=list)

    @property
    def labeled(self) -> bool:
        return self.answer_label is not None and self.rationale_label is not None

    @property
    def object_ids(self) -> list[int]:
        return referenced_ids(self.question, *self.answer_choices, *self.rationale_choices)

    @property
    def region_ids(self) -> list[int]:
        ids = self.object_ids
        return sorted(set(ids) | {int(d) for i in ids for d in str(i)})

    @classmethod
    def from_json(cls, line: dict, where: str = "") -> "VcrExample":
        missing = [k for k in ("question", "answer_choices", "rationale_choices", "img_fn", "metadata_fn")
                   if k not in line]
        if missing:
            raise VcrFormatError(f"{where}: missing keys {missing}")
        for key in ("answer_choices", "rationale_choices"):
            if len(line[key]) != 4:
                raise VcrFormatError(f"{where}: {key} has {len(line[key])} choices, expected 4")
        annot_id = line.get("annot_id")
        if annot_id is None:
            raise VcrFormatError(f"{where}: no annot_id (needed to de-duplicate results)")
        labels = [line.get("answer_label"), line.get("rationale_label")]
        for name, value in zip(("answer_label", "rationale_label"), labels):
            if value is not None and value not in (0, 1, 2, 3):
                raise VcrFormatError(f"{where}: {name} = {value!r}, expected 0-3")
        return cls(
            annot_id=str(annot_id), img_fn=line["img_fn"], metadata_fn=line["metadata_fn"],
            question=line["question"], answer_choices=line["answer_choices"],
            rationale_choices=line["rationale_choices"], answer_label=labels[0],
            rationale_label=labels[1], object_names=list(line.get("objects", [])),
        )


def load_examples(path: Union[str, Path], limit: Optional[int] = None) -> list[VcrExample]:
    """Read `{split}.jsonl` (first `limit` lines when given)."""
    path = Path(path)
    examples = []
    with path.open() as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            examples.append(VcrExample.from_json(json.loads(line), f"{path}:{number}"))
            if limit is not None and len(examples) >= limit:
                break
    return examples


def object_region(metadata: dict, object_id: int) -> Region:
    """The object's region: the union of its `segms` polygons as a mask, or its box when it
    has no usable polygon (empty `segms`, degenerate polygons, an empty mask)."""
    boxes = metadata.get("boxes") or []
    if object_id >= len(boxes):
        raise VcrFormatError(f"object id {object_id} but the metadata has {len(boxes)} boxes")
    width, height = int(metadata["width"]), int(metadata["height"])
    segms = metadata.get("segms") or []
    polygons = segms[object_id] if object_id < len(segms) else []
    flat = [[float(v) for point in polygon for v in point] for polygon in polygons or []]
    flat = [p for p in flat if len(p) >= 6]
    if flat:
        try:
            return Region.from_polygons(flat, height, width)
        except RegionError:
            pass  # e.g. a polygon that rasterises to nothing: use the box
    x1, y1, x2, y2 = (float(v) for v in boxes[object_id][:4])
    x1, y1 = max(0.0, min(x1, width - 1.0)), max(0.0, min(y1, height - 1.0))
    x2, y2 = min(float(width), max(x2, x1 + 1.0)), min(float(height), max(y2, y1 + 1.0))
    return Region.from_box([x1, y1, x2, y2], image_size=(width, height))


def region_texts(regions: dict, annot_id: str, spec: PointTextSpec, seed: int = 0) -> dict:
    """{object id: point text} for one question's regions, each drawn from the stream
    (seed, annotation id as text, object index): the same points every run, on every rank."""
    return {i: spec.text(region, int(seed), str(annot_id), int(i)) for i, region in regions.items()}
