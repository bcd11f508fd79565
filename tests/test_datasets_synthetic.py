"""The synthetic dataset read back through the registered builders, as the quick start does:
generate -> prepare_synthetic -> localized_narratives (image + video) and vg_region. The
points of every sample must land on the object its phrase names, in its own image."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from lavis.common.config import Config
from lavis.common.registry import registry
from omegaconf import OmegaConf
from PIL import Image

from lavis_regionvlm.preparation.ln_prepared import read_meta
from lavis_regionvlm.preparation.prepare_synthetic import main as prepare_main
from lavis_regionvlm.preparation.synthetic import generate_synthetic_dataset
from lavis_regionvlm.preparation.synthetic.scene import PALETTE
from lavis_regionvlm.datasets import SAMPLE_KEYS


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_dataset(out, num_images=30, seed=2)
    prepare_main(["--root", str(out)])
    return out


def build(name: str, block: dict):
    """One sample per phrase / region, no crop (our variant): every sample is checked."""
    variant = {"sampling": {"epoch_unit": "phrase", "stored_points": None},
               "vis_processor": {"train": {"name": "region_image_train", "image_size": 32, "crop_prob": 0.0}}}
    user = OmegaConf.create({"datasets": {name: OmegaConf.merge(variant, block)}})
    cfg = Config.build_dataset_config(user).datasets[name]
    return registry.get_builder_class(name)(cfg).build_datasets()["train"]


def named_rgb(text: str) -> tuple[int, int, int] | None:
    """The colour a phrase names (None for the video's background actor)."""
    found = [c for c in PALETTE if re.search(rf"\b{c}\b", text)]
    return PALETTE[found[0]] if found else None


def on_colour(image_path: str, points: np.ndarray, rgb: tuple[int, int, int]) -> float:
    """Share of the points whose pixel has (about: JPEG) the colour `rgb`."""
    image = np.asarray(Image.open(image_path).convert("RGB"), dtype=np.int64)
    h, w, _ = image.shape
    cols = np.minimum((points[:, 0] * w).astype(int), w - 1)
    rows = np.minimum((points[:, 1] * h).astype(int), h - 1)
    return float((np.abs(image[rows, cols] - np.array(rgb)).max(axis=1) < 40).mean())


def test_every_format_prepared_without_skips(root):
    counts = json.loads((root / "manifest.json").read_text())["counts"]
    metas = {name: read_meta(root / "prepared" / name) for name in ("ln_train", "ln_val", "vidln")}
    assert metas["ln_train"]["num_narratives"] == counts["ln_train"]
    assert metas["ln_val"]["num_narratives"] == counts["ln_val"]
    assert metas["vidln"]["num_narratives"] == counts["vidln_videos"]
    assert all(meta["skip_counts"] == {} for meta in metas.values())
    captions = json.loads((root / "prepared" / "ln_train_captions.json").read_text())
    assert len(captions) == counts["ln_train"] and set(captions[0]) == {"image", "caption", "image_id"}


@pytest.mark.parametrize("folder", ["ln_train", "vidln"])
def test_narrative_points_land_on_the_named_object(root, folder):
    ds = build("localized_narratives", {"build_info": {"annotations": {"train": {"files": [
        {"path": str(root / "prepared" / folder)}]}}}})
    assert len(ds) > 20 and dict(ds.skip_counts) == {}
    for index in range(len(ds)):
        record = ds.record(index)
        if folder == "ln_train":  # "A red circle at the top left": three shape phrases per narrative
            assert re.fullmatch(r"(a|A) \w+ \w+ (at|on|in) the [\w ]+", record.text), record.text
        colour = named_rgb(record.text)
        if colour is None:  # the background scribble may cross shapes: only its phrases are checked
            assert record.text in ("In the background", "there is a plain light wall")
            continue
        assert on_colour(record.image, record.region.data, colour) >= 0.9, record
    sample = ds[0]
    assert tuple(sample) == SAMPLE_KEYS and sample["image"].shape == (3, 32, 32)


def test_vg_boxes_hold_the_named_shape(root):
    counts = json.loads((root / "manifest.json").read_text())["counts"]
    ds = build("vg_region", {"build_info": {"annotations": {"train": {
        "region_descriptions": str(root / "vg/region_descriptions.json"),
        "image_data": str(root / "vg/image_data.json"), "images": str(root / "vg")}}}})
    assert len(ds) == counts["vg_regions"] and dict(ds.skip_counts) == {}
    for index in range(len(ds)):
        record = ds.record(index)
        x1, y1, x2, y2 = record.region.box
        inside = on_colour(record.image, record.region.sample_points(400, seed=0), named_rgb(record.text))
        assert inside >= 0.3 and 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1, record
    assert tuple(ds[0]) == SAMPLE_KEYS
