"""The global benchmarks through LAVIS's stock tasks and builders with the `tiny` model:
`vqa` (coco_vqa, official VQAEval files) and captioning (nocaps builder, `captioning_offline`
with local ground truth, SPICE used only when available), each run by
`python -m lavis_regionvlm.evaluate` on the project YAML with CPU overrides."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = ROOT / "projects/regionvlm"
CPU = ["run.device=cpu", "run.cpu_threads=1", "run.num_workers=0",
       "run.batch_size_eval=4", "run.num_beams=1", "run.max_len=5", "run.min_len=1",
       "datasets.{name}.vis_processor.eval.image_size=64"]


def write_images(folder: Path, names: list[str]) -> None:
    rng = np.random.default_rng(0)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / name)


def evaluate(cfg: Path, data: Path, out: Path, name: str, extra=()) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "REGIONVLM_DATA": str(data)}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    # the project YAML with the `tiny` model (LAVIS picks the model's defaults by model_type
    # before --options apply, so the type is changed in the file)
    project = OmegaConf.load(cfg)
    project.model.model_type = "tiny"
    tiny_cfg = out.parent / f"tiny_{cfg.name}"
    OmegaConf.save(project, tiny_cfg)
    options = [o.format(name=name) for o in CPU] + [f"run.output_dir={out}", *extra]
    command = [sys.executable, "-m", "lavis_regionvlm.evaluate", "--cfg-path", str(tiny_cfg), "--options", *options]
    return subprocess.run(command, cwd=out.parent, env=env, capture_output=True, text=True, timeout=240)


def test_all_global_yamls_use_stock_tasks_and_the_short_answer_prompt():
    expected = {"vqav2_zeroshot.yaml": ("vqa", "coco_vqa"), "okvqa_zeroshot.yaml": ("vqa", "ok_vqa"),
                "gqa_zeroshot.yaml": ("gqa", "gqa"), "nocaps_zeroshot.yaml": ("captioning_offline", "nocaps")}
    for file, (task, builder) in expected.items():
        cfg = OmegaConf.load(PROJECTS / file)
        assert cfg.model.arch == "blip2_t5_region" and cfg.run.task == task
        assert list(cfg.datasets) == [builder]
        if task != "captioning_offline":
            assert cfg.run.prompt == "Question: {} Short answer:"
        text = (PROJECTS / file).read_text()
        assert "https://" not in text, "data paths are local config values, nothing is downloaded"


@pytest.mark.slow  # about 50 s on 2 shared cores
def test_stock_vqa_task_runs_the_tiny_model_through_the_runner(tmp_path):
    data = tmp_path / "data"
    ann = data / "coco/annotations"
    ann.mkdir(parents=True)
    images = [f"val2014/COCO_val2014_{i:012d}.jpg" for i in (1, 2, 3)]
    write_images(data / "coco/images", images)
    questions = [{"question_id": 10 + i, "image_id": i + 1, "question": f"what colour is thing {i}?"}
                 for i in range(5) for _ in [0]]
    for q in questions:
        q["image_id"] = (q["question_id"] % 3) + 1
    (ann / "vqa_val_eval.json").write_text(json.dumps([
        {"question_id": q["question_id"], "question": q["question"], "image": images[q["image_id"] - 1],
         "answer": ["red"] * 10} for q in questions]))
    (ann / "answer_list.json").write_text(json.dumps(["red", "blue"]))
    info = {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014", "license": {}}
    (ann / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps({**info, "questions": questions}))
    (ann / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({**info, "annotations": [
        {"question_id": q["question_id"], "image_id": q["image_id"], "question_type": "what color",
         "answer_type": "other", "multiple_choice_answer": "red",
         "answers": [{"answer": "red", "answer_confidence": "yes", "answer_id": k + 1} for k in range(10)]}
        for q in questions]}))
    done = evaluate(PROJECTS / "vqav2_zeroshot.yaml", data, tmp_path / "out", "coco_vqa")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "out/val/result/val_vqa_result.json").read_text())
    assert sorted(r["question_id"] for r in results) == [q["question_id"] for q in questions]
    assert all(isinstance(r["answer"], str) for r in results)
    metrics = [json.loads(line) for line in (tmp_path / "out/val/evaluate.txt").read_text().splitlines()]
    assert "agg_metrics" in metrics[-1] and 0 <= metrics[-1]["agg_metrics"] <= 100


@pytest.mark.slow  # about 50 s (PTB tokenizer and METEOR start a JVM)
def test_captioning_runs_the_tiny_model_and_says_when_spice_is_skipped(tmp_path):
    from lavis_regionvlm.tasks.captioning_offline import spice_available

    data = tmp_path / "data"
    ann = data / "nocaps/annotations"
    ann.mkdir(parents=True)
    images = [f"{i}.jpg" for i in range(4)]
    write_images(data / "nocaps/images", images)
    for split in ("val", "test"):
        (ann / f"nocaps_{split}.json").write_text(json.dumps([{"image": n, "img_id": i} for i, n in enumerate(images)]))
    (ann / "nocaps_val_4500_captions.json").write_text(json.dumps({
        "images": [{"id": i} for i in range(4)],
        "annotations": [{"image_id": i, "id": 10 * i + k, "caption": c}
                        for i in range(4) for k, c in enumerate(["a red circle", "a blue square"])]}))
    done = evaluate(PROJECTS / "nocaps_zeroshot.yaml", data, tmp_path / "out", "nocaps")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "out/val/result/val_epochbest.json").read_text())
    assert sorted(r["image_id"] for r in results) == [0, 1, 2, 3]
    metrics = [json.loads(line) for line in (tmp_path / "out/val/evaluate.txt").read_text().splitlines()][-1]["val"]
    assert {"Bleu_4", "CIDEr", "agg_metrics"} <= set(metrics)
    has_spice, why = spice_available()
    if has_spice:
        assert "SPICE" in metrics
    else:
        assert metrics["SPICE_skipped"] == why and "SPICE skipped" in done.stdout + done.stderr
