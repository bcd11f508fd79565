"""`python -m lavis_regionvlm.reproduce`: the paper's numbers file, the plan and its configs, the
input check (nothing runs when something is missing), the table writer, and `reproduce all`
end to end on a synthetic data root with the tiny model, killed after its first evaluation and
restarted."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lavis_regionvlm.reproduce.__main__ import main as reproduce_main
from lavis_regionvlm.reproduce.paper import load_paper_tables, select_tables
from lavis_regionvlm.reproduce.plan import Settings, evaluation_config, plan_evaluations
from lavis_regionvlm.reproduce.report import build_results, markdown
from lavis_regionvlm.reproduce.runner import Outcome
from lavis_regionvlm.reproduce.synthetic_root import make_synthetic_root

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = ROOT / "projects/regionvlm"
TINY_SAM = PROJECTS / "ris_proposals_synthetic_tiny.yaml"
CPU_OPTIONS = ["run.cpu_threads=1", "run.num_workers=0", "run.batch_size_eval=4", "run.num_beams=1",
               "run.max_len=5", "run.min_len=1", "datasets.*.vis_processor.eval.image_size=64",
               "run.min_area_frac=0.01"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """The documented layout from 20 synthetic scenes (4 held out); RefCOCO and RefCOCOg get
    proposals made of the annotated shapes, RefCOCO+ none (the proposal job makes them)."""
    root = tmp_path_factory.mktemp("reproduce") / "data"
    make_synthetic_root(root, num_images=20, seed=0, shape_proposals=("refcoco", "refcocog"))
    return root


def test_paper_numbers_file_holds_the_published_tables():
    tables = load_paper_tables()
    assert select_tables("all", tables) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert select_tables("4, 1,4", tables) == [4, 1]
    with pytest.raises(ValueError, match="'9' is not a table"):
        select_tables("1,9", tables)
    rows = {(n, r.label): r for n, t in tables.items() for r in t.rows}
    # numbers copied from the paper (shared/paper-tables.md), one per table
    assert rows[1, "RegionVLM"].paper == (38.74, 39.40, 37.59, 31.47, 33.99, 30.22, 33.94)
    assert rows[1, "TSEG (weakly supervised)"].paper == (25.44, None, None, 22.01, None, None, 22.05)
    assert rows[2, "RegionVLM"].paper == (52.4, 54.6, 29.3)
    assert rows[3, "BLIP-2"].paper == (41.08, 43.92, 63.12) and rows[3, "BLIP-2"].ours is None
    assert rows[4, "crop of the proposal, resized (Wang et al. 2023a)"].paper == (27.91, 31.45, 31.38)
    assert rows[5, "RegionVLM"].paper == (47.7, 15.5, 119.1)
    assert rows[6, "RegionVLM"].paper == (37.73, 37.64, 36.39, 35.77)
    assert rows[7, "K = 15"].paper == (37.98, 31.14, 33.11)
    assert [str(m) for m in rows[7, "K = 5"].ours] == [
        "ris_refcoco_k5:val:mIoU", "ris_refcoco_plus_k5:val:mIoU", "ris_refcocog_k5:val:mIoU"]


def test_plan_runs_each_evaluation_once_through_the_project_yamls(tmp_path):
    tables = load_paper_tables()
    plan = plan_evaluations([tables[n] for n in select_tables("all", tables)])
    names = [e.name for e in plan]
    assert len(names) == len(set(names)) == 23  # 3 RIS + 6 baselines + 3 dilations + 6 K + VCR, 3 VQA, NoCaps
    assert [e.name for e in plan_evaluations([tables[6]])] == [
        "ris_refcoco", "ris_refcoco_dilation3", "ris_refcoco_dilation7", "ris_refcoco_dilation15"]
    by_name = {e.name: e for e in plan}
    settings = Settings(data_root=tmp_path / "data", projects=PROJECTS, out=tmp_path / "out",
                        model_type="regionvlm_flant5xl", checkpoint=tmp_path / "ckpt.pth", device="cuda",
                        options=("datasets.*.vis_processor.eval.image_size=224", "run.num_workers=2"))
    crop = evaluation_config(by_name["ris_refcocog_crop"], settings)
    info = crop["datasets"]["refcoco_ris"]["build_info"]
    assert info["ann_dir"] == str(tmp_path / "data/refer/refcocog") and info["split_by"] == "umd"
    assert info["proposals"] == str(tmp_path / "data/sam_proposals/refcocog") and info["splits"] == ["val"]
    assert crop["datasets"]["refcoco_ris"]["vis_processor"]["eval"]["image_size"] == 224
    run = crop["run"]
    assert (run["task"], run["ris_method"], run["test_splits"], run["device"]) == ("zero_shot_ris", "crop", ["val"], "cuda")
    assert run["draws"] == 5 and run["num_workers"] == 2  # the YAML's settings, then --options
    assert (run["output_dir"], run["job_id"]) == (str(tmp_path / "out/ris_refcocog_crop"), "run")
    assert crop["model"] == {**crop["model"], "model_type": "regionvlm_flant5xl",
                             "finetuned": str(tmp_path / "ckpt.pth"), "load_finetuned": True}
    # the paper ran Table 4's baselines on BLIP-2: with a baseline model type, on its weights
    blip2 = dataclasses.replace(settings, baseline_model_type="pretrain_flant5xl")
    baseline_model = evaluation_config(by_name["ris_refcocog_crop"], blip2)["model"]
    assert baseline_model == {"arch": "blip2_t5_region", "model_type": "pretrain_flant5xl",
                              "t5_soft_prompt_dtype": "float32"}  # the YAML's settings, no fine-tuned file
    assert evaluation_config(by_name["ris_refcocog"], blip2)["model"]["finetuned"] == str(tmp_path / "ckpt.pth")
    assert evaluation_config(by_name["ris_refcoco_k15"], settings)["run"]["num_points"] == 15
    assert evaluation_config(by_name["ris_refcoco_dilation7"], settings)["run"]["dilation_px"] == 7
    okvqa = evaluation_config(by_name["okvqa"], settings)  # ${oc.env:REGIONVLM_DATA} is the data root
    test_files = okvqa["datasets"]["ok_vqa"]["build_info"]["annotations"]["test"]["storage"]
    assert test_files[0] == f"{tmp_path / 'data'}/okvqa/annotations/okvqa_val_eval.json"
    assert okvqa["run"]["batch_size_train"] == okvqa["run"]["batch_size_eval"]  # LAVIS reads it for the train split
    assert "REGIONVLM_DATA" not in os.environ or os.environ["REGIONVLM_DATA"] != str(tmp_path / "data")


def test_missing_inputs_are_listed_with_their_source_and_nothing_runs(tmp_path, capsys):
    root = tmp_path / "data"
    make_synthetic_root(root, num_images=20, seed=0)
    (root / "vcr/val.jsonl").unlink()
    (root / "coco/images/train2014/COCO_train2014_000000000017.jpg").unlink()
    out = tmp_path / "out"
    code = reproduce_main(["--data-root", str(root), "--out", str(out), "--device", "cpu", "--tables", "1,2"])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "missing model checkpoint for --model-type regionvlm_flant5xl" in err
    assert f"missing VCR val annotations: {root}/vcr/val.jsonl" in err and "visualcommonsense.com" in err
    # a val image: RefCOCO and RefCOCO+ (val, testA, testB: 4 images) and RefCOCOg (val: 2) read it
    assert err.count("1 of 4 images of the evaluated splits (COCO_train2014_000000000017.jpg)") == 2
    assert err.count("1 of 2 images of the evaluated splits (COCO_train2014_000000000017.jpg)") == 1
    # no proposals yet and the default SAM is ViT-H: its checkpoint is needed
    assert f"missing SAM checkpoint (to make the missing proposals): {root}/sam/sam_vit_h_4b8939.pth" in err
    assert "6 input(s) missing: nothing was run" in err and "Reproduce the paper" in err

    (root / "gqa/annotations/testdev_balanced_questions.json").write_text("[{")
    assert reproduce_main(["--data-root", str(root), "--out", str(out), "--device", "cpu", "--tables", "3"]) == 2
    assert f"{root}/gqa/annotations/testdev_balanced_questions.json is not valid JSON" in capsys.readouterr().err

    from lavis_regionvlm.cli import main as cli_main

    assert cli_main(["reproduce", "--data-root", str(tmp_path / "nowhere")]) == 2
    assert f"--data-root {tmp_path / 'nowhere'} is not a folder" in capsys.readouterr().err


def test_results_put_ours_beside_the_paper_with_the_difference():
    tables = load_paper_tables()
    chosen = [tables[1], tables[5]]
    outcomes = {
        "ris_refcoco": Outcome("ris_refcoco", "done", {s: {"mIoU": m, "oIoU": m + 1, "count": 3} for s, m in
                                                       (("val", 40.0), ("testA", 39.4), ("testB", 30.0))}),
        "ris_refcoco_plus": Outcome("ris_refcoco_plus", "failed", message="exit code 1"),
        "nocaps": Outcome("nocaps", "done", {"val": {"Bleu_4": 47.5, "CIDEr": 120.0,
                                                     "SPICE": "skipped: java is not on PATH", "count": 4}}),
    }
    results = build_results(chosen, outcomes, {"model_type": "tiny", "checkpoint": None, "data_root": "d",
                                                "device": "cpu"})
    ours = next(r for r in results["tables"]["1"]["rows"] if r["label"] == "RegionVLM")["cells"]
    assert [(c["ours"], c["paper"]) for c in ours[:4]] == [(40.0, 38.74), (39.4, 39.40), (30.0, 37.59), (None, 31.47)]
    assert ours[0]["diff"] == pytest.approx(1.26) and ours[2]["diff"] == pytest.approx(-7.59)
    assert ours[3]["diff"] is None and ours[0]["measure"] == "ris_refcoco:val:mIoU"
    text = markdown(results)
    assert "| RegionVLM (paper) | 38.74 | 39.40 | 37.59 | 31.47 | 33.99 | 30.22 | 33.94 |" in text
    assert "| **RegionVLM (ours)** | 40.00 | 39.40 | 30.00 | not run | not run | not run | not run |" in text
    assert "| RegionVLM (ours - paper) | +1.26 | +0.00 | -7.59 | - | - | - | - |" in text
    assert "| **RegionVLM oIoU (ours)** | 41.00 | 40.40 | 31.00 |" in text
    assert "| Yu et al. 2023 (zero-shot, Global-Local CLIP) (paper) | 26.70 |" in text
    assert "| **RegionVLM (ours)** | 47.50 | skipped: java is not on PATH | 120.00 |" in text
    assert "| RegionVLM (ours - paper) | -0.20 | - | +0.90 |" in text
    assert "- `ris_refcoco_plus`: failed: exit code 1" in text


def _run(data_root: Path, out: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "lavis_regionvlm.reproduce", "--data-root", str(data_root), "--model-type",
               "tiny", "--device", "cpu", "--out", str(out), "--tables", "all", "--sam-config", str(TINY_SAM),
               "--options", *CPU_OPTIONS]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


@pytest.mark.slow  # 23 evaluations, each a process loading LAVIS: about 4 min on 2 idle cores
def test_reproduce_all_on_synthetic_data_survives_a_kill(data_root, tmp_path):
    out = tmp_path / "out"
    first = _run(data_root, out, start_new_session=True)
    done, second = out / "ris_refcoco/done.json", out / "ris_refcoco_plus/config.yaml"
    deadline = time.monotonic() + 600
    while not (done.is_file() and second.is_file()) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert done.is_file() and second.is_file(), first.communicate()[0][-3000:] if first.poll() is not None else ""
    os.killpg(first.pid, signal.SIGKILL)  # the command and its running evaluation, mid-run
    first.wait()
    assert not (out / "ris_refcoco_plus/done.json").exists()
    assert len(list((data_root / "sam_proposals/refcoco+").glob("COCO_*.json"))) == 4  # the job ran (4 held out)
    finished_at = done.stat().st_mtime_ns

    second_run = _run(data_root, out)
    log = second_run.communicate(timeout=1500)[0]
    assert second_run.returncode == 0, log[-4000:]
    assert f"skip ris_refcoco: finished earlier ({done})" in log and done.stat().st_mtime_ns == finished_at
    assert f"restart ris_refcoco_plus: removing the unfinished or outdated run in {out / 'ris_refcoco_plus'}" in log
    assert "proposals refcoco+" not in log.split("plan:")[1]  # nothing left to make
    results = json.loads((out / "results.json").read_text())
    assert set(results["tables"]) == {str(n) for n in range(1, 9)}
    assert all(e["status"] == "done" for e in results["evaluations"].values()) and len(results["evaluations"]) == 23
    for number, table in results["tables"].items():
        for row in table["rows"]:
            for cell in row["cells"]:
                if cell["measure"] is None:
                    assert cell["ours"] is None
                elif cell["measure"] == "nocaps:val:SPICE" and isinstance(cell["ours"], str):
                    assert cell["ours"].startswith("skipped: ")
                else:
                    assert isinstance(cell["ours"], float), (number, row["label"], cell)
                    assert 0.0 <= cell["ours"] <= 100.0 or cell["measure"].endswith("CIDEr")
    metrics = results["evaluations"]
    assert metrics["ris_refcoco"]["metrics"]["testA"]["count"] + metrics["ris_refcoco"]["metrics"]["val"]["count"] > 0
    # the shape proposals give RIS real choices: the whole image, the shapes or the speck
    shapes = json.loads((out / "ris_refcoco/run/result/val_epochbest.json").read_text())
    assert all(len(r["proposal_ids"]) >= 2 for r in shapes)
    markdown_text = (out / "results.md").read_text()
    assert "| **RegionVLM (ours)** |" in markdown_text and "not run" not in markdown_text
    assert markdown_text in log  # printed at the end


def test_a_finished_run_counts_only_for_the_config_that_ran(tmp_path):
    from lavis_regionvlm.reproduce.runner import DONE, finished
    from lavis_regionvlm.ris.proposal_cache import write_json_atomic

    config = {"model": {"model_type": "tiny"}, "run": {"num_points": 5}}
    assert finished(tmp_path, config) is None
    write_json_atomic(tmp_path / DONE, {"config": config, "metrics": {"val": {"mIoU": 1.0}}, "seconds": 2})
    assert finished(tmp_path, config)["metrics"] == {"val": {"mIoU": 1.0}}
    assert finished(tmp_path, {**config, "run": {"num_points": 15}}) is None  # other settings: run again
    (tmp_path / DONE).write_text('{"config": ')  # a torn file is not a finished run
    assert finished(tmp_path, config) is None
