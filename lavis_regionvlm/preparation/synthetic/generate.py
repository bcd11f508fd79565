"""Generate the whole synthetic dataset and its manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lavis_regionvlm.common.seeding import seeded_rng

from . import ln, refcoco, vcr, vg, vidln
from .scene import MIN_IMAGE_SIZE, Scene, make_scene
from .writers import encode, write_bytes, write_json, write_jsonl, write_pickle

VERSION = 1
FILES = {
    "images": "images",
    "ln_train": "ln/synthetic_train_localized_narratives.jsonl",
    "ln_val": "ln/synthetic_val_localized_narratives.jsonl",
    "vidln": "ln/synthetic_video_localized_narratives.jsonl",
    "vidln_frames": f"ln/frames/{vidln.DATASET_ID}",
    "vg_regions": "vg/region_descriptions.json",
    "vg_image_data": "vg/image_data.json",
    "vg_images": f"vg/{vg.IMAGE_FOLDER}",
    "refcoco_refs": "refcoco/refs(unc).p",
    "refcoco_instances": "refcoco/instances.json",
    "refcoco_images": "refcoco/images/train2014",
    "vcr_train": "vcr/train.jsonl",
    "vcr_val": "vcr/val.jsonl",
    "vcr_test": "vcr/test.jsonl",
    "vcr_images": "vcr/vcr1images",
}
IMAGE_TEMPLATES = {  # file of an image relative to its root in FILES (str.format fields)
    "images": "{image_id:0>12}.png",  # also the LN images; works for int or str image_id
    "vidln_frames": "{video_id}/{keyframe_name}.jpg",
    "vg_images": "{image_id}.jpg",
    "refcoco_images": "COCO_train2014_{image_id:012d}.jpg",
    "vcr_images": "{img_fn}",
}


def _stream(seed: int, *key: int) -> np.random.Generator:
    """An independent random stream for (seed, *key) (`common.seeding.seeded_rng`)."""
    return seeded_rng(seed, *key)


def split_sizes(num_images: int, val_fraction: float) -> tuple[int, int]:
    """(train, held-out) image counts; held-out >= 3 (val/testA/testB), train >= one video."""
    held_out = round(num_images * val_fraction)
    train = num_images - held_out
    if held_out < 3 or train < vidln.FRAMES_PER_VIDEO:
        raise ValueError(f"{num_images} images with val_fraction={val_fraction} give {train} train "
                         f"and {held_out} held-out images; need >= {vidln.FRAMES_PER_VIDEO} and >= 3")
    return train, held_out


def make_scenes(seed: int, num_images: int, image_size: int, num_train: int) -> list[Scene]:
    """Scenes with image_id = index + 1. Crowded (dots): the first train scene and the first
    two held-out scenes (the first VCR val and test images)."""
    crowded = {0, num_train, num_train + 1}
    return [make_scene(_stream(seed, 0, i), i + 1, image_size, i in crowded) for i in range(num_images)]


def write_images(out: Path, scenes: list[Scene], num_train: int) -> None:
    """PNG of every scene; JPEG copies for RefCOCO and VCR (all) and VG (train scenes)."""
    for index, scene in enumerate(scenes):
        write_bytes(out / FILES["images"] / IMAGE_TEMPLATES["images"].format(image_id=scene.image_id),
                    encode(scene.image, "PNG"))
        jpeg = encode(scene.image, "JPEG")
        write_bytes(out / FILES["refcoco_images"] / refcoco.image_file_name(scene.image_id), jpeg)
        write_bytes(out / FILES["vcr_images"] / vcr.image_name(scene.image_id), jpeg)
        if index < num_train:
            write_bytes(out / FILES["vg_images"] / f"{scene.image_id}.jpg", jpeg)


def write_ln(out: Path, seed: int, train: list[Scene], held_out: list[Scene]) -> dict[str, int]:
    """Image LN train/val JSONL files; returns line counts."""
    counts = {}
    for key, split, scenes in (("ln_train", "train", train), ("ln_val", "val", held_out)):
        rng = _stream(seed, 1, len(counts))
        rows = [row for scene in scenes for row in ln.image_narratives(rng, scene, split)]
        write_jsonl(out / FILES[key], rows)
        counts[key] = len(rows)
    return counts


def write_vidln(out: Path, seed: int, train: list[Scene]) -> int:
    """Video LN JSONL over groups of consecutive train scenes, and their keyframe JPEGs."""
    rng = _stream(seed, 2)
    per = vidln.FRAMES_PER_VIDEO
    videos = [train[per * v: per * (v + 1)] for v in range(min(vidln.MAX_VIDEOS, len(train) // per))]
    for v, frames in enumerate(videos):
        for name, scene in zip(vidln.keyframe_names(per), frames):
            path = IMAGE_TEMPLATES["vidln_frames"].format(video_id=vidln.video_id(v), keyframe_name=name)
            write_bytes(out / FILES["vidln_frames"] / path, encode(scene.image, "JPEG"))
    write_jsonl(out / FILES["vidln"], [vidln.video_narrative(rng, v, f) for v, f in enumerate(videos)])
    return len(videos)


def write_vg(out: Path, train: list[Scene]) -> int:
    """VG region descriptions and image data of the train scenes; returns the region count."""
    regions = vg.region_descriptions(train)
    write_json(out / FILES["vg_regions"], regions)
    write_json(out / FILES["vg_image_data"], vg.image_data(train))
    return sum(len(entry["regions"]) for entry in regions)


def write_refcoco(out: Path, seed: int, train: list[Scene], held_out: list[Scene]) -> dict[str, int]:
    """refs(unc).p and instances.json; returns ref counts per split."""
    splits = ["train"] * len(train) + [refcoco.HELD_OUT_SPLITS[k % 3] for k in range(len(held_out))]
    refs, instances = refcoco.build(_stream(seed, 3), train + held_out, splits)
    write_pickle(out / FILES["refcoco_refs"], refs)
    write_json(out / FILES["refcoco_instances"], instances)
    return {s: sum(r["split"] == s for r in refs) for s in ("train", *refcoco.HELD_OUT_SPLITS)}


def write_vcr(out: Path, seed: int, train: list[Scene], held_out: list[Scene]) -> dict[str, int]:
    """VCR train/val/test JSONL (held-out scenes alternate val, test) and per-image metadata."""
    rng = _stream(seed, 4)
    for scene in train + held_out:
        write_json(out / FILES["vcr_images"] / f"{vcr.image_name(scene.image_id)[:-4]}.json",
                   vcr.metadata(scene, rng))
    counts = {}
    for split, scenes in (("train", train), ("val", held_out[0::2]), ("test", held_out[1::2])):
        rows = vcr.records(rng, scenes, split)
        write_jsonl(out / FILES[f"vcr_{split}"], rows)
        counts[split] = len(rows)
    return counts


def generate_synthetic_dataset(out_dir: str | Path, *, num_images: int = 2500, image_size: int = 64,
                               seed: int = 0, val_fraction: float = 0.2) -> dict:
    """Write the synthetic dataset under `out_dir` and return its manifest (also manifest.json).

    Images 1..num_train are the train split of every format, the rest are held out (LN val,
    RefCOCO val/testA/testB, VCR val/test); VG and video LN use train images only. The same
    arguments give byte-identical files. Paths in the manifest are relative to `out_dir`;
    manifest["image_ids"] gives the inclusive [first, last] image_id of each part.
    """
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size={image_size}: must be at least {MIN_IMAGE_SIZE} pixels")
    out = Path(out_dir)
    num_train, _ = split_sizes(num_images, val_fraction)
    scenes = make_scenes(seed, num_images, image_size, num_train)
    train, held_out = scenes[:num_train], scenes[num_train:]
    write_images(out, scenes, num_train)
    counts = {"images": num_images, "train_images": num_train, "held_out_images": len(held_out),
              **write_ln(out, seed, train, held_out), "vidln_videos": write_vidln(out, seed, train),
              "vg_regions": write_vg(out, train),
              "refcoco_refs": write_refcoco(out, seed, train, held_out),
              "vcr_questions": write_vcr(out, seed, train, held_out)}
    manifest = {"name": "regionvlm_synthetic", "version": VERSION, "seed": seed,
                "image_size": image_size, "val_fraction": val_fraction,
                "image_ids": {"train": [1, num_train], "held_out": [num_train + 1, num_images]},
                "counts": counts, "files": FILES, "image_templates": IMAGE_TEMPLATES,
                "dataset_ids": {"ln": ln.DATASET_ID, "vidln": vidln.DATASET_ID}}
    write_json(out / "manifest.json", manifest)
    return manifest
