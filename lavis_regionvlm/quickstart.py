"""The quick start: synthetic data -> train the tiny model -> evaluate -> print the numbers.

    python -m lavis_regionvlm.quickstart [--epochs N] [--no-ablation] [--workdir DIR]

Steps, each a command a user could run by hand (printed as it runs):
1. write the synthetic dataset and prepare its Localized Narratives (skipped if present);
2. train `tiny` on 2 CPU processes with `projects/regionvlm/train_tiny.yaml`;
3. train the same model with empty point text (the paper's Table 8 ablation), unless
   `--no-ablation`;
4. evaluate both on the held-out images' region captions with `eval_tiny.yaml`;
5. print exact match for both, next to chance: picking one of the image's phrases at random.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from lavis_regionvlm.data.ln_prepared import PreparedNarratives
from lavis_regionvlm.tasks.region_captioning import normalize_caption

PROJECT = Path(__file__).resolve().parents[1] / "projects" / "regionvlm"


def run(command: list[str], cwd: Path) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=cwd, check=True)


def chance_exact_match(prepared_dir: Path) -> float:
    """% exact match of a captioner that names one of the image's phrases at random."""
    phrases = defaultdict(set)
    images = []
    for sample in PreparedNarratives(prepared_dir):
        phrases[sample.image].add(normalize_caption(sample.text))
        images.append(sample.image)
    return 100.0 * sum(1 / len(phrases[image]) for image in images) / len(images)


def last_metrics(output_dir: Path) -> dict:
    with open(output_dir / "evaluate.txt") as f:
        return json.loads(f.read().splitlines()[-1])["val"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path.cwd(), help="where data/ and output/ go")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num-images", type=int, default=2500)
    parser.add_argument("--no-ablation", action="store_true", help="skip the empty-point-text model")
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
        run([python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
             "-m", "lavis_regionvlm.train", "--cfg-path", str(PROJECT / "train_tiny.yaml"),
             "--options", f"run.job_id={job}", f"run.max_epoch={args.epochs}", "run.cpu_threads=1",
             "run.valid_splits=[]", *options], workdir)
        checkpoint = workdir / "output" / "regionvlm_tiny" / job / f"checkpoint_{args.epochs - 1}.pth"
        run([python, "-m", "lavis_regionvlm.evaluate", "--cfg-path", str(PROJECT / "eval_tiny.yaml"),
             "--options", f"model.finetuned={checkpoint}", f"run.job_id=eval_{job}"], workdir)
        results[name] = last_metrics(workdir / "output" / "regionvlm_tiny" / f"eval_{job}")

    chance = chance_exact_match(data / "prepared" / "ln_val")
    print("\nRegion captions of held-out synthetic images (exact match, %):")
    for name, metrics in results.items():
        print(f"  {name:<18} {metrics['exact_match']:5.1f}   (CIDEr {metrics['cider']:.1f}, "
              f"{metrics['count']} regions)")
    print(f"  {'chance':<18} {chance:5.1f}   (one of the image's phrases at random)")


if __name__ == "__main__":
    main()
