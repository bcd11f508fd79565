"""`vg_region`: region_descriptions.json + image_data.json (v1.2 and v1.0 key names, VG_100K and
VG_100K_2 folders) through the registered builder: filtering, skip counts, points in the box."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from lavis.common.config import Config
from lavis.common.registry import registry
from omegaconf import OmegaConf
from PIL import Image

from lavis_regionvlm.datasets import SAMPLE_KEYS, ConfigError
from lavis_regionvlm.regions import points_to_text

URL = "https://cs.stanford.edu/people/rak248/{folder}/{image_id}.jpg"
# image_id -> (folder, width, height, colour)
IMAGES = {1: ("VG_100K", 200, 100, (200, 30, 30)), 2: ("VG_100K_2", 100, 100, (30, 200, 30)),
          3: ("VG_100K", 100, 100, (30, 30, 200))}  # image 3's file is missing
# (image_id, phrase, x, y, w, h): kept, then one of each skipped kind
KEPT = [(1, "a red car", 10, 20, 50, 40), (1, "sky", 150, 0, 60, 30), (2, "green grass", 60, 60, 40, 40)]
TOO_LARGE = (2, "the whole field", 0, 0, 80, 70)  # 56% of the image
FLAT = (1, "a line", 10, 10, 0, 5)
NO_IMAGE_FILE = (3, "a blue wall", 10, 10, 20, 20)
NO_IMAGE_DATA = (7, "a ghost", 10, 10, 20, 20)


def region(image_id: int, phrase: str, x: float, y: float, w: float, h: float, v10: bool, rid: int) -> dict:
    if v10:
        return {"id": rid, "image": image_id, "phrase": phrase, "x": x, "y": y, "width": w, "height": h}
    return {"region_id": rid, "width": w, "height": h, "image_id": image_id, "phrase": phrase, "y": y, "x": x}


def write_vg(root: Path, v10: bool) -> Path:
    """The two JSON files and the image folders; returns the folder of the JSON files."""
    for image_id, (folder, width, height, colour) in IMAGES.items():
        if image_id != 3:
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (width, height), colour).save(root / folder / f"{image_id}.jpg")
    rows = KEPT + [TOO_LARGE, FLAT, NO_IMAGE_FILE, NO_IMAGE_DATA]
    by_image: dict[int, list] = {}
    for rid, row in enumerate(rows, start=100):
        by_image.setdefault(row[0], []).append(region(*row, v10=v10, rid=rid))
    by_image[2].append({"region_id": 99, "image_id": 2, "phrase": "no box"})  # missing keys
    by_image[2].append(region(2, ["not", "text"], 1, 1, 5, 5, v10, 98))  # bad value
    entries = [{"id": image_id, "regions": regions} for image_id, regions in by_image.items()]
    key = "id" if v10 else "image_id"
    data = [{"width": w, "url": URL.format(folder=f, image_id=i), "height": h, key: i, "coco_id": None,
             "flickr_id": None} for i, (f, w, h, _) in IMAGES.items()]
    annotations = root / "annotations"
    annotations.mkdir()
    (annotations / "region_descriptions.json").write_text(json.dumps(entries))
    (annotations / "image_data.json").write_text(json.dumps(data))
    return annotations


# These tests pin one sample per region with K fresh points (our variant);
# tests/test_datasets_released.py pins the released defaults.
VARIANT = {"sampling": {"epoch_unit": "phrase", "stored_points": None},
           "vis_processor": {"train": {"name": "region_image_train", "image_size": 32, "crop_prob": 0.0}}}


def build(root: Path, annotations: Path, **overrides):
    block = OmegaConf.merge(VARIANT, {"build_info": {"annotations": {"train": {
        "region_descriptions": str(annotations / "region_descriptions.json"),
        "image_data": str(annotations / "image_data.json"), "images": str(root)}}}}, overrides)
    user = OmegaConf.create({"datasets": {"vg_region": block}})
    cfg = Config.build_dataset_config(user).datasets.vg_region
    return registry.get_builder_class("vg_region")(cfg).build_datasets()["train"]


@pytest.fixture(scope="module", params=["v1.2", "v1.0"])
def vg(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    annotations = write_vg(root, v10=request.param == "v1.0")
    return root, annotations, build(root, annotations)


def test_regions_kept_and_skips_counted(vg):
    root, _, ds = vg
    assert [ds.record(i).text for i in range(len(ds))] == [row[1] for row in KEPT]
    assert dict(ds.skip_counts) == {"box_too_large": 1, "bad_box": 1, "missing_image": 1,
                                    "missing_image_data": 1, "missing_keys": 1, "bad_value": 1}
    assert [Path(ds.record(i).image) for i in range(len(ds))] == [
        root / "VG_100K" / "1.jpg", root / "VG_100K" / "1.jpg", root / "VG_100K_2" / "2.jpg"]


def test_points_inside_the_relative_box(vg):
    _, _, ds = vg
    for index, (image_id, _, x, y, w, h) in enumerate(KEPT):
        _, width, height, _ = IMAGES[image_id]
        box = np.array([x / width, y / height, min((x + w) / width, 1.0), min((y + h) / height, 1.0)])
        np.testing.assert_allclose(ds.record(index).region.box, box, atol=1e-6)
        points = ds.sample_points(index)
        assert points.shape == (10, 2)
        assert ((points >= box[:2] - 1e-6) & (points <= box[2:] + 1e-6)).all()
        assert len(np.unique(points, axis=0)) == 10


def test_samples_keys_text_and_image(vg):
    _, _, ds = vg
    for index in range(len(ds)):
        sample = ds[index]
        assert tuple(sample) == SAMPLE_KEYS
        assert sample["region_text"] == points_to_text(ds.sample_points(index), quantize="floor")
        assert sample["text_output"] == ds.record(index).text and sample["text_input"] == ""
        colour = IMAGES[KEPT[index][0]][3]
        expected = ds.vis_processor(Image.new("RGB", (8, 8), colour))
        assert (sample["image"] - expected).abs().max() < 0.15  # JPEG of a flat colour


def test_max_box_area_and_sampling_come_from_the_config(vg):
    root, annotations, _ = vg
    ds = build(root, annotations, max_box_area=0.9, sampling={"num_points": 5, "seed": 3, "region_max_len": 14})
    assert "the whole field" in [ds.record(i).text for i in range(len(ds))]
    assert ds[0]["region_text"].count("[") == 3  # (14 - 2) // 4 whole points of K = 5
    assert ds.sample_points(0).shape == (5, 2)
    with pytest.raises(ConfigError, match=r"datasets\.vg_region\.max_box_area"):
        build(root, annotations, max_box_area=0)
    with pytest.raises(ConfigError, match=r"datasets\.vg_region\.sampling\.point_quantize"):
        build(root, annotations, sampling={"point_quantize": "ceil"})


def test_missing_file_names_the_config_key(vg, tmp_path):
    root, annotations, _ = vg
    user = {"datasets": {"vg_region": {"build_info": {"annotations": {"train": {
        "region_descriptions": str(annotations / "region_descriptions.json"),
        "image_data": str(tmp_path / "image_data.json"), "images": str(root)}}}}}}
    cfg = Config.build_dataset_config(OmegaConf.create(user)).datasets.vg_region
    with pytest.raises(ConfigError, match=r"annotations\.train\.image_data: .*image_data\.json does not exist"):
        registry.get_builder_class("vg_region")(cfg).build_datasets()
