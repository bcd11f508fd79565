"""`localized_narratives`: raw image and video LN files (real schemas, bad records included) ->
prepare_ln command -> registered builder -> samples: phrases, points, skip counts, pairing."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from lavis.common.config import Config
from lavis.common.registry import registry
from omegaconf import OmegaConf
from PIL import Image

from lavis_regionvlm.preparation.ln_prepared import read_meta
from lavis_regionvlm.preparation.prepare_ln import main as prepare_main
from lavis_regionvlm.datasets import ConfigError, SAMPLE_KEYS
from lavis_regionvlm.regions import points_to_text

RED, GREEN, BLUE, GREY = (220, 20, 20), (20, 200, 40), (20, 40, 220), (128, 128, 128)
START_MS = 1_600_000_000_000  # a video recording's start, ms since the epoch


def write_image(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 16), colour).save(path)


def image_record(image_id: str, caption: str, words: list[tuple[str, float, float]],
                 segments: list[list[tuple[float, float, float]]]) -> dict:
    """An image LN record; segments of (x, y, t) trace points."""
    return {
        "dataset_id": "mscoco_train2017", "image_id": image_id, "annotator_id": 61, "caption": caption,
        "timed_caption": [{"utterance": u, "start_time": s, "end_time": e} for u, s, e in words],
        "traces": [[{"x": x, "y": y, "t": t} for x, y, t in seg] for seg in segments],
        "voice_recording": f"coco_train/coco_train_{image_id}_61.ogg",
    }


def timed(caption_words: str, start: float, step: float) -> list[tuple[str, float, float]]:
    """Space-separated utterances ("on_the" is spoken as one "on the"), each `step` s long."""
    words = [w.replace("_", " ") for w in caption_words.split()]
    return [(w, round(start + i * step, 3), round(start + (i + 1) * step, 3)) for i, w in enumerate(words)]


# Record A: a repeated phrase, a point exactly at a word's end, points during "and" and between
# phrases (belong to no phrase), coordinates outside [0, 1].
A_WORDS = [("In", 0.0, 0.2), ("the", 0.2, 0.3), ("image,", 0.3, 0.6),
           ("a", 1.0, 1.1), ("ball", 1.1, 1.4), ("on the", 1.4, 1.7), ("left,", 1.7, 2.0),
           ("a", 2.5, 2.6), ("dog", 2.6, 3.0), ("and", 3.2, 3.4),
           ("a", 4.0, 4.1), ("ball", 4.1, 4.4), ("on the", 4.4, 4.7), ("left.", 4.7, 5.0)]
A_TRACE = [[(-0.05, 0.5, 0.1), (0.5, 0.5, 0.8), (0.1, 0.2, 1.05), (0.12, 0.22, 1.5), (0.14, 0.24, 2.0)],
           [(0.5, 0.6, 2.55), (0.55, 0.65, 2.9), (0.9, 0.9, 3.3),
            (0.8, 0.3, 4.05), (0.85, 0.35, 4.5), (1.03, 0.4, 4.95)]]
A_EXPECTED = [
    ("In the image", [(0.0, 0.5)]),
    ("a ball on the left", [(0.1, 0.2), (0.12, 0.22), (0.14, 0.24)]),
    ("a dog", [(0.5, 0.6), (0.55, 0.65)]),
    ("a ball on the left", [(0.8, 0.3), (0.85, 0.35), (1.0, 0.4)]),
]
# Record B: 50 points during one phrase, and an utterance that is not in the caption.
B_TRACE = [[(0.2 + 0.01 * i, 0.3, round(0.6 + 0.08 * i, 3)) for i in range(50)]]
B_WORDS = [("A", 0.0, 0.5), ("zebra", 0.5, 0.6), ("long", 0.6, 1.0), ("scribble.", 1.0, 5.0)]


def coco_lines() -> list[str]:
    good = [
        image_record("1", "In the image, a ball on the left, a dog and a ball on the left.", A_WORDS, A_TRACE),
        image_record("2", "A long scribble.", B_WORDS, B_TRACE),
        image_record("3", "A broken picture.", timed("A broken picture.", 0.0, 0.5), [[(0.5, 0.5, 0.7)]]),
        image_record("999", "A lost photo, and a lost cat.", timed("A lost photo, and a lost cat.", 0.0, 0.5),
                     [[(0.1, 0.1, 0.2), (0.2, 0.2, 2.6)]]),
        image_record("2", "A cat, a hat.", timed("A cat, a hat.", 0.0, 0.5), [[(0.3, 0.3, 0.6)]]),
        image_record("5", "A blue sky.", timed("A blue sky.", 0.0, 0.5), [[(0.5, 0.1, 0.7)]]),
    ]
    missing_keys = image_record("1", "A ball.", timed("A ball.", 0, 0.5), [[(0.5, 0.5, 0.2)]])
    del missing_keys["timed_caption"]
    empty_trace = image_record("2", "A ball.", timed("A ball.", 0, 0.5), [[]])
    bad_value = image_record("2", "A ball.", timed("A ball.", 0, 0.5), [[("0.5", 0.5, 0.2)]])
    lines = [json.dumps(r) for r in good]
    lines[2:2] = ['{"dataset_id": "mscoco_train2017", "image_id": "4", "caption": "A tr', "[1, 2]",
                  json.dumps(missing_keys), "", json.dumps(empty_trace), json.dumps(bad_value)]
    return lines


def video_record() -> dict:
    caption = "A man is walking, and a dog is running."
    spoken = [("A", 100, 200), ("man", 200, 500), ("is", 500, 600), ("walking", 600, 1000), ("and", 1200, 1300),
              ("a", 1500, 1600), ("dog", 1600, 1900), ("is", 1900, 2000), ("running", 2000, 2400)]
    alignment, cursor = [], 0
    for word, start, end in spoken:
        cursor = caption.index(word, cursor)
        alignment.append({"end_ms": end, "referenced_word": word, "referenced_word_end_idx": cursor + len(word),
                          "referenced_word_start_idx": cursor, "start_ms": start})
        cursor += len(word)
    points = [(0.2, 0.2, 150, 0), (0.25, 0.2, 400, 0), (0.3, 0.3, 700, 1), (0.5, 0.5, 800, 5), (0.35, 0.3, 950, 1),
              (0.9, 0.9, 1100, 0), (0.8, 0.8, 1250, 0), (0.6, 0.7, 1700, 1), (0.65, 0.75, 2300, 1)]
    actor = {
        "actor_name": "Man", "keyframe_selection_indices": [0, 1],
        "recording_start_time_ms_since_epoch": START_MS, "traces_start_time_ms_since_epoch": START_MS - 300,
        "caption": caption,
        "traces": [[{"x": x, "y": y, "time_ms_since_epoch": START_MS + t, "kf_idx": k} for x, y, t, k in points]],
        "noun_segments": [[2, 5], [24, 27]], "time_alignment": alignment, "recording_filename": "ovis/0_0.webm",
    }
    broken_actor = {key: value for key, value in actor.items() if key != "traces"}
    return {"vidln_id": 0, "dataset_id": "ovis", "video_id": "vid_a", "keyframe_names": ["img_0000001", "img_0000008"],
            "actor_narratives": [actor, broken_actor], "annotator_id": 3}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict[str, Path]:
    """Raw files and images written, then prepared with the command, as a user does."""
    root = tmp_path_factory.mktemp("ln")
    coco_images, flickr_images, frames = root / "coco" / "train2017", root / "flickr30k-images", root / "frames"
    for image_id, colour in (("1", RED), ("2", GREEN), ("5", BLUE)):
        write_image(coco_images / f"{int(image_id):012d}.jpg", colour)
    (coco_images / f"{3:012d}.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    write_image(flickr_images / "5.jpg", GREY)  # same id as a COCO image, another picture
    write_image(frames / "vid_a" / "img_0000001.jpg", RED)
    write_image(frames / "vid_a" / "img_0000008.jpg", GREEN)
    (root / "coco.jsonl").write_text("\n".join(coco_lines()) + "\n")
    (root / "flickr.jsonl").write_text(json.dumps(image_record(
        "5", "A grey wall.", timed("A grey wall.", 0.0, 0.5), [[(0.4, 0.6, 0.2)]])) + "\n")
    (root / "video.jsonl").write_text(json.dumps(video_record()) + "\n")
    out = root / "prepared"
    prepare_main(["--input", str(root / "coco.jsonl"), "--images", str(coco_images),  # 2 of 10 missing on purpose
                  "--image-template", "{image_id:0>12}.jpg", "--output", str(out / "coco"), "--max-missing-fraction", "0.5"])
    prepare_main(["--input", str(root / "flickr.jsonl"), "--images", str(flickr_images), "--output", str(out / "flickr"),
                  "--image-template", "{image_id}.jpg"])
    prepare_main(["--input", str(root / "video.jsonl"), "--images", str(frames), "--output", str(out / "video"),
                  "--video-mode", "phrases"])
    return {"root": root, "coco": out / "coco", "flickr": out / "flickr", "video": out / "video",
            "coco_images": coco_images, "flickr_images": flickr_images, "frames": frames}


def corrupt_index(ds) -> int:
    return next(i for i in range(len(ds)) if ds.record(i).image.endswith("000000000003.jpg"))


# These tests pin the phrase-level samples (our variant); tests/test_datasets_released.py pins the
# released defaults.
VARIANT = {"sampling": {"epoch_unit": "phrase", "stored_points": None},
           "vis_processor": {"train": {"name": "region_image_train", "image_size": 32, "crop_prob": 0.0}}}


def build(files: list[dict], **overrides) -> object:
    """The train split (our variant unless `overrides` say otherwise) through LAVIS's config
    merge and the registered builder."""
    block = OmegaConf.merge(VARIANT, {"build_info": {"annotations": {"train": {"files": files}}}}, overrides)
    user = OmegaConf.create({"datasets": {"localized_narratives": block}})
    cfg = Config.build_dataset_config(user).datasets.localized_narratives
    return registry.get_builder_class("localized_narratives")(cfg).build_datasets()["train"]


@pytest.fixture(scope="module")
def dataset(prepared):
    return build([{"path": str(prepared[k])} for k in ("coco", "flickr", "video")])


def test_prepare_counts_every_kind_of_bad_record(prepared, capsys):
    assert read_meta(prepared["coco"])["skip_counts"] == {
        "malformed_json": 2, "missing_keys": 1, "empty_trace": 1, "bad_value": 1, "utterance_not_in_caption": 1,
        "phrase_without_points": 1, "missing_image": 2}
    assert read_meta(prepared["video"])["skip_counts"] == {"missing_keys": 1, "bad_keyframe_index": 1}
    assert read_meta(prepared["flickr"])["skip_counts"] == {}
    meta = read_meta(prepared["coco"])
    assert meta["num_narratives"] == 5 and [i["lines"] for i in meta["inputs"]] == [11]
    stored = [json.loads(line) for line in (prepared["coco"] / "samples.jsonl").read_text().splitlines()]
    assert len(stored) == meta["num_samples"] == 8
    assert all(0 <= v <= 10_000 for record in stored for v in record["points"])  # clipped when prepared


def test_phrases_points_and_images(dataset, prepared):
    records = [dataset.record(i) for i in range(len(dataset))]
    got = [(Path(r.image), r.text, r.region.data.tolist()) for r in records]
    coco, flickr, frames = prepared["coco_images"], prepared["flickr_images"], prepared["frames"]
    b_points = np.array([p[:2] for p in B_TRACE[0]])[np.linspace(0, 49, 20).astype(int)]
    expected = (
        [(coco / "000000000001.jpg", text, points) for text, points in A_EXPECTED]
        + [(coco / "000000000002.jpg", "A long scribble", b_points.tolist()),
           (coco / "000000000003.jpg", "A broken picture", [[0.5, 0.5]]),
           (coco / "000000000002.jpg", "A cat", [[0.3, 0.3]]),
           (coco / "000000000005.jpg", "A blue sky", [[0.5, 0.1]]),
           (flickr / "5.jpg", "A grey wall", [[0.4, 0.6]]),
           (frames / "vid_a" / "img_0000001.jpg", "A man is walking", [[0.2, 0.2], [0.25, 0.2]]),
           (frames / "vid_a" / "img_0000008.jpg", "A man is walking", [[0.3, 0.3], [0.35, 0.3]]),
           (frames / "vid_a" / "img_0000008.jpg", "a dog is running", [[0.6, 0.7], [0.65, 0.75]])]
    )
    assert len(got) == len(expected)
    for (path, text, points), (want_path, want_text, want_points) in zip(got, expected):
        assert (path, text) == (want_path, want_text)
        np.testing.assert_allclose(points, want_points, atol=1e-9)
    assert b_points[0].tolist() == [0.2, 0.3] and b_points[-1].tolist() == pytest.approx([0.69, 0.3])


def test_samples_have_the_training_keys_and_their_own_image(dataset, prepared):
    processor = dataset.vis_processor
    for index in range(len(dataset)):
        record = dataset.record(index)
        if index == corrupt_index(dataset):
            continue  # see the substitution test
        sample = dataset[index]
        assert tuple(sample) == SAMPLE_KEYS
        assert sample["text_input"] == "" and sample["text_output"] == record.text.lower()
        expected = processor(Image.open(record.image).convert("RGB"))
        assert sample["image"].shape == (3, 32, 32) and bool((sample["image"] == expected).all()), record


def test_k_points_drawn_from_the_phrase_in_time_order(dataset):
    for index in range(len(dataset)):
        stored = dataset.record(index).region.data
        drawn = dataset.sample_points(index)
        assert drawn.shape == (10, 2) and ((drawn >= 0) & (drawn <= 1)).all()
        rows = [int(np.flatnonzero((stored == p).all(axis=1))[0]) for p in drawn]
        assert rows == sorted(rows)
        if len(stored) >= 10:
            assert len(set(rows)) == 10
        else:  # evenly spaced upsampling: every stored point used
            assert set(rows) == set(range(len(stored)))
        if index != corrupt_index(dataset):
            assert dataset[index]["region_text"] == points_to_text(drawn, quantize="floor")


def test_seeded_draws_change_with_the_epoch_only(dataset, prepared):
    scribble = 4  # record B: 20 stored points
    first = dataset[scribble]["region_text"]
    assert dataset[scribble]["region_text"] == first
    again = build([{"path": str(prepared[k])} for k in ("coco", "flickr", "video")])
    assert again[scribble]["region_text"] == first
    again.set_epoch(1)
    assert again[scribble]["region_text"] != first
    other_seed = build([{"path": str(prepared["coco"])}], sampling={"seed": 1})
    assert other_seed[scribble]["region_text"] != first


def test_corrupt_image_is_replaced_counted_and_logged(prepared, caplog):
    ds = build([{"path": str(prepared["coco"])}])
    corrupt = corrupt_index(ds)
    with caplog.at_level(logging.WARNING):
        sample = ds[corrupt]
    assert sample["text_output"] != "a broken picture" and tuple(sample) == SAMPLE_KEYS
    assert ds.skip_counts["corrupt_image"] == 1 and ds.skip_counts["missing_image"] == 2
    assert "corrupt_image" in caplog.text and "000000000003.jpg" in caplog.text
    assert ds[corrupt]["text_output"] == sample["text_output"]  # the same substitute, counted once
    assert ds.skip_counts["corrupt_image"] == 1


def test_region_max_len_keeps_whole_points(prepared):
    ds = build([{"path": str(prepared["coco"])}], sampling={"region_max_len": 32, "point_quantize": "round"})
    text = ds[4]["region_text"]
    assert text == points_to_text(ds.sample_points(4)[:7], quantize="round") and text.count("[") == 7


def test_image_root_override_and_crop(prepared, tmp_path):
    moved = tmp_path / "flickr_moved"
    write_image(moved / "5.jpg", RED)
    ds = build([{"path": str(prepared["flickr"]), "images": str(moved)}])
    assert ds.record(0).image == str(moved / "5.jpg")
    crop = build([{"path": str(prepared["coco"])}],
                 vis_processor={"train": {"name": "region_image_train", "image_size": 32, "crop_prob": 1.0}})
    plain = build([{"path": str(prepared["coco"])}])
    texts = [(crop[i]["region_text"], plain[i]["region_text"]) for i in range(len(plain)) if i != corrupt_index(plain)]
    assert any(a != b for a, b in texts)


def test_config_errors_name_the_key_and_path(prepared, tmp_path):
    with pytest.raises(ConfigError, match=r"build_info\.annotations lists no split"):
        registry.get_builder_class("localized_narratives")().build_datasets()
    with pytest.raises(ConfigError, match=r"build_info\.annotations\.train\.files must be a non-empty list"):
        build([])
    with pytest.raises(ConfigError, match=r"files\[1\]\.path: .*nowhere does not exist"):
        build([{"path": str(prepared["coco"])}, {"path": str(tmp_path / "nowhere")}])
    (tmp_path / "raw_only").mkdir()
    with pytest.raises(ConfigError, match=r"files\[0\]\.path: .*no meta.json.*prepare_ln"):
        build([{"path": str(tmp_path / "raw_only")}])
    with pytest.raises(ConfigError, match=r"random crops|RandomResizedCrop"):
        build([{"path": str(prepared["coco"])}], vis_processor={"train": {"name": "blip2_image_train"}})


def test_eval_split_samples_carry_an_instance_id(prepared):
    files = [{"path": str(prepared["flickr"])}]
    user = {"datasets": {"localized_narratives": {
        "vis_processor": {"train": {"name": "region_image_train", "image_size": 32},
                          "eval": {"name": "blip_image_eval", "image_size": 32}},
        "build_info": {"annotations": {"train": {"files": files}, "val": {"files": files}}}}}}
    cfg = Config.build_dataset_config(OmegaConf.create(user)).datasets.localized_narratives
    splits = registry.get_builder_class("localized_narratives")(cfg).build_datasets()
    assert tuple(splits["train"][0]) == SAMPLE_KEYS
    assert splits["val"][0]["instance_id"] == "0" and splits["val"][0]["text_output"] == "a grey wall"
