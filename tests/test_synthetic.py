"""The synthetic dataset: real schemas, annotations that agree with the pixels, determinism."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from lavis_regionvlm.preparation.synthetic import generate_synthetic_dataset
from lavis_regionvlm.preparation.synthetic.__main__ import main as cli_main
from lavis_regionvlm.preparation.synthetic.scene import DOT_COLOUR, DOT_RGB, PALETTE

COLOURS = {**PALETTE, DOT_COLOUR: DOT_RGB}
NUM_IMAGES = 24


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synthetic")
    return out, generate_synthetic_dataset(out, num_images=NUM_IMAGES, seed=3, val_fraction=0.25)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def png(root: Path, image_id: int | str) -> np.ndarray:
    return np.asarray(Image.open(root / "images" / f"{int(image_id):012d}.png").convert("RGB"))


def colour_mask(image: np.ndarray, colour: str) -> np.ndarray:
    return (image == np.array(COLOURS[colour], np.uint8)).all(-1)


def colour_named(words: str) -> str:
    found = [c for c in COLOURS if re.search(rf"\b{c}\b", words)]
    assert len(found) == 1, words
    return found[0]


def inside_fraction(points: list[tuple[float, float]], mask: np.ndarray) -> float:
    h, w = mask.shape
    hits = [0 <= x < 1 and 0 <= y < 1 and mask[int(y * h), int(x * w)] for x, y in points]
    return float(np.mean(hits))


def test_manifest_points_at_every_file(data):
    out, manifest = data
    for rel in manifest["files"].values():
        assert (out / rel).exists(), rel
    assert json.loads((out / "manifest.json").read_text()) == manifest
    counts = manifest["counts"]
    assert counts["train_images"] + counts["held_out_images"] == NUM_IMAGES
    assert len(list((out / "images").iterdir())) == NUM_IMAGES
    assert len(read_jsonl(out / manifest["files"]["ln_train"])) == counts["ln_train"]
    assert len(read_jsonl(out / manifest["files"]["vcr_val"])) == counts["vcr_questions"]["val"]


def test_ln_schema_and_timing(data):
    out, manifest = data
    rows = read_jsonl(out / manifest["files"]["ln_train"]) + read_jsonl(out / manifest["files"]["ln_val"])
    assert len({(r["image_id"], r["annotator_id"]) for r in rows}) == len(rows)
    outside = 0
    for r in rows:
        assert list(r) == ["dataset_id", "image_id", "annotator_id", "caption", "timed_caption",
                           "traces", "voice_recording"]
        assert isinstance(r["image_id"], str) and isinstance(r["annotator_id"], int)
        assert isinstance(r["voice_recording"], str)
        image_name = manifest["image_templates"]["images"].format(image_id=r["image_id"])
        assert (out / manifest["files"]["images"] / image_name).exists()
        utterances = r["timed_caption"]
        assert " ".join(u["utterance"] for u in utterances).split() == r["caption"].split()
        bounds = [t for u in utterances for t in (u["start_time"], u["end_time"])]
        assert all(isinstance(t, float) for t in bounds) and bounds == sorted(bounds)
        assert all(u["end_time"] > u["start_time"] for u in utterances)
        points = [p for segment in r["traces"] for p in segment]
        assert all(set(p) == {"x", "y", "t"} for p in points)
        assert all(isinstance(v, float) for p in points for v in p.values())
        assert np.all(np.diff([p["t"] for p in points]) > 0)
        xy = np.array([[p["x"], p["y"]] for p in points])
        assert xy.min() > -0.05 and xy.max() < 1.05
        outside += int(((xy < 0) | (xy > 1)).any())
    assert outside > 0  # like the real data, some lead-in/out points lie outside the image


def test_ln_trace_is_on_the_shape_while_it_is_named(data):
    out, manifest = data
    for r in read_jsonl(out / manifest["files"]["ln_train"])[:10]:
        image = png(out, r["image_id"])
        # official preprocessing: phrases split on periods, commas and " and "; utterances by char offset
        phrases = [p for p in re.split(r"\. |\.| and |,|, |, and", r["caption"]) if p.strip()]
        starts, cursor = [], 0
        for u in r["timed_caption"]:
            starts.append(cursor)
            cursor += len(u["utterance"]) + 1
        assert len(phrases) == len(set(phrases)) >= 2
        for phrase in phrases:
            begin = r["caption"].find(phrase)
            spoken = [u for u, s in zip(r["timed_caption"], starts) if begin <= s < begin + len(phrase)]
            t0, t1 = spoken[0]["start_time"], spoken[-1]["end_time"]
            points = [(p["x"], p["y"]) for seg in r["traces"] for p in seg if t0 <= p["t"] <= t1]
            assert len(points) >= 5
            assert inside_fraction(points, colour_mask(image, colour_named(phrase.lower()))) >= 0.8, phrase


def test_video_ln_schema_and_traces(data):
    out, manifest = data
    videos = read_jsonl(out / manifest["files"]["vidln"])
    assert len(videos) == manifest["counts"]["vidln_videos"] >= 1
    for v in videos:
        assert {"vidln_id", "dataset_id", "video_id", "keyframe_names", "actor_narratives",
                "annotator_id"} <= set(v)
        template = manifest["image_templates"]["vidln_frames"]
        frames = [np.asarray(Image.open(out / manifest["files"]["vidln_frames"] / template.format(
            video_id=v["video_id"], keyframe_name=k))) for k in v["keyframe_names"]]
        assert v["actor_narratives"][-1]["actor_name"] == "Background"
        for actor in v["actor_narratives"]:
            caption, start = actor["caption"], actor["recording_start_time_ms_since_epoch"]
            assert actor["traces_start_time_ms_since_epoch"] <= start
            for a in actor["time_alignment"]:
                span = caption[a["referenced_word_start_idx"]:a["referenced_word_end_idx"]]
                assert span == a["referenced_word"]
            ends = [t for a in actor["time_alignment"] for t in (a["start_ms"], a["end_ms"])]
            assert ends == sorted(ends)
            assert all(caption[s:e].isalpha() for s, e in actor["noun_segments"])
            points = [p for seg in actor["traces"] for p in seg]
            assert {p["kf_idx"] for p in points} <= set(actor["keyframe_selection_indices"])
            if actor["actor_name"] == "Background":
                continue
            t0 = start + actor["time_alignment"][0]["start_ms"]
            t1 = start + actor["time_alignment"][-1]["end_ms"]
            spoken = [p for p in points if t0 <= p["time_ms_since_epoch"] <= t1]
            frame = frames[spoken[0]["kf_idx"]]
            # JPEG frames: a pixel belongs to the colour when it is close to it
            mask = np.abs(frame.astype(int) - COLOURS[colour_named(caption.lower())]).sum(-1) < 60
            assert inside_fraction([(p["x"], p["y"]) for p in spoken], mask) >= 0.8, caption


def test_visual_genome_boxes_match_the_pixels(data):
    out, manifest = data
    regions = json.loads((out / manifest["files"]["vg_regions"]).read_text())
    images = json.loads((out / manifest["files"]["vg_image_data"]).read_text())
    assert [e["id"] for e in regions] == [i["image_id"] for i in images]
    assert len({r["region_id"] for e in regions for r in e["regions"]}) == manifest["counts"]["vg_regions"]
    for info in images:
        folder = info["url"].split("/")[-2]
        assert folder == "VG_100K" and (out / "vg" / folder / f"{info['image_id']}.jpg").exists()
    for entry in regions:
        image = png(out, entry["id"])
        for r in entry["regions"]:
            assert r["image_id"] == entry["id"]
            ys, xs = np.nonzero(colour_mask(image, colour_named(r["phrase"])))
            assert [r["x"], r["y"], r["width"], r["height"]] == [
                xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_refcoco_polygons_decode_to_the_drawn_shapes(data):
    out, manifest = data
    refs = pickle.loads((out / manifest["files"]["refcoco_refs"]).read_bytes())
    instances = json.loads((out / manifest["files"]["refcoco_instances"]).read_text())
    anns = {a["id"]: a for a in instances["annotations"]}
    files = {i["id"]: i["file_name"] for i in instances["images"]}
    assert {r["split"] for r in refs} == {"train", "val", "testA", "testB"}
    assert len({s["sent_id"] for r in refs for s in r["sentences"]}) == sum(len(r["sentences"]) for r in refs)
    for ref in refs:
        assert {"ref_id", "ann_id", "image_id", "split", "sentences", "category_id", "file_name",
                "sent_ids"} <= set(ref)
        assert 1 <= len(ref["sentences"]) <= 3
        for s in ref["sentences"]:
            assert set(s) == {"raw", "sent", "tokens", "sent_id"} and s["tokens"] == s["sent"].split()
        ann = anns[ref["ann_id"]]
        assert (ann["image_id"], ann["category_id"], ann["iscrowd"]) == (ref["image_id"], ref["category_id"], 0)
        assert (out / manifest["files"]["refcoco_images"] / files[ref["image_id"]]).exists()
        size = manifest["image_size"]
        rles = mask_utils.frPyObjects(ann["segmentation"], size, size)
        decoded = mask_utils.decode(mask_utils.merge(rles)).astype(bool)
        drawn = colour_mask(png(out, ref["image_id"]), colour_named(ref["sentences"][0]["sent"]))
        assert (decoded & drawn).sum() / (decoded | drawn).sum() > 0.9
        assert ann["area"] == pytest.approx(drawn.sum())
        x, y, w, h = ann["bbox"]
        assert drawn[int(y):int(y + h), int(x):int(x + w)].sum() == drawn.sum()


def object_colour(image: np.ndarray, meta: dict, obj: int) -> str:
    x1, y1, x2, y2, _ = (int(v) for v in meta["boxes"][obj])
    crop = image[y1:y2, x1:x2].reshape(-1, 3)
    counts = {c: int((crop == np.array(rgb, np.uint8)).all(-1).sum()) for c, rgb in COLOURS.items()}
    return max(counts, key=counts.get)


def test_vcr_labels_point_at_the_right_colour(data):
    out, manifest = data
    root = out / manifest["files"]["vcr_images"]
    seen_ids, multi_id, empty_segms = set(), False, False
    for split in ("train", "val", "test"):
        rows = read_jsonl(out / manifest["files"][f"vcr_{split}"])
        assert rows
        for row in rows:
            assert {"question", "answer_choices", "rationale_choices", "img_fn", "metadata_fn", "objects",
                    "annot_id", "question_number", "img_id"} <= set(row)
            assert len(row["answer_choices"]) == len(row["rationale_choices"]) == 4
            assert (root / row["img_fn"]).exists()
            meta = json.loads((root / row["metadata_fn"]).read_text())
            assert len(meta["boxes"]) == len(meta["segms"]) == len(row["objects"])
            assert all(len(b) == 5 for b in meta["boxes"])
            assert all(len(pt) == 2 for segm in meta["segms"] for poly in segm for pt in poly)
            refs = [t for t in row["question"] if isinstance(t, list)]
            assert all(isinstance(i, int) and 0 <= i < len(row["objects"]) for ref in refs for i in ref)
            seen_ids |= {i for ref in refs for i in ref}
            multi_id |= any(len(ref) > 1 for ref in refs)
            empty_segms |= any(meta["segms"][i] == [] for ref in refs for i in ref)
            if split == "test":
                assert "answer_label" not in row and "rationale_label" not in row
                continue
            truth = object_colour(png(out, int(row["img_fn"][-16:-4])), meta, refs[0][0])
            assert truth in row["answer_choices"][row["answer_label"]]
            assert truth in row["rationale_choices"][row["rationale_label"]]
            assert sum(truth in choice for choice in row["answer_choices"]) == 1
    assert max(seen_ids) >= 10 and multi_id and empty_segms


def annotation_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files(tmp_path):
    kwargs = dict(num_images=8, val_fraction=0.4, image_size=48)
    generate_synthetic_dataset(tmp_path / "a", seed=5, **kwargs)
    generate_synthetic_dataset(tmp_path / "b", seed=5, **kwargs)
    generate_synthetic_dataset(tmp_path / "c", seed=6, **kwargs)
    a, b, c = (annotation_bytes(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() == c.keys()
    differ = [k for k in a if a[k] != c[k]]
    assert "ln/synthetic_train_localized_narratives.jsonl" in differ and "images/000000000001.png" in differ
    assert np.asarray(Image.open(tmp_path / "a" / "images" / "000000000001.png")).shape == (48, 48, 3)


def test_cli_and_argument_checks(tmp_path, capsys):
    cli_main(["--out", str(tmp_path / "cli"), "--num-images", "6", "--seed", "1", "--image-size", "64",
              "--val-fraction", "0.5"])
    manifest = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    assert manifest["seed"] == 1 and manifest["counts"]["images"] == 6
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(ValueError):
        generate_synthetic_dataset(tmp_path / "few", num_images=4)
    with pytest.raises(ValueError):
        generate_synthetic_dataset(tmp_path / "tiny", num_images=8, image_size=16)
