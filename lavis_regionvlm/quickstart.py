"""The quick start: synthetic data -> train the tiny model -> evaluate -> print the numbers.

    python -m lavis_regionvlm.quickstart [--epochs N] [--num-images N] [--nproc N]
                                         [--no-ablation] [--workdir DIR] [--options K=V ...]

Steps, each a command a user could run by hand (printed as it runs):
1. write the synthetic dataset (`--num-images`, 80% train, 20% held out) and prepare its
   Localized Narratives (skipped if `DIR/data/synthetic` already holds them);
2. train `tiny` from scratch with `projects/regionvlm/train_tiny.yaml` through
   `torch.distributed.run` on `--nproc` CPU processes (gloo DDP, one thread each);
3. train the same model with empty point text (the paper's Table 8 ablation), unless
   `--no-ablation`;
4. caption the held-out images' regions with both models (`eval_tiny.yaml`, greedy);
5. print, for both and for chance (one of the image's phrases at random): exact match,
   how often the caption names the region's colour, shape and position words, and how often
   the region's own phrase has the lowest loss among its image's phrases
   (`quickstart_scores.py`).

The defaults (1,000 images, 6 epochs of half region, half global captions: about 50k
samples per model, no dropout) took 10 minutes on 2 CPU cores and gave, on the 580
held-out regions (% right, with points / empty point text / chance): colour, which names
the object since colours are unique in an image, 92 / 40 / 40; own phrase ranked first
99 / 41 / 40; position words 80 / 32 / 41; exact match 41 / 1 / 40. The points are what
lets the model find the region. Shape is the slow part: the tiny ViT, trained from scratch,
needs far more samples than this to tell circles, squares and triangles apart, so exact
match is only a little above chance after a few minutes; more images and epochs
(`--num-images 2500 --epochs 10`) raise it.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from lavis_regionvlm.quickstart_scores import (
    ATTRIBUTES,
    PROJECT,
    caption_scores,
    chance_scores,
    phrase_ranking,
    trained_tiny_model,
)


def run(command: list[str], cwd: Path) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=cwd, check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path.cwd(), help="where data/ and output/ go")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--num-images", type=int, default=1000,
                        help="synthetic images to generate (80%% train); ignored if data exists")
    parser.add_argument("--nproc", type=int, default=2, help="training processes (one thread each)")
    parser.add_argument("--no-ablation", action="store_true", help="skip the empty-point-text model")
    parser.add_argument("--options", nargs="+", default=[],
                        help="more key=value overrides of train_tiny.yaml, for both trainings")
    args = parser.parse_args(argv)
    python, workdir = sys.executable, args.workdir.resolve()
    data = workdir / "data" / "synthetic"

    if not (data / "prepared" / "ln_val" / "meta.json").exists():
        run([python, "-m", "lavis_regionvlm.preparation.synthetic", "--out", str(data),
             "--num-images", str(args.num_images)], workdir)
        run([python, "-m", "lavis_regionvlm.preparation.prepare_synthetic", "--root", str(data)], workdir)

    runs = {"with points": ("train", [])}
    if not args.no_ablation:
        runs["empty point text"] = ("nopoints", ["datasets.region_global_mix.sampling.empty_points=True"])
    results = {}
    for name, (job, options) in runs.items():
        run([python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
             "-m", "lavis_regionvlm.train", "--cfg-path", str(PROJECT / "train_tiny.yaml"),
             "--options", f"run.job_id={job}", f"run.max_epoch={args.epochs}", "run.cpu_threads=1",
             "run.valid_splits=[]", f"run.data_root={workdir / 'data'}", *args.options, *options], workdir)
        checkpoint = workdir / "output" / "regionvlm_tiny" / job / f"checkpoint_{args.epochs - 1}.pth"
        run([python, "-m", "lavis_regionvlm.evaluate", "--cfg-path", str(PROJECT / "eval_tiny.yaml"),
             "--options", f"model.finetuned={checkpoint}", f"run.job_id=eval_{job}",
             f"run.data_root={workdir / 'data'}"], workdir)
        scores, metrics = caption_scores(workdir / "output" / "regionvlm_tiny" / f"eval_{job}")
        ranked, ranking_chance = phrase_ranking(trained_tiny_model(checkpoint), data / "prepared" / "ln_val",
                                                data / "images")
        results[name] = (scores, ranked, metrics)

    chance = chance_scores(data / "prepared" / "ln_val")
    count = next(iter(results.values()))[2]["count"]
    print(f"\nCaptions of {count} regions of held-out synthetic images (% right):")
    print(f"  {'':<18} " + " ".join(f"{a:>11}" for a in ATTRIBUTES) + "   own phrase ranked first   CIDEr")
    for name, (scores, ranked, metrics) in results.items():
        print(f"  {name:<18} " + " ".join(f"{s:11.1f}" for s in scores) + f"   {ranked:23.1f}   {metrics['cider']:5.1f}")
    print(f"  {'chance':<18} " + " ".join(f"{s:11.1f}" for s in chance) + f"   {ranking_chance:23.1f}"
          + "   (one of the image's phrases at random)")


if __name__ == "__main__":
    main()
