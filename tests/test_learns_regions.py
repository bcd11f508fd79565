"""The tiny model learns to use the points (the paper's Table 8 ablation, in miniature).

Two short trainings through the launcher and runner with the quick start's recipe
(`train_tiny.yaml`: no dropout, half region and half global captions), identical but for
the point text: one with points, one with empty point text. 400 images, 4 epochs, 2
ranks. On held-out images, each region's own narrative phrase is ranked against the
image's other phrases by LM loss. The model with points must pick the right phrase far
more often than chance and than the one without (on this machine: 88.5% vs 43.0% vs
43.0%; ignoring the points gives chance). The quick start reports the same comparison
with generated captions. The same holds for the tiny OPT model (`train_tiny_opt.yaml`).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
EPOCHS = 4
RECIPES = {"blip2_t5_region": ("train_tiny.yaml", "regionvlm_tiny"),  # project YAML, output folder
           "blip2_opt_region": ("train_tiny_opt.yaml", "regionvlm_tiny_opt")}


@pytest.fixture(scope="module")
def workdir(prepared_synthetic_workdir):
    """A working directory holding a small prepared synthetic dataset at data/synthetic."""
    return prepared_synthetic_workdir("learn", 400)


def train(workdir: Path, arch: str, job: str, *options: str) -> Path:
    yaml, folder = RECIPES[arch]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "lavis_regionvlm.train", "--cfg-path", str(REPO / "projects/regionvlm" / yaml),
        "--options", f"run.job_id={job}", f"run.max_epoch={EPOCHS}", "run.batch_size_train=8",
        "run.warmup_steps=50", "run.num_workers=0", "run.cpu_threads=1", "run.valid_splits=[]",
        "run.checkpoint_every_iters=0", *options,
    ]
    result = subprocess.run(command, cwd=workdir, env=ENV, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir / "output" / folder / job / f"checkpoint_{EPOCHS - 1}.pth"


def ranking_accuracy(checkpoint: Path, workdir: Path, arch: str) -> tuple[float, float]:
    """(% of held-out regions whose own phrase has the lowest loss among the image's
    phrases, % a random pick would get), over the regions of 60 held-out images."""
    from lavis_regionvlm.quickstart_scores import phrase_ranking, trained_tiny_model

    data = workdir / "data/synthetic"
    model = trained_tiny_model(checkpoint, REPO / "projects/regionvlm" / RECIPES[arch][0])
    return phrase_ranking(model, data / "prepared/ln_val", data / "images", max_images=60)


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(RECIPES))
def test_points_make_the_difference(workdir, arch):
    with_points, chance = ranking_accuracy(train(workdir, arch, "points"), workdir, arch)
    without_points, _ = ranking_accuracy(
        train(workdir, arch, "nopoints", "datasets.region_global_mix.sampling.empty_points=True"), workdir, arch
    )
    print(f"{arch} ranking accuracy: with points {with_points:.1f}%, empty point text "
          f"{without_points:.1f}%, chance {chance:.1f}%")
    assert with_points > chance + 25
    assert with_points > without_points + 20
