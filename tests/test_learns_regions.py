"""The tiny model learns to use the points (the paper's Table 8 ablation, in miniature).

Two short trainings through the launcher and runner with the quick start's recipe
(`train_tiny.yaml`: no dropout, half region and half global captions), identical but for
the point text: one with points, one with empty point text. 400 images, 4 epochs, 2
ranks. On held-out images, each region's own narrative phrase is ranked against the
image's other phrases by LM loss. The model with points must pick the right phrase far
more often than chance and than the one without (on this machine: 88.5% vs 43.0% vs
43.0%; ignoring the points gives chance). The quick start reports the same comparison
with generated captions.
"""
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
EPOCHS = 4


@pytest.fixture(scope="module")
def workdir(prepared_synthetic_workdir):
    """A working directory holding a small prepared synthetic dataset at data/synthetic."""
    return prepared_synthetic_workdir("learn", 400)


def train(workdir: Path, job: str, *options: str) -> Path:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "lavis_regionvlm.train", "--cfg-path", str(REPO / "projects/regionvlm/train_tiny.yaml"),
        "--options", f"run.job_id={job}", f"run.max_epoch={EPOCHS}", "run.batch_size_train=8",
        "run.warmup_steps=50", "run.num_workers=0", "run.cpu_threads=1", "run.valid_splits=[]",
        "run.checkpoint_every_iters=0", *options,
    ]
    result = subprocess.run(command, cwd=workdir, env=ENV, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir / "output/regionvlm_tiny" / job / f"checkpoint_{EPOCHS - 1}.pth"


def ranking_accuracy(checkpoint: Path, workdir: Path) -> tuple[float, float]:
    """(% of held-out regions whose own phrase has the lowest loss among the image's
    phrases, % a random pick would get), both over the same regions."""
    from lavis.processors.blip_processors import BlipImageEvalProcessor
    from PIL import Image

    from lavis_regionvlm.data.ln_prepared import PreparedNarratives
    from lavis_regionvlm.models import Blip2T5Region
    from lavis_regionvlm.regions import Region

    cfg = OmegaConf.load(REPO / "projects/regionvlm/train_tiny.yaml").model
    base = OmegaConf.load(Blip2T5Region.default_config_path("tiny")).model
    model = Blip2T5Region.from_config(OmegaConf.merge(base, cfg)).eval()
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    processor = BlipImageEvalProcessor(image_size=64)

    by_image = defaultdict(list)
    for sample in PreparedNarratives(workdir / "data/synthetic/prepared/ln_val"):
        by_image[sample.image].append((sample.text.lower(), sample.points))
    hits = chance = total = 0
    for image_name, samples in list(by_image.items())[:60]:
        phrases = sorted({text for text, _ in samples})
        if len(phrases) < 2:
            continue
        image = processor(Image.open(workdir / "data/synthetic/images" / image_name).convert("RGB"))
        embeds = model.encode_image(image[None])
        for text, points in samples:
            region_text = Region.from_points(points).to_text(10, seed=0, quantize="floor")
            losses = model.score_regions(
                embeds, [region_text] * len(phrases), phrases,
                image_index=torch.zeros(len(phrases), dtype=torch.long),
            )
            hits += phrases[int(losses.argmin())] == text
            chance += 1 / len(phrases)
            total += 1
    return 100.0 * hits / total, 100.0 * chance / total


@pytest.mark.slow
def test_points_make_the_difference(workdir):
    with_points, chance = ranking_accuracy(train(workdir, "points"), workdir)
    without_points, _ = ranking_accuracy(
        train(workdir, "nopoints", "datasets.region_global_mix.sampling.empty_points=True"), workdir
    )
    print(f"ranking accuracy: with points {with_points:.1f}%, empty point text "
          f"{without_points:.1f}%, chance {chance:.1f}%")
    assert with_points > chance + 25
    assert with_points > without_points + 20
