"""Training through LAVIS: 2-process gloo DDP via the package launcher and LAVIS's runner
machinery, resume from checkpoints, and a killed run that resumes with nothing lost."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
TRAIN_YAML = REPO / "projects/regionvlm/train_tiny.yaml"
TRAIN_YAMLS = {"blip2_t5_region": (TRAIN_YAML, "regionvlm_tiny"),  # yaml, output folder
               "blip2_opt_region": (REPO / "projects/regionvlm/train_tiny_opt.yaml", "regionvlm_tiny_opt")}
RECIPES = {"train.yaml": "each a region sample with probability 0.6",  # the authors' recipe
           "train_variant.yaml": "groups of 1 region + 1 global samples"}  # ours
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def workdir(prepared_synthetic_workdir):
    """A working directory holding a small prepared synthetic dataset at data/synthetic."""
    return prepared_synthetic_workdir("train", 60)


def train_command(job_id: str, *options: str, yaml: Path = TRAIN_YAML) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "lavis_regionvlm.train", "--cfg-path", str(yaml), "--options",
        f"run.job_id={job_id}", "run.batch_size_train=2", "run.num_workers=0",
        "run.warmup_steps=3", "run.checkpoint_every_iters=2", "run.valid_splits=[]",
        "run.cpu_threads=1", *options,
    ]


def run_training(workdir, job_id, *options, timeout=420, yaml: Path = TRAIN_YAML) -> str:
    result = subprocess.run(
        train_command(job_id, *options, yaml=yaml), cwd=workdir, env=ENV, capture_output=True, text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout + result.stderr


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("arch", sorted(TRAIN_YAMLS))
def test_two_rank_gloo_training_writes_checkpoints_and_resumes(workdir, arch):
    yaml, folder = TRAIN_YAMLS[arch]
    log = run_training(workdir, "resume", "run.max_epoch=1", yaml=yaml)
    out = workdir / f"output/{folder}/resume"
    first = load(out / "checkpoint_0.pth")
    assert first["epoch"] == 1 and first["iters_done"] == 0
    assert "samples/s" in log and "eta" in log
    trainable = set(first["model"])
    assert any(k.startswith("Qformer.bert.embeddings.word_embeddings") for k in trainable)
    assert len(first["rng_states"]) == 2  # one per rank
    lm_prefix = {"blip2_t5_region": "t5_model.", "blip2_opt_region": "opt_model."}[arch]
    assert any(k.startswith(lm_prefix) for k in trainable)  # the quick-start recipe trains the LM too

    log = run_training(workdir, "resume", "run.max_epoch=2", "run.resume_ckpt_path=auto", yaml=yaml)
    assert "Resumed from" in log and "at epoch 1, iteration 0" in log
    second = load(out / "checkpoint_1.pth")
    assert second["epoch"] == 2
    changed = [k for k in trainable if not torch.equal(first["model"][k], second["model"][k])]
    assert changed, "the resumed epoch did not train"
    assert not (out / "checkpoint_latest.tmp").exists()


def test_a_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one(workdir):
    run_training(workdir, "whole", "run.max_epoch=1")
    whole = load(workdir / "output/regionvlm_tiny/whole/checkpoint_0.pth")

    out = workdir / "output/regionvlm_tiny/killed"
    process = subprocess.Popen(
        train_command("killed", "run.max_epoch=1"), cwd=workdir, env=ENV,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            latest = out / "checkpoint_latest.pth"
            if latest.exists() and load(latest)["iters_done"] >= 4:
                break
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("no mid-epoch checkpoint appeared")
    finally:
        kill_processes_running("run.job_id=killed", workdir)  # the launcher and both ranks
        process.wait()
    killed_at = load(out / "checkpoint_latest.pth")
    assert killed_at["epoch"] == 0 and 4 <= killed_at["iters_done"] < whole_iters(workdir)
    assert not (out / "checkpoint_0.pth").exists()

    log = run_training(workdir, "killed", "run.max_epoch=1", "run.resume_ckpt_path=auto")
    assert f"at epoch 0, iteration {killed_at['iters_done']}" in log
    resumed = load(out / "checkpoint_0.pth")
    for key, value in whole["model"].items():
        assert torch.allclose(resumed["model"][key], value, atol=1e-6), key
    for a, b in zip(whole["optimizer"]["state"].values(), resumed["optimizer"]["state"].values()):
        assert int(a["step"]) == int(b["step"])  # same number of optimizer steps: none lost or repeated
    # the epoch's mean loss covers the batches before the kill too, in the log and log.txt
    assert len(killed_at["loss_sums"]) == 2 and killed_at["loss_sums"][0][1] == killed_at["iters_done"]
    whole_loss = train_loss(workdir / "output/regionvlm_tiny/whole/log.txt")
    assert abs(train_loss(out / "log.txt") - whole_loss) < 5e-4, (train_loss(out / "log.txt"), whole_loss)
    logged = float(re.search(r"Epoch 0 mean loss ([\d.]+)", log).group(1))
    assert abs(logged - whole_loss) < 5e-4


def train_loss(log_txt: Path) -> float:
    """The `train_loss` of the one epoch line LAVIS's `log_stats` appended to log.txt."""
    lines = [json.loads(line) for line in log_txt.read_text().splitlines() if '"train_loss"' in line]
    assert len(lines) == 1, lines
    return float(lines[0]["train_loss"])


def test_a_truncated_latest_checkpoint_falls_back_to_the_newest_intact_one(workdir):
    run_training(workdir, "fallback", "run.max_epoch=1")
    out = workdir / "output/regionvlm_tiny/fallback"
    latest = out / "checkpoint_latest.pth"
    latest.write_bytes(latest.read_bytes()[:1000])  # as a save cut off by a full disk leaves it
    log = run_training(workdir, "fallback", "run.max_epoch=1", "run.resume_ckpt_path=auto")
    assert f"not resuming from checkpoint_latest.pth: checkpoint {latest} is truncated or damaged" in log
    assert "resuming from checkpoint_0.pth instead, the newest intact checkpoint" in log
    assert f"Resumed from {out / 'checkpoint_0.pth'} at epoch 1, iteration 0" in log
    assert "Traceback" not in log

    (out / "checkpoint_0.pth").write_bytes(b"")
    result = subprocess.run(
        train_command("fallback", "run.max_epoch=1", "run.resume_ckpt_path=auto"),
        cwd=workdir, env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert f"cannot resume: no intact checkpoint in {out} to resume from" in result.stderr
    assert f"checkpoint {out / 'checkpoint_0.pth'} is empty (0 bytes)" in result.stderr


def kill_processes_running(marker: str, cwd: Path) -> None:
    """SIGKILL every process started in `cwd` whose command line holds `marker`, as a
    machine failure would: torchrun puts its ranks in sessions of their own, so killing
    the launcher's process group alone leaves them running."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if marker in cmdline and Path(os.readlink(proc / "cwd")) == cwd:
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def whole_iters(workdir) -> int:
    """Iterations of one epoch, from the uninterrupted run's optimizer step count."""
    state = load(workdir / "output/regionvlm_tiny/whole/checkpoint_0.pth")["optimizer"]["state"]
    return int(next(iter(state.values()))["step"])


def test_a_bad_resume_path_is_a_clear_error(workdir):
    result = subprocess.run(
        train_command("bad", "run.max_epoch=1", "run.resume_ckpt_path=/nonexistent.pth"),
        cwd=workdir, env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "resume_ckpt_path /nonexistent.pth does not exist" in result.stdout + result.stderr


def tiny_recipe(project: Path, workdir: Path) -> Path:
    """`project` (a full-size training YAML) at tiny scale on the synthetic data: its data recipe
    (mixing, sampling, crop, global file weights) and optimiser settings (lr schedule, clipping,
    seed) are kept; the model becomes `tiny` (fp32 ViT on CPU, its random text branch), the data
    paths the synthetic ones, and the run a short 2-rank CPU one. Returns the written YAML."""
    recipe, tiny = OmegaConf.load(project), OmegaConf.load(TRAIN_YAML)
    mix, tiny_mix = recipe.datasets.region_global_mix, tiny.datasets.region_global_mix
    mix.vis_processor.train.image_size = mix.vis_processor.eval.image_size = 64
    mix.region_sources = tiny_mix.region_sources
    files = tiny_mix.global_sources.global_caption.build_info.annotations.train.files
    weights = [entry.get("weight") for entry in mix.global_sources.global_caption.build_info.annotations.train.files]
    mix.global_sources = tiny_mix.global_sources
    if weights[0] is not None:  # the captions twice, as COCO and as LAION, with the recipe's weights
        mix.global_sources.global_caption.build_info.annotations.train.files = [
            {**OmegaConf.to_container(files[0]), "weight": weight} for weight in weights]
    recipe.datasets = {"region_global_mix": mix}
    recipe.model = tiny.model
    for key in ("runner", "device", "cpu_threads", "checkpoint_every_iters", "amp", "valid_splits"):
        recipe.run[key] = tiny.run.get(key, 1)
    recipe.run.output_dir, recipe.run.resume_ckpt_path = "output/recipes", None
    path = workdir / f"tiny_{project.name}"
    OmegaConf.save(recipe, path)
    return path


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_each_recipe_trains_at_tiny_scale_on_cpu(workdir, recipe):
    config = tiny_recipe(REPO / "projects/regionvlm" / recipe, workdir)
    command = train_command(recipe, "run.max_epoch=1")
    command[command.index(str(TRAIN_YAML))] = str(config)
    result = subprocess.run(command, cwd=workdir, env=ENV, capture_output=True, text=True, timeout=420)
    log = result.stdout + result.stderr
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert RECIPES[recipe] in log
    checkpoint = load(workdir / "output/recipes" / recipe / "checkpoint_0.pth")
    steps = int(next(iter(checkpoint["optimizer"]["state"].values()))["step"])
    assert steps > 0
    from lavis.common.config import Config
    from lavis.common.registry import registry

    import lavis_regionvlm.registration  # noqa: F401  (registers the model)

    model_cfg = Config.build_model_config(OmegaConf.load(config)).model  # the model YAML under the project's keys
    initial = registry.get_model_class(model_cfg.arch).from_config(model_cfg).state_dict()
    changed = [key for key, value in checkpoint["model"].items() if not torch.equal(value, initial[key])]
    assert changed, f"{recipe}: no trained weight moved in {steps} steps"


def test_train_yaml_is_the_authors_recipe_and_the_variant_is_ours(monkeypatch):
    """The settings of LN_ft.yaml, blip2_LN_flant5xl.yaml and LN_datasets.py in train.yaml;
    ours in train_variant.yaml (read through LAVIS's config merge, model defaults included)."""
    from argparse import Namespace

    from lavis.common.config import Config

    import lavis_regionvlm.registration  # noqa: F401
    from lavis_regionvlm.tasks.region_captioning import RegionCaptioningTask

    monkeypatch.setenv("PWD", "/tmp")
    configs = {name: Config(Namespace(cfg_path=str(REPO / "projects/regionvlm" / name), options=None))
               for name in RECIPES}
    released, ours = configs["train.yaml"], configs["train_variant.yaml"]
    mix, run, model = released.datasets_cfg.region_global_mix, released.run_cfg, released.model_cfg
    assert (mix.region_ratio, mix.group) == (0.6, None)
    assert (mix.sampling.epoch_unit, mix.sampling.stored_points, mix.sampling.num_points) == ("image", 20, 10)
    assert (mix.vis_processor.train.crop_prob, mix.vis_processor.train.crop_mode,
            mix.vis_processor.train.max_side_crop) == (1.0, "sides", 0.1)
    weights = [f.weight for f in mix.global_sources.global_caption.build_info.annotations.train.files]
    assert weights == [0.1, 0.9]  # COCO, LAION
    assert (run.init_lr, run.warmup_lr, run.warmup_steps, run.min_lr, run.max_epoch, run.batch_size_train) == (
        5e-6, 5e-9, 1000, 0, 10, 8)
    assert RegionCaptioningTask.setup_task(released).max_grad_norm is None  # no clipping
    assert (model.vit_precision, model.freeze_vit, model.text_branch_pretrained) == ("fp32", True, None)
    mix, run, model = ours.datasets_cfg.region_global_mix, ours.run_cfg, ours.model_cfg
    assert (mix.region_ratio, dict(mix.group)) == (None, {"region": 1, "global": 1})
    assert (mix.sampling.epoch_unit, mix.sampling.stored_points) == ("phrase", None)
    assert (mix.vis_processor.train.crop_mode, run.warmup_lr) == ("scale", 1e-8)
    assert RegionCaptioningTask.setup_task(ours).max_grad_norm == 1.0
    assert model.text_branch_pretrained.endswith("/blip2_pretrained.pth")  # the stage-1 text branch
    tiny = OmegaConf.load(TRAIN_YAML).datasets.region_global_mix  # the quick start: ours, set explicitly
    assert (tiny.region_ratio, tiny.sampling.epoch_unit, tiny.sampling.stored_points,
            tiny.vis_processor.train.crop_prob) == (None, "phrase", None, 0.0)
