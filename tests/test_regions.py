"""Tests for lavis_regionvlm.regions: point text, Region constructors, sampling, masks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from lavis_regionvlm.regions import (
    Region,
    RegionError,
    is_point_text,
    pixel_points,
    points_to_text,
    text_to_points,
)
from lavis_regionvlm.regions.masks import decode_rle, dilate_mask, mask_to_rle, polygons_to_mask

PAPER_POINTS = [[0.324, 0.643], [0.369, 0.622]]


def hand_mask() -> np.ndarray:
    """5x7 mask: rows 1-2, columns 2-4 (six pixels)."""
    mask = np.zeros((5, 7), dtype=bool)
    mask[1:3, 2:5] = True
    return mask


# Column-major runs of hand_mask(), counted by hand: 2 empty columns + 1 row = 11 zeros, then
# (2 ones, 3 zeros) per foreground column, and 2 + 2 * 5 = 12 trailing zeros.
HAND_RUNS = [11, 2, 3, 2, 3, 2, 12]
HAND_COUNTS = ";230009"  # the same runs in COCO's compressed string form


# ---------------------------------------------------------------------------- point text


def test_paper_example_round_and_floor():
    assert points_to_text(PAPER_POINTS, quantize="round") == "[32 64] [37 62]"
    assert points_to_text(PAPER_POINTS, quantize="floor") == "[32 64] [36 62]"


def test_floor_is_the_default_everywhere():
    # int(0.369 * 100) = int(36.9) = 36: the released checkpoint's rounding, not the paper's 37
    assert points_to_text(PAPER_POINTS) == "[32 64] [36 62]"
    assert Region.from_points(PAPER_POINTS).to_text(2, strategy="even") == "[32 64] [36 62]"


def test_round_is_half_up_not_half_even():
    assert points_to_text([[0.125, 0.625]], quantize="round") == "[13 63]"  # 12.5, 62.5 exactly in binary


def test_float32_points_are_scaled_in_float32_as_released():
    # eval_RIS.py: (rand_points * 100).astype(int) on a float32 array. float32(0.29) =
    # 0.28999999165..., times 100 = 28.999999165..., within half a float32 ulp (2**-20 at 29) of
    # 29, so the float32 product is 29.0; float32(0.53) = 0.52999997138..., times 100 =
    # 52.9999971..., nearest float32 52.99999618 (ulp 2**-18 at 53), so 52.
    assert points_to_text(np.array([[0.29, 0.53]], np.float32)) == "[29 52]"
    assert points_to_text(np.array([[0.29, 0.53]], np.float64)) == "[28 53]"  # 28.999999999999996, 53.0


def test_floor_matches_python_int_bit_exactly():
    assert points_to_text([[0.29, 0.57]], quantize="floor") == "[28 56]"  # 28.999999999999996
    values = [i / 100 for i in range(101)] + [0.29, 0.57, 0.58, 0.999999, 1e-9, 0.5]
    for v in values:
        assert points_to_text([[v, 1 - v]], quantize="floor") == f"[{int(v * 100)} {int((1 - v) * 100)}]"


def test_out_of_range_values_are_clipped():
    assert points_to_text([[-0.2, 1.7], [0.5, -3]]) == "[0 100] [50 0]"


def test_text_to_points_round_trip():
    all_values = np.arange(101)
    text = " ".join(f"[{x} {y}]" for x, y in zip(all_values, all_values[::-1]))
    points = text_to_points(text)
    assert points.shape == (101, 2) and points.dtype == np.float64
    assert points[3].tolist() == [0.03, 0.97]
    assert points_to_text(points, quantize="round") == text  # floor would write 0.29 as 28


def test_text_to_points_empty_and_whitespace():
    assert text_to_points("").shape == (0, 2)
    assert text_to_points("  [1 2]\t[3  4] ").tolist() == [[0.01, 0.02], [0.03, 0.04]]


def test_is_point_text():
    assert is_point_text("[32 64] [37 62]")
    assert is_point_text("")
    assert not is_point_text("[32, 64]")
    assert not is_point_text("a dog")
    assert not is_point_text(None)


@pytest.mark.parametrize(
    "points, message",
    [
        ([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [np.nan, 0.2]], r"point 3 has a NaN coordinate: \[nan, 0.2\]"),
        ([[0.1, np.inf]], r"point 0 has an infinite coordinate"),
        ([], "points is empty"),
        ([0.1, 0.2], r"shape \(N, 2\).*got shape \(2,\)"),
        ([[0.1, 0.2, 0.3]], r"got shape \(1, 3\)"),
        ([["a", "b"]], "array of numbers, got dtype"),
        ([[0.1, 0.2], [0.3]], "could not read it"),
    ],
)
def test_points_to_text_errors(points, message):
    with pytest.raises(RegionError, match=message):
        points_to_text(points)


def test_unknown_quantize_mode():
    with pytest.raises(RegionError, match=r"unknown quantize mode 'ceil'.*\('round', 'floor'\)"):
        points_to_text(PAPER_POINTS, quantize="ceil")


@pytest.mark.parametrize(
    "text, message",
    [
        ("[1 2] x [3 4]", r"unexpected text 'x' at character 5"),
        ("[1 2", r"unexpected text '\[1 2'"),
        ("[1,2]", r"malformed point '\[1,2\]'"),
        ("[1 2 3]", r"malformed point '\[1 2 3\]'"),
        ("[101 2]", r"'\[101 2\]' at character 0 has a value above 100"),
    ],
)
def test_text_to_points_errors(text, message):
    with pytest.raises(RegionError, match=message):
        text_to_points(text)


def test_region_error_is_value_error():
    assert issubclass(RegionError, ValueError)


# ---------------------------------------------------------------------------- constructors


def test_from_points_and_scribble_clip_and_copy():
    source = np.array([[0.2, 0.3], [1.5, -0.1]])
    region = Region.from_points(source)
    source[0, 0] = 0.9
    assert region.kind == "points"
    assert region.data.tolist() == [[0.2, 0.3], [1.0, 0.0]]
    assert region.box == (0.2, 0.0, 1.0, 0.3)
    scribble = Region.from_scribble([[0.1, 0.1], [0.4, 0.2]])
    assert scribble.kind == "scribble" and scribble.data.shape == (2, 2)


def test_region_is_immutable():
    region = Region.from_points(PAPER_POINTS)
    with pytest.raises(ValueError):
        region.data[0, 0] = 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        region.kind = "box"  # type: ignore[misc]


def test_from_box_relative_pixels_xywh_and_clipping():
    assert Region.from_box([0.1, 0.2, 0.5, 0.6]).box == (0.1, 0.2, 0.5, 0.6)
    pixel = Region.from_box([10, 20, 40, 10], fmt="xywh", image_size=(100, 50))
    assert pixel.kind == "box"
    assert pixel.box == pytest.approx((0.1, 0.4, 0.5, 0.6))
    assert Region.from_box([-0.5, 0.5, 0.5, 2.0]).box == (0.0, 0.5, 0.5, 1.0)


def test_box_to_mask_covers_exact_pixels():
    mask = Region.from_box([10, 20, 30, 40], image_size=(100, 50)).to_mask(50, 100)
    expected = np.zeros((50, 100), dtype=bool)
    expected[20:40, 10:30] = True
    np.testing.assert_array_equal(mask, expected)


def test_from_mask_accepts_zero_one_numbers():
    region = Region.from_mask(hand_mask().astype(np.uint8))
    assert region.kind == "mask" and region.mask.dtype == bool
    np.testing.assert_array_equal(region.mask, hand_mask())
    assert region.box == (2 / 7, 1 / 5, 5 / 7, 3 / 5)
    np.testing.assert_array_equal(region.to_mask(5, 7), hand_mask())


@pytest.mark.parametrize(
    "counts",
    [HAND_COUNTS, HAND_COUNTS.encode("ascii"), HAND_RUNS],
    ids=["compressed-str", "compressed-bytes", "uncompressed-list"],
)
def test_from_rle_matches_hand_drawn_mask(counts):
    region = Region.from_rle({"size": [5, 7], "counts": counts})
    np.testing.assert_array_equal(region.mask, hand_mask())


def test_mask_to_rle_is_str_and_decodes_back():
    rle = mask_to_rle(hand_mask())
    assert rle == {"size": [5, 7], "counts": HAND_COUNTS}
    np.testing.assert_array_equal(decode_rle(rle), hand_mask())


def test_from_polygons_matches_hand_drawn_mask():
    # A rectangle with corners at pixel edges x 2..5, y 1..3, plus a unit square at (6, 4).
    region = Region.from_polygons([[2, 1, 5, 1, 5, 3, 2, 3], [6, 4, 7, 4, 7, 5, 6, 5]], 5, 7)
    expected = hand_mask()
    expected[4, 6] = True
    np.testing.assert_array_equal(region.mask, expected)


@pytest.mark.parametrize(
    "region",
    [
        Region.from_points(PAPER_POINTS),
        Region.from_scribble([[0.1, 0.1], [0.3, 0.7], [0.9, 0.2]]),
        Region.from_box([0.1, 0.2, 0.3, 0.4]),
        Region.from_mask(hand_mask()),
    ],
    ids=lambda r: r.kind,
)
def test_json_round_trip(region):
    obj = json.loads(json.dumps(region.to_json()))
    assert list(obj) == [region.kind if region.kind != "mask" else "rle"]
    assert Region.from_json(obj) == region
    assert hash(Region.from_json(obj)) == hash(region)


def test_from_json_every_kind():
    assert Region.from_json({"points": PAPER_POINTS}).kind == "points"
    assert Region.from_json({"scribble": PAPER_POINTS}).kind == "scribble"
    box = Region.from_json({"box": [10, 5, 20, 10], "box_format": "xywh", "image_size": [100, 100]})
    assert box.box == pytest.approx((0.1, 0.05, 0.3, 0.15))
    rle = Region.from_json({"rle": {"size": [5, 7], "counts": HAND_COUNTS}})
    np.testing.assert_array_equal(rle.mask, hand_mask())
    poly = Region.from_json({"polygons": [[2, 1, 5, 1, 5, 3, 2, 3]], "height": 5, "width": 7})
    np.testing.assert_array_equal(poly.mask, hand_mask())


# ---------------------------------------------------------------------------- sampling


def test_same_seed_same_points_different_seed_different_points():
    regions = [
        Region.from_points(np.random.default_rng(0).random((20, 2))),
        Region.from_scribble([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]),
        Region.from_box([0.1, 0.1, 0.9, 0.9]),
        Region.from_mask(np.ones((30, 30), dtype=bool)),
    ]
    for region in regions:
        strategy = "random_sorted" if region.kind == "scribble" else None
        a = region.sample_points(10, seed=1, strategy=strategy)
        b = region.sample_points(10, seed=1, strategy=strategy)
        c = region.sample_points(10, seed=2, strategy=strategy)
        assert a.shape == (10, 2) and a.dtype == (np.float32 if region.kind == "mask" else np.float64)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c), region.kind
        assert ((a >= 0) & (a <= 1)).all()


def test_generator_seed_is_advanced_and_draws_are_independent():
    region = Region.from_box([0.2, 0.2, 0.4, 0.4])
    rng = np.random.default_rng(5)
    assert not np.array_equal(region.sample_points(4, rng), region.sample_points(4, rng))
    draws = region.sample_point_draws(10, 5, seed=3)
    assert draws.shape == (5, 10, 2)
    np.testing.assert_array_equal(draws[0], region.sample_points(10, seed=3))
    assert not np.array_equal(draws[0], draws[1])
    np.testing.assert_array_equal(draws, region.sample_point_draws(10, 5, seed=3))


def test_points_random_sorted_keeps_order_without_repeats():
    clicks = np.random.default_rng(0).random((20, 2))
    chosen = Region.from_points(clicks).sample_points(10, seed=4)
    index = [int(np.flatnonzero((clicks == row).all(axis=1))[0]) for row in chosen]
    assert index == sorted(set(index)) and len(index) == 10


def test_points_even_strategy():
    clicks = np.linspace(0, 1, 9)[:, None].repeat(2, axis=1)
    chosen = Region.from_points(clicks).sample_points(5, strategy="even")
    np.testing.assert_array_equal(chosen, clicks[[0, 2, 4, 6, 8]])


@pytest.mark.parametrize("strategy", ["random_sorted", "even"])
def test_points_upsampling_keeps_order_and_covers_all(strategy):
    clicks = np.array([[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]])
    chosen = Region.from_points(clicks).sample_points(7, seed=0, strategy=strategy)
    index = [int(np.flatnonzero((clicks == row).all(axis=1))[0]) for row in chosen]
    assert index == sorted(index)
    assert set(index) == {0, 1, 2}
    assert index[0] == 0 and index[-1] == 2


def test_scribble_even_spacing_by_arc_length():
    # Uneven vertices on a straight line: interpolation, not vertex picking.
    line = Region.from_scribble([[0.0, 0.5], [0.1, 0.5], [0.9, 0.5]])
    points = line.sample_points(9)
    np.testing.assert_allclose(points[:, 0], np.linspace(0, 0.9, 9))
    np.testing.assert_allclose(points[:, 1], 0.5)
    # An L-shaped stroke: ends included, equal arc-length steps around the corner.
    corner = Region.from_scribble([[0.0, 0.0], [0.5, 0.0], [0.5, 0.5]])
    expected = [[0.0, 0.0], [0.25, 0.0], [0.5, 0.0], [0.5, 0.25], [0.5, 0.5]]
    np.testing.assert_allclose(corner.sample_points(5), expected)


def test_scribble_random_sorted_lies_on_stroke_in_order():
    corner = Region.from_scribble([[0.0, 0.0], [0.5, 0.0], [0.5, 0.5]])
    points = corner.sample_points(30, seed=0, strategy="random_sorted")
    on_stroke = np.isclose(points[:, 1], 0.0) | np.isclose(points[:, 0], 0.5)
    assert on_stroke.all()
    arc = points[:, 0] + points[:, 1]  # arc length of a point on this monotone stroke
    assert (np.diff(arc) >= 0).all()
    assert len(np.unique(arc)) == 30


def test_zero_length_scribble_repeats_its_point():
    points = Region.from_scribble([[0.3, 0.4], [0.3, 0.4]]).sample_points(4)
    np.testing.assert_array_equal(points, [[0.3, 0.4]] * 4)
    np.testing.assert_array_equal(Region.from_scribble([[0.3, 0.4]]).sample_points(2), [[0.3, 0.4]] * 2)


def test_box_points_lie_inside_box():
    points = Region.from_box([0.2, 0.5, 0.3, 0.9]).sample_points(200, seed=0)
    assert ((points[:, 0] >= 0.2) & (points[:, 0] <= 0.3)).all()
    assert ((points[:, 1] >= 0.5) & (points[:, 1] <= 0.9)).all()


def test_mask_points_are_distinct_foreground_pixel_centres():
    rng = np.random.default_rng(0)
    mask = rng.random((40, 60)) < 0.1
    points = Region.from_mask(mask).sample_points(50, seed=1, pixel_coords="centre")
    assert points.dtype == np.float64
    xs, ys = points[:, 0] * 60 - 0.5, points[:, 1] * 40 - 0.5
    np.testing.assert_allclose(xs, np.round(xs), atol=1e-9)
    np.testing.assert_allclose(ys, np.round(ys), atol=1e-9)
    cols, rows = np.round(xs).astype(int), np.round(ys).astype(int)
    assert mask[rows, cols].all()
    assert len(set(zip(cols.tolist(), rows.tolist()))) == 50  # without replacement


def test_mask_points_are_foreground_pixel_corners_in_float32_by_default():
    rng = np.random.default_rng(0)
    mask = rng.random((40, 60)) < 0.1
    points = Region.from_mask(mask).sample_points(50, seed=1)
    assert points.dtype == np.float32
    cols, rows = np.round(points[:, 0] * 60).astype(int), np.round(points[:, 1] * 40).astype(int)
    np.testing.assert_array_equal(points[:, 0], cols.astype(np.float32) / np.float32(60))
    np.testing.assert_array_equal(points[:, 1], rows.astype(np.float32) / np.float32(40))
    assert mask[rows, cols].all()
    assert len(set(zip(cols.tolist(), rows.tolist()))) == 50  # without replacement
    # the same pixels as the centre rule: only the pixel -> point step differs
    centres = Region.from_mask(mask).sample_points(50, seed=1, pixel_coords="centre")
    np.testing.assert_allclose(centres - points, np.tile([0.5 / 60, 0.5 / 40], (50, 1)), atol=1e-6)


# Mask pixels (row, col) on a 480-row, 500-column mask, and their point text by eval_RIS.py's
# rule, worked out by hand: x = float32(col) / float32(500), y = float32(row) / float32(480),
# then int(float32(v * 100)).
#   (19, 145): x = float32(0.29) -> 29 (see test_float32_points_are_scaled_in_float32_as_released);
#              y = 19/480 = 0.03958 -> 3.958 -> 3.              Released "[29 3]".
#   (0, 265):  x = float32(0.53) -> 52; y = 0 -> 0.             Released "[52 0]".
#   (479, 499): x = 0.998 -> 99.80 -> 99; y = 0.99792 -> 99.    Released "[99 99]".
# Pixel centres (float64): (145.5/500, 19.5/480) = (0.291, 0.040625) -> "[29 4]";
# (265.5/500, 0.5/480) = (0.531, 0.00104) -> "[53 0]"; (0.999, 0.99896) -> "[99 99]".
# Corners in float64 would give "[28 3]" and "[53 0]" (0.29 * 100 = 28.999999999999996).
RELEASED_PIXELS = [(19, 145), (0, 265), (479, 499)]
RELEASED_TEXTS = ["[29 3]", "[52 0]", "[99 99]"]
CENTRE_TEXTS = ["[29 4]", "[53 0]", "[99 99]"]


def test_pixel_points_released_and_centre_texts():
    rows, cols = zip(*RELEASED_PIXELS)
    corner = pixel_points(rows, cols, 480, 500)
    assert corner.dtype == np.float32
    assert points_to_text(corner) == " ".join(RELEASED_TEXTS)
    centre = pixel_points(rows, cols, 480, 500, "centre")
    assert centre.dtype == np.float64
    assert points_to_text(centre) == " ".join(CENTRE_TEXTS)
    with pytest.raises(RegionError, match=r"unknown pixel_coords 'middle'; expected one of \('corner_float32', 'centre'\)"):
        pixel_points(rows, cols, 480, 500, "middle")


@pytest.mark.parametrize("pixel, released, centre", list(zip(RELEASED_PIXELS, RELEASED_TEXTS, CENTRE_TEXTS)))
def test_mask_region_text_of_one_pixel(pixel, released, centre):
    mask = np.zeros((480, 500), dtype=bool)
    mask[pixel] = True
    region = Region.from_mask(mask)
    assert region.to_text(1, seed=0) == released
    assert region.to_text(3, seed=0) == " ".join([released] * 3)  # fewer pixels than k: repeats
    assert region.to_text(1, seed=0, pixel_coords="centre") == centre
    with pytest.raises(RegionError, match="unknown pixel_coords 'middle'"):
        region.to_text(1, seed=0, pixel_coords="middle")


def test_small_mask_samples_with_replacement():
    mask = np.zeros((10, 10), dtype=bool)
    mask[2, 3] = mask[7, 8] = True
    points = Region.from_mask(mask).sample_points(10, seed=0, pixel_coords="centre")
    assert points.shape == (10, 2)
    assert set(map(tuple, points.tolist())) == {(0.35, 0.25), (0.85, 0.75)}


def test_to_text_uses_sampled_points_and_quantize():
    region = Region.from_points(PAPER_POINTS)
    assert region.to_text(2, strategy="even", quantize="round") == "[32 64] [37 62]"
    assert region.to_text(2, seed=0, quantize="floor") == "[32 64] [36 62]"
    box = Region.from_box([0.1, 0.1, 0.6, 0.6])
    assert box.to_text(10, seed=7) == points_to_text(box.sample_points(10, seed=7))


# ---------------------------------------------------------------------------- dilation


def test_dilate_single_pixel_by_3_gives_disk_of_29():
    mask = np.zeros((11, 11), dtype=bool)
    mask[5, 5] = True
    grown = Region.from_mask(mask).dilate(3).mask
    # Offsets with dx^2 + dy^2 <= 9: rows dy = 0, +-1, +-2, +-3 hold 7, 5, 5, 1 pixels.
    assert grown.sum() == 7 + 2 * 5 + 2 * 5 + 2 * 1 == 29
    dy, dx = np.mgrid[-5:6, -5:6]
    np.testing.assert_array_equal(grown, dx**2 + dy**2 <= 9)


def test_dilate_is_clipped_at_the_border():
    mask = np.zeros((8, 8), dtype=bool)
    mask[0, 0] = True
    assert dilate_mask(mask, 3).sum() == 4 + 3 + 3 + 1  # the quarter disk, rows dy = 0..3


def test_dilate_zero_gives_equal_region():
    region = Region.from_mask(hand_mask())
    assert region.dilate(0) == region


# ---------------------------------------------------------------------------- error paths


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Region.from_points([]), "points is empty"),
        (lambda: Region.from_scribble([[0.1, np.nan]]), "scribble: point 0 has a NaN coordinate"),
        (lambda: Region.from_mask(np.zeros((4, 4))), r"mask is empty: no foreground pixel in the 4x4 mask"),
        (lambda: Region.from_mask(np.zeros((2, 3, 4))), r"2-D \(H, W\) array.*got shape \(2, 3, 4\)"),
        (lambda: Region.from_mask(np.full((2, 2), 255)), r"values must be 0/1.*\[255, 255\]"),
        (lambda: Region.from_box([0.5, 0.1, 0.2, 0.4]), r"box is inverted \(x2 < x1 or y2 < y1\)"),
        (lambda: Region.from_box([0.1, 0.1, 0.1, 0.4]), "box has zero area"),
        (lambda: Region.from_box([10, 10, -1, 5], fmt="xywh"), "box is inverted"),
        (lambda: Region.from_box([1.2, 1.2, 1.5, 1.5]), "box lies outside the image"),
        (lambda: Region.from_box([0.1, 0.2, 0.3]), r"box must be 4 numbers.*got shape \(3,\)"),
        (lambda: Region.from_box([0, 0, 1, 1], fmt="cxcywh"), "unknown box format 'cxcywh'"),
        (lambda: Region.from_box([0, 0, 9, 9], image_size=(0, 10)), r"image_size must be \(width, height\)"),
        (lambda: Region.from_rle({"size": [5, 7], "counts": [11, 2]}), "add up to 13.*5x7 needs 35"),
        (lambda: Region.from_rle({"size": [5, 7], "counts": "3"}), "add up to 3"),
        (lambda: Region.from_rle({"size": [5, 7], "counts": "0`h9"}), "add up to 10000"),
        (lambda: Region.from_rle({"size": [5, 7], "counts": "\x7f"}), "invalid character"),
        (lambda: Region.from_rle({"counts": "abc"}), "'size' and 'counts'"),
        (lambda: Region.from_rle({"size": [0, 7], "counts": ""}), "mask height must be a positive int"),
        (lambda: Region.from_polygons([[1, 1, 2, 2]], 5, 7), r"polygon 0 must be .* >= 3 vertices, got 4"),
        (lambda: Region.from_polygons([], 5, 7), "polygons is empty"),
        (lambda: polygons_to_mask([[1, 1, 2, 2, np.nan, 1]], 5, 7), "polygon 0 has a NaN"),
    ],
)
def test_constructor_errors(build, message):
    with pytest.raises(RegionError, match=message):
        build()


@pytest.mark.parametrize(
    "obj, message",
    [
        ({"circle": [0.5]}, r"exactly one of the keys 'points', 'scribble', 'box', 'rle', 'polygons'; found none"),
        ({"points": PAPER_POINTS, "box": [0, 0, 1, 1]}, r"found keys \['points', 'box'\]"),
        ({"points": PAPER_POINTS, "image_size": [9, 9]}, r"unexpected keys \['image_size'\] in a 'points'"),
        ({"polygons": [[1, 1, 4, 1, 4, 3]], "height": 5}, r"needs 'height' and 'width'; missing \['width'\]"),
        ([[0.1, 0.2]], "must be an object"),
    ],
)
def test_from_json_errors(obj, message):
    with pytest.raises(RegionError, match=message):
        Region.from_json(obj)


def test_sampling_errors():
    points = Region.from_points(PAPER_POINTS)
    valid = r"\('random_sorted', 'even'\)"
    with pytest.raises(RegionError, match=rf"unknown strategy 'uniform' for a 'points' region; valid: {valid}"):
        points.sample_points(5, strategy="uniform")
    with pytest.raises(RegionError, match=r"unknown strategy 'even' for a 'mask' region; valid: \('uniform',"):
        Region.from_mask(hand_mask()).sample_points(5, strategy="even")
    with pytest.raises(RegionError, match="k .* must be an int >= 1, got 0"):
        points.sample_points(0)
    with pytest.raises(RegionError, match="draws must be an int >= 1, got 0"):
        points.sample_point_draws(5, 0, seed=0)
    with pytest.raises(RegionError, match="seed must be an int, a numpy.random.Generator or None, got float"):
        points.sample_points(5, seed=0.5)


def test_dilation_and_mask_errors():
    mask_region = Region.from_mask(hand_mask())
    box = Region.from_box([0.1, 0.1, 0.2, 0.2])
    with pytest.raises(RegionError, match="dilation pixels must be >= 0, got -1"):
        mask_region.dilate(-1)
    with pytest.raises(RegionError, match="dilation pixels must be an int, got float"):
        mask_region.dilate(1.5)
    with pytest.raises(RegionError, match="dilation needs a mask region, got a 'box' region"):
        box.dilate(3)
    with pytest.raises(RegionError, match="a 'box' region has no mask; use to_mask"):
        box.mask
    with pytest.raises(RegionError, match="a 'points' region has no area"):
        Region.from_points(PAPER_POINTS).to_mask(5, 7)
    with pytest.raises(RegionError, match="mask is 5x7, asked for 7x5"):
        mask_region.to_mask(7, 5)
    with pytest.raises(RegionError, match="box region data must have x1 < x2"):
        Region("box", np.array([0.5, 0.5, 0.1, 0.6]))


# ----------------------------------------------------------------------- the one region door


def test_point_text_given_as_text_is_used_as_given_not_redrawn():
    from lavis_regionvlm.regions import region_point_text

    # Redrawn, "[29 57] [58 14]" would become 0.29 * 100 = 28.999... -> 28, repeated up to K = 10.
    assert Region.from_points([[0.29, 0.57], [0.58, 0.14]]).to_text(10, 0).startswith("[28 56] [28 56]")
    for form in ("[29 57] [58 14]", "  [29 57] [58 14]\n", {"point_text": "[29 57] [58 14]"},
                 '{"point_text": "[29 57] [58 14]"}'):
        assert region_point_text(form, 10, 0) == "[29 57] [58 14]"
    assert region_point_text("[29 57]  [58 14]", 3, 5, quantize="round") == "[29 57]  [58 14]"


def test_the_whole_image_is_empty_point_text_in_every_form():
    from lavis_regionvlm.regions import read_region, region_json, region_point_text

    for form in (None, "", "   ", {"point_text": ""}):
        assert read_region(form) == "" and region_point_text(form, 10, 0) == ""
    assert region_json("") == {"point_text": ""}


def test_read_region_keeps_the_form_and_region_json_reads_back():
    from lavis_regionvlm.regions import read_region, region_json

    box = read_region({"box": [0.1, 0.2, 0.5, 0.6]})
    assert isinstance(box, Region) and box.kind == "box"
    assert read_region(region_json(box)) == box
    assert region_json(read_region("[32 64] [37 62]")) == {"point_text": "[32 64] [37 62]"}
    assert read_region(region_json("[32 64] [37 62]")) == "[32 64] [37 62]"


@pytest.mark.parametrize("region, message", [
    ("[1 101]", r"region 3: point '\[1 101\]' .*value above 100; not point text"),
    ("[0.3, 0.6]", r"region 3: malformed point .*; not point text .*not region JSON"),
    ("dog", r"region 3: unexpected text 'dog'.*; not point text"),
    ({"point_text": 5}, r"region 3: point text must be a str, got int"),
    ({"point_text": "[1 2]", "box": [0, 0, 1, 1]}, r"region 3: a 'point_text' region takes no other key"),
    ('{"points": [[0.1, 0.2]', r"region 3: invalid JSON at line 1 column"),
    ("[1, 2]", r"region 3: malformed point '\[1, 2\]'.*; not point text"),
    (3.5, r"region 3: expected a Region, .* got float"),
])
def test_bad_region_inputs_say_what_and_where(region, message):
    from lavis_regionvlm.regions import region_point_text

    with pytest.raises(RegionError, match=message):
        region_point_text(region, 10, 0, what="region 3")


def test_region_input_needs_neither_torch_nor_lavis():
    import subprocess
    import sys

    code = (
        "import sys; "
        "import lavis_regionvlm.regions.region_input as r; "
        "assert r.region_point_text('[1 2]', 10) == '[1 2]'; "
        "print(sorted(m for m in ('torch', 'lavis') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_point_text_spec_is_the_one_way_regions_become_point_text():
    """Every entry point writes a region through a `PointTextSpec`: the same region, seed and
    keys give the same text whichever door it comes through."""
    from lavis_regionvlm.common.seeding import seeded_rng
    from lavis_regionvlm.regions import PointTextSpec, region_point_text

    region = Region.from_box([0.1, 0.2, 0.6, 0.7])
    spec = PointTextSpec(num_points=6, quantize="round")
    assert spec.text(region, 3) == region_point_text(region, 6, 3, quantize="round") == region.to_text(6, 3, quantize="round")
    keyed = spec.text(region, 3, "val-1", 2)
    assert keyed == region.to_text(6, seeded_rng(3, "val-1", 2), quantize="round") != spec.text(region, 3)
    assert spec.draws(region, 3, 3, "val-1", 2)[0] == keyed  # RIS's first draw is the single draw
    assert len(set(spec.draws(region, 3, 3, "val-1", 2))) == 3
    assert spec.text("[29 57] [58 14]", 3) == "[29 57] [58 14]"  # point text passes through
    assert spec.text(None) == spec.text("") == ""
    assert spec.replace(num_points=None, quantize="floor") == PointTextSpec(num_points=6, quantize="floor")
    for bad, message in (({"num_points": 0}, "num_points"), ({"quantize": "ceil"}, "quantize")):
        with pytest.raises(RegionError, match=message):
            PointTextSpec(**bad)

