"""Cost model: FLOP counts of the real sizes x throughput -> expected RefCOCO val evaluation time.

    python benchmarks/cost_model.py [--ris-json results.json]

FLOPs are counted, not estimated by hand: the real code paths run on a model built on the
"meta" device (shapes only, no memory, no arithmetic) under `torch.utils.flop_counter.
FlopCounterMode` (2 FLOPs per multiply-add of every matmul, convolution and attention), with a
dispatch-mode counter of the kernels launched (every aten op except views). The real size is
`random_model.SIZES["full"]`: EVA ViT-g/14 at 364 px (677 tokens x 1408, 39 blocks, MLP 6144,
as LAVIS's `create_eva_vit_g`), the BERT-base Q-Former (12 layers of 768, cross-attention every
2nd layer, 32 queries, 32 BERT tokens of point text) and FlanT5-XL (2048 wide, 24 + 24 layers,
32 heads x 64, gated-GELU FFN 5120, vocabulary 32128). The counts are checked against the usual
formula, ViT FLOPs = 2 * L * (params per block) * tokens + 4 * L * tokens^2 * width.

Per image, with P proposals x R draws = M rows and E expressions:
- ours:     ViT + Q-Former over M rows (image keys/values once) + T5 encoder over M rows +
            decoder over M rows with the E expressions concatenated;
- official: P * R * E whole-model passes (ViT included), batch 1, as its script runs them.
RefCOCO (UNC) val: 1,500 images and 10,834 expressions (the `refer` toolkit's counts for
refs(unc).p; 7.22 expressions per image); P = 20 (the cap on scored proposals: an upper bound),
R = 5 draws.

Two time estimates:
- A100-class GPU (assumed: A100-SXM4-80GB, 312 TFLOP/s dense fp16/bf16, 19.5 TFLOP/s fp32 without
  TF32, 2.0 TB/s HBM). Each pass takes max(FLOPs / (50% of the peak of its precision),
  weight bytes / (70% of HBM bandwidth)) + kernels x 8 us (eager PyTorch launch and dispatch).
  Precisions as LAVIS runs them: ViT fp16, Q-Former fp32, T5 bf16.
- This CPU: every component's full-size FLOPs divided by the FLOP rate the same component
  reached in the measured run (its counted FLOPs at the measured size over its median time;
  the language model's scoring, T5 encoder and decoder together, is one component there, as
  `point_text_nll` times it).
This is FlanT5's cost model: it reads the T5 build's own modules (`t5_model.encoder`,
`.decoder`, `.lm_head`) for their sizes, and counts the T5 scorer's decoder pass
(`T5LM.score_encoded`) apart from its encoder pass (the stock Hugging Face encoder call).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from typing import Callable

import common  # noqa: F401  (sets the offline environment first)
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

REFCOCO_VAL = {"images": 1500, "expressions": 10834}
PROPOSALS, DRAWS = 20, 5
A100 = {"name": "A100-SXM4-80GB (assumed)", "peak_tflops": {"fp16": 312.0, "bf16": 312.0, "fp32": 19.5},
        "hbm_tb_s": 2.039, "compute_efficiency": 0.5, "bandwidth_efficiency": 0.7, "launch_us": 8.0}
PRECISION = {"vit": "fp16", "qformer": "fp32", "t5_encoder": "bf16", "decoder": "bf16"}
BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}
_VIEW_OPS = {"view", "_unsafe_view", "t", "transpose", "permute", "expand", "slice", "select", "unsqueeze",
             "squeeze", "as_strided", "detach", "alias", "split", "split_with_sizes", "unbind", "lift_fresh",
             "_reshape_alias", "unfold", "diagonal", "chunk", "narrow", "view_as_real", "movedim", "numpy_T",
             "empty", "empty_like", "new_empty", "empty_strided", "new_empty_strided", "_local_scalar_dense"}


class _KernelCounter(TorchDispatchMode):
    """Counts aten ops that launch work (views and allocations excluded)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ not in _VIEW_OPS:
            self.count += 1
        return func(*args, **(kwargs or {}))


def count(fn: Callable[[], object]) -> dict:
    """FLOPs and launched kernels of `fn()`."""
    with FlopCounterMode(display=False) as flops, _KernelCounter() as kernels:
        fn()
    return {"flops": float(flops.get_total_flops()), "kernels": kernels.count}


def component_params(model) -> dict[str, int]:
    """Weights each component reads per pass."""
    t5 = model.t5_model
    size = common.parameter_count
    return {"vit": size(model.visual_encoder) + size(model.ln_vision),
            "qformer": size(model.Qformer) + model.query_tokens.numel() + size(model.lm_projection),
            "t5_encoder": size(t5.encoder) - t5.shared.weight.numel(),
            "decoder": size(t5.decoder) - t5.shared.weight.numel() + t5.lm_head.weight.numel()}


def ris_counts(model, proposals: int, draws: int, expressions: int) -> dict[str, dict]:
    """Counted FLOPs/kernels per component for one image: ours, the floor, one naive pair."""
    from ris_scoring import Setup

    from lavis_regionvlm.models.qformer_cached import shared_image_query_outputs
    device = next(model.parameters()).device
    s = Setup.make(model, proposals, draws, expressions, device)
    one = Setup.make(model, 1, 1, 1, device)
    with torch.inference_mode():
        out = {
            "vit": count(lambda: model.encode_image(s.image[None])),
            "qformer_ours": count(lambda: model.lm_projection(shared_image_query_outputs(model, s.embeds, s.texts))),
            "qformer_stock": count(s.floor_qformer),
            "t5_encoder": count(s.floor_encoder),  # the encoder pass of ours is this very call
            "decoder_ours": count(lambda: model.lm.score_encoded(s.hidden, s.atts, s.expressions)),
            "decoder_stock": count(s.floor_decoder),
            "naive_qformer": count(one.floor_qformer),
            "naive_t5_encoder": count(one.floor_encoder),
            "naive_decoder": count(one.floor_decoder),
            "naive_pair": count(lambda: model.score({"image": one.image[None], "region_text": one.texts,
                                                     "text_output": one.expressions})),
        }
    return out


def vit_formula_flops(image_size: int, patch: int, width: int, depth: int, mlp: float) -> float:
    """2 * L * (4 w^2 + 2 w * mlp w) * n + 4 * L * n^2 * w, n = (S / p)^2 + 1 (patch embedding excluded)."""
    tokens = (image_size // patch) ** 2 + 1
    hidden = int(width * mlp)
    return 2 * depth * (4 * width**2 + 2 * width * hidden) * tokens + 4 * depth * tokens**2 * width


def a100_seconds(flops: float, kernels: int, params: int, precision: str) -> float:
    """One pass on the assumed A100: compute- or bandwidth-bound, plus launch overhead."""
    compute = flops / (A100["compute_efficiency"] * A100["peak_tflops"][precision] * 1e12)
    memory = params * BYTES[precision] / (A100["bandwidth_efficiency"] * A100["hbm_tb_s"] * 1e12)
    return max(compute, memory) + kernels * A100["launch_us"] * 1e-6


GPU_BATCH = 8  # the paper's batch of 64 on 8 GPUs


def training_counts(model, batch: int = 1) -> dict:
    """Forward+backward FLOPs of one training sample: region (ours) vs the stock pass (ours with
    global_region_mode="query_only" and no point text: the stock BLIP-2 pass, bit for bit, as
    `train_step.py` checks)."""
    from train_step import make_samples

    samples = make_samples(model, batch, next(model.parameters()).device)
    global_samples = {k: v for k, v in samples.items() if k != "region_text"}

    def step(batch_samples):
        model(batch_samples)["loss"].backward()

    model.train()
    ours = count(lambda: step(samples))
    mode, model.global_region_mode = model.global_region_mode, "query_only"
    stock = count(lambda: step(global_samples))
    model.global_region_mode = mode
    model.eval()
    trainable_ours = sum(p.numel() for p in model.parameters() if p.requires_grad)
    from lavis_regionvlm.models.blip2_t5_region import is_text_branch_key

    text_branch = sum(p.numel() for n, p in model.named_parameters() if is_text_branch_key(n))
    return {"batch": batch, "ours": ours, "stock": stock, "trainable_ours": trainable_ours,
            "trainable_stock": trainable_ours - text_branch}


def estimate(measured: list[dict] | None = None, workdir: str | None = None) -> dict:
    """The cost model; `measured` = the RIS rows of a run (CPU scaling uses the largest)."""
    from lavis_regionvlm.ris.random_model import SIZES

    workdir = workdir or tempfile.mkdtemp()
    full = common.build_model("full", workdir, "meta")
    per_image = REFCOCO_VAL["expressions"] / REFCOCO_VAL["images"]
    e_count = 7
    counts = ris_counts(full, PROPOSALS, DRAWS, e_count)
    params = component_params(full)
    vit = SIZES["full"]["vit"]
    out: dict = {
        "assumptions": {"dataset": "RefCOCO (UNC) val", **REFCOCO_VAL, "expressions_per_image": per_image,
                        "proposals": PROPOSALS, "draws": DRAWS, "gpu": A100, "precision": PRECISION,
                        "counted_with_expressions": e_count},
        "full_size": {"params_m": {k: v / 1e6 for k, v in params.items()},
                      "counts": counts,
                      "vit_formula_tflops": vit_formula_flops(SIZES["full"]["image_size"], vit["patch_size"],
                                                              vit["embed_dim"], vit["depth"], vit["mlp_ratio"]) / 1e12},
    }
    scale_e = per_image / e_count  # the decoder of ours grows linearly with E

    def a100(name: str, component: str, factor: float = 1.0) -> float:
        c = counts[name]
        return a100_seconds(c["flops"] * factor, int(c["kernels"] * factor), params[component], PRECISION[component])

    ours_parts = {"vit": a100("vit", "vit"), "qformer": a100("qformer_ours", "qformer"),
                  "t5_encoder": a100("t5_encoder", "t5_encoder"), "decoder": a100("decoder_ours", "decoder", scale_e)}
    naive_parts = {"vit": a100("vit", "vit"), "qformer": a100("naive_qformer", "qformer"),
                   "t5_encoder": a100("naive_t5_encoder", "t5_encoder"), "decoder": a100("naive_decoder", "decoder")}
    ours_image = sum(ours_parts.values())
    pair = sum(naive_parts.values())
    pairs = REFCOCO_VAL["expressions"] * PROPOSALS * DRAWS
    out["a100"] = {
        "ours_per_image_s": ours_image, "ours_parts_s": ours_parts,
        "official_per_pair_s": pair, "official_parts_s": naive_parts,
        "ours_total_h": ours_image * REFCOCO_VAL["images"] / 3600,
        "official_total_h": pair * pairs / 3600,
    }
    out["a100"]["official_over_ours"] = out["a100"]["official_total_h"] / out["a100"]["ours_total_h"]
    c = counts["qformer_ours"]  # what-if: the Q-Former in bf16 (`qformer_bf16`)
    bf16_qformer = ours_image - ours_parts["qformer"] + a100_seconds(c["flops"], c["kernels"], params["qformer"], "bf16")
    out["a100"]["ours_bf16_qformer_total_h"] = bf16_qformer * REFCOCO_VAL["images"] / 3600
    out["flops"] = {
        "ours_per_image_tflops": (counts["vit"]["flops"] + counts["qformer_ours"]["flops"] + counts["t5_encoder"]["flops"]
                                  + counts["decoder_ours"]["flops"] * scale_e) / 1e12,
        "official_per_pair_tflops": counts["naive_pair"]["flops"] / 1e12,
    }
    out["flops"]["ours_total_pflops"] = out["flops"]["ours_per_image_tflops"] * REFCOCO_VAL["images"] / 1e3
    out["flops"]["official_total_pflops"] = out["flops"]["official_per_pair_tflops"] * pairs / 1e3

    if measured:
        out["measured"] = _measured_scaling(measured, counts, scale_e, workdir)
    train = training_counts(full)
    opt_bytes = 16 * 2  # AdamW per trainable fp32 weight: param, grad, 2 moments, read and written
    step = {}
    for name in ("ours", "stock"):
        trainable = train[f"trainable_{name}"]
        step[name] = (GPU_BATCH * train[name]["flops"] / (A100["compute_efficiency"] * A100["peak_tflops"]["fp16"] * 1e12)
                      + trainable * opt_bytes / (A100["bandwidth_efficiency"] * A100["hbm_tb_s"] * 1e12))
    out["training_full_size"] = {
        **train, "batch": GPU_BATCH, "flops_overhead": train["ours"]["flops"] / train["stock"]["flops"] - 1,
        "a100_step_s": step, "a100_overhead": step["ours"] / step["stock"] - 1,
    }
    return out


def _measured_scaling(measured: list[dict], full_counts: dict, scale_e: float, workdir: str) -> dict:
    """Full-size time on the measuring machine: component FLOPs / the FLOP rate each reached
    there (rates from the largest measured size; at full size this reproduces the measured time)."""
    row = max(measured, key=lambda r: r["params_m"])
    model = common.build_model(row["size"], workdir, "meta")
    counts = ris_counts(model, row["proposals"], row["draws"], row["expressions"])
    rates = {  # FLOP/s reached on this CPU, per component
        "vit": counts["vit"]["flops"] / row["ours_parts"]["vit"],
        "qformer": counts["qformer_ours"]["flops"] / row["ours_parts"]["qformer"],
        "lm": (counts["t5_encoder"]["flops"] + counts["decoder_ours"]["flops"]) / row["ours_parts"]["lm"],
        "naive_pair": counts["naive_pair"]["flops"] / row["naive_pair_s"],
    }
    ours_image = (full_counts["vit"]["flops"] / rates["vit"] + full_counts["qformer_ours"]["flops"] / rates["qformer"]
                  + (full_counts["t5_encoder"]["flops"] + full_counts["decoder_ours"]["flops"] * scale_e) / rates["lm"])
    pair = full_counts["naive_pair"]["flops"] / rates["naive_pair"]
    pairs = REFCOCO_VAL["expressions"] * PROPOSALS * DRAWS
    out = {"from_size": row["size"], "device": row["device"], "precision": row.get("precision", "fp32"), "gflops_per_s": {k: v / 1e9 for k, v in rates.items()},
           "measured_tflops": {k: v["flops"] / 1e12 for k, v in counts.items()},
           "ours_per_image_s": ours_image, "official_per_pair_s": pair,
           "ours_total_h": ours_image * REFCOCO_VAL["images"] / 3600, "official_total_h": pair * pairs / 3600}
    out["official_over_ours"] = out["official_total_h"] / out["ours_total_h"]
    return out


def report(c: dict) -> str:
    a, f = c["a100"], c["flops"]
    counts = c["full_size"]["counts"]
    lines = [
        f"== full size (EVA ViT-g 364 px, BERT-base Q-Former, FlanT5-XL), counted FLOPs per call: ViT "
        f"{counts['vit']['flops'] / 1e12:.3f} T (formula {c['full_size']['vit_formula_tflops']:.3f} T) | Q-Former x100 rows: "
        f"ours {counts['qformer_ours']['flops'] / 1e12:.2f} T, stock {counts['qformer_stock']['flops'] / 1e12:.2f} T | "
        f"T5 encoder x100 {counts['t5_encoder']['flops'] / 1e12:.2f} T | decoder x100 rows x 7 expr: ours "
        f"{counts['decoder_ours']['flops'] / 1e12:.2f} T, stock {counts['decoder_stock']['flops'] / 1e12:.2f} T | "
        f"one naive pass {counts['naive_pair']['flops'] / 1e12:.3f} T",
        f"   RefCOCO val ({REFCOCO_VAL['images']} images, {REFCOCO_VAL['expressions']} expressions, 20 proposals x 5 draws): "
        f"ours {f['ours_total_pflops']:.0f} PFLOP, official {f['official_total_pflops']:.0f} PFLOP",
        f"   A100 (assumed): ours {a['ours_per_image_s'] * 1e3:.0f} ms/image -> {a['ours_total_h'] * 60:.1f} min; "
        f"official {a['official_per_pair_s'] * 1e3:.1f} ms/pass -> {a['official_total_h']:.1f} h; "
        f"official/ours {a['official_over_ours']:.0f}x; ours with a bf16 Q-Former (qformer_bf16) "
        f"{a['ours_bf16_qformer_total_h'] * 60:.1f} min",
    ]
    if "measured" in c:
        p = c["measured"]
        rates = ", ".join(f"{k} {v:.0f}" for k, v in p["gflops_per_s"].items())
        lines.append(f"   this machine ({p['device']}; rates from '{p['from_size']}', {p['precision']}, GFLOP/s: {rates}): ours "
                     f"{p['ours_per_image_s'] / 60:.1f} min/image -> {p['ours_total_h'] / 24:.1f} days; official "
                     f"{p['official_per_pair_s']:.0f} s/pass -> {p['official_total_h'] / 24 / 365:.1f} years; "
                     f"official/ours {p['official_over_ours']:.0f}x")
    t = c["training_full_size"]
    lines.append(f"   training step at full size: FLOPs per sample ours/stock {1 + t['flops_overhead']:.3f} "
                 f"(+{100 * t['flops_overhead']:.1f}%); A100 estimate at batch {t['batch']} with the AdamW step "
                 f"+{100 * t['a100_overhead']:.1f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ris-json", help="a run.py JSON (its ris rows give the CPU rates)")
    args = parser.parse_args(argv)
    common.quiet_warnings()
    import lavis  # noqa: F401

    measured = json.load(open(args.ris_json))["ris"] if args.ris_json else None
    result = estimate(measured)
    print(report(result))
    return result


if __name__ == "__main__":
    main()
