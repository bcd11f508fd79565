"""The proposal command with a tiny random SAM: records, run_config.json, resume after SIGKILL."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lavis_regionvlm.ris.proposal_cache import RUN_CONFIG, read_proposals
from lavis_regionvlm.ris.proposals import list_images
from lavis_regionvlm.ris.proposals import main as proposals_main

GENERATOR = {"points_per_side": 3, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture(scope="module")
def refcoco(tmp_path_factory):
    """A small synthetic RefCOCO: 10 held-out images over val/testA/testB."""
    from lavis_regionvlm.preparation.synthetic import generate_synthetic_dataset

    out = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_dataset(out, num_images=50, val_fraction=0.2)
    return out / "refcoco"


def write_config(tmp_path: Path, refcoco: Path, output: Path, splits=("val", "testA", "testB"), **extra) -> Path:
    config = {
        "sam": {"model_type": "tiny", "checkpoint": None, "device": "cpu"},
        "generator": GENERATOR,
        "images": {"root": str(refcoco / "images/train2014"),
                   "refer": {"ann_dir": str(refcoco), "split_by": "unc", "splits": list(splits)}},
        "output_dir": str(output),
        **extra,
    }
    path = tmp_path / "proposals.yaml"
    OmegaConf.save(OmegaConf.create(config), path)
    return path


def command(config: Path) -> list[str]:
    return [sys.executable, "-m", "lavis_regionvlm.ris.proposals", "--config", str(config)]


def test_tiny_sam_writes_coco_rle_records_and_the_run_config(tmp_path, refcoco):
    output = tmp_path / "proposals"
    config = write_config(tmp_path, refcoco, output, splits=("val",))
    counts = proposals_main(["--config", str(config), "generator.box_nms_thresh=0.8"])
    files = sorted(output.glob("COCO_train2014_*.json"))
    assert counts == {"done": len(files), "skipped": 0} and len(files) >= 3
    payload = json.loads(files[0].read_text())
    assert {"file_name", "image_id", "height", "width", "proposals"} <= set(payload)
    records = read_proposals(files[0])
    assert records, "pred_iou_thresh 0 keeps at least one mask"
    assert set(records[0]) >= {"segmentation", "area", "bbox", "predicted_iou", "stability_score", "crop_box"}
    assert records[0]["segmentation"]["size"] == [payload["height"], payload["width"]]
    run = json.loads((output / RUN_CONFIG).read_text())
    assert run["sam"] == {"model_type": "tiny", "checkpoint": None}
    assert run["generator"] == {**GENERATOR, "box_nms_thresh": 0.8, "output_mode": "coco_rle"}
    # the same config again redoes nothing; another config is refused
    assert proposals_main(["--config", str(config), "generator.box_nms_thresh=0.8"]) == {
        "done": 0, "skipped": len(files)}
    with pytest.raises(SystemExit, match="another configuration"):
        proposals_main(["--config", str(config), "generator.points_per_side=4"])


def test_resume_after_sigkill_redoes_nothing_and_leaves_no_partial_file(tmp_path, refcoco):
    output = tmp_path / "proposals"
    config = write_config(tmp_path, refcoco, output)
    process = subprocess.Popen(command(config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(output.glob("COCO_*.json")):
            assert process.poll() is None, "the command ended before writing anything"
            assert time.monotonic() < deadline, "no proposal file after 120 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    first = {p.name: p.stat().st_mtime_ns for p in output.glob("COCO_*.json")}
    for name in first:  # whatever exists is complete
        read_proposals(output / name)
    total = len(list_images(OmegaConf.to_container(OmegaConf.load(config))["images"]))  # 10 held-out images
    assert 1 <= len(first) < total, "kill the run part-way"

    rerun = subprocess.run(command(config), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{len(first)} already done, {total - len(first)} to do" in rerun.stderr
    after = {p.name: p.stat().st_mtime_ns for p in output.glob("COCO_*.json")}
    assert len(after) == total
    assert all(after[name] == mtime for name, mtime in first.items()), "a finished image was redone"
    assert not [p for p in output.iterdir() if p.name.startswith(".")], "temporary files left behind"
