"""Benchmark RIS scoring: ours vs the official per-pair loop vs the batched floor.

    python benchmarks/ris_scoring.py [--sizes tiny base] [--proposals 20] [--draws 5]
        [--expressions 3] [--naive-pairs 30] [--repeats 3] [--threads N]

For one image with P proposals x R draws (M = P * R point texts, K = the model's num_points)
and E expressions, the same model and inputs go through
- ours: ViT once, the Q-Former once over the M rows with the image's cross-attention
  keys/values computed once, the T5 encoder once per row, the decoder once per row for all E
  expressions (`lavis_regionvlm.ris.scoring.point_text_nll`);
- the floor: the sum of the unavoidable component passes run the stock way (DESIGN.md section
  3): ViT once, `query_outputs` batched over the M rows, the T5 encoder over the M rows, the
  decoder over the M * E (row, expression) pairs;
- naive: the whole model per (row, expression), as the official script runs it. It is timed
  on `--naive-pairs` random pairs (0 = all M * E) and scaled to M * E: every pair costs the
  same full pass. Its scores are checked against ours on those pairs.
All measurements are interleaved round by round (medians over `--repeats` rounds), so load
from other jobs on a shared machine falls on each alike.
Reports expressions/s (E / seconds per image), naive/ours and ours/floor. Sizes: `tiny` (the
shipped test model) and `base` (random weights: EVA ViT-B/16 at 224 px, a BERT-base
Q-Former with 32 queries, flan-t5-small's T5; see `lavis_regionvlm.ris.random_model`).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

# Short, RefCOCO-like expressions: the tiny T5 tokenizer splits rarer words into pieces, so
# these keep the target length near real FlanT5 lengths (about 5-7 tokens with </s>).
EXPRESSIONS = ["man on left", "white car on the right", "left guy", "bottom right bowl", "the woman in the middle"]


def load_model(size: str, workdir: str):
    """The `tiny` model type, or a random-weight preset from `random_model.SIZES`."""
    if size == "tiny":
        from lavis.models import load_model_and_preprocess

        return load_model_and_preprocess("blip2_t5_region", "tiny", is_eval=True)[0]
    from lavis_regionvlm.ris.random_model import build_sized_model

    return build_sized_model(size, workdir)


def point_texts(model, proposals: int, draws: int, seed: int = 0) -> list[str]:
    """M = proposals * draws point texts of K = model.num_points points, from random boxes."""
    from lavis_regionvlm.ris.points import proposal_point_texts

    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(proposals):
        x, y = rng.integers(0, 70, 2)
        w, h = rng.integers(10, 30, 2)
        mask = np.zeros((100, 100), bool)
        mask[y : y + h, x : x + w] = True
        masks.append(mask)
    return proposal_point_texts(masks, list(range(proposals)), num_points=model.num_points, draws=draws,
                                seed=seed, image_id=0, quantize=model.point_quantize)


def interleaved(calls: dict[str, Callable[[], object]], rounds: int) -> tuple[dict[str, float], dict[str, object]]:
    """Median wall time (s) of each call over `rounds` rounds, and each call's result.

    Every call runs once untimed first; then each round runs every call once, in turn, so a
    change in machine load (other jobs on a shared machine) hits all of them alike.
    """
    results = {name: call() for name, call in calls.items()}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            results[name] = call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}, results


def bench(size: str, args, workdir: str) -> dict:
    """Time ours, the floor's components and the naive loop for one model size."""
    from lavis_regionvlm.models.qformer_cached import shared_image_query_outputs
    from lavis_regionvlm.ris.scoring import expression_nll, naive_expression_nll, point_text_nll, t5_encode

    model = load_model(size, workdir)
    image = torch.randn(3, model.img_size, model.img_size, generator=torch.Generator().manual_seed(0))
    texts = point_texts(model, args.proposals, args.draws)
    expressions = EXPRESSIONS[: args.expressions]
    rows, count = len(texts), len(expressions)
    text_ids = model.tokenizer(texts, truncation=True, max_length=model.region_max_len).input_ids
    out = {"size": size, "rows": rows, "expressions": count,
           "target_tokens": float(np.mean([len(model.t5_tokenizer(e).input_ids) for e in expressions])),
           "text_tokens": float(np.mean([len(ids) for ids in text_ids]))}
    pairs = [(r, e) for r in range(rows) for e in range(count)]
    if args.naive_pairs:
        chosen = np.random.default_rng(1).choice(len(pairs), min(args.naive_pairs, len(pairs)), replace=False)
        pairs = [pairs[i] for i in sorted(chosen)]
    chunks = [pairs[i :: args.repeats] for i in range(args.repeats)]  # one chunk of naive pairs per round
    with torch.inference_mode():
        embeds = model.encode_image(image[None])
        region = model.t5_proj(model.query_outputs(embeds.expand(rows, -1, -1), texts))
        hidden, atts = t5_encode(model, region)
        naive: dict = {}
        chunk_times: list[float] = []

        def naive_chunk() -> None:
            chunk = chunks[len(chunk_times) % len(chunks)]
            start = time.perf_counter()
            for r, e in chunk:
                naive[r, e] = float(naive_expression_nll(model, image, [texts[r]], [expressions[e]])[0, 0])
            chunk_times.append((time.perf_counter() - start) / len(chunk))

        calls = {
            "ours": lambda: point_text_nll(model, model.encode_image(image[None]), texts, expressions),
            "vit": lambda: model.encode_image(image[None]),
            "qformer": lambda: model.t5_proj(model.query_outputs(embeds.expand(rows, -1, -1), texts)),
            "t5_encoder": lambda: t5_encode(model, region),
            "decoder": lambda: model.decoder_nll(
                hidden.repeat_interleave(count, 0), atts.repeat_interleave(count, 0), expressions * rows),
            "ours_qformer": lambda: model.t5_proj(shared_image_query_outputs(model, embeds, texts)),
            "ours_decoder": lambda: expression_nll(model, hidden, atts, expressions),
        }
        naive_expression_nll(model, image, texts[:1], expressions[:1])  # warm-up
        medians, results = interleaved({**calls, "naive": naive_chunk}, args.repeats)
    out.update({name: medians[name] for name in calls})
    out["floor"] = out["vit"] + out["qformer"] + out["t5_encoder"] + out["decoder"]
    out["naive"] = float(np.mean(chunk_times[1:])) * rows * count  # [0]: interleaved()'s warm-up call
    out["naive_pairs_timed"] = len(pairs)
    ours = results["ours"]
    out["max_abs_diff"] = max(abs(value - float(ours[r, e])) for (r, e), value in naive.items())
    return out


def report(r: dict) -> str:
    """A few lines per size: seconds per image, expressions/s, ratios."""
    rate = lambda seconds: r["expressions"] / seconds  # noqa: E731
    return "\n".join([
        f"== {r['size']}: M = {r['rows']} (proposal, draw) rows x E = {r['expressions']} expressions, "
        f"{r['text_tokens']:.1f} BERT tokens per point text, {r['target_tokens']:.1f} T5 tokens per expression",
        f"   seconds per image: ours {r['ours']:.3f} | floor {r['floor']:.3f} (ViT {r['vit']:.3f}, Q-Former "
        f"{r['qformer']:.3f}, T5 encoder {r['t5_encoder']:.3f}, decoder {r['decoder']:.3f}) | naive {r['naive']:.2f} "
        f"(from {r['naive_pairs_timed']} pairs)",
        f"   ours' own parts: Q-Former with shared keys/values {r['ours_qformer']:.3f}, decoder with all "
        f"expressions in one row {r['ours_decoder']:.3f}",
        f"   expressions/s: ours {rate(r['ours']):.3f} | floor {rate(r['floor']):.3f} | naive {rate(r['naive']):.4f}",
        f"   naive/ours {r['naive'] / r['ours']:.1f}x | ours/floor {r['ours'] / r['floor']:.2f} "
        f"(time above the floor: {100 * (r['ours'] - r['floor']) / r['floor']:+.0f}%) | "
        f"max |naive - ours| score {r['max_abs_diff']:.1e}",
    ])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"])
    parser.add_argument("--proposals", type=int, default=20)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--expressions", type=int, default=3, choices=range(1, len(EXPRESSIONS) + 1))
    parser.add_argument("--naive-pairs", type=int, default=30, help="pairs timed for naive; 0 = all")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (median); naive pairs are split over them")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import lavis  # noqa: F401  (registers the plugin)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for size in args.sizes:
            results.append(bench(size, args, workdir))
            print(report(results[-1]), flush=True)
    return results


if __name__ == "__main__":
    main()
