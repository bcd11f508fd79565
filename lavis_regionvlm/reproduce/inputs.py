"""Check every input of the planned evaluations before anything runs, and count their sizes.

Inputs are read from the evaluation configs themselves (the files and folders the task and
LAVIS's builders will open, every image included), so the check cannot drift from the run.
Missing SAM proposals are not an error: the proposal job makes them (then the SAM checkpoint
is an input).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from lavis_regionvlm.reproduce.plan import Evaluation
from lavis_regionvlm.ris.proposal_cache import proposal_path

README_SECTION = "README, 'Reproduce the paper'"
SOURCES = {  # dataset -> where to get it (the README's data layout says the same)
    "refcoco": "REFER refcoco.zip (refs(unc).p, instances.json): https://github.com/lichengunc/refer; "
               "images: COCO train2014, https://cocodataset.org/#download",
    "refcoco+": "REFER refcoco+.zip (refs(unc).p, instances.json): https://github.com/lichengunc/refer; "
                "images: COCO train2014, https://cocodataset.org/#download",
    "refcocog": "REFER refcocog.zip (refs(umd).p, instances.json): https://github.com/lichengunc/refer; "
                "images: COCO train2014, https://cocodataset.org/#download",
    "vcr": "VCR 1.0 annotations (val.jsonl) and images (vcr1images): https://visualcommonsense.com/download/",
    "vqav2": "LAVIS's vqa_val_eval.json and answer_list.json (the URLs in LAVIS's "
             "configs/datasets/coco/eval_vqa.yaml), the official v2 val questions and annotations "
             "(https://visualqa.org/download.html), COCO val2014 images (https://cocodataset.org/#download)",
    "okvqa": "LAVIS's okvqa_*.json (the URLs in LAVIS's configs/datasets/okvqa/defaults.yaml), the official "
             "OK-VQA val questions and annotations (https://okvqa.allenai.org/download.html), COCO val2014 images",
    "gqa": "LAVIS's *_balanced_questions.json (the URLs in LAVIS's configs/datasets/gqa/balanced_testdev.yaml) "
           "and the GQA images (https://cs.stanford.edu/people/dorarad/gqa/download.html)",
    "nocaps": "LAVIS's nocaps_val.json / nocaps_test.json (the URLs in LAVIS's configs/datasets/nocaps/"
              "defaults.yaml), nocaps_val_4500_captions.json and the val images (https://nocaps.org/download)",
    "sam": "SAM ViT-H checkpoint sam_vit_h_4b8939.pth: "
           "https://github.com/facebookresearch/segment-anything#model-checkpoints",
    "checkpoint": "the authors' released RegionVLM checkpoint, linked from the README of "
                  "https://github.com/jbeomlee93/RegionVLM ('Pre-trained model used in this paper'); "
                  "pass it with --checkpoint or REGIONVLM_CHECKPOINT",
}
SHOWN = 3  # missing images named per folder; the rest are counted


@dataclass(frozen=True)
class Missing:
    """An input that is not there: what it is, where it should be, where to get it."""

    what: str
    path: str
    source: str

    def line(self) -> str:
        return f"missing {self.what}: {self.path}\n    get it: {self.source}"


@dataclass
class Inspection:
    """An evaluation's size ({"images": n, "expressions": m, ...}), missing inputs, and for RIS
    the images without proposals ({split: [file names]})."""

    size: dict[str, int] = field(default_factory=dict)
    missing: list[Missing] = field(default_factory=list)
    proposals_todo: dict[str, list[str]] = field(default_factory=dict)


def inspect(evaluation: Evaluation, config: dict) -> Inspection:
    """Sizes and missing inputs of one evaluation config (see the module docstring)."""
    (dataset_cfg,) = config["datasets"].values()
    info = dataset_cfg.get("build_info", {})
    source = SOURCES[evaluation.dataset]
    check = {"ris": _ris, "vcr": _vcr, "vqa": _lavis_questions, "gqa": _lavis_questions,
             "nocaps": _lavis_questions}[evaluation.kind]
    return check(evaluation, info, config["run"], source)


def check_model(model_type: str, checkpoint: Optional[Path], needs_checkpoint: bool) -> list[Missing]:
    """The checkpoint: required for the released model type, and must exist when given."""
    if checkpoint is not None and not checkpoint.is_file():
        return [Missing("model checkpoint (--checkpoint)", str(checkpoint), SOURCES["checkpoint"])]
    if checkpoint is None and needs_checkpoint:
        return [Missing(f"model checkpoint for --model-type {model_type}", "(none given: --checkpoint)",
                        SOURCES["checkpoint"])]
    return []


def check_sam(sam_config: dict) -> list[Missing]:
    """The SAM checkpoint the proposal job needs (none for SAM's `tiny` test model)."""
    checkpoint = (sam_config.get("sam") or {}).get("checkpoint")
    if checkpoint and not Path(checkpoint).expanduser().is_file():
        return [Missing("SAM checkpoint (to make the missing proposals)", str(checkpoint), SOURCES["sam"])]
    return []


# ---------------------------------------------------------------------- per kind


def _file(path: Path, what: str, source: str, missing: list[Missing]) -> bool:
    if path.is_file():
        return True
    missing.append(Missing(what, str(path), source))
    return False


def _folder(path: Path, what: str, source: str, missing: list[Missing]) -> bool:
    if path.is_dir():
        return True
    missing.append(Missing(what, str(path), source))
    return False


def _images(root: Path, names: Iterable[str], what: str, source: str) -> list[Missing]:
    """One Missing for the images of `names` not under `root` (a few named, all counted)."""
    names = sorted(set(names))
    absent = [n for n in names if not (root / n).is_file()]
    if not absent:
        return []
    shown = ", ".join(absent[:SHOWN]) + (", ..." if len(absent) > SHOWN else "")
    return [Missing(f"{len(absent)} of {len(names)} {what} ({shown})", str(root), source)]


def _read_json(path: Path):
    """A JSON file; ValueError naming the file when it is not valid JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


@functools.lru_cache(maxsize=None)
def _refer_split(ann_dir: str, split_by: str, split: str) -> tuple:
    from lavis_regionvlm.ris.refer import load_split

    return tuple(load_split(ann_dir, split_by, split))


def _ris(evaluation: Evaluation, info: dict, run: dict, source: str) -> Inspection:
    result = Inspection()
    ann_dir, split_by = Path(info["ann_dir"]), info.get("split_by", "unc")
    ok = _file(ann_dir / f"refs({split_by}).p", "REFER refs", source, result.missing)
    ok = _file(ann_dir / "instances.json", "REFER instances", source, result.missing) and ok
    images = Path(info["images"])
    ok = _folder(images, "COCO train2014 images", source, result.missing) and ok
    if not ok:
        return result
    proposals = Path(info["proposals"])
    names, expressions = [], 0
    for split in evaluation.splits:
        try:
            split_images = _refer_split(str(ann_dir), split_by, split)
        except Exception as exc:  # noqa: BLE001  (unreadable REFER files: reported, not raised)
            result.missing.append(Missing(f"readable REFER split {split!r} ({type(exc).__name__}: {exc})",
                                          str(ann_dir), source))
            continue
        split_names = [image.file_name for image in split_images]
        names += split_names
        expressions += sum(len(image.expressions) for image in split_images)
        todo = [n for n in split_names if not proposal_path(proposals, n).is_file()]
        if todo:
            result.proposals_todo[split] = todo
    result.missing += _images(images, names, "images of the evaluated splits", source)
    result.size = {"images": len(set(names)), "expressions": expressions}
    return result


def _vcr(evaluation: Evaluation, info: dict, run: dict, source: str) -> Inspection:
    result = Inspection()
    ann_dir, images = Path(info["ann_dir"]), Path(info["images"])
    ok = _folder(images, "VCR images (vcr1images)", source, result.missing)
    questions, names = 0, []
    limit = info.get("limit")
    for split in evaluation.splits:
        path = ann_dir / f"{split}.jsonl"
        if not _file(path, f"VCR {split} annotations", source, result.missing):
            continue
        with open(path) as f:
            try:
                rows = [json.loads(line) for line in f if line.strip()][:limit]
                names += [name for row in rows for name in (row["img_fn"], row["metadata_fn"])]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}: not a VCR annotation file (a JSON object with img_fn and "
                                 f"metadata_fn per line): {type(exc).__name__}: {exc}") from None
        questions += len(rows)
    if ok:
        result.missing += _images(images, names, "VCR images and metadata files", source)
    result.size = {"images": len({n for n in names if not n.endswith(".json")}), "questions": questions}
    return result


def _storage_files(info: dict) -> dict[str, list[Path]]:
    """{split: [annotation files]} of a LAVIS build_info (storage: a path or a list)."""
    found = {}
    for split, files in (info.get("annotations") or {}).items():
        storage = files.get("storage")
        found[split] = [Path(p) for p in (storage if isinstance(storage, list) else [storage])]
    return found


def _lavis_questions(evaluation: Evaluation, info: dict, run: dict, source: str) -> Inspection:
    """VQAv2, OK-VQA, GQA, NoCaps through LAVIS's builders: every split's files (LAVIS builds
    them all), the images of the evaluated split, and the captioning ground truth."""
    result = Inspection()
    files = _storage_files(info)
    for split, paths in files.items():
        for path in paths:
            _file(path, f"{evaluation.dataset} {split} annotations", source, result.missing)
    for split, path in (run.get("gt_files") or {}).items():
        _file(Path(path), f"{evaluation.dataset} {split} caption ground truth", source, result.missing)
    images = Path((info.get("images") or {}).get("storage", ""))
    ok = _folder(images, f"{evaluation.dataset} images", source, result.missing)
    items, names = 0, []
    for split in evaluation.splits:
        paths = files.get(split)
        if not paths:
            result.missing.append(Missing(f"{evaluation.dataset}: no annotations for split {split!r}",
                                          "build_info.annotations", source))
            continue
        if paths[0].is_file():
            entries = _read_json(paths[0])
            if not isinstance(entries, list) or not all(isinstance(e, dict) and "image" in e for e in entries):
                raise ValueError(f"{paths[0]}: expected LAVIS's format, a list of objects with an 'image' key")
            items += len(entries)
            names += [entry["image"] for entry in entries]
    if ok:
        result.missing += _images(images, names, f"{evaluation.dataset} images", source)
    unit = "images" if evaluation.kind == "nocaps" else "questions"
    result.size = {"images": len(set(names))} if unit == "images" else {"images": len(set(names)), unit: items}
    return result
