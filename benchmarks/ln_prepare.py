"""Benchmark: prepare a large generated Localized Narratives JSONL, then start the builder on it.

    python benchmarks/ln_prepare.py --workdir /tmp/ln_bench [--lines 100000] [--workers 1 2]

Lines are sized like the released COCO narratives (about 40 timed words in 6 phrases, a trace
sampled every 50 ms over 12-30 s: ~18 KB a line); every line has its own (empty) image file, so
the existence check stats as many files as a real run. Prints the raw and prepared sizes, the
preparation time per worker count, the builder's start-up time and memory, and the time to
read random records.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import time
from pathlib import Path

import numpy as np

PHRASES = ["in this image we can see a person", "a dog on the grass", "a bench near the tree",
           "in the background there are buildings", "a car on the road", "the sky is cloudy"]


def narrative_line(rng: np.random.Generator, image_id: int) -> str:
    """One image LN record, as JSON text."""
    words = " , ".join(PHRASES[i] for i in rng.permutation(len(PHRASES))).split()
    caption = " ".join(words).replace(" ,", ",").capitalize() + "."
    spoken = caption.split(" ")
    duration = float(rng.uniform(12, 30))
    edges = np.sort(rng.uniform(0.5, duration, 2 * len(spoken)))
    timed = ", ".join(f'{{"utterance": "{w}", "start_time": {s:.3f}, "end_time": {e:.3f}}}'
                      for w, s, e in zip(spoken, edges[0::2], edges[1::2]))
    times = np.arange(0.0, duration, 0.05)
    xy = np.clip(np.cumsum(rng.normal(0, 0.01, (len(times), 2)), axis=0) + 0.5, -0.02, 1.02)
    points = ", ".join(f'{{"x": {x:.4f}, "y": {y:.4f}, "t": {t:.3f}}}' for (x, y), t in zip(xy, times))
    return (f'{{"dataset_id": "mscoco_train2017", "image_id": "{image_id}", "annotator_id": 7, '
            f'"caption": "{caption}", "timed_caption": [{timed}], "traces": [[{points}]], '
            f'"voice_recording": "coco_train/coco_train_{image_id}_7.ogg"}}\n')


def generate(workdir: Path, lines: int) -> tuple[Path, Path]:
    """The raw JSONL and an image root with one empty file per line."""
    raw, images = workdir / "raw.jsonl", workdir / "images"
    images.mkdir(parents=True, exist_ok=True)
    if not raw.exists():
        rng = np.random.default_rng(0)
        with open(raw, "w") as f:
            for i in range(1, lines + 1):
                f.write(narrative_line(rng, i))
                (images / f"{i:012d}.jpg").touch()
    return raw, images


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    from lavis_regionvlm.data.prepare_ln import prepare_ln  # after argparse: imports LAVIS

    workdir = Path(args.workdir)
    started = time.perf_counter()
    raw, images = generate(workdir, args.lines)
    print(f"raw: {args.lines} lines, {raw.stat().st_size / 2**20:.0f} MiB (generated in {time.perf_counter() - started:.0f} s)")
    out = workdir / "prepared"
    for workers in args.workers:
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        meta = prepare_ln([raw], images, out, image_template="{image_id:0>12}.jpg", workers=workers)
        print(f"prepare, {workers} worker(s): {time.perf_counter() - started:.1f} s; {meta['num_samples']} samples; "
              f"prepared folder {folder_size(out) / 2**20:.0f} MiB; skipped {meta['skip_counts']}")

    from lavis.common.registry import registry
    from omegaconf import OmegaConf

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cfg = OmegaConf.load(registry.get_builder_class("localized_narratives").default_config_path()).datasets
    cfg = cfg.localized_narratives
    cfg.build_info.annotations.train.files = [{"path": str(out)}]
    started = time.perf_counter()
    dataset = registry.get_builder_class("localized_narratives")(cfg).build_datasets()["train"]
    print(f"builder start-up: {time.perf_counter() - started:.3f} s for {len(dataset)} samples "
          f"(peak RSS grew {(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024:.0f} MiB)")
    picks = np.random.default_rng(1).integers(len(dataset), size=10_000)
    started = time.perf_counter()
    for index in picks:
        dataset.record(int(index))
        dataset.sample_points(int(index))
    print(f"random record + K-point draw: {(time.perf_counter() - started) / len(picks) * 1e6:.0f} us each")


if __name__ == "__main__":
    main()
