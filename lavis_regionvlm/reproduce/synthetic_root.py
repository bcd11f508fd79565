"""A data root in the layout `reproduce` reads, made from the synthetic dataset (CPU tries, tests).

    python -m lavis_regionvlm.reproduce.synthetic_root --out DIR [--num-images 20] [--seed 0]
        [--shape-proposals refcoco+ refcocog]

The synthetic generator (`lavis_regionvlm.preparation.synthetic`) writes RefCOCO (REFER) and VCR;
this copies them into place and writes, from the same held-out scenes, every other format the
evaluations read:
- refer/refcoco+ : the RefCOCO files again (same UNC layout);
- refer/refcocog : refs(umd).p with val kept and testA/testB renamed test;
- VQAv2 and OK-VQA (LAVIS's eval lists and answer lists, the official question and annotation
  files VQAEval reads), GQA (LAVIS's balanced question lists) and NoCaps (LAVIS's image lists
  and COCO-format captions), with "what colour is the <shape>?" questions and captions made
  of the scene's referring expressions. Images are copies of the held-out scenes.
SAM proposals: none by default (the proposal job makes them); `shape_proposals` names RIS
datasets (refcoco, refcoco+, refcocog) that get a proposal cache per held-out image made of its
annotated shapes, a whole-image mask and a 2x2 speck, so that the RIS methods have real
choices to make (a random-weight SAM's masks are arbitrary).
"""
from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from lavis_regionvlm.preparation.synthetic import generate_synthetic_dataset

VQA_INFO = {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014", "license": {}}


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _held_out_refs(refs: list[dict]) -> list[dict]:
    return [r for r in refs if r["split"] != "train"]


def write_refer(synthetic: Path, root: Path) -> list[dict]:
    """refer/refcoco, refer/refcoco+ (copies) and refer/refcocog (UMD splits); the refs."""
    source = synthetic / "refcoco"
    with open(source / "refs(unc).p", "rb") as f:
        refs = pickle.load(f)
    for name in ("refcoco", "refcoco+"):
        (root / "refer" / name).mkdir(parents=True, exist_ok=True)
        for file in ("refs(unc).p", "instances.json"):
            shutil.copy(source / file, root / "refer" / name / file)
    umd = [{**r, "split": "test" if r["split"] in ("testA", "testB") else r["split"]} for r in refs]
    (root / "refer/refcocog").mkdir(parents=True, exist_ok=True)
    with open(root / "refer/refcocog/refs(umd).p", "wb") as f:
        pickle.dump(umd, f)
    shutil.copy(source / "instances.json", root / "refer/refcocog/instances.json")
    shutil.copytree(source / "images/train2014", root / "coco/images/train2014", dirs_exist_ok=True)
    return refs


def questions(refs: list[dict]) -> list[dict]:
    """{"question_id", "image_id", "question", "answer"} per held-out ref: the colour of its shape,
    read from its first expression "the <colour> <shape>"."""
    found = []
    for ref in _held_out_refs(refs):
        colour, kind = ref["sentences"][0]["sent"].split()[1:3]
        found.append({"question_id": 1000 + ref["ref_id"], "image_id": ref["image_id"],
                      "question": f"what colour is the {kind}?", "answer": colour})
    return found


def write_vqa(root: Path, folder: str, files: dict[str, str], items: list[dict], images: dict[int, Path]) -> None:
    """LAVIS's eval list and answer list, and the official question/annotation files, for
    VQAv2 (`coco/annotations`) or OK-VQA (`okvqa/annotations`); images in coco/images/val2014."""
    names = {}
    for image_id, source in images.items():
        names[image_id] = f"val2014/COCO_val2014_{image_id:012d}.jpg"
        target = root / "coco/images" / names[image_id]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    ann = root / folder
    eval_list = [{"question_id": q["question_id"], "question": q["question"], "image": names[q["image_id"]],
                  "answer": [q["answer"]] * 10} for q in items]
    _write(ann / files["eval"], eval_list)
    _write(ann / files["answers"], sorted({q["answer"] for q in items}))
    _write(ann / files["questions"], {**VQA_INFO, "questions": [
        {"question_id": q["question_id"], "image_id": q["image_id"], "question": q["question"]} for q in items]})
    _write(ann / files["annotations"], {**VQA_INFO, "annotations": [
        {"question_id": q["question_id"], "image_id": q["image_id"], "question_type": "what color",
         "answer_type": "other", "multiple_choice_answer": q["answer"],
         "answers": [{"answer": q["answer"], "answer_confidence": "yes", "answer_id": k + 1} for k in range(10)]}
        for q in items]})
    if "train" in files:
        _write(ann / files["train"], eval_list)


def write_gqa(root: Path, items: list[dict], images: dict[int, Path]) -> None:
    for image_id, source in images.items():
        (root / "gqa/images").mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / "gqa/images" / f"{image_id}.jpg")
    listed = [{"question_id": q["question_id"], "question": q["question"], "image": f"{q['image_id']}.jpg",
               "answer": q["answer"]} for q in items]
    for name in ("train", "test", "testdev"):
        _write(root / f"gqa/annotations/{name}_balanced_questions.json", listed)


def write_nocaps(root: Path, refs: list[dict], images: dict[int, Path]) -> None:
    """Image lists and COCO-format captions: each image's captions are its shapes' expressions,
    "the red circle and the blue square", in two orders."""
    for image_id, source in images.items():
        (root / "nocaps/images").mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / "nocaps/images" / f"{image_id}.jpg")
    phrases: dict[int, list[str]] = {}
    for ref in _held_out_refs(refs):
        phrases.setdefault(ref["image_id"], []).append(ref["sentences"][0]["sent"])
    listed = [{"image": f"{i}.jpg", "img_id": i} for i in sorted(images)]
    for split in ("val", "test"):
        _write(root / f"nocaps/annotations/nocaps_{split}.json", listed)
    annotations = []
    for i in sorted(images):
        for k, order in enumerate((phrases[i], phrases[i][::-1])):
            annotations.append({"image_id": i, "id": 10 * i + k, "caption": " and ".join(order)})
    _write(root / "nocaps/annotations/nocaps_val_4500_captions.json",
           {"images": [{"id": i} for i in sorted(images)], "annotations": annotations})


def write_shape_proposals(root: Path, dataset: str, held_out: list[int]) -> None:
    """sam_proposals/<dataset>/: per held-out image, [whole image, each annotated shape, speck]."""
    import numpy as np

    from lavis_regionvlm.regions.masks import mask_to_rle, polygons_to_mask
    from lavis_regionvlm.ris.proposal_cache import proposal_path, write_json_atomic

    instances = json.loads((root / "refer" / dataset / "instances.json").read_text())
    for image in instances["images"]:
        if image["id"] not in held_out:
            continue
        h, w = image["height"], image["width"]
        masks = [polygons_to_mask(a["segmentation"], h, w)
                 for a in instances["annotations"] if a["image_id"] == image["id"]]
        speck = np.zeros((h, w), bool)
        speck[h // 2: h // 2 + 2, w // 2: w // 2 + 2] = True
        records = [{"segmentation": mask_to_rle(m)} for m in [np.ones((h, w), bool), *masks, speck]]
        write_json_atomic(proposal_path(root / "sam_proposals" / dataset, image["file_name"]),
                          {"file_name": image["file_name"], "image_id": image["id"], "height": h, "width": w,
                           "proposals": records})


def make_synthetic_root(out: Path, num_images: int = 20, seed: int = 0,
                        shape_proposals: Sequence[str] = ()) -> dict:
    """Write the layout under `out` (see the module docstring); returns the generator's counts."""
    out = Path(out)
    with tempfile.TemporaryDirectory() as work:
        synthetic = Path(work) / "synthetic"
        manifest = generate_synthetic_dataset(synthetic, num_images=num_images, seed=seed)
        refs = write_refer(synthetic, out)
        shutil.copytree(synthetic / "vcr", out / "vcr", dirs_exist_ok=True)
        held_out = sorted({r["image_id"] for r in _held_out_refs(refs)})
        images = {i: synthetic / "refcoco/images/train2014" / f"COCO_train2014_{i:012d}.jpg" for i in held_out}
        items = questions(refs)
        write_vqa(out, "coco/annotations", {
            "eval": "vqa_val_eval.json", "answers": "answer_list.json",
            "questions": "v2_OpenEnded_mscoco_val2014_questions.json",
            "annotations": "v2_mscoco_val2014_annotations.json"}, items, images)
        write_vqa(out, "okvqa/annotations", {
            "eval": "okvqa_val_eval.json", "answers": "okvqa_answer_list_train.json",
            "questions": "OpenEnded_mscoco_val2014_questions.json",
            "annotations": "mscoco_val2014_annotations.json", "train": "okvqa_train.json"}, items, images)
        write_gqa(out, items, images)
        write_nocaps(out, refs, images)
        for dataset in shape_proposals:
            write_shape_proposals(out, dataset, held_out)
    return manifest["counts"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="the data root to write")
    parser.add_argument("--num-images", type=int, default=20, help="synthetic scenes (20%% held out)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shape-proposals", nargs="*", default=[], choices=("refcoco", "refcoco+", "refcocog"),
                        help="RIS datasets whose proposals are the annotated shapes (default: none)")
    args = parser.parse_args(argv)
    try:
        counts = make_synthetic_root(args.out, args.num_images, args.seed, args.shape_proposals)
    except ValueError as exc:
        print(f"synthetic_root: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(counts))
    print(f"wrote the data root {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
