"""The training data as the authors built it (jbeomlee93/RegionVLM: generate_instruct_data_sentence.py,
generate_video_data_sentence.py, LN_datasets.py), the defaults of the plugin's datasets, pinned to
values worked out by hand from their code:

- an epoch is one sample per image record (a random phrase of a narrative, a random region of a
  VG image);
- a phrase stands for 20 points by their index rule ``int((n - 1) / 19 * (j - 1))``; K of them
  are a sorted random sample, upsampled by the same rule (with K) when fewer than K;
- a VG box stands for 20 points drawn once;
- video narratives: the subject's words up to "is", the whole caption, time from the first
  trace point, the last actor dropped;
- the crop of every region sample, up to 10% a side;
- 60% region / 40% global samples, global by file weights (10% COCO, 90% LAION).
"""
from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from lavis.common.config import Config
from lavis.common.registry import registry
from omegaconf import OmegaConf
from PIL import Image

from lavis_regionvlm.preparation.ln_prepared import PreparedNarratives
from lavis_regionvlm.preparation.narratives import index_rule, parse_narrative
from lavis_regionvlm.preparation.prepare_ln import main as prepare_main
from lavis_regionvlm.datasets import ConfigError
from lavis_regionvlm.datasets.region import select_points

REAL_VIDLN = Path(__file__).resolve().parent / "data" / "vidln_OVIS_train_5d24e4ea.jsonl"
TIGER_ONE = "A brown tiger with black stripes is fighting with the other tiger."
TIGER_TWO = "Another brown tiger with black stripes is fighting with the first tiger."

# Narrative 1: three phrases, "A red ball" with 3 trace points; narrative 2: one phrase, 7 points.
BALL = [(0.1, 0.1), (0.2, 0.2), (0.3, 0.3)]
SKY = [(0.1 * i + 0.05, 0.5) for i in range(7)]


def image_record(image_id: str, caption: str, words: list[tuple[str, float, float]],
                 points: list[tuple[float, float, float]]) -> dict:
    """An image LN record; points are (x, y, t)."""
    return {"dataset_id": "mscoco_train2017", "image_id": image_id, "annotator_id": 1, "caption": caption,
            "timed_caption": [{"utterance": u, "start_time": s, "end_time": e} for u, s, e in words],
            "traces": [[{"x": x, "y": y, "t": t} for x, y, t in points]]}


def write_image(path: Path, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 90, 60)).save(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two image narratives, the real OVIS video narrative (both video modes) and a tiny VG."""
    root = tmp_path_factory.mktemp("released")
    words = [("A", 0.0, 0.2), ("red", 0.2, 0.4), ("ball,", 0.4, 1.0), ("a", 1.0, 1.2), ("dog", 1.2, 2.0),
             ("and", 2.0, 2.2), ("a", 2.2, 2.4), ("cat.", 2.4, 3.0)]
    trace = [(x, y, 0.3 * i + 0.1) for i, (x, y) in enumerate(BALL)] + [(0.6, 0.6, 1.5), (0.7, 0.7, 2.5)]
    sky_words = [("A", 0.0, 0.5), ("blue", 0.5, 1.0), ("sky.", 1.0, 4.0)]
    lines = [image_record("1", "A red ball, a dog and a cat.", words, trace),
             image_record("2", "A blue sky.", sky_words, [(x, y, 0.5 * i + 0.2) for i, (x, y) in enumerate(SKY)])]
    (root / "ln.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    for image_id in ("1", "2"):
        write_image(root / "images" / f"{image_id}.jpg")
    prepare_main(["--input", str(root / "ln.jsonl"), "--images", str(root / "images"), "--output", str(root / "ln"),
                  "--captions-out", str(root / "captions_a.json"), "--image-template", "{image_id}.jpg"])
    video = json.loads(REAL_VIDLN.read_text())
    for name in video["keyframe_names"]:
        write_image(root / "frames" / video["video_id"] / f"{name}.jpg", (64, 36))
    prepare_main(["--input", str(REAL_VIDLN), "--images", str(root / "frames"), "--output", str(root / "video")])
    prepare_main(["--input", str(REAL_VIDLN), "--images", str(root / "frames"), "--output", str(root / "video_phrases"),
                  "--video-mode", "phrases"])
    # VG: image 1 (200 x 100) with two regions, image 2 (100 x 100) with one.
    vg = root / "vg"
    write_image(vg / "VG_100K" / "1.jpg", (200, 100))
    write_image(vg / "VG_100K" / "2.jpg", (100, 100))
    url = "https://cs.stanford.edu/people/rak248/VG_100K/{}.jpg"
    def box(rid: int, image_id: int, phrase: str, x: int, y: int, w: int, h: int) -> dict:
        return {"region_id": rid, "image_id": image_id, "phrase": phrase, "x": x, "y": y, "width": w, "height": h}

    (vg / "region_descriptions.json").write_text(json.dumps([
        {"id": 1, "regions": [box(1, 1, "a red car", 20, 10, 60, 40), box(2, 1, "the sky", 120, 0, 70, 30)]},
        {"id": 2, "regions": [box(3, 2, "green grass", 50, 60, 40, 30)]}]))
    (vg / "image_data.json").write_text(json.dumps([
        {"image_id": 1, "width": 200, "height": 100, "url": url.format(1)},
        {"image_id": 2, "width": 100, "height": 100, "url": url.format(2)}]))
    # Two global caption files, to tell a weighted draw's source from its caption.
    (root / "captions_b.json").write_text(json.dumps(
        [{"image": "1.jpg", "caption": f"laion caption {i}", "image_id": str(i)} for i in range(5)]))
    return root


def build(name: str, block: dict) -> object:
    """The train split of builder `name`: its default YAML (the released defaults) under `block`."""
    user = OmegaConf.create({"datasets": {name: OmegaConf.merge(
        {"vis_processor": {"train": {"name": "region_image_train", "image_size": 16}}}, block)}})
    cfg = Config.build_dataset_config(user).datasets[name]
    return registry.get_builder_class(name)(cfg).build_datasets()["train"]


def ln_block(data: Path, *folders: str, **extra) -> dict:
    return {"build_info": {"annotations": {"train": {"files": [{"path": str(data / f)} for f in folders]}}}, **extra}


def vg_block(data: Path, **extra) -> dict:
    return {"build_info": {"annotations": {"train": {
        "region_descriptions": str(data / "vg/region_descriptions.json"),
        "image_data": str(data / "vg/image_data.json"), "images": str(data / "vg")}}}, **extra}


NO_CROP = {"vis_processor": {"train": {"crop_prob": 0.0}}}  # to compare points with the stored ones
BY_PHRASE = {"sampling": {"epoch_unit": "phrase"}}  # item i is sample i, to look at one phrase


# ------------------------------------------------------------------ the index rule


def test_the_released_index_rule():
    # int(2 / 19 * (j - 1)): below 1 for j - 1 <= 9, in [1, 2) for 10..18, 2 at 19.
    assert index_rule(3, 20) == [0] * 10 + [1] * 9 + [2]
    assert index_rule(1, 20) == [0] * 20 and index_rule(20, 20) == list(range(20))
    # 53 / 19 * 19 is 52.99999999999999 in floats: of 54 points the last is never stored.
    assert index_rule(54, 20)[-1] == 52
    # Upsampling 7 points to K = 10: 6 / 9 * (j - 1) = 0, .67, 1.33, 2, 2.67, 3.33, 4, 4.67, 5.33, 6.
    assert index_rule(7, 10) == [0, 0, 1, 2, 2, 3, 4, 4, 5, 6]
    # 20 stored points to K = 25: 19 / 24 * (j - 1).
    assert index_rule(20, 25) == [0, 0, 1, 2, 3, 3, 4, 5, 6, 7, 7, 8, 9, 10, 11, 11, 12, 13, 14, 15, 15, 16, 17, 18, 19]


def test_fewer_than_k_points_are_upsampled_by_the_floor_rule():
    points = np.array(SKY)
    for seed in range(3):  # all 10 of the 10 upsampled points: no randomness left
        np.testing.assert_array_equal(select_points(points, 10, np.random.default_rng(seed)),
                                      points[[0, 0, 1, 2, 2, 3, 4, 4, 5, 6]])  # not round(): [0, 1, 1, 2, 3, ...]


# ------------------------------------------------------------------ epochs of image records


def test_an_epoch_is_one_sample_per_image_record(data):
    ln = build("localized_narratives", ln_block(data, "ln", "video"))
    assert (ln.num_records, ln.num_samples) == (2 + 3, 4 + 3) and len(ln) == 5
    vg = build("vg_region", vg_block(data))
    assert (vg.num_records, vg.num_samples) == (2, 3) and len(vg) == 2
    phrases = Counter()
    for epoch in range(30):
        ln.set_epoch(epoch)
        phrases[ln[0]["text_output"]] += 1
        assert ln[1]["text_output"] == "a blue sky"
    assert set(phrases) == {"a red ball", "a dog", "a cat"}  # one random phrase of narrative 1 each epoch
    regions = set()
    for epoch in range(20):
        vg.set_epoch(epoch)
        regions.add(vg[0]["text_output"])
        assert vg[1]["text_output"] == "green grass"
    assert regions == {"a red car", "the sky"}
    phrase_level = build("localized_narratives", ln_block(data, "ln", "video", sampling={"epoch_unit": "phrase"}))
    assert len(phrase_level) == 7


# ------------------------------------------------------------------ stored points and K of them


def test_a_phrase_with_3_points_is_stored_as_20_by_the_index_rule(data):
    ds = build("localized_narratives", ln_block(data, "ln", **BY_PHRASE, **NO_CROP))
    record = ds.record(0)
    assert record.text == "A red ball"
    np.testing.assert_allclose(ds.stored_points(0, record), np.array(BALL)[[0] * 10 + [1] * 9 + [2]])
    for epoch in range(5):  # K = 10 of the 20 in stored order: at most 10 / 9 / 1 of each point
        ds.set_epoch(epoch)
        rows = [BALL.index(tuple(p)) for p in np.round(ds.sample_points(0), 6).tolist()]
        assert rows == sorted(rows)
        counts = Counter(rows)
        assert counts[0] <= 10 and counts[1] <= 9 and counts[2] <= 1


def test_k_points_are_a_sorted_random_sample_of_the_stored_20(data):
    ds = build("localized_narratives", ln_block(data, "ln", **BY_PHRASE, **NO_CROP))
    sky = 3  # "A blue sky": seven points, stored as index_rule(7, 20)
    stored = ds.stored_points(sky, ds.record(sky))
    np.testing.assert_allclose(stored, np.array(SKY)[index_rule(7, 20)])
    draws = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        drawn = ds.sample_points(sky)
        assert drawn.shape == (10, 2)
        xs = drawn[:, 0].tolist()
        assert xs == sorted(xs)  # time order kept
        counts = Counter(np.round(xs, 6).tolist())
        assert all(counts[round(x, 6)] <= index_rule(7, 20).count(i) for i, (x, _) in enumerate(SKY))
        draws.add(tuple(xs))
    assert len(draws) > 1  # a random sample each epoch
    more = build("localized_narratives", ln_block(data, "ln", sampling={"num_points": 25, "epoch_unit": "phrase"},
                                                  **NO_CROP))
    np.testing.assert_allclose(more.sample_points(sky), stored[index_rule(20, 25)])  # the floor rule, with K


def test_vg_boxes_draw_20_points_once_and_reuse_them(data):
    ds = build("vg_region", vg_block(data, **BY_PHRASE, **NO_CROP))
    car = ds.record(0)
    assert car.text == "a red car"
    stored = ds.stored_points(0, car)
    assert stored.shape == (20, 2) and (np.round(stored, 4) == stored).all()  # 4 decimals, as released
    assert ((stored >= [0.1, 0.1]) & (stored <= [0.4, 0.5])).all()  # x 20..80 of 200, y 10..50 of 100
    seen = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        np.testing.assert_array_equal(ds.stored_points(0, car), stored)  # the same 20 every epoch
        drawn = ds.sample_points(0)
        rows = [int(np.flatnonzero((stored == p).all(axis=1))[0]) for p in drawn]
        assert rows == sorted(rows) and len(set(rows)) == 10
        seen |= set(rows)
    assert len(seen) > 10
    fresh = build("vg_region", vg_block(data, sampling={"stored_points": None, "epoch_unit": "phrase"}, **NO_CROP))
    points = set()
    for epoch in range(3):
        fresh.set_epoch(epoch)
        points |= {tuple(p) for p in fresh.sample_points(0).tolist()}
    assert len(points) == 30  # ours: fresh uniform points every epoch


# ------------------------------------------------------------------ video narratives


def test_video_subject_mode_on_the_real_record():
    record = json.loads(REAL_VIDLN.read_text())
    records = parse_narrative(record, Counter())  # default: "subject", as released
    samples = [s for r in records for s in r]
    assert [len(r) for r in records] == [1, 1, 1]  # one record per (actor, keyframe)
    assert [(s.text, s.fields["keyframe_name"]) for s in samples] == [
        (TIGER_ONE, "img_0000027"), (TIGER_TWO, "img_0000034"), (TIGER_TWO, "img_0000031")]
    # Their loop over this record: "A brown tiger with black stripes is" + "is" again, times from
    # the first trace point (1646374105131 ms): Tiger one has 53 points, all on keyframe 7; Tiger
    # two has 15 on keyframe 9 and then 23 on keyframe 8; the background actor (last) is dropped.
    assert [len(s.points) for s in samples] == [20, 15, 20]
    one, two_a, two_b = (s.points for s in samples)
    assert one[0].tolist() == [0.50378, 0.54006] and one[1].tolist() == [0.51782, 0.54886]
    assert one[19].tolist() == [0.53747, 0.63248]
    assert two_a[0].tolist() == [0.45605, 0.51983] and two_a[-1].tolist() == [0.49536, 0.67386]
    assert two_b[0].tolist() == [0.40033, 0.78388] and two_b[1].tolist() == [0.40314, 0.77067]
    assert two_b[19].tolist() == [0.39753, 0.59905]


def test_video_subject_mode_without_is_and_with_a_group():
    record = json.loads(REAL_VIDLN.read_text())
    no_is = copy.deepcopy(record)
    no_is["actor_narratives"][0]["caption"] = TIGER_ONE.replace(" is ", " was ")
    first = parse_narrative(no_is, Counter())[0][0]
    # Their rule without " is ": up to the subject's last word, "tiger", taken twice: A, brown,
    # tiger, tiger -> 18 points on keyframe 7, from (0.50378, 0.54006) to (0.55151, 0.55326).
    assert first.text == TIGER_ONE.replace(" is ", " was ") and first.fields["kf_idx"] == 7
    assert len(first.points) == 18
    assert first.points[0].tolist() == [0.50378, 0.54006] and first.points[-1].tolist() == [0.55151, 0.55326]
    group = copy.deepcopy(record)
    group["actor_narratives"][0]["caption"] = "A group of tigers is fighting."
    group["actor_narratives"][0]["noun_segments"] = [[2, 7]]
    skips = Counter()
    assert [r[0].text for r in parse_narrative(group, skips)] == [TIGER_TWO, TIGER_TWO]
    assert skips == {"group_subject": 1}


def test_video_modes_through_prepare_and_the_dataset(data):
    subject = PreparedNarratives(data / "video")
    assert subject.meta["video_mode"] == "subject" and subject.meta["num_records"] == 3
    assert [subject[i].image for i in range(3)] == [
        "5d24e4ea/img_0000027.jpg", "5d24e4ea/img_0000034.jpg", "5d24e4ea/img_0000031.jpg"]
    ds = build("localized_narratives", ln_block(data, "video", **NO_CROP))
    expanded = ds.stored_points(1, ds.record(1))  # 15 points -> 20: the first one twice, index_rule(15, 20)
    # The prepared format keeps 4 decimals (1e-4 units, rounded half to even): 0.45605 is 0.4560.
    np.testing.assert_allclose(expanded[:2], [[0.45605, 0.51983]] * 2, atol=5e-5)
    assert ds[0]["text_output"] == "a brown tiger with black stripes is fighting with the other tiger"
    phrases = PreparedNarratives(data / "video_phrases")
    texts = {phrases[i].text for i in range(len(phrases))}
    assert "a blue sky" in texts and TIGER_ONE not in texts  # ours: every actor, split into phrases


# ------------------------------------------------------------------ the crop


def test_every_region_sample_is_cropped_up_to_10_percent_a_side(data):
    processor = registry.get_processor_class("region_image_train").from_config(
        OmegaConf.create({"image_size": 16, "crop_prob": 1.0, "crop_mode": "sides", "max_side_crop": 0.1}))
    image = Image.new("RGB", (200, 100))
    points = np.array([[0.05, 0.5], [0.5, 0.95]])
    cropped, moved = processor.crop_with_points(image, points, np.random.default_rng(7))
    # Their rule: cut left U(0, min(0.1, 0.05)), right U(0, min(0.1, 1 - 0.5)), top U(0, min(0.1, 0.5)),
    # bottom U(0, min(0.1, 1 - 0.95)), drawn in that order after the crop_prob draw.
    rng = np.random.default_rng(7)
    rng.random()
    left, right, top, bottom = rng.uniform(0, 0.05), rng.uniform(0, 0.1), rng.uniform(0, 0.1), rng.uniform(0, 0.05)
    np.testing.assert_allclose(moved, (points - [left, top]) / [1 - left - right, 1 - top - bottom])
    assert cropped.size == (200 - int(left * 200) - int(right * 200), 100 - int(top * 100) - int(bottom * 100))
    ds = build("localized_narratives", ln_block(data, "ln"))  # the default: every sample cropped
    assert ds.vis_processor.crop_prob == 1.0 and ds.vis_processor.crop_mode == "sides"


# ------------------------------------------------------------------ the mixture


def mix(data: Path, **extra) -> object:
    block = {"region_sources": {"localized_narratives": ln_block(data, "ln", "video"), "vg_region": vg_block(data)},
             "global_sources": {"global_caption": {"build_info": {"annotations": {"train": {"files": [
                 {"path": str(data / "captions_a.json"), "images": str(data / "images"), "weight": 0.1},
                 {"path": str(data / "captions_b.json"), "images": str(data / "images"), "weight": 0.9}]}}}}}}
    return build("region_global_mix", OmegaConf.merge(block, extra))


def test_60_percent_region_and_global_by_file_weights(data):
    ds = mix(data)
    assert len(ds) == 5 + 2  # one item per image record of the region sources
    coco_size = 2  # captions_a: the two narratives' captions
    region = coco = total = 0
    for epoch in range(300):
        ds.set_epoch(epoch)
        for item in range(len(ds)):
            regions, globals_ = ds.group_indices(item)
            assert len(regions) + len(globals_) == 1 and regions in ([], [item])
            region += bool(regions)
            coco += bool(globals_) and globals_[0] < coco_size
            total += 1
    assert abs(region / total - 0.6) < 0.03  # 2100 items
    assert abs(coco / (total - region) - 0.1) < 0.03  # about 840 global items
    ds.set_epoch(0)
    first = [ds.group_indices(i) for i in range(len(ds))]
    assert [mix(data).group_indices(i) for i in range(len(ds))] == first  # seeded
    other = mix(data, sampling={"seed": 5})
    assert [other.group_indices(i) for i in range(len(ds))] != first
    batch = ds.collater([ds[i] for i in range(len(ds))])
    assert batch["image"].shape == (7, 3, 16, 16)


def test_mixture_config_errors(data):
    with pytest.raises(ConfigError, match="set exactly one of region_ratio"):
        mix(data, group={"region": 1, "global": 1})
    with pytest.raises(ConfigError, match="weights need region_ratio"):
        mix(data, region_ratio=None, group={"region": 1, "global": 1})
    with pytest.raises(ConfigError, match=r"region_ratio must be a number in \[0, 1\]"):
        mix(data, region_ratio=1.5)
    with pytest.raises(ConfigError, match=r"sampling\.epoch_unit must be one of"):
        build("localized_narratives", ln_block(data, "ln", sampling={"epoch_unit": "video"}))
    with pytest.raises(ConfigError, match="give every entry a weight, or none"):
        build("global_caption", {"build_info": {"annotations": {"train": {"files": [
            {"path": str(data / "captions_a.json"), "images": str(data / "images"), "weight": 0.1},
            {"path": str(data / "captions_b.json"), "images": str(data / "images")}]}}}})
