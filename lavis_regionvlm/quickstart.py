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
   and how often the caption names the region's colour, shape and position words.

The defaults (1,000 images, 6 epochs of half region, half global captions: about 50k
samples per model, no dropout) took 10 minutes on 2 CPU cores shared with other work, and
gave on the 580 held-out regions (% right, with points / empty point text / chance):
colour 91 / 40 / 40, position words 80 / 33 / 41, exact match 44 / 3 / 40. The points are
what lets the model name the region's colour and position. Shape is the slow part: the
tiny ViT, trained from scratch, needs far more samples than this to tell circles, squares
and triangles apart, so exact match is only a little above chance after a few minutes;
more images and epochs (`--num-images 2500 --epochs 10`) raise it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from itertools import takewhile
from pathlib import Path

from lavis_regionvlm.data.ln_prepared import PreparedNarratives
from lavis_regionvlm.tasks.region_captioning import normalize_caption

PROJECT = Path(__file__).resolve().parents[1] / "projects" / "regionvlm"
ATTRIBUTES = ("exact match", "colour", "shape", "position")


def run(command: list[str], cwd: Path) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=cwd, check=True)


def phrase_parts(text: str) -> tuple[str, ...]:
    """(whole phrase, colour, shape, position words) of a synthetic region phrase, "a red
    circle at the top left"; of a longer caption, its first phrase ("" where missing)."""
    words = normalize_caption(text).split()
    position = " ".join(takewhile(lambda w: w not in ("a", "and"), words[3:]))
    return (" ".join(words), *(words[i] if len(words) > i else "" for i in (1, 2)), position)


def agreement(caption: str, target: str) -> list[bool]:
    """Per entry of ATTRIBUTES: does the caption get it right?"""
    caption_parts, target_parts = phrase_parts(caption), phrase_parts(target)
    return [caption_parts[0] == target_parts[0]] + [
        c == t for c, t in zip(caption_parts[1:], target_parts[1:])
    ]


def chance_scores(prepared_dir: Path) -> list[float]:
    """% right per entry of ATTRIBUTES for a captioner that names one of the image's
    phrases at random, over the held-out region samples."""
    phrases, samples = defaultdict(set), []
    for sample in PreparedNarratives(prepared_dir):
        phrases[sample.image].add(normalize_caption(sample.text))
        samples.append((sample.image, sample.text))
    totals = [0.0] * len(ATTRIBUTES)
    for image, target in samples:
        for phrase in phrases[image]:
            for k, right in enumerate(agreement(phrase, target)):
                totals[k] += right / len(phrases[image])
    return [100.0 * total / len(samples) for total in totals]


def caption_scores(eval_dir: Path) -> tuple[list[float], dict]:
    """(% right per entry of ATTRIBUTES, the metrics line of evaluate.txt) of an evaluation."""
    with open(eval_dir / "evaluate.txt") as f:
        metrics = json.loads(f.read().splitlines()[-1])
    with open(eval_dir / "result" / f"val_epoch{metrics['epoch']}.json") as f:
        records = json.load(f)
    totals = [0] * len(ATTRIBUTES)
    for record in records:
        for k, right in enumerate(agreement(record["caption"], record["target"])):
            totals[k] += right
    return [100.0 * total / len(records) for total in totals], metrics["val"]


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
        run([python, "-m", "lavis_regionvlm.data.synthetic", "--out", str(data),
             "--num-images", str(args.num_images)], workdir)
        run([python, "-m", "lavis_regionvlm.data.prepare_synthetic", "--root", str(data)], workdir)

    runs = {"with points": ("train", [])}
    if not args.no_ablation:
        runs["empty point text"] = ("nopoints", ["datasets.region_global_mix.sampling.empty_points=True"])
    results = {}
    for name, (job, options) in runs.items():
        run([python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
             "-m", "lavis_regionvlm.train", "--cfg-path", str(PROJECT / "train_tiny.yaml"),
             "--options", f"run.job_id={job}", f"run.max_epoch={args.epochs}", "run.cpu_threads=1",
             "run.valid_splits=[]", *args.options, *options], workdir)
        checkpoint = workdir / "output" / "regionvlm_tiny" / job / f"checkpoint_{args.epochs - 1}.pth"
        run([python, "-m", "lavis_regionvlm.evaluate", "--cfg-path", str(PROJECT / "eval_tiny.yaml"),
             "--options", f"model.finetuned={checkpoint}", f"run.job_id=eval_{job}"], workdir)
        results[name] = caption_scores(workdir / "output" / "regionvlm_tiny" / f"eval_{job}")

    chance = chance_scores(data / "prepared" / "ln_val")
    count = next(iter(results.values()))[1]["count"]
    print(f"\nCaptions of {count} regions of held-out synthetic images (% right):")
    print(f"  {'':<18} " + " ".join(f"{a:>11}" for a in ATTRIBUTES) + "   CIDEr")
    for name, (scores, metrics) in results.items():
        print(f"  {name:<18} " + " ".join(f"{s:11.1f}" for s in scores) + f"   {metrics['cider']:5.1f}")
    print(f"  {'chance':<18} " + " ".join(f"{s:11.1f}" for s in chance)
          + "   (one of the image's phrases at random)")


if __name__ == "__main__":
    main()
