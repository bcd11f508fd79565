"""Zero-shot RIS end to end as a user runs it: SAM proposals with the command, then the
`zero_shot_ris` task through the package launcher and `runner_region` on 2 gloo ranks."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lavis_regionvlm.ris.refer import load_split

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("project", ["ris_synthetic_tiny", "ris_synthetic_tiny_opt"])
def test_proposals_then_two_rank_runner_evaluation_counts_every_expression_once(prepared_synthetic_workdir, project):
    """Both models' project YAMLs (blip2_t5_region, blip2_opt_region)."""
    workdir = prepared_synthetic_workdir(project, 40)
    subprocess.run(
        [sys.executable, "-m", "lavis_regionvlm.ris.proposals",
         "--config", str(REPO / "projects/regionvlm/ris_proposals_synthetic_tiny.yaml")],
        cwd=workdir, env=ENV, check=True, capture_output=True, timeout=600,
    )
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "lavis_regionvlm.evaluate", "--cfg-path", str(REPO / f"projects/regionvlm/{project}.yaml"),
         "--options", "run.test_splits=[val]"],
        cwd=workdir, env=ENV, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    expected = sorted(
        e.id for image in load_split(workdir / "data/synthetic/refcoco", "unc", "val") for e in image.expressions
    )
    merged = list((workdir / f"output/{project}/eval/result").glob("val_*.json"))
    records = [r for path in merged if "rank" not in path.name and "metrics" not in path.name
               for r in json.loads(path.read_text())]
    assert sorted(r["id"] for r in records) == expected
    assert "mIoU" in result.stdout + result.stderr
