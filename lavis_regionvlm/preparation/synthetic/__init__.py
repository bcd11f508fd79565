"""A small seeded synthetic dataset in the real on-disk formats of every dataset we load.

Each image is a plain light background with 2-3 non-overlapping coloured shapes (circle,
square, triangle). From the same scenes it writes, under `out_dir` (see generate.FILES):

  manifest.json                                  seed, counts, file and image-name layout
  images/{image_id:012d}.png                     every image (LN reads these)
  ln/synthetic_{train,val}_localized_narratives.jsonl
  ln/synthetic_video_localized_narratives.jsonl  + ln/frames/synthetic_vidln/{video_id}/{kf}.jpg
  vg/region_descriptions.json, vg/image_data.json, vg/VG_100K/{image_id}.jpg
  refcoco/refs(unc).p, refcoco/instances.json, refcoco/images/train2014/COCO_train2014_{id:012d}.jpg
  vcr/{train,val,test}.jsonl, vcr/vcr1images/synthetic/{image_id:012d}.{jpg,json}

Usage: generate_synthetic_dataset(out_dir, num_images=..., image_size=64, seed=0,
val_fraction=0.2), or `python -m lavis_regionvlm.preparation.synthetic --out DIR`.
"""

from .generate import generate_synthetic_dataset

__all__ = ["generate_synthetic_dataset"]
