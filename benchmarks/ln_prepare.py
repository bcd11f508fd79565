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
import shutil
import sys
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


def bench(workdir: str | Path, lines: int, workers: tuple[int, ...] = (1,), reads: int = 10_000) -> dict:
    """Generate, prepare with each worker count, start the builder, read random records."""
    from lavis.common.registry import registry
    from omegaconf import OmegaConf

    import common
    import lavis_regionvlm.registration  # noqa: F401  (the localized_narratives builder)
    from lavis_regionvlm.preparation.prepare_ln import prepare_ln

    workdir = Path(workdir)
    started = time.perf_counter()
    raw, images = generate(workdir, lines)
    out: dict = {"lines": lines, "raw_mib": raw.stat().st_size / 2**20, "generate_s": time.perf_counter() - started,
                 "prepare": []}
    prepared = workdir / "prepared"
    for count in workers:
        shutil.rmtree(prepared, ignore_errors=True)
        started = time.perf_counter()
        meta = prepare_ln([raw], images, prepared, image_template="{image_id:0>12}.jpg", workers=count)
        seconds = time.perf_counter() - started
        out["prepare"].append({"workers": count, "s": seconds, "lines_per_s": lines / seconds})
        out.update(samples=meta["num_samples"], prepared_mib=folder_size(prepared) / 2**20,
                   skip_counts=meta["skip_counts"])
    cfg = OmegaConf.load(registry.get_builder_class("localized_narratives").default_config_path()).datasets
    cfg = cfg.localized_narratives
    cfg.build_info.annotations = {"train": {"files": [{"path": str(prepared)}]}}
    with common.PeakMemory() as memory:
        started = time.perf_counter()
        dataset = registry.get_builder_class("localized_narratives")(cfg).build_datasets()["train"]
        out["builder_start_s"] = time.perf_counter() - started
    out["builder_memory_mib"] = memory.delta_mib
    picks = np.random.default_rng(1).integers(len(dataset), size=reads)
    started = time.perf_counter()
    for index in picks:
        dataset.record(int(index))
        dataset.sample_points(int(index))
    out["record_us"] = (time.perf_counter() - started) / len(picks) * 1e6
    return out


def report(r: dict) -> str:
    prep = ", ".join(f"{p['workers']} worker(s) {p['s']:.1f} s ({p['lines_per_s']:.0f} lines/s)" for p in r["prepare"])
    return (f"== {r['lines']} lines, {r['raw_mib']:.0f} MiB raw -> {r['samples']} samples, {r['prepared_mib']:.1f} MiB "
            f"prepared; prepare: {prep}; builder start {r['builder_start_s']:.3f} s (+{r['builder_memory_mib']:.0f} "
            f"MiB); random record + K-point draw {r['record_us']:.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import common

    common.quiet_warnings()
    print(report(bench(args.workdir, args.lines, tuple(args.workers))))


if __name__ == "__main__":
    main()
