"""`region_captioning` evaluation through the launcher and runner (what the quick start runs):
every held-out region is captioned once, merged across 2 ranks, scored, and the metrics
land in evaluate.txt and agree with a rescoring of the written results."""
import json
import os
import subprocess
import sys
from pathlib import Path

from types import SimpleNamespace

import torch
from omegaconf import OmegaConf

from lavis_regionvlm.preparation.ln_prepared import PreparedNarratives
from lavis_regionvlm.models import Blip2T5Region
from lavis_regionvlm.tasks.region_captioning import caption_metrics

REPO = Path(__file__).resolve().parents[1]
EVAL_YAML = REPO / "projects/regionvlm/eval_tiny.yaml"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def test_two_rank_evaluation_captions_every_region_once(prepared_synthetic_workdir, tmp_path):
    workdir = prepared_synthetic_workdir("eval_captions", 40)
    cfg = OmegaConf.load(EVAL_YAML).model
    base = OmegaConf.load(Blip2T5Region.default_config_path("tiny")).model
    model = Blip2T5Region.from_config(OmegaConf.merge(base, cfg, {"load_finetuned": False}))
    checkpoint = tmp_path / "random.pth"
    torch.save({"model": model.state_dict()}, checkpoint)

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "lavis_regionvlm.evaluate", "--cfg-path", str(EVAL_YAML), "--options",
               f"model.finetuned={checkpoint}", "run.job_id=eval_random", "run.num_workers=0",
               "run.batch_size_eval=8", "run.cpu_threads=1"]
    result = subprocess.run(command, cwd=workdir, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]

    output = workdir / "output/regionvlm_tiny/eval_random"
    logged = json.loads((output / "evaluate.txt").read_text().splitlines()[-1])["val"]
    records = json.loads((output / "result/val_epochbest.json").read_text())
    regions = len(PreparedNarratives(workdir / "data/synthetic/prepared/ln_val"))
    assert logged["count"] == len(records) == regions
    assert len({r["instance_id"] for r in records}) == regions
    assert logged == caption_metrics(records)


def test_evaluation_generates_with_the_released_settings_by_default(tiny_model, images):
    """LN_ft.yaml: num_beams 5, max_len 30 (new tokens), min_len 1; run keys override them."""
    from lavis.common.registry import registry

    seen = []
    t5 = tiny_model.t5_model
    original = t5.generate

    def spy(*args, **kwargs):
        seen.append({k: kwargs[k] for k in ("num_beams", "max_new_tokens", "min_length")})
        return original(*args, **kwargs)

    samples = {"image": images, "region_text": ["[10 20] [30 40]", ""], "instance_id": [0, 1],
               "text_output": ["a", "b"]}
    task_class = registry.get_task_class("region_captioning")
    t5.generate = spy
    try:
        task = task_class.setup_task(SimpleNamespace(run_cfg=OmegaConf.create({})))
        records = task.valid_step(tiny_model, samples)
        task_class.setup_task(
            SimpleNamespace(run_cfg=OmegaConf.create({"num_beams": 2, "max_len": 4, "min_len": 2}))
        ).valid_step(tiny_model, samples)
    finally:
        del t5.generate
    assert seen == [{"num_beams": 5, "max_new_tokens": 30, "min_length": 1},
                    {"num_beams": 2, "max_new_tokens": 4, "min_length": 2}]
    assert [r["instance_id"] for r in records] == ["0", "1"]
    assert (task.num_beams, task.max_len, task.min_len) == (5, 30, 1) == (
        task_class().num_beams, task_class().max_len, task_class().min_len)
