"""Benchmark RIS scoring: ours vs the official per-pair loop vs the batched floor.

    python benchmarks/ris_scoring.py [--sizes tiny large] [--proposals 20] [--draws 5]
        [--expressions 3] [--naive-pairs 3] [--rounds 3] [--threads N] [--device cpu|cuda]

For one image with P proposals x R draws (M = P * R point texts, K = the model's num_points)
and E expressions, the same model and inputs go through
- ours: ViT once, the Q-Former once over the M rows with the image's cross-attention
  keys/values computed once, then `model.lm.score` (T5: the encoder once per row, the decoder
  once per row for all E expressions) (`encode_image` + `lavis_regionvlm.ris.scoring.
  point_text_nll`, its stages "qformer" and "lm" timed inside the same call);
- the floor: the unavoidable component passes run the stock way: ViT once, `query_outputs`
  batched over the M rows, the T5 encoder over the M rows, the decoder over the M * E (row,
  expression) pairs. Its ViT pass is the very call ours makes, so its time is taken from ours'
  run; the Q-Former, encoder and decoder are timed on their own. The floor's T5 passes call
  Hugging Face's FlanT5 (`t5_model.encoder`, `t5_model(...)`) directly: they measure the stock
  path, so this benchmark reads the T5 build's `t5_model` / `t5_tokenizer`;
- naive: the whole model per (row, expression), as the official script runs it
  (`naive_expression_nll`). A few random pairs are timed per round and the per-pair time is
  scaled to M * E: every pair costs the same full pass. Its scores are checked against ours.
Calls are interleaved round by round and the medians reported (see `common.measure`); each path
first runs once on two rows, so one-time set-up costs stay out of the rounds.
Reports expressions/s (E / seconds per image), naive/ours, ours/floor and peak memory.
`sweep` varies P, R and E one at a time around a base configuration.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass

import common  # noqa: F401  (sets the offline environment first)
import numpy as np
import torch

# Short, RefCOCO-like expressions: the tiny T5 tokenizer splits rarer words into pieces, so
# these keep the target length near real FlanT5 lengths (about 5-7 tokens with </s>).
EXPRESSIONS = ["man on left", "white car on the right", "left guy", "bottom right bowl", "the woman in the middle",
               "red shirt", "second from left", "dog in front", "top plate", "far right chair"]


def expressions_for(count: int) -> list[str]:
    """`count` expressions, cycling through EXPRESSIONS."""
    return [EXPRESSIONS[i % len(EXPRESSIONS)] for i in range(count)]


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
    return proposal_point_texts(masks, list(range(proposals)), spec=model.point_spec, draws=draws,
                                seed=seed, image_id=0)


@dataclass
class Setup:
    """One image's inputs and the intermediate tensors the floor's passes start from."""

    model: torch.nn.Module
    image: torch.Tensor  # (3, S, S)
    texts: list[str]
    expressions: list[str]
    device: torch.device
    embeds: torch.Tensor = None
    region: torch.Tensor = None
    hidden: torch.Tensor = None
    atts: torch.Tensor = None

    @classmethod
    def make(cls, model, proposals: int, draws: int, expressions: int, device, floor: bool = True) -> "Setup":
        """floor: also run the floor's T5 encoder (T5 builds only; False for ours vs naive)."""
        from lavis_regionvlm.models.qformer_cached import shared_image_query_outputs

        device = torch.device(device)
        image = torch.randn(3, model.img_size, model.img_size, generator=torch.Generator().manual_seed(0)).to(device)
        setup = cls(model, image, point_texts(model, proposals, draws), expressions_for(expressions), device)
        with torch.inference_mode():
            setup.embeds = model.encode_image(image[None])
            with model.qformer_precision():  # ours' Q-Former: equal to the stock pass up to rounding, faster
                queries = shared_image_query_outputs(model, setup.embeds, setup.texts)
            setup.region = model.lm_projection(queries)
            if floor:
                setup.hidden, setup.atts = setup.floor_encoder()
        return setup

    @property
    def rows(self) -> int:
        return len(self.texts)

    def ours(self, parts: list[dict] | None = None, rows: int | None = None):
        """encode_image + point_text_nll; the stage times go to `parts`."""
        from lavis_regionvlm.ris.scoring import point_text_nll

        texts = self.texts[:rows] if rows else self.texts
        timings: dict[str, float] = {}
        start = time.perf_counter()
        embeds = self.model.encode_image(self.image[None])
        common.sync(self.device)
        timings["vit"] = time.perf_counter() - start
        out = point_text_nll(self.model, embeds, texts, self.expressions, timings=timings)
        if parts is not None:
            parts.append(timings)
        return out

    def floor_qformer(self, rows: int | None = None):
        """The stock batched Q-Former: every row recomputes the image's keys/values."""
        rows = rows or self.rows
        model = self.model
        return model.lm_projection(model.query_outputs(self.embeds.expand(rows, -1, -1), self.texts[:rows]))

    def floor_encoder(self, rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The stock T5 encoder (Hugging Face) over `[Z; </s>]` of the M rows: hidden (M, S, D), mask."""
        rows = rows or self.rows
        lm = self.model.lm
        inputs, atts = lm.embed([[z, ""] for z in self.region[:rows]])
        with lm.autocast():
            hidden = self.model.t5_model.encoder(inputs_embeds=inputs, attention_mask=atts, return_dict=True)
        return hidden.last_hidden_state, atts

    def floor_decoder(self, rows: int | None = None) -> torch.Tensor:
        """The stock decoder pass (Hugging Face) over every (row, expression) pair, padded to the
        longest: (rows * E,) mean token NLL."""
        rows = rows or self.rows
        count, model = len(self.expressions), self.model
        tokens = model.t5_tokenizer(self.expressions * rows, padding="longest", truncation=True,
                                    max_length=model.max_txt_len, return_tensors="pt").to(self.hidden.device)
        labels = tokens.input_ids.masked_fill(tokens.attention_mask == 0, -100)
        with model.lm.autocast():
            logits = model.t5_model(
                encoder_outputs=(self.hidden[:rows].repeat_interleave(count, 0),),
                attention_mask=self.atts[:rows].repeat_interleave(count, 0),
                decoder_attention_mask=tokens.attention_mask, labels=labels, return_dict=True,
            ).logits
        nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), labels, reduction="none")
        return nll.sum(1) / tokens.attention_mask.sum(1)

    def warm_up(self, rows: int = 2, floor: bool = True) -> None:
        """Every path once on a few rows (allocator, kernel and tokenizer set-up)."""
        from lavis_regionvlm.ris.scoring import naive_expression_nll

        with torch.inference_mode():
            self.ours(rows=rows)
            if floor:
                self.floor_qformer(rows)
                self.floor_encoder(rows)
                self.floor_decoder(rows)
            naive_expression_nll(self.model, self.image, self.texts[:1], self.expressions[:1])


class NaiveTimer:
    """The naive loop on a few random (row, expression) pairs, a chunk per call (one per round):
    `per_pair` (seconds per pair of each call) and `scores` ((row, expression) -> NLL)."""

    def __init__(self, setup: Setup, naive_pairs: int, rounds: int):
        pairs = [(r, e) for r in range(setup.rows) for e in range(len(setup.expressions))]
        chosen = np.random.default_rng(1).choice(len(pairs), min(max(naive_pairs, rounds), len(pairs)), replace=False)
        self.setup, self.chunks = setup, [[pairs[i] for i in chosen[k::rounds]] for k in range(rounds)]
        self.scores: dict = {}
        self.per_pair: list[float] = []

    def __call__(self) -> None:
        from lavis_regionvlm.ris.scoring import naive_expression_nll

        s = self.setup
        chunk = self.chunks[len(self.per_pair) % len(self.chunks)]
        start = time.perf_counter()
        for r, e in chunk:
            self.scores[r, e] = float(naive_expression_nll(s.model, s.image, [s.texts[r]], [s.expressions[e]])[0, 0])
        common.sync(s.device)
        self.per_pair.append((time.perf_counter() - start) / len(chunk))

    @property
    def timed(self) -> int:
        return sum(len(c) for c in self.chunks)

    def max_abs_diff(self, ours: torch.Tensor) -> float:
        ours = ours.float().cpu()
        return max(abs(v - float(ours[r, e])) for (r, e), v in self.scores.items())


def bench(model, size: str, *, proposals: int = 20, draws: int = 5, expressions: int = 3, naive_pairs: int = 3,
          rounds: int = 3, device: str = "cpu", full_warmup: bool = True) -> dict:
    """Ours, the floor and the naive loop for one model and configuration (see the module doc).

    full_warmup: run ours and the floor once at full size before the rounds (first calls at a
    new shape pay one-time set-up); False runs them on two rows only (large models, where one
    call takes seconds and the set-up is a small part of it).
    """
    s = Setup.make(model, proposals, draws, expressions, device)
    rows, count = s.rows, len(s.expressions)
    text_ids = model.tokenizer(s.texts, truncation=True, max_length=model.region_max_len).input_ids
    naive_chunk = NaiveTimer(s, naive_pairs, rounds)
    parts: list[dict] = []

    s.warm_up()
    if full_warmup:
        with torch.inference_mode():
            s.ours(), s.floor_qformer(), s.floor_encoder(), s.floor_decoder()
    with torch.inference_mode():
        stats, results = common.measure(
            {"ours": lambda: s.ours(parts), "floor_qformer": s.floor_qformer, "floor_encoder": s.floor_encoder,
             "floor_decoder": s.floor_decoder, "naive": naive_chunk},
            rounds, s.device, warmup=False,
        )
    ours_parts = {k: common.median([p[k] for p in parts]) for k in parts[0]}
    floor_parts = {"vit": ours_parts["vit"], "qformer": stats["floor_qformer"]["s"],
                   "t5_encoder": stats["floor_encoder"]["s"], "decoder": stats["floor_decoder"]["s"]}
    out = {
        "size": size, "device": str(s.device), "params_m": round(common.parameter_count(model) / 1e6, 1),
        "proposals": proposals, "draws": draws, "rows": rows, "expressions": count,
        "text_tokens": float(np.mean([len(ids) for ids in text_ids])),
        "target_tokens": float(np.mean([model.lm.count_tokens([e]) for e in s.expressions])),
        "rounds": rounds,
        "ours_s": stats["ours"]["s"], "ours_parts": ours_parts,
        "floor_s": sum(floor_parts.values()), "floor_parts": floor_parts,
        "naive_pair_s": common.median(naive_chunk.per_pair), "naive_pairs_timed": naive_chunk.timed,
    }
    out["naive_s"] = out["naive_pair_s"] * rows * count
    out["expr_per_s"] = {k: count / out[f"{k}_s"] for k in ("ours", "floor", "naive")}
    out["naive_over_ours"] = out["naive_s"] / out["ours_s"]
    out["ours_over_floor"] = out["ours_s"] / out["floor_s"]
    out["memory_mib"] = {
        "ours": stats["ours"]["delta_mib"],
        "floor": max(stats[k]["delta_mib"] for k in ("floor_qformer", "floor_encoder", "floor_decoder")),
        "naive": stats["naive"]["delta_mib"],
        "process_peak": max(v["peak_mib"] for v in stats.values()),
    }
    out["max_abs_diff_naive"] = naive_chunk.max_abs_diff(results["ours"])
    return out


def bench_vs_naive(model, size: str, *, proposals: int = 20, draws: int = 5, expressions: int = 3,
                   naive_pairs: int = 3, rounds: int = 3, device: str = "cpu") -> dict:
    """Ours (`encode_image` + `point_text_nll`, through `model.lm.score`) against the naive
    per-pair loop, for any region model (no floor: that one calls FlanT5 directly). For
    `blip2_opt_region` ours runs each row's prefix (soft prompt + BOS) once and continues every
    expression from its KV cache; naive runs the whole model per (row, expression)."""
    s = Setup.make(model, proposals, draws, expressions, device, floor=False)
    naive_chunk = NaiveTimer(s, naive_pairs, rounds)
    parts: list[dict] = []
    s.warm_up(floor=False)
    with torch.inference_mode():
        s.ours()
        stats, results = common.measure({"ours": lambda: s.ours(parts), "naive": naive_chunk}, rounds, s.device,
                                        warmup=False)
    rows, count = s.rows, len(s.expressions)
    out = {"model": type(model).registry_name(), "size": size, "device": str(s.device),
           "params_m": round(common.parameter_count(model) / 1e6, 1), "proposals": proposals, "draws": draws,
           "rows": rows, "expressions": count, "rounds": rounds,
           "target_tokens": float(np.mean([model.lm.count_tokens([e]) for e in s.expressions])),
           "ours_s": stats["ours"]["s"], "ours_parts": {k: common.median([p[k] for p in parts]) for k in parts[0]},
           "naive_pair_s": common.median(naive_chunk.per_pair), "naive_pairs_timed": naive_chunk.timed,
           "memory_mib": {"ours": stats["ours"]["delta_mib"], "naive": stats["naive"]["delta_mib"]}}
    out["naive_s"] = out["naive_pair_s"] * rows * count
    out["expr_per_s"] = {k: count / out[f"{k}_s"] for k in ("ours", "naive")}
    out["naive_over_ours"] = out["naive_s"] / out["ours_s"]
    out["max_abs_diff_naive"] = naive_chunk.max_abs_diff(results["ours"])
    return out


def report_vs_naive(r: dict) -> str:
    """One line: a model's ours vs naive."""
    return (f"== {r['model']} {r['size']} ({r['params_m']}M params, {r['device']}): P {r['proposals']} x R {r['draws']}"
            f" x E {r['expressions']}: ours {r['ours_s']:.3f} s/image ({r['expr_per_s']['ours']:.3f} expr/s) | naive "
            f"{r['naive_s']:.2f} s ({r['naive_pair_s']:.3f}/pair, {r['expr_per_s']['naive']:.4f} expr/s); naive/ours "
            f"{r['naive_over_ours']:.1f}x; max |naive - ours| {r['max_abs_diff_naive']:.1e}")


def sweep(model, size: str, *, base: tuple[int, int, int] = (20, 5, 3), proposals=(5, 20, 40), draws=(1, 5, 10),
          expressions=(1, 3, 10), rounds: int = 3, device: str = "cpu", naive_pair_s: float | None = None) -> list[dict]:
    """Ours and the floor with P, R and E varied one at a time around `base` (naive is the
    measured per-pair time times P * R * E when `naive_pair_s` is given)."""
    configs = [(p, base[1], base[2]) for p in proposals] + [(base[0], r, base[2]) for r in draws]
    configs += [(base[0], base[1], e) for e in expressions]
    rows_out = []
    for config in dict.fromkeys(configs):  # ordered, without repeats
        p, r, e = config
        s = Setup.make(model, p, r, e, device)
        parts: list[dict] = []
        s.warm_up()
        with torch.inference_mode():
            s.ours(), s.floor_qformer(), s.floor_encoder(), s.floor_decoder()  # full-size warm-up
            stats, _ = common.measure({"ours": lambda: s.ours(parts), "floor_qformer": s.floor_qformer,
                                       "floor_encoder": s.floor_encoder, "floor_decoder": s.floor_decoder},
                                      rounds, s.device, warmup=False)
        vit = common.median([t["vit"] for t in parts])
        encoder = stats["floor_encoder"]["s"]
        row = {"size": size, "proposals": p, "draws": r, "expressions": e, "rows": p * r,
               "varied": "proposals" if (r, e) == base[1:] and p != base[0] else
                         "draws" if (p, e) == (base[0], base[2]) and r != base[1] else
                         "expressions" if (p, r) == base[:2] and e != base[2] else "base",
               "ours_s": stats["ours"]["s"],
               "floor_s": vit + stats["floor_qformer"]["s"] + encoder + stats["floor_decoder"]["s"],
               "ours_memory_mib": stats["ours"]["delta_mib"]}
        row["ours_over_floor"] = row["ours_s"] / row["floor_s"]
        if naive_pair_s:
            row["naive_s"] = naive_pair_s * p * r * e
            row["naive_over_ours"] = row["naive_s"] / row["ours_s"]
        rows_out.append(row)
    return rows_out


def report(r: dict) -> str:
    """A few lines per size: seconds per image, expressions/s, ratios."""
    o, f = r["ours_parts"], r["floor_parts"]
    return "\n".join([
        f"== {r['size']} ({r['params_m']}M params, {r['device']}): P {r['proposals']} x R {r['draws']} = M "
        f"{r['rows']} rows x E {r['expressions']} expressions; {r['text_tokens']:.1f} BERT tokens per point "
        f"text, {r['target_tokens']:.1f} LM tokens per expression",
        f"   s/image: ours {r['ours_s']:.3f} (ViT {o['vit']:.3f}, Q-Former {o['qformer']:.3f}, LM scoring "
        f"{o['lm']:.3f}) | floor {r['floor_s']:.3f} (Q-Former {f['qformer']:.3f}, T5 encoder {f['t5_encoder']:.3f}, "
        f"decoder {f['decoder']:.3f}) | naive {r['naive_s']:.2f} ({r['naive_pair_s']:.3f}/pair)",
        f"   expressions/s: ours {r['expr_per_s']['ours']:.3f} | floor {r['expr_per_s']['floor']:.3f} | "
        f"naive {r['expr_per_s']['naive']:.4f}; naive/ours {r['naive_over_ours']:.1f}x, ours/floor "
        f"{r['ours_over_floor']:.2f}; max |naive - ours| {r['max_abs_diff_naive']:.1e}",
    ])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "large"])
    parser.add_argument("--proposals", type=int, default=20)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--expressions", type=int, default=3)
    parser.add_argument("--naive-pairs", type=int, default=3, help="naive pairs timed (spread over the rounds)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    common.quiet_warnings()
    import lavis  # noqa: F401  (registers the plugin)

    print(common.environment())
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for size in args.sizes:
            model = common.build_model(size, workdir, args.device)
            results.append(bench(model, size, proposals=args.proposals, draws=args.draws,
                                 expressions=args.expressions, naive_pairs=args.naive_pairs,
                                 rounds=args.rounds, device=args.device))
            print(report(results[-1]), flush=True)
    return results


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
