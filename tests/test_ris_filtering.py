"""Proposal filtering, seeded point draws, the proposal cache files, and the baselines' images."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from lavis_regionvlm.regions import text_to_points
from lavis_regionvlm.regions.masks import mask_to_rle
from lavis_regionvlm.ris.baselines import baseline_images, crop, mask_box, red_circle
from lavis_regionvlm.ris.filtering import ProposalFilter, hugs_border
from lavis_regionvlm.ris.points import image_key, proposal_point_texts
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


def test_border_rule_compares_each_band_with_its_side():
    assert not hugs_border(box(0, 20, 30, 55), 2, 0.7)  # left band: 35 rows x 2 px = 70, not > 70
    assert hugs_border(box(0, 20, 30, 56), 2, 0.7)  # 72 > 70
    assert not hugs_border(box(30, 97, 60, 100), 2, 0.7)  # bottom band: 30 columns x 2 px = 60
    assert hugs_border(box(30, 97, 66, 100), 2, 0.7)  # 72 > 70
    assert not hugs_border(box(30, 97, 66, 100), 2, 0.75)


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
    kwargs = dict(num_points=10, draws=5, seed=3, image_id=7, quantize="floor")
    texts = proposal_point_texts(masks, [0, 5], **kwargs)
    assert len(texts) == 10 and len(set(texts)) == 10
    # the same proposal gives the same draws whatever else is scored with it
    assert proposal_point_texts(masks[1:], [5], **kwargs) == texts[5:]
    assert proposal_point_texts(masks, [0, 5], **{**kwargs, "image_id": 8}) != texts
    assert proposal_point_texts(masks, [0, 5], **{**kwargs, "seed": 4}) != texts
    for text in texts[:5]:
        points = text_to_points(text)
        assert len(points) == 10 and (points >= 0.10).all() and (points <= 0.40).all()
    assert image_key("COCO_1") == image_key("COCO_1") != image_key("COCO_2")


def test_dilation_spreads_the_points_beyond_the_mask():
    mask = box(45, 45, 55, 55)
    plain = proposal_point_texts([mask], [0], num_points=50, draws=4, seed=0, image_id=1, quantize="floor")
    grown = proposal_point_texts([mask], [0], num_points=50, draws=4, seed=0, image_id=1, quantize="floor",
                                 dilation_px=15)
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
