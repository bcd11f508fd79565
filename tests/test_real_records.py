"""The loaders on real records (tests/data, see SOURCES.md) with the datasets' real file naming:
image and video Localized Narratives through `prepare_ln` (no --image-template: the layout is
chosen from `dataset_id`) and the registered builder, Visual Genome v1.2 and v1.0, REFER, VCR,
COCO Karpathy, and LAION shards in both layouts. Images are solid-colour files written under the
real names (small sizes unless the size matters)."""
from __future__ import annotations

import copy
import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from lavis.common.config import Config
from lavis.common.registry import registry
from omegaconf import OmegaConf
from PIL import Image

from lavis_regionvlm.preparation.ln_prepared import read_meta
from lavis_regionvlm.preparation.prepare_ln import main as prepare_main
from lavis_regionvlm.datasets import ConfigError

DATA = Path(__file__).resolve().parent / "data"
LN_IMAGE = DATA / "ln_image_fragments.jsonl"
OOPS = DATA / "vidln_oops_train_slomo.jsonl"
OVIS = DATA / "vidln_OVIS_train_5d24e4ea.jsonl"
VIS = {"vis_processor": {"train": {"name": "blip_image_eval", "image_size": 32}}}


def write_image(path: Path, size=(48, 32), colour=(90, 120, 150)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def build(name: str, block: dict, split: str = "train"):
    """One split through LAVIS's config merge and the registered builder."""
    user = OmegaConf.create({"datasets": {name: OmegaConf.merge(VIS, block)}})
    cfg = getattr(Config.build_dataset_config(user).datasets, name)
    return registry.get_builder_class(name)(cfg).build_datasets()[split]


def build_ln(folder: Path, images: Path):
    return build("localized_narratives", {"build_info": {"annotations": {"train": {"files": [
        {"path": str(folder), "images": str(images)}]}}}})


def prepare(inputs: list[Path], images: Path, out: Path, *extra: str) -> dict:
    prepare_main(["--input", *map(str, inputs), "--images", str(images), "--output", str(out), *extra])
    return read_meta(out)


def sample_images(meta_folder: Path) -> set[str]:
    return {json.loads(line)["image"] for line in (meta_folder / "samples.jsonl").read_text().splitlines()}


# ---------------------------------------------------------------- image Localized Narratives

# Where each real record's image lies under one image root, named as its dataset names it.
IMAGE_FILES = {
    "137576": "val2017/000000137576.jpg",                                # COCO 2017: 12-digit zero-padded
    "ADE_val_00000175": "ADEChallengeData2016/images/validation/ADE_val_00000175.jpg",
    "219843859": "flickr30k-images/219843859.jpg",
    "0001eeaf4aed83f9": "validation/0001eeaf4aed83f9.jpg",               # Open Images validation
}


def test_image_narratives_of_every_subset_find_their_real_file_names(tmp_path):
    root = tmp_path / "images"
    for rel in IMAGE_FILES.values():
        write_image(root / rel)
    write_image(root / "val2017/000000381639.jpg")  # record 1 has no trace: skipped before its image
    meta = prepare([LN_IMAGE], root, tmp_path / "prepared")
    assert sample_images(tmp_path / "prepared") == set(IMAGE_FILES.values())
    assert meta["skip_counts"].get("missing_image", 0) == 0
    assert meta["skip_counts"]["empty_trace"] == 1
    assert meta["num_narratives"] == 4
    ds = build_ln(tmp_path / "prepared", root)
    assert len(ds) == meta["num_records"] == 4  # as released: one sample per record and epoch
    assert ds[0]["image"].shape == (3, 32, 32)


def test_coco_2014_names_and_train2017_spanning_train2014_and_val2014(tmp_path):
    """LN's mscoco_train2017 ids are in COCO 2014's train or val files; mscoco_val2017's in val2014."""
    record = json.loads(LN_IMAGE.read_text().splitlines()[1])  # mscoco_val2017 / 137576
    in_train = {**copy.deepcopy(record), "dataset_id": "mscoco_train2017", "image_id": "9"}
    in_val = {**copy.deepcopy(record), "dataset_id": "mscoco_train2017", "image_id": "391895"}
    (tmp_path / "ln.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (record, in_train, in_val)))
    root = tmp_path / "coco2014"
    for rel in ("val2014/COCO_val2014_000000137576.jpg", "train2014/COCO_train2014_000000000009.jpg",
                "val2014/COCO_val2014_000000391895.jpg"):
        write_image(root / rel)
    meta = prepare([tmp_path / "ln.jsonl"], root, tmp_path / "prepared")
    assert sample_images(tmp_path / "prepared") == {
        "val2014/COCO_val2014_000000137576.jpg", "train2014/COCO_train2014_000000000009.jpg",
        "val2014/COCO_val2014_000000391895.jpg"}
    assert meta["found_by_template"] == {"val2014/COCO_val2014_{image_id:0>12}.jpg": 2 * meta["num_samples"] // 3,
                                         "train2014/COCO_train2014_{image_id:0>12}.jpg": meta["num_samples"] // 3}
    # the folder of one split as the root: the 12-digit 2017 name directly under it
    write_image(tmp_path / "val2017" / "000000137576.jpg")
    (tmp_path / "one.jsonl").write_text(json.dumps(record) + "\n")
    prepare([tmp_path / "one.jsonl"], tmp_path / "val2017", tmp_path / "p2017")
    assert sample_images(tmp_path / "p2017") == {"000000137576.jpg"}


def test_nothing_kept_exits_1_with_a_hint_and_the_builder_refuses_the_folder(tmp_path, capsys):
    (tmp_path / "wrong").mkdir()
    with pytest.raises(SystemExit) as stopped:
        prepare([LN_IMAGE], tmp_path / "wrong", tmp_path / "prepared")
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert "kept no sample" in err and "--images" in err and "--image-template" in err
    assert "val2017/000000137576.jpg" in err  # where it looked
    with pytest.raises(ConfigError, match=r"files\[0\]\.path: .*holds no sample.*--image-template"):
        build_ln(tmp_path / "prepared", tmp_path / "wrong")


def test_more_missing_images_than_the_threshold_exit_1_unless_allowed(tmp_path, capsys):
    root = tmp_path / "images"
    for image_id, rel in IMAGE_FILES.items():
        if image_id != "ADE_val_00000175":
            write_image(root / rel)
    with pytest.raises(SystemExit) as stopped:
        prepare([LN_IMAGE], root, tmp_path / "prepared")
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert "--max-missing-fraction 0.05" in err and "ADE_val_00000175.jpg" in err
    meta = prepare([LN_IMAGE], root, tmp_path / "prepared", "--max-missing-fraction", "1")
    assert meta["num_samples"] > 0 and meta["skip_counts"]["missing_image"] > 0


# ---------------------------------------------------------------- video Localized Narratives


@pytest.mark.parametrize("record,ext", [(OOPS, "png"), (OVIS, "jpg")], ids=["oops-png", "ovis-jpg"])
@pytest.mark.parametrize("root_level", ["dataset folder", "frames root"])
def test_video_keyframes_are_found_as_jpg_or_png(tmp_path, record, ext, root_level):
    """The official frame layout frames/<dataset_id>/<video_id>/<keyframe>.<jpg|png>; the
    image root may be the dataset's folder or the frames root above it."""
    video = json.loads(record.read_text())
    frames = tmp_path / "frames"
    for name in video["keyframe_names"]:
        write_image(frames / video["dataset_id"] / video["video_id"] / f"{name}.{ext}", (64, 36))
    root = frames / video["dataset_id"] if root_level == "dataset folder" else frames
    meta = prepare([record], root, tmp_path / "prepared")
    assert meta["num_samples"] > 0 and "missing_image" not in meta["skip_counts"]
    assert all(name.endswith(f".{ext}") for name in sample_images(tmp_path / "prepared"))
    ds = build_ln(tmp_path / "prepared", root)
    assert len(ds) == meta["num_records"] > 0
    assert ds[0]["image"].shape == (3, 32, 32)


# ---------------------------------------------------------------- Visual Genome


def build_vg(annotations: Path, images: Path):
    return build("vg_region", {"sampling": {"epoch_unit": "phrase", "stored_points": None},
                               "build_info": {"annotations": {"train": {
                                   "region_descriptions": str(annotations / "region_descriptions.json"),
                                   "image_data": str(annotations / "image_data.json"), "images": str(images)}}}})


def test_visual_genome_v12_records(tmp_path):
    (tmp_path / "region_descriptions.json").write_text((DATA / "vg_region_descriptions.json").read_text())
    (tmp_path / "image_data.json").write_text((DATA / "vg_image_data.json").read_text())
    write_image(tmp_path / "VG_100K_2" / "1.jpg", (800, 600))
    ds = build_vg(tmp_path, tmp_path)
    assert [ds.record(i).text.strip() for i in range(len(ds))] == [
        "the clock is green in colour", "shade is along the street", "man is wearing sneakers",
        "cars headlights are off"]
    assert Path(ds.record(0).image) == tmp_path / "VG_100K_2" / "1.jpg"
    np.testing.assert_allclose(ds.record(0).region.box, [421 / 800, 57 / 600, 503 / 800, 196 / 600], atol=1e-6)


def test_visual_genome_v10_record(tmp_path):
    record = json.loads((DATA / "vg_v10_61512.json").read_text())
    image = {**record["image"], "height": 768}  # the source gives no height (SOURCES.md)
    (tmp_path / "image_data.json").write_text(json.dumps([image]))
    (tmp_path / "region_descriptions.json").write_text(json.dumps([{"id": 61512, "regions": [record["region"]]}]))
    write_image(tmp_path / "VG_100K" / "61512.jpg", (1024, 768))
    ds = build_vg(tmp_path, tmp_path)
    assert len(ds) == 1 and ds.record(0).text == "A brown, sleek horse with a bridle"
    assert Path(ds.record(0).image) == tmp_path / "VG_100K" / "61512.jpg"
    np.testing.assert_allclose(ds.record(0).region.box, [511 / 1024, 241 / 768, 717 / 1024, 561 / 768], atol=1e-6)


# ---------------------------------------------------------------- REFER, VCR


def test_refer_ref0_loads_with_the_image_file_of_instances(tmp_path):
    from lavis_regionvlm.ris.refer import load_split, segmentation_mask

    ref = json.loads((DATA / "refer_refcoco_unc_ref0.json").read_text())
    coco = json.loads((DATA / "refer_coco_fragments.json").read_text())
    with open(tmp_path / "refs(unc).p", "wb") as f:
        pickle.dump([ref], f)
    (tmp_path / "instances.json").write_text(json.dumps({
        "images": [coco["image"]],
        "annotations": [{"id": 1719310, "image_id": 581857, "segmentation": [coco["polygon_ann_1722180"]]}]}))
    [image] = load_split(tmp_path, "unc", "train")
    assert (image.image_id, image.file_name, image.height, image.width) == (
        581857, "COCO_train2014_000000581857.jpg", 640, 427)  # not the ref's "..._16.jpg"
    assert [e.text for e in image.expressions] == ["THE LADY WITH THE BLUE SHIRT", "lady w back to us", "blue shirt"]
    assert [e.id for e in image.expressions] == ["0_0", "0_1", "0_2"]
    assert [e.text for e in load_split(tmp_path, "unc", "train", "sent")[0].expressions][1] == "lady with back to us"
    mask = segmentation_mask(image.segmentations[1719310], 640, 427)
    assert mask.shape == (640, 427) and 0 < mask.sum() < 640 * 427


def test_vcr_train0_parses(tmp_path):
    from lavis_regionvlm.vcr.data import join_tokens, load_examples, object_region, render_tokens

    [example] = load_examples(DATA / "vcr_train0.jsonl")
    assert (example.annot_id, example.answer_label, example.rationale_label) == ("train-0", 1, 1)
    assert example.object_ids == [2] and example.object_names == ["person", "person", "person", "car"]
    assert join_tokens(example.question) == "Does [2] feel comfortable ?"  # as eval_VCR.py writes it
    assert render_tokens(example.question) == "Does [2] feel comfortable?"
    assert join_tokens(example.answer_choices[1]) == "No she does not ."
    metadata = {"width": 1920, "height": 800, "names": example.object_names,
                "boxes": [[10, 10, 300, 700, 0.99], [400, 50, 700, 790, 0.98], [900, 100, 1200, 780, 0.97],
                          [1300, 400, 1900, 780, 0.9]],
                "segms": [[], [], [[[950, 120], [1150, 120], [1150, 760], [950, 760]]], []]}
    mask = object_region(metadata, 2).to_mask(800, 1920)  # object 2's polygon, not its box
    assert mask[400, 1000] and not mask[400, 920] and not mask[400, 500]


# ---------------------------------------------------------------- global captions


def test_coco_karpathy_entry(tmp_path):
    entries = json.loads((DATA / "coco_karpathy_entries.json").read_text())
    (tmp_path / "coco_karpathy_train.json").write_text(json.dumps(entries["train"]))
    write_image(tmp_path / "images" / entries["train"][0]["image"], tuple(entries["sizes"]["COCO_val2014_000000522418.jpg"]))
    ds = build("global_caption", {"text_processor": {"train": {"name": "blip_caption"}}, "build_info": {
        "annotations": {"train": {"files": [{"path": str(tmp_path / "coco_karpathy_train.json"),
                                             "images": str(tmp_path / "images")}]}}}})
    assert len(ds) == 1
    assert ds[0]["text_output"] == "a woman wearing a net on her head cutting a cake"


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def jpeg(colour) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(out, format="JPEG")
    return out.getvalue()


CAPTIONS = ["a red bus on a street", "two dogs in the snow"]


@pytest.mark.parametrize("layout", ["img2dataset", "dataset-spec"])
def test_laion_shards_in_both_layouts(tmp_path, layout):
    """img2dataset: <key>.jpg, <key>.txt and <key>.json holding the caption; the LAION
    dataset-spec: the caption only in <key>.txt, the .json holds url/width/height."""
    members = []
    for i, caption in enumerate(CAPTIONS):
        key = f"{i:09d}"
        meta = {"url": f"https://example.com/{i}.jpg", "width": 40, "height": 30, "key": key}
        if layout == "img2dataset":
            meta["caption"] = caption
        members += [(f"{key}.jpg", jpeg((200, 20 * i, 30))), (f"{key}.txt", caption.encode()),
                    (f"{key}.json", json.dumps(meta).encode())]
    write_shard(tmp_path / "00000.tar", members)
    ds = build("global_caption", {"text_processor": {"train": {"name": "blip_caption"}}, "build_info": {
        "annotations": {"train": {"files": [{"shards": [str(tmp_path / "{00000..00000}.tar")]}]}}}})
    assert len(ds) == 2 and dict(ds.skip_counts) == {}
    assert [ds[i]["text_output"] for i in range(2)] == CAPTIONS
