"""Processors: point text that survives processing, images whose coordinates stay valid."""
import numpy as np
import pytest
from lavis.common.registry import registry
from omegaconf import OmegaConf
from PIL import Image

from lavis_regionvlm.regions import Region, RegionError, text_to_points


def build(name, **cfg):
    return registry.get_processor_class(name).from_config(OmegaConf.create(cfg))


def test_region_points_writes_k_sampled_points_reproducibly():
    processor = build("region_points", num_points=6, quantize="round")
    region = Region.from_box([0.2, 0.4, 0.3, 0.6])
    text = processor(region, seed=3)
    points = text_to_points(text)
    assert points.shape == (6, 2)
    assert ((points[:, 0] >= 0.2) & (points[:, 0] <= 0.3)).all()
    assert ((points[:, 1] >= 0.4) & (points[:, 1] <= 0.6)).all()
    assert processor(region, seed=3) == text and processor(region, seed=4) != text


def test_region_points_passes_point_text_and_writes_arrays():
    text = "[32 64] [37 62]"
    assert build("region_points")(text) == text
    assert build("region_points", quantize="floor")(np.array([[0.29, 0.999]])) == "[28 99]"
    assert build("region_points")("") == "" and build("region_points")(None) == ""


def test_region_points_and_the_predictor_give_the_same_text_for_every_form():
    processor = build("region_points", num_points=10, quantize="floor")
    assert processor("[29 57] [58 14]") == "[29 57] [58 14]"  # not redrawn as "[28 56] [28 56] ..."
    assert processor(" [29 57] [58 14] ") == "[29 57] [58 14]" and processor("  ") == ""
    from lavis_regionvlm.regions import region_point_text

    box = {"box": [0.1, 0.2, 0.5, 0.6]}
    assert processor(box, seed=7) == region_point_text(box, 10, 7) == processor(Region.from_json(box), seed=7)
    assert processor({"point_text": "[1 2]"}) == "[1 2]"


def test_region_points_rejects_text_that_is_not_point_text():
    with pytest.raises(RegionError, match="not point text"):
        build("region_points")("[0.3, 0.6]")


def gradient_image(width=80, height=60) -> Image.Image:
    """Each pixel's colour encodes its own (x, y), so a point's pixel can be checked."""
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    return Image.fromarray(np.stack([x * 3, y * 4, np.zeros_like(x)], -1).astype(np.uint8))


def pixel_at(image: Image.Image, point) -> tuple:
    width, height = image.size
    return image.getpixel((min(int(point[0] * width), width - 1), min(int(point[1] * height), height - 1)))


def test_crop_with_points_keeps_every_point_on_the_same_pixel():
    processor = build("region_image_train", image_size=32, crop_prob=1.0, min_crop_scale=0.5)
    image = gradient_image()
    points = np.array([[0.5, 0.5], [0.55, 0.6], [0.45, 0.52]])
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(20):
        cropped, moved = processor.crop_with_points(image, points, rng)
        changed += cropped.size != image.size
        assert ((moved >= 0) & (moved <= 1)).all()
        for before, after in zip(points, moved):
            assert np.abs(np.subtract(pixel_at(image, before), pixel_at(cropped, after))).max() <= 8
    assert changed > 10  # it does crop


def test_train_image_processor_neither_flips_nor_crops_without_points():
    processor = build("region_image_train", image_size=32)
    image = gradient_image()
    out = processor(image)
    assert out.shape == (3, 32, 32)
    # red grows left to right and green top to bottom: no flip happened
    assert out[0, 16, -1] > out[0, 16, 0] and out[1, -1, 16] > out[1, 0, 16]
    same, moved = processor.crop_with_points(image, np.array([[0.1, 0.2]]), np.random.default_rng(0))
    assert same is image and np.allclose(moved, [[0.1, 0.2]])


def test_train_image_processor_rejects_bad_settings():
    with pytest.raises(ValueError, match="crop_prob must lie in"):
        build("region_image_train", crop_prob=1.5)
