"""Where the image of a Localized Narratives record lies under an image root, per LN subset.

LN records name their image by ids (`image_id`, or `video_id` + `keyframe_name`) and say
which subset they belong to in `dataset_id`; each source names its files its own way.
`candidate_templates(fields)` lists the relative paths to try, in order, as `str.format`
templates of the record's fields (`narratives.NarrativeSample.fields`); `prepare_ln` keeps
the first that exists. The image root may be the folder holding the files or one above it
(e.g. COCO's `images/` holding `train2017/`, `train2014/`, `val2014/`).

- COCO (`mscoco_train2017`, `mscoco_val2017`): LN's ids are unpadded, the files are
  zero-padded to 12 digits: COCO 2017 `000000137576.jpg` (in `train2017/`, `val2017/`), COCO
  2014 `COCO_train2014_000000137576.jpg`. LN's `mscoco_train2017` spans COCO 2014's train
  and val files (2017 train = 2014 train + most of 2014 val): the released
  `generate_instruct_data_sentence.py` tries train2014, then val2014.
- Flickr30k (`flickr30k_*`): `<image_id>.jpg` (in `flickr30k-images/`).
- ADE20k (`ADE20k`): `<image_id>.jpg`, ids `ADE_train_*` in `training/`, `ADE_val_*` in
  `validation/` (ADEChallengeData2016 layout).
- Open Images (`open_images_*`): `<image_id>.jpg` flat, in the split folder, or in the sharded
  train layout `train_<first hex digit>/` the released script reads.
- Video LN (any record with `video_id`): `<video_id>/<keyframe_name>.jpg`, then `.png`, the
  order of the official frame tool (google/video-localized-narratives
  `video_localized_narratives/tools/frame.py`); OVIS frames are `.jpg`, Oops and UVO `.png`;
  also under a `<dataset_id>/` folder, the official `frames/<dataset_id>/<video_id>/` layout.
- Any other `dataset_id`: `<image_id>.jpg`.
"""
from __future__ import annotations

from typing import Any

_COCO12 = "{image_id:0>12}"
COCO_2014 = {
    "train": (f"train2014/COCO_train2014_{_COCO12}.jpg", f"COCO_train2014_{_COCO12}.jpg"),
    "val": (f"val2014/COCO_val2014_{_COCO12}.jpg", f"COCO_val2014_{_COCO12}.jpg"),
}
VIDEO_TEMPLATES = (
    "{video_id}/{keyframe_name}.jpg", "{video_id}/{keyframe_name}.png",
    "{dataset_id}/{video_id}/{keyframe_name}.jpg", "{dataset_id}/{video_id}/{keyframe_name}.png",
)
OTHER_TEMPLATES = ("{image_id}.jpg",)


def _coco(split: str) -> tuple[str, ...]:
    # 2017 files first (the split's own folder or the root itself), then COCO 2014's
    own_2017 = (f"{_COCO12}.jpg", f"{split}2017/{_COCO12}.jpg")
    spans = ("train", "val") if split == "train" else ("val",)
    return own_2017 + tuple(t for part in spans for t in COCO_2014[part])


def _ade20k(image_id: str) -> tuple[str, ...]:
    split = "validation" if image_id.startswith("ADE_val_") else "training"
    return ("{image_id}.jpg", f"{split}/{{image_id}}.jpg", f"images/{split}/{{image_id}}.jpg",
            f"ADEChallengeData2016/images/{split}/{{image_id}}.jpg")


def _open_images(dataset_id: str, image_id: str) -> tuple[str, ...]:
    split = dataset_id[len("open_images_"):].split("_")[0]  # open_images_train_v6 -> train
    shard = f"{split}_{image_id[:1]}/{{image_id}}.jpg"
    return ("{image_id}.jpg", f"{split}/{{image_id}}.jpg", shard, f"images/{shard}")


def candidate_templates(fields: dict[str, Any]) -> tuple[str, ...]:
    """The relative paths (templates of `fields`) where the record's image may lie, in the
    order to try. See the module doc for the layouts."""
    if "video_id" in fields:
        return VIDEO_TEMPLATES
    dataset_id = str(fields.get("dataset_id", ""))
    image_id = str(fields.get("image_id", ""))
    if dataset_id.startswith("mscoco_"):
        return _coco("val" if "val" in dataset_id else "train")
    if dataset_id.startswith("flickr30k"):
        return ("{image_id}.jpg", "flickr30k-images/{image_id}.jpg")
    if dataset_id.lower().startswith("ade20k"):
        return _ade20k(image_id)
    if dataset_id.startswith("open_images"):
        return _open_images(dataset_id, image_id)
    return OTHER_TEMPLATES
