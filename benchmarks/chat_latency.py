"""Benchmark the predictor pattern: a region question on a cached image vs a cold call.

    python benchmarks/chat_latency.py [--sizes tiny base] [--rounds 5] [--device cpu|cuda]
        [--threads N] [--max-new-tokens 10] [--num-beams 5]

For each model size, one 640x480 image and one region ("[32 64] [37 62]"):
- cached: `predictor.ask(question, region)` after `set_image` (Q-Former + T5 only);
- cold:   `predictor.set_image(image)` then the same `ask` (the ViT runs again), what a
          caller without the predictor pays for every question;
- vit:    `set_image` alone.
Medians over interleaved rounds (`common.measure`), peak memory of each call, and cold/cached.
Greedy length is fixed by `--max-new-tokens` with `min_length` equal to it, so random weights
produce the same number of decoder steps in both paths.
"""
from __future__ import annotations

import argparse
import tempfile

import common  # noqa: F401  (sets the offline environment first)
import numpy as np
import torch

REGION = "[32 64] [37 62]"
QUESTION = "what colour is the object here?"


def build_predictor(model, size: str):
    from lavis.processors.blip_processors import BlipImageEvalProcessor

    from lavis_regionvlm.interactive import RegionPredictor

    return RegionPredictor(model, BlipImageEvalProcessor(image_size=model.img_size), model_type=size)


def bench(model, size: str, *, rounds: int = 5, num_beams: int = 5, max_new_tokens: int = 10,
          device: str = "cpu") -> dict:
    predictor = build_predictor(model, size)
    image = (np.random.default_rng(0).random((480, 640, 3)) * 255).astype(np.uint8)
    kwargs = {"num_beams": num_beams, "max_new_tokens": max_new_tokens, "min_length": max_new_tokens}
    predictor.set_image(image)

    def cold():
        predictor.set_image(image)
        return predictor.ask(QUESTION, REGION, **kwargs)

    stats, _ = common.measure({"vit": lambda: predictor.set_image(image),
                               "cached": lambda: predictor.ask(QUESTION, REGION, **kwargs),
                               "cold": cold}, rounds, device)
    row = {
        "size": size,
        "device": str(predictor.device),
        "params_m": round(common.parameter_count(predictor.model) / 1e6, 1),
        "image_tokens": list(predictor.image_embeds.shape[1:]),
        "rounds": rounds,
        "num_beams": num_beams,
        "new_tokens": max_new_tokens,
        **{f"{name}_s": stats[name]["s"] for name in stats},
        "memory_mib": {name: stats[name]["delta_mib"] for name in stats},
        "process_peak_mib": max(v["peak_mib"] for v in stats.values()),
    }
    row["cold_over_cached"] = row["cold_s"] / row["cached_s"]
    return row


def report(r: dict) -> str:
    return (f"== {r['size']} ({r['params_m']}M params, {r['device']}), image tokens {r['image_tokens']}: "
            f"vit {r['vit_s'] * 1e3:.1f} ms, cached ask {r['cached_s'] * 1e3:.1f} ms, cold ask "
            f"{r['cold_s'] * 1e3:.1f} ms, cold/cached {r['cold_over_cached']:.2f}x")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--num-beams", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=10)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    common.quiet_warnings()
    import lavis  # noqa: F401

    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for size in args.sizes:
            model = common.build_model(size, workdir, args.device)
            rows.append(bench(model, size, rounds=args.rounds, num_beams=args.num_beams,
                              max_new_tokens=args.max_new_tokens, device=args.device))
            print(report(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main()
