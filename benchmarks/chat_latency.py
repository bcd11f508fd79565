"""Benchmark the predictor pattern: a region question on a cached image vs a cold call.

    python benchmarks/chat_latency.py [--sizes tiny base] [--repeats 5] [--device cpu|cuda]
        [--threads N] [--max-new-tokens 10] [--num-beams 5] [--json-out results.json]

For each model size, one image and one region ("[32 64] [37 62]"):
- cached: `predictor.ask(question, region)` after `set_image` (Q-Former + T5 only);
- cold:   `predictor.set_image(image)` then the same `ask` (the ViT runs again), what a
          caller without the predictor pays for every question;
- vit:    `set_image` alone.
Reports the fastest of `--repeats` runs of each and cold / cached. Greedy length is fixed by
`--max-new-tokens` with `min_length` equal to it, so random weights produce the same number
of decoder steps in both paths. Sizes: `tiny` (the shipped test model) and `base` (random
weights: EVA ViT-B/16 at 224 px, a BERT-base Q-Former with 32 queries, flan-t5-small's T5;
see `lavis_regionvlm.ris.random_model`).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REGION = "[32 64] [37 62]"
QUESTION = "what colour is the object here?"


def build_predictor(size: str, device: str, workdir: str):
    from lavis.processors.blip_processors import BlipImageEvalProcessor

    from lavis_regionvlm.interactive import RegionPredictor

    if size == "tiny":
        return RegionPredictor.from_pretrained("tiny", device=device)
    from lavis_regionvlm.ris.random_model import SIZES, build_sized_model

    model = build_sized_model(size, workdir).to(device)
    return RegionPredictor(model, BlipImageEvalProcessor(image_size=SIZES[size]["image_size"]), model_type=size)


def timed(fn, repeats: int, device: str) -> float:
    """Fastest wall seconds of `fn` over `repeats` runs, after one warm-up run (the minimum, not
    the median: on a shared machine other processes only ever add time)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def bench(size: str, args, workdir: str) -> dict:
    predictor = build_predictor(size, args.device, workdir)
    image = (np.random.default_rng(0).random((480, 640, 3)) * 255).astype(np.uint8)
    kwargs = {"num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens, "min_length": args.max_new_tokens}
    predictor.set_image(image)

    def cached():
        return predictor.ask(QUESTION, REGION, **kwargs)

    def cold():
        predictor.set_image(image)
        return predictor.ask(QUESTION, REGION, **kwargs)

    row = {
        "size": size,
        "device": str(predictor.device),
        "params_m": round(sum(p.numel() for p in predictor.model.parameters()) / 1e6, 1),
        "image_tokens": tuple(predictor.image_embeds.shape[1:]),
        "vit_s": timed(lambda: predictor.set_image(image), args.repeats, args.device),
        "cached_s": timed(cached, args.repeats, args.device),
        "cold_s": timed(cold, args.repeats, args.device),
    }
    row["cold_over_cached"] = row["cold_s"] / row["cached_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--num-beams", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=10)
    parser.add_argument("--json-out", help="also write the rows here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for size in args.sizes:
            rows.append(bench(size, args, os.path.join(workdir, size)))
            r = rows[-1]
            print(f"{r['size']:>5} {r['device']:>6} {r['params_m']:>7.1f}M params  image tokens {r['image_tokens']}  "
                  f"vit {r['vit_s'] * 1e3:8.1f} ms  cached ask {r['cached_s'] * 1e3:8.1f} ms  "
                  f"cold ask {r['cold_s'] * 1e3:8.1f} ms  cold/cached {r['cold_over_cached']:.2f}x", flush=True)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"args": vars(args), "torch_threads": torch.get_num_threads(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
