"""Proposal filtering, seeded point draws, the proposal cache files, and the baselines' images."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from lavis_regionvlm.regions import PointTextSpec, text_to_points
from lavis_regionvlm.regions.masks import mask_to_rle
from lavis_regionvlm.ris.baselines import baseline_images, crop, mask_box, red_circle
from lavis_regionvlm.ris.filtering import ProposalFilter, hugs_border
from lavis_regionvlm.ris.points import proposal_point_texts
from lavis_regionvlm.ris.proposal_cache import (
    proposal_path,
    read_proposals,
    remove_stale_temps,
    write_json_atomic,
)

SIZE = 100  # 100 x 100 image: 1% = 100 px, 4% = 400 px


def box(x1, y1, x2, y2):
    mask = np.zeros((SIZE, SIZE), bool)
    mask[y1:y2, x1:x2] = True
    return mask


def records(*masks):
    return [{"segmentation": mask_to_rle(m)} for m in masks]


def test_small_and_border_hugging_proposals_are_dropped():
    kept, masks, fallback = ProposalFilter().select(records(
        box(40, 40, 45, 45),  # 25 px < 4%
        box(0, 30, 30, 70),   # left band: 40 rows x 2 px = 80 > 0.7 * 100: hugs
        box(30, 30, 60, 60),  # 900 px, inside: kept
        box(0, 0, 100, 100),  # whole image: hugs every side
        box(10, 10, 40, 40),  # kept
    ))
    assert kept == [2, 4] and not fallback
    assert np.array_equal(masks[0], box(30, 30, 60, 60))


def test_border_bands_on_a_square_image_are_the_same_under_both_rules():
    for rule in ("released", "per_band"):
        assert not hugs_border(box(0, 20, 30, 55), 2, 0.7, rule)  # left band: 35 rows x 2 px = 70, not > 70
        assert hugs_border(box(0, 20, 30, 56), 2, 0.7, rule)  # 72 > 70
        assert not hugs_border(box(30, 97, 60, 100), 2, 0.7, rule)  # bottom band: 30 columns x 2 px = 60
        assert hugs_border(box(30, 97, 66, 100), 2, 0.7, rule)  # 72 > 70
        assert not hugs_border(box(30, 97, 66, 100), 2, 0.75, rule)


def rect(height, width, y1, y2, x1, x2):
    mask = np.zeros((height, width), bool)
    mask[y1:y2, x1:x2] = True
    return mask


# A 640 x 480 image (W = 640, H = 480). eval_RIS.py skips a mask when
#   mask[:2].sum() > 0.7 * H  or  mask[-2:].sum() > 0.7 * H  or
#   mask[:, :2].sum() > 0.7 * W  or  mask[:, -2:].sum() > 0.7 * W
# i.e. top/bottom bands against 336 and left/right bands against 448; "per_band" swaps them
# (top/bottom against 0.7 * 640 = 448, left/right against 0.7 * 480 = 336).
# Small-area cut: 0.04 * 640 * 480 = 12288 px.
WIDE = [
    rect(480, 640, 0, 100, 100, 300),    # 0 top: band 2 x 200 = 400: > 336 hugs (released), <= 448 kept (per_band)
    rect(480, 640, 100, 300, 0, 100),    # 1 left: band 2 x 200 = 400: <= 448 kept (released), > 336 hugs (per_band)
    rect(480, 640, 200, 320, 200, 340),  # 2 inside, 16800 px: kept by both
    rect(480, 640, 200, 250, 400, 450),  # 3 2500 px < 12288: too small for both
    rect(480, 640, 0, 480, 0, 640),      # 4 whole image: hugs under both
    rect(480, 640, 380, 480, 200, 370),  # 5 bottom: band 2 x 170 = 340: > 336 hugs (released), <= 448 kept (per_band)
    rect(480, 640, 50, 270, 560, 640),   # 6 right: band 2 x 220 = 440: <= 448 kept (released), > 336 hugs (per_band)
]


def test_border_rule_released_compares_top_bottom_with_height_and_sides_with_width():
    recs = [{"segmentation": mask_to_rle(m)} for m in WIDE]
    kept, masks, fallback = ProposalFilter().select(recs)  # the default is the released rule
    assert kept == [1, 2, 6] and not fallback
    assert all(np.array_equal(m, WIDE[i]) for i, m in zip(kept, masks))
    assert ProposalFilter(border_rule="released").select(recs)[0] == [1, 2, 6]
    kept, _, fallback = ProposalFilter(border_rule="per_band").select(recs)
    assert kept == [0, 2, 5] and not fallback
    assert [hugs_border(m, 2, 0.7) for m in WIDE] == [True, False, False, False, True, True, False]
    assert [hugs_border(m, 2, 0.7, "per_band") for m in WIDE] == [False, True, False, False, True, False, True]


def test_border_rule_must_be_known():
    with pytest.raises(ValueError, match=r"border_rule must be one of \('released', 'per_band'\), got 'square'"):
        ProposalFilter(border_rule="square")
    with pytest.raises(ValueError, match="border_rule must be one of"):
        hugs_border(WIDE[0], 2, 0.7, "square")


def test_at_most_max_proposals_in_cache_order():
    many = [box(10 + i, 10, 40 + i, 40) for i in range(30)]
    kept, _, _ = ProposalFilter(max_proposals=20).select(records(*many))
    assert kept == list(range(20))


def test_fallback_when_nothing_survives():
    kept, masks, fallback = ProposalFilter().select(records(
        box(0, 0, 100, 100),  # hugs
        box(40, 40, 51, 51),  # 121 px: >= 1%, < 4%
        box(10, 10, 15, 15),  # 25 px < 1%
    ))
    assert fallback and kept == [0, 1] and len(masks) == 2
    assert ProposalFilter().select(records(box(10, 10, 15, 15))) == ([], [], True)
    assert ProposalFilter().select([]) == ([], [], False)


def test_point_draws_are_seeded_per_image_and_proposal():
    masks = [box(10, 10, 40, 40), box(60, 60, 90, 90)]
    kwargs = dict(spec=PointTextSpec(num_points=10, quantize="floor"), draws=5, seed=3, image_id=7)
    texts = proposal_point_texts(masks, [0, 5], **kwargs)
    assert len(texts) == 10 and len(set(texts)) == 10
    # the same proposal gives the same draws whatever else is scored with it
    assert proposal_point_texts(masks[1:], [5], **kwargs) == texts[5:]
    assert proposal_point_texts(masks, [0, 5], **{**kwargs, "image_id": 8}) != texts
    assert proposal_point_texts(masks, [0, 5], **{**kwargs, "seed": 4}) != texts
    for text in texts[:5]:
        points = text_to_points(text)
        assert len(points) == 10 and (points >= 0.10).all() and (points <= 0.40).all()
    named = {name: proposal_point_texts(masks, [0, 5], **{**kwargs, "image_id": name})
             for name in ("COCO_1", "COCO_2")}  # string image ids seed by their CRC32
    assert proposal_point_texts(masks, [0, 5], **{**kwargs, "image_id": "COCO_1"}) == named["COCO_1"]
    assert named["COCO_1"] != named["COCO_2"]


def test_dilation_spreads_the_points_beyond_the_mask():
    mask = box(45, 45, 55, 55)
    spec = PointTextSpec(num_points=50, quantize="floor")
    plain = proposal_point_texts([mask], [0], spec=spec, draws=4, seed=0, image_id=1)
    grown = proposal_point_texts([mask], [0], spec=spec, draws=4, seed=0, image_id=1, dilation_px=15)
    plain_points = np.concatenate([text_to_points(t) for t in plain])
    grown_points = np.concatenate([text_to_points(t) for t in grown])
    assert plain_points.min() >= 0.45 and plain_points.max() < 0.55
    assert grown_points.min() < 0.40 and grown_points.max() > 0.60


def test_cache_files_round_trip_and_accept_a_bare_list(tmp_path):
    recs = records(box(10, 10, 40, 40))
    path = proposal_path(tmp_path, "COCO_train2014_000000000001.jpg")
    assert path.name == "COCO_train2014_000000000001.jpg.json"
    write_json_atomic(path, {"file_name": "x.jpg", "proposals": recs})
    assert read_proposals(path) == recs
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(recs))
    assert read_proposals(bare) == recs
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"area": 3}]))
    with pytest.raises(ValueError, match="proposal 0"):
        read_proposals(bad)
    assert not list(tmp_path.glob(".*.tmp"))


def test_stale_temps_of_dead_writers_are_removed(tmp_path):
    dead_pid = 2**22 + 12345  # above the default pid_max: no such process
    stale = tmp_path / f".a.json.{dead_pid}.tmp"
    stale.write_text("{half")
    ours = tmp_path / f".b.json.{os.getpid()}.tmp"
    ours.write_text("{")
    assert remove_stale_temps(tmp_path) == [stale]
    assert not stale.exists() and ours.exists()


def test_baseline_images_draw_a_red_ellipse_or_crop_the_box():
    image = Image.fromarray(np.full((SIZE, SIZE, 3), 200, np.uint8))
    mask = box(30, 40, 60, 60)
    assert mask_box(mask) == (30, 40, 60, 60)
    circled = np.asarray(red_circle(image, mask_box(mask)))
    red = (circled[..., 0] == 255) & (circled[..., 1] == 0)
    ys, xs = np.nonzero(red)
    assert red.any() and not red[45:55, 40:50].any()  # a ring around the box, not inside it
    assert xs.min() < 30 and xs.max() > 60 and ys.min() < 40 and ys.max() > 60
    assert crop(image, (30, 40, 60, 60)).size == (30, 20)
    to_tensor = lambda im: torch.tensor(np.asarray(im.resize((8, 8))))  # noqa: E731
    out = baseline_images("crop", image, [mask, box(0, 0, 10, 10)], to_tensor)
    assert out.shape == (2, 8, 8, 3)


def test_proposal_point_texts_use_the_released_pixel_rule_by_default():
    # One-pixel proposals on a 480-row, 500-column image: every draw is that pixel. By
    # eval_RIS.py's rule (float32(col) / float32(W), then int(float32(v * 100))), row 19 col 145
    # is "[29 3]" and row 0 col 265 is "[52 0]" (worked out in tests/test_regions.py); pixel
    # centres give "[29 4]" and "[53 0]".
    masks = []
    for row, col in ((19, 145), (0, 265)):
        mask = np.zeros((480, 500), bool)
        mask[row, col] = True
        masks.append(mask)
    spec = PointTextSpec(num_points=2, quantize="floor")
    kwargs = dict(draws=2, seed=0, image_id=1)
    assert proposal_point_texts(masks, [0, 1], spec=spec, **kwargs) == ["[29 3] [29 3]"] * 2 + ["[52 0] [52 0]"] * 2
    centre = proposal_point_texts(masks, [0, 1], spec=spec.replace(pixel_coords="centre"), **kwargs)
    assert centre == ["[29 4] [29 4]"] * 2 + ["[53 0] [53 0]"] * 2


def test_ris_options_refuse_an_unknown_pixel_rule():
    from lavis_regionvlm.ris.pipeline import RisOptions

    assert RisOptions().pixel_coords == "corner_float32"
    with pytest.raises(ValueError, match=r"pixel_coords must be one of \('corner_float32', 'centre'\), got 'middle'"):
        RisOptions(pixel_coords="middle")


@pytest.mark.parametrize("name", ["ris_refcoco_eval", "ris_refcoco_plus_eval", "ris_refcocog_eval"])
def test_ris_projects_select_the_released_protocol(name):
    from pathlib import Path
    from types import SimpleNamespace

    from lavis.common.registry import registry
    from omegaconf import OmegaConf

    import lavis_regionvlm.tasks.zero_shot_ris  # noqa: F401  (registers the task)

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "projects/regionvlm" / f"{name}.yaml")
    assert cfg.model.t5_soft_prompt_dtype == "float32"
    task_class = registry.get_task_class("zero_shot_ris")
    options = task_class.setup_task(cfg=SimpleNamespace(run_cfg=cfg.run)).options
    assert (options.proposal_filter.border_rule, options.pixel_coords) == ("released", "corner_float32")
    assert options.proposal_filter == ProposalFilter()  # the YAML spells out the defaults
    other = OmegaConf.merge(cfg.run, {"border_rule": "per_band", "pixel_coords": "centre"})
    options = task_class.setup_task(cfg=SimpleNamespace(run_cfg=other)).options
    assert (options.proposal_filter.border_rule, options.pixel_coords) == ("per_band", "centre")
