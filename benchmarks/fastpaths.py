"""Benchmark the fast paths of RIS scoring, each against the path it replaces.

    python benchmarks/fastpaths.py [--size tiny] [--proposals 20] [--draws 5] [--expressions 3]

- precision: ours in float32 vs under CPU bfloat16 autocast (`cpu_autocast=True`; CPU), or with
  the Q-Former under bf16 autocast (`qformer_bf16=True`; GPU, where LAVIS runs it in fp32), with
  the largest score change and how often the chosen proposal stays the same;
- grad mode: ours with autograd on (a caller that forgets), under `torch.no_grad` and under
  `torch.inference_mode`;
- scoring batch: `ris.scoring.region_rows_nll` (`model.lm.score`) with LM token budgets
  (`RegionLM.with_token_budget`; T5: rows x concatenated expression tokens per decoder call) of
  512, 2048 (the default) and 8192.
The two structural fast paths (the image's Q-Former keys/values computed once; the LM's input
part once per row and all expressions of a row in one pass) are measured by `ris_scoring.py`
against the floor's passes.
"""
from __future__ import annotations

import argparse
import contextlib
import tempfile

import common  # noqa: F401  (sets the offline environment first)
import torch


def bench(model, size: str, *, proposals: int = 20, draws: int = 5, expressions: int = 3, rounds: int = 3,
          device: str = "cpu", budgets: tuple[int, ...] = (512, 2048, 8192), budget_expressions: int = 10,
          only: str | None = None) -> list[dict]:
    """The fast paths for one model; `only` = "precision" | "grad" | "budget" limits them to one."""
    from ris_scoring import Setup

    from lavis_regionvlm.models.lm.t5 import DECODER_TOKEN_BUDGET
    from lavis_regionvlm.ris.scoring import region_rows_nll

    device = torch.device(device)
    s = Setup.make(model, proposals, draws, expressions, device)
    rows = []
    config = {"size": size, "proposals": proposals, "draws": draws, "expressions": expressions}

    if device.type == "cpu" and only in (None, "precision"):
        def run(flag: bool):
            def call():
                model.cpu_autocast = flag
                try:
                    with torch.inference_mode():
                        return s.ours().float()
                finally:
                    model.cpu_autocast = False
            return call

        stats, results = common.measure({"fp32": run(False), "bf16": run(True)}, rounds, device)
        pick = lambda scores: scores.view(proposals, draws, -1).min(dim=1).values.argmin(dim=0)  # noqa: E731
        rows.append({**config, "name": "CPU bf16 autocast", "baseline": "fp32", "variant": "bf16",
                     "baseline_s": stats["fp32"]["s"], "variant_s": stats["bf16"]["s"],
                     "max_abs_score_change": float((results["fp32"] - results["bf16"]).abs().max()),
                     "same_choice": float((pick(results["fp32"]) == pick(results["bf16"])).float().mean())})

    if device.type == "cuda" and only in (None, "precision"):
        def run_qformer(flag: bool):
            def call():
                model.qformer_bf16 = flag
                try:
                    with torch.inference_mode():
                        return s.ours().float()
                finally:
                    model.qformer_bf16 = False
            return call

        stats, results = common.measure({"fp32": run_qformer(False), "bf16": run_qformer(True)}, rounds, device)
        pick = lambda scores: scores.view(proposals, draws, -1).min(dim=1).values.argmin(dim=0)  # noqa: E731
        rows.append({**config, "name": "GPU Q-Former bf16 autocast (qformer_bf16)", "baseline": "fp32",
                     "variant": "bf16", "baseline_s": stats["fp32"]["s"], "variant_s": stats["bf16"]["s"],
                     "max_abs_score_change": float((results["fp32"] - results["bf16"]).abs().max()),
                     "same_choice": float((pick(results["fp32"]) == pick(results["bf16"])).float().mean())})
    if only == "precision":
        return _finish(rows)
    modes = {"grad": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}

    def under(mode):
        def call():
            with modes[mode]():
                return s.ours()
        return call

    stats, _ = common.measure({mode: under(mode) for mode in modes}, rounds, device)
    rows.append({**config, "name": "inference_mode (vs autograd on)", "baseline": "grad", "variant": "inference_mode",
                 "baseline_s": stats["grad"]["s"], "variant_s": stats["inference_mode"]["s"],
                 "baseline_memory_mib": stats["grad"]["delta_mib"],
                 "variant_memory_mib": stats["inference_mode"]["delta_mib"]})
    rows.append({**config, "name": "inference_mode (vs no_grad)", "baseline": "no_grad", "variant": "inference_mode",
                 "baseline_s": stats["no_grad"]["s"], "variant_s": stats["inference_mode"]["s"]})

    many = Setup.make(model, proposals, draws, budget_expressions, device)
    with torch.inference_mode():
        stats, _ = common.measure(
            {b: (lambda b=b: region_rows_nll(model, many.region, many.expressions, token_budget=b))
             for b in budgets}, rounds, device)
    reference = DECODER_TOKEN_BUDGET if DECODER_TOKEN_BUDGET in budgets else budgets[0]
    for b in budgets:
        if b == reference:
            continue
        rows.append({**config, "expressions": budget_expressions, "name": f"LM scoring token budget {b} (vs {reference})",
                     "baseline": str(reference), "variant": str(b), "baseline_s": stats[reference]["s"],
                     "variant_s": stats[b]["s"], "baseline_memory_mib": stats[reference]["delta_mib"],
                     "variant_memory_mib": stats[b]["delta_mib"]})
    return _finish(rows)


def _finish(rows: list[dict]) -> list[dict]:
    for row in rows:
        row["speedup"] = row["baseline_s"] / row["variant_s"]
    return rows


def structural(ris_rows: list[dict]) -> list[dict]:
    """The fast paths `ris_scoring.bench` measures against the floor's own passes."""
    rows = []
    for r in ris_rows:
        config = {"size": r["size"], "proposals": r["proposals"], "draws": r["draws"], "expressions": r["expressions"]}
        rows.append({**config, "name": "Q-Former: image keys/values once per image", "baseline": "stock batched",
                     "variant": "shared", "baseline_s": r["floor_parts"]["qformer"],
                     "variant_s": r["ours_parts"]["qformer"]})
        rows.append({**config, "name": "LM: input once per row, expressions concatenated (T5 encoder + decoder)",
                     "baseline": "encoder per row + decoder per pair", "variant": "model.lm.score",
                     "baseline_s": r["floor_parts"]["t5_encoder"] + r["floor_parts"]["decoder"],
                     "variant_s": r["ours_parts"]["lm"]})
    for row in rows:
        row["speedup"] = row["baseline_s"] / row["variant_s"]
    return rows


def report(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        extra = ""
        if "max_abs_score_change" in r:
            extra = f"; max score change {r['max_abs_score_change']:.2e} nats, same choice {100 * r['same_choice']:.0f}%"
        lines.append(f"   {r['size']:>6} {r['name']:<46} {r['baseline_s']:8.3f} s -> {r['variant_s']:8.3f} s "
                     f"({r['speedup']:.2f}x){extra}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--proposals", type=int, default=20)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--expressions", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    common.quiet_warnings()
    import lavis  # noqa: F401

    with tempfile.TemporaryDirectory() as workdir:
        model = common.build_model(args.size, workdir, args.device)
        rows = bench(model, args.size, proposals=args.proposals, draws=args.draws, expressions=args.expressions,
                     rounds=args.rounds, device=args.device)
    print(report(rows))
    return rows


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
