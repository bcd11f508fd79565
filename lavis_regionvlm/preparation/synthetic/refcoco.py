"""RefCOCO in the REFER layout: refs(unc).p and instances.json.

refs(unc).p: pickled list of {"sent_ids", "file_name", "ann_id", "ref_id", "image_id", "split",
"sentences": [{"tokens", "raw", "sent_id", "sent"}], "category_id"}; one ref per shape with
1-3 expressions. All refs of an image share its split: train scenes -> "train", held-out scenes
-> "val", "testA", "testB" in turn. As in the real file, a ref's file_name carries an extra
suffix (here the ann_id); the image file is instances.json's file_name.
instances.json: COCO {"info", "images", "annotations", "categories"} with polygon
segmentations in pixels; images are COCO_train2014_{image_id:012d}.jpg.
"""

from __future__ import annotations

import numpy as np

from .ln import location_phrase
from .scene import SHAPE_KINDS, Scene, Shape

CATEGORY_IDS = {kind: i + 1 for i, kind in enumerate(SHAPE_KINDS)}
HELD_OUT_SPLITS = ("val", "testA", "testB")


def image_file_name(image_id: int) -> str:
    """COCO train2014 file name of an image."""
    return f"COCO_train2014_{image_id:012d}.jpg"


def expressions(rng: np.random.Generator, shape: Shape, scene: Scene) -> list[str]:
    """1-3 referring expressions that single out `shape` in `scene`.

    "the red circle" always; then up to two of "red one", "the circle" (kind unique in the
    image) and "the shape at the top left" (position unique in the image).
    """
    others = [s for s in scene.shapes if s is not shape]
    extra = [f"{shape.colour} one"]
    if all(s.kind != shape.kind for s in others):
        extra.append(f"the {shape.kind}")
    if all(s.position != shape.position for s in others):
        extra.append(f"the shape {location_phrase(shape.position)}")
    chosen = rng.permutation(extra)[: int(rng.integers(0, 3))]
    return [f"the {shape.colour} {shape.kind}", *map(str, chosen)]


def _sentence(rng: np.random.Generator, text: str, sent_id: int) -> dict:
    """A REFER sentence; `raw` is sometimes capitalised, `sent` is lower case."""
    raw = text.capitalize() if rng.random() < 0.3 else text
    return {"tokens": text.split(), "raw": raw, "sent_id": sent_id, "sent": text}


def polygon_segmentation(shape: Shape) -> list[list[float]]:
    """COCO polygon segmentation [[x1, y1, x2, y2, ...]] of a shape, pixels."""
    return [[round(float(v), 2) for v in shape.polygon.ravel()]]


def build(rng: np.random.Generator, scenes: list[Scene], splits: list[str]) -> tuple[list[dict], dict]:
    """(refs, instances) for `scenes`; splits[i] is the REFER split of scenes[i]."""
    refs, images, annotations = [], [], []
    sent_count = 0
    for scene, split in zip(scenes, splits):
        images.append({"id": scene.image_id, "file_name": image_file_name(scene.image_id),
                       "height": scene.size, "width": scene.size})
        for shape in scene.shapes:
            ann_id = len(annotations) + 1
            annotations.append({"id": ann_id, "image_id": scene.image_id,
                                "category_id": CATEGORY_IDS[shape.kind],
                                "segmentation": polygon_segmentation(shape),
                                "area": float(shape.mask.sum()), "bbox": [float(v) for v in shape.box],
                                "iscrowd": 0})
            sentences = [_sentence(rng, text, sent_count + k)
                         for k, text in enumerate(expressions(rng, shape, scene))]
            sent_count += len(sentences)
            refs.append({"sent_ids": [s["sent_id"] for s in sentences],
                         "file_name": f"{image_file_name(scene.image_id)[:-4]}_{ann_id}.jpg",
                         "ann_id": ann_id, "ref_id": len(refs), "image_id": scene.image_id,
                         "split": split, "sentences": sentences,
                         "category_id": CATEGORY_IDS[shape.kind]})
    categories = [{"supercategory": "shape", "id": i, "name": k} for k, i in CATEGORY_IDS.items()]
    instances = {"info": {"description": "RegionVLM synthetic RefCOCO"}, "images": images,
                 "annotations": annotations, "categories": categories}
    return refs, instances
