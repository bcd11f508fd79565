"""`zero_shot_ris` on synthetic RefCOCO: REFER loading, the builder, the task (1 and 2 gloo
ranks: every expression exactly once), and the single-image `segment` path."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from lavis_regionvlm.regions.masks import decode_rle, mask_to_rle, polygons_to_mask
from lavis_regionvlm.ris.proposal_cache import proposal_path, write_json_atomic
from lavis_regionvlm.ris.refer import load_refs, load_split, segmentation_mask

SPLIT = "testA"  # 3 images: DistributedSampler pads 2 ranks with a repeat

WORKER = """
import json, os, sys
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
import torch, torch.distributed as dist
from types import SimpleNamespace
from torch.utils.data import DataLoader, DistributedSampler
from omegaconf import OmegaConf
torch.set_num_threads(1)
dist.init_process_group("gloo")
from lavis.common.registry import registry
from lavis.models import load_model_and_preprocess
model = load_model_and_preprocess("blip2_t5_region", "tiny", is_eval=True)[0]
cfg = OmegaConf.load(sys.argv[1])
dataset = registry.get_builder_class("refcoco_ris")(cfg.datasets.refcoco_ris).build_datasets()[sys.argv[3]]
loader = DataLoader(dataset, batch_size=1, sampler=DistributedSampler(dataset, shuffle=False),
                    collate_fn=dataset.collater)
task = registry.get_task_class("zero_shot_ris").setup_task(cfg=SimpleNamespace(run_cfg=cfg.run))
task.before_evaluation(model, dataset)
results = task.evaluation(model, loader)
metrics = task.after_evaluation(results, sys.argv[3], 0, result_dir=sys.argv[2])
with open(os.path.join(sys.argv[2], f"worker{dist.get_rank()}.json"), "w") as f:
    json.dump({"seen": [r["id"] for r in results], "metrics": metrics}, f)
from lavis_regionvlm.launch import close_distributed
close_distributed()  # barrier, then destroy: a rank leaving early can abort the other at exit
"""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Synthetic RefCOCO (10 held-out images) and a proposal cache per held-out image: every
    annotated shape (the true masks), a whole-image mask (hugs the border) and a 2x2 speck."""
    from lavis_regionvlm.preparation.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("ris")
    generate_synthetic_dataset(root / "synthetic", num_images=50, val_fraction=0.2)
    refcoco = root / "synthetic" / "refcoco"
    instances = json.loads((refcoco / "instances.json").read_text())
    held_out = {image.image_id for split in ("val", "testA", "testB") for image in load_split(refcoco, "unc", split)}
    for image in instances["images"]:
        if image["id"] not in held_out:
            continue
        h, w = image["height"], image["width"]
        masks = [polygons_to_mask(a["segmentation"], h, w)
                 for a in instances["annotations"] if a["image_id"] == image["id"]]
        speck = np.zeros((h, w), bool)
        speck[30:32, 30:32] = True
        records = [{"segmentation": mask_to_rle(m)} for m in [np.ones((h, w), bool), *masks, speck]]
        write_json_atomic(proposal_path(root / "proposals", image["file_name"]), {"proposals": records})
    config = OmegaConf.create({
        "datasets": {"refcoco_ris": {
            "data_type": "images",
            "build_info": {"ann_dir": str(refcoco), "split_by": "unc", "splits": ["val", SPLIT],
                           "images": str(refcoco / "images/train2014"), "proposals": str(root / "proposals"),
                           "sentence_key": "raw"},
            "vis_processor": {"eval": {"name": "blip_image_eval", "image_size": 64}},
            "text_processor": {"eval": {"name": "blip_caption"}},
        }},
        "run": {"task": "zero_shot_ris", "min_area_frac": 0.01, "draws": 2, "save_masks": True},
    })
    OmegaConf.save(config, root / "config.yaml")
    return SimpleNamespace(root=root, refcoco=refcoco, config=config, config_path=root / "config.yaml")


def build(data):
    from lavis.common.registry import registry

    datasets = registry.get_builder_class("refcoco_ris")(data.config.datasets.refcoco_ris).build_datasets()
    task = registry.get_task_class("zero_shot_ris").setup_task(cfg=SimpleNamespace(run_cfg=data.config.run))
    return datasets, task


def test_every_sentence_is_an_expression_with_its_polygon_mask(data):
    refs = [r for r in load_refs(data.refcoco, "unc") if r["split"] == SPLIT]
    images = load_split(data.refcoco, "unc", SPLIT)
    ids = [e.id for image in images for e in image.expressions]
    assert len(ids) == len(set(ids)) == sum(len(r["sentences"]) for r in refs)
    assert {e.text for image in images for e in image.expressions} == {
        s["raw"] for r in refs for s in r["sentences"]}
    instances = json.loads((data.refcoco / "instances.json").read_text())
    annotations = {a["id"]: a for a in instances["annotations"]}
    image = images[0]
    for ann_id, segmentation in image.segmentations.items():
        mask = segmentation_mask(segmentation, image.height, image.width)
        assert mask.sum() == pytest.approx(annotations[ann_id]["area"], abs=1)
        assert np.array_equal(segmentation_mask(mask_to_rle(mask), image.height, image.width), mask)
    with pytest.raises(ValueError, match="splits"):
        load_split(data.refcoco, "unc", "test")


def test_single_process_evaluation(data, tiny_model, tmp_path):
    datasets, task = build(data)
    dataset = datasets[SPLIT]
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=dataset.collater)
    task.before_evaluation(tiny_model, dataset)
    results = task.evaluation(tiny_model, loader)
    metrics = task.after_evaluation(results, SPLIT, 0, result_dir=str(tmp_path))
    merged = json.loads((tmp_path / f"{SPLIT}_epoch0.json").read_text())
    assert [r["id"] for r in merged] == dataset.expression_ids
    assert json.loads((tmp_path / f"{SPLIT}_epoch0_metrics.json").read_text()) == metrics
    assert metrics["count"] == len(merged) and metrics["agg_metrics"] == metrics["mIoU"]
    for record in merged:
        # the whole-image mask hugs the border and the speck is small: only the shapes are scored
        assert record["proposal_ids"][0] == 1 and len(record["scores"]) == len(record["proposal_ids"])
        assert record["proposal"] in record["proposal_ids"] and not record["fallback"]
        assert decode_rle(record["mask"]).sum() > 0
        assert record["iou"] == pytest.approx(record["intersection"] / record["union"])
    # a chosen shape is either the target (IoU 1) or another shape (IoU 0)
    assert {round(r["iou"], 6) for r in merged} <= {0.0, 1.0}


def test_two_gloo_ranks_evaluate_every_expression_exactly_once(data, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(worker), str(data.config_path), str(tmp_path), SPLIT],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    expected = [e.id for image in load_split(data.refcoco, "unc", SPLIT) for e in image.expressions]
    workers = [json.loads((tmp_path / f"worker{r}.json").read_text()) for r in range(2)]
    seen = workers[0]["seen"] + workers[1]["seen"]
    assert len(seen) > len(expected), "the sampler padded one rank with a repeated image"
    assert set(seen) == set(expected)
    merged = json.loads((tmp_path / f"{SPLIT}_epoch0.json").read_text())
    assert [r["id"] for r in merged] == expected
    assert workers[0]["metrics"] == workers[1]["metrics"]  # broadcast from rank 0

    single = tmp_path / "single"
    single.mkdir()
    datasets, task = build(data)
    from lavis.models import load_model_and_preprocess

    model = load_model_and_preprocess("blip2_t5_region", "tiny", is_eval=True)[0]
    loader = torch.utils.data.DataLoader(datasets[SPLIT], batch_size=3, collate_fn=datasets[SPLIT].collater)
    task.before_evaluation(model, datasets[SPLIT])
    metrics = task.after_evaluation(task.evaluation(model, loader), SPLIT, 0, result_dir=str(single))
    assert workers[0]["metrics"] == metrics
    assert json.loads((single / f"{SPLIT}_epoch0.json").read_text()) == merged


def test_segment_one_image_from_a_proposal_file_and_from_sam(data, tiny_model, tmp_path):
    from lavis_regionvlm.ris.segment import main as segment_main

    image_info = load_split(data.refcoco, "unc", "val")[0]
    image_path = data.refcoco / "images/train2014" / image_info.file_name
    cache = proposal_path(data.root / "proposals", image_info.file_name)
    result = segment_main(["--image", str(image_path), "--expression", image_info.expressions[0].text,
                           "--proposals", str(cache), "--out", str(tmp_path / "a"), "--model-type", "tiny",
                           "--device", "cpu"])
    mask = np.asarray(Image.open(tmp_path / "a/mask.png")) > 0
    saved = json.loads((tmp_path / "a/mask_rle.json").read_text())
    assert np.array_equal(mask, result.mask) and np.array_equal(decode_rle(saved["rle"]), mask)
    assert saved["proposal"] == result.proposal and saved["proposal"] in saved["proposal_ids"]
    assert len(saved["scores"]) == len(saved["proposal_ids"])
    overlay = np.asarray(Image.open(tmp_path / "a/overlay.png")).astype(int)
    original = np.asarray(Image.open(image_path).convert("RGB")).astype(int)
    assert (overlay[~mask] == original[~mask]).all() and (overlay[mask] != original[mask]).any()

    sam_config = tmp_path / "sam.yaml"
    OmegaConf.save(OmegaConf.create({
        "sam": {"model_type": "tiny", "device": "cpu"},
        "generator": {"points_per_side": 3, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0},
    }), sam_config)
    segment_main(["--image", str(image_path), "--expression", "the red circle", "--sam-config", str(sam_config),
                  "--out", str(tmp_path / "b"), "--model-type", "tiny", "--device", "cpu", "--method", "crop"])
    assert {p.name for p in (tmp_path / "b").iterdir()} == {"mask.png", "mask_rle.json", "overlay.png"}
