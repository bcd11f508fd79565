"""VCR records and per-image metadata, in the released schema.

{split}.jsonl lines: {"movie", "objects", "img_fn", "metadata_fn", "question",
"answer_choices" (4), "rationale_choices" (4), "answer_label", "rationale_label", "img_id",
"question_number", "annot_id"}; test lines have no labels. Token lists hold words and object
references, a reference being a LIST of 0-based object ids ([0], or [9, 10] for "them").
Objects are the scene's shapes ("circle", ...) then, in a crowded scene, its dots ("dot").
Metadata {img_fn without .jpg}.json: {"boxes": [[x1, y1, x2, y2, score]] (x2, y2 exclusive
pixel edges), "segms": per object a list of polygons, each a list of [x, y] pairs (EMPTY for
dots: a loader must fall back to the box), "names", "width", "height"}.
Questions: "What colour is [i] ?", four colours to choose from, rationale "[i] looks red .";
a crowded scene adds one about its last dot (an id >= 10) and one about two dots at once.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .scene import DOT_COLOUR, PALETTE, Scene, Shape

IMAGE_DIR = "synthetic"
COLOURS = (*PALETTE, DOT_COLOUR)


def image_name(image_id: int) -> str:
    """VCR img_fn of an image, relative to the vcr1images root."""
    return f"{IMAGE_DIR}/{image_id:012d}.jpg"


def objects(scene: Scene) -> list[Shape]:
    """The scene's objects in VCR id order: shapes, then dots."""
    return [*scene.shapes, *scene.dots]


def metadata(scene: Scene, rng: np.random.Generator) -> dict:
    """Per-image metadata: boxes with a detector-like score, polygon segms, names, size."""
    boxes, segms = [], []
    for obj in objects(scene):
        x, y, w, h = obj.box
        boxes.append([float(x), float(y), float(x + w), float(y + h), round(float(rng.uniform(0.9, 1.0)), 4)])
        outline = [[round(float(px), 2), round(float(py), 2)] for px, py in obj.polygon]
        segms.append([] if obj.kind == "dot" else [outline])
    return {"boxes": boxes, "segms": segms, "names": [o.kind for o in objects(scene)],
            "width": scene.size, "height": scene.size}


def _choices(rng: np.random.Generator, truth: str,
             template: Callable[[str], list]) -> tuple[list[list], int]:
    """4 token lists template(colour) for the true colour and 3 others, shuffled, and the
    index of the true one."""
    others = rng.permutation([c for c in COLOURS if c != truth])[:3]
    colours = [truth, *map(str, others)]
    order = rng.permutation(4)
    return [template(colours[k]) for k in order], int(np.argmax(order == 0))


def question(rng: np.random.Generator, ref: list[int], colour: str) -> dict:
    """Question/answers/rationales (with labels) about the colour of the objects in `ref`."""
    verb, look = ("is", "looks") if len(ref) == 1 else ("are", "look")
    answers, answer_label = _choices(rng, colour, lambda c: [ref, verb, c, "."])
    rationales, rationale_label = _choices(rng, colour, lambda c: [ref, look, c, "."])
    return {"question": ["What", "colour", verb, ref, "?"], "answer_choices": answers,
            "rationale_choices": rationales, "answer_label": answer_label,
            "rationale_label": rationale_label}


def image_questions(rng: np.random.Generator, scene: Scene) -> list[dict]:
    """One question per shape; a crowded scene adds [last dot] and [first dot, second dot]."""
    items = [question(rng, [i], s.colour) for i, s in enumerate(scene.shapes)]
    if scene.dots:
        last = len(objects(scene)) - 1
        first_dot = len(scene.shapes)
        items.append(question(rng, [last], DOT_COLOUR))
        items.append(question(rng, [first_dot, first_dot + 1], DOT_COLOUR))
    return items


def records(rng: np.random.Generator, scenes: list[Scene], split: str) -> list[dict]:
    """All VCR lines of one split; labels are dropped for "test"."""
    lines = []
    for image_index, scene in enumerate(scenes):
        fn = image_name(scene.image_id)
        for number, item in enumerate(image_questions(rng, scene)):
            if split == "test":
                item = {k: v for k, v in item.items() if not k.endswith("_label")}
            lines.append({"movie": IMAGE_DIR, "objects": [o.kind for o in objects(scene)],
                          "img_fn": fn, "metadata_fn": fn[:-4] + ".json", **item,
                          "img_id": f"{split}-{image_index}", "question_number": number,
                          "annot_id": f"{split}-{len(lines)}"})
    return lines
