"""Benchmark one training step: `blip2_t5_region` vs stock LAVIS `blip2_t5`, same dims and batch.

    python benchmarks/train_step.py [--sizes tiny large] [--batch 8 2] [--rounds 3] [--device cpu|cuda]
                                    [--whole-table]

The stock model is LAVIS's own `Blip2T5` class: its `__init__` and `forward` run unchanged.
Only what its constructor would download is redirected, inside this benchmark: the three
hub-bound class methods (`init_tokenizer`, `init_vision_encoder`, `init_Qformer`) return copies
of our model's tokenizer, ViT and Q-Former, and `T5ForConditionalGeneration.from_pretrained`
(patched in `lavis.models.blip2_models.blip2_t5` for the duration of the constructor only)
returns a copy of our T5. So both models hold the same weights, and the stock constructor does
its own surgery (it deletes the Q-Former's text branch, freezes the ViT and T5, casts T5 to
bf16); then our weights are loaded into it (its own `t5_proj` is newly initialised and its T5
rounded to bf16). On CPU both models run T5 in fp32 (the CPU precision; LAVIS's bf16 T5 also
runs there, all in bf16). Check: in eval mode, our model with `global_region_mode="query_only"` and no point text gives
the stock loss bit for bit (`parity_abs_diff`).
`--whole-table` also times ours training the whole Q-Former word-embedding table, as the released
code does, instead of the point-text rows only (`train_word_embeddings`, models/point_embeddings.py).

Timed: zero_grad, forward (loss), backward, AdamW step (LAVIS's runner grouping: no weight decay
on biases and norms), median over rounds, the two models interleaved; forward/backward/step are
also timed apart. Ours gets point text for every sample (K = the model's num_points points from
a random box: the worst case; global samples cost about what the stock model costs). On CUDA
the forward runs under fp16 autocast with a GradScaler, as LAVIS's runner does with `amp: True`.
"""
from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (sets the offline environment first)
import torch

PHRASES = ["a man on the left", "white car", "the dog in front of the bench", "bowl", "a red shirt",
           "two people talking near the door", "tree", "the sky above the hills"]


def stock_blip2_t5(ours, workdir: str | Path):
    """LAVIS's `Blip2T5`, constructed by its own `__init__` offline, with `ours`' weights."""
    from unittest import mock

    from lavis.models.blip2_models import blip2_t5 as stock_module

    t5_dir = Path(workdir) / "stock_t5"
    ours.t5_model.config.save_pretrained(t5_dir)  # read by the stock T5Config / tokenizer calls
    ours.t5_tokenizer.save_pretrained(t5_dir)

    class OfflineBlip2T5(stock_module.Blip2T5):
        @classmethod
        def init_tokenizer(cls):
            return copy.deepcopy(ours.tokenizer)

        @classmethod
        def init_vision_encoder(cls, model_name, img_size, drop_path_rate, use_grad_checkpoint, precision):
            encoder = copy.deepcopy(ours.visual_encoder)
            encoder.__dict__.pop("train", None)  # our freezing's instance attribute; the stock one follows
            return encoder, copy.deepcopy(ours.ln_vision)

        @classmethod
        def init_Qformer(cls, num_query_token, vision_width, cross_attention_freq=2):
            return copy.deepcopy(ours.Qformer), copy.deepcopy(ours.query_tokens)

    class PrebuiltT5:
        @staticmethod
        def from_pretrained(name, config=None, **kwargs):
            model = copy.deepcopy(ours.t5_model)
            assert config is None or config.to_dict()["d_model"] == model.config.d_model
            return model

    with mock.patch.object(stock_module, "T5ForConditionalGeneration", PrebuiltT5):
        stock = OfflineBlip2T5(vit_model="eva_clip_g", img_size=ours.img_size,
                               num_query_token=ours.query_tokens.shape[1], t5_model=str(t5_dir),
                               prompt="", max_txt_len=ours.max_txt_len)
    return stock


def with_whole_word_table(ours):
    """A copy of `ours` that trains its whole Q-Former word-embedding table (the released code's
    way; `train_word_embeddings: all`), with the same weights."""
    whole = copy.deepcopy(ours)
    embeddings = whole.Qformer.bert.embeddings
    rows = embeddings.word_embeddings
    embeddings.word_embeddings = torch.nn.Embedding.from_pretrained(
        rows.full_weight(), freeze=False, padding_idx=rows.padding_idx)
    return whole


def optimizer_for(model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW as LAVIS's `RunnerBase.optimizer` builds it."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "bias" in name or "ln" in name or "bn" in name else decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0}],
                             lr=1e-5, weight_decay=0.05, betas=(0.9, 0.999))


def make_samples(model, batch: int, device) -> dict:
    from ris_scoring import point_texts

    generator = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(batch, 3, model.img_size, model.img_size, generator=generator).to(device),
        "region_text": point_texts(model, batch, 1, seed=3),
        "text_input": [""] * batch,
        "text_output": [PHRASES[i % len(PHRASES)] for i in range(batch)],
    }


def bench(ours, size: str, batch: int, *, rounds: int = 3, device: str = "cpu", workdir: str = ".",
          whole_table: bool = False) -> dict:
    device = torch.device(device)
    stock = stock_blip2_t5(ours, workdir).to(device)
    out: dict = {"size": size, "batch": batch, "device": str(device), "rounds": rounds}
    samples = make_samples(ours, batch, device)
    global_samples = {k: v for k, v in samples.items() if k != "region_text"}
    if device.type == "cpu":  # LAVIS's bf16 T5 on CPU; the comparison uses fp32 T5 (the CPU precision) for both
        stock.t5_model.float()
        ours.t5_model.float()
    # The stock constructor made its own t5_proj and rounded T5 to bf16: give it our weights.
    loaded = stock.load_state_dict(ours.state_dict(), strict=False)
    out["stock_missing_keys"] = len(loaded.missing_keys)  # 0: every stock weight is ours
    out["text_branch_keys_ours_only"] = len(loaded.unexpected_keys)

    # parity: ours with the region path off is the stock BLIP-2 pass
    ours.eval(), stock.eval()
    mode, ours.global_region_mode = ours.global_region_mode, "query_only"
    with torch.no_grad():
        out["parity_abs_diff"] = abs(float(ours(global_samples)["loss"]) - float(stock(global_samples)["loss"]))
    ours.global_region_mode = mode

    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if amp else None

    def step(model, optimizer, batch_samples, log):
        times = {}
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            loss = model(batch_samples)["loss"]
        common.sync(device)
        times["forward"] = time.perf_counter() - start
        (scaler.scale(loss) if scaler else loss).backward()
        common.sync(device)
        times["backward"] = time.perf_counter() - start - times["forward"]
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        common.sync(device)
        times["optimizer"] = time.perf_counter() - start - times["forward"] - times["backward"]
        log.append(times)
        return float(loss)

    models = {"ours": (ours.train(), optimizer_for(ours), samples),
              "stock": (stock.train(), optimizer_for(stock), global_samples)}
    if whole_table:
        whole = with_whole_word_table(ours).train()
        models["whole_table"] = (whole, optimizer_for(whole), samples)
    parts: dict[str, list[dict]] = {name: [] for name in models}
    stats, losses = common.measure(
        {name: (lambda name=name: step(*models[name], parts[name])) for name in models}, rounds, device)
    for name in models:
        trained = parts[name][1:]  # [0]: the warm-up step
        out[f"{name}_s"] = stats[name]["s"]
        out[f"{name}_parts"] = {k: common.median([t[k] for t in trained]) for k in trained[0]}
        out[f"{name}_memory_mib"] = stats[name]["delta_mib"]
        out[f"{name}_trainable_m"] = round(sum(p.numel() for p in models[name][0].parameters()
                                               if p.requires_grad) / 1e6, 2)
        out[f"{name}_loss"] = losses[name]
    out["process_peak_mib"] = max(v["peak_mib"] for v in stats.values())
    out["overhead"] = out["ours_s"] / out["stock_s"] - 1
    if whole_table:
        out["whole_table_overhead"] = out["whole_table_s"] / out["stock_s"] - 1
    out["qformer_tokens"] = {"queries": int(ours.query_tokens.shape[1]),
                             "text": float(sum(len(i) for i in ours.tokenizer(samples["region_text"], truncation=True,
                                               max_length=ours.region_max_len).input_ids) / batch)}
    ours.eval()
    return out


def report(r: dict) -> str:
    o, s = r["ours_parts"], r["stock_parts"]
    return (f"== {r['size']} batch {r['batch']} ({r['device']}): ours {r['ours_s']:.3f} s (fwd {o['forward']:.3f}, bwd "
            f"{o['backward']:.3f}, opt {o['optimizer']:.3f}) | stock {r['stock_s']:.3f} s (fwd {s['forward']:.3f}, "
            f"bwd {s['backward']:.3f}, opt {s['optimizer']:.3f}) | overhead {100 * r['overhead']:+.1f}% | "
            f"Q-Former tokens {r['qformer_tokens']['queries']} queries + {r['qformer_tokens']['text']:.0f} text | "
            f"parity {r['parity_abs_diff']:.1e}"
            + (f" | whole word table {r['whole_table_s']:.3f} s (opt {r['whole_table_parts']['optimizer']:.3f}), "
               f"overhead {100 * r['whole_table_overhead']:+.1f}%" if "whole_table_s" in r else ""))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "large"])
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 2], help="one per size")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--whole-table", action="store_true",
                        help="also time ours training the whole word-embedding table (the released code's way)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    common.quiet_warnings()
    import lavis  # noqa: F401

    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for size, batch in zip(args.sizes, args.batch):
            model = common.build_model(size, workdir, args.device)
            results.append(bench(model, size, batch, rounds=args.rounds, device=args.device,
                                 workdir=os.path.join(workdir, size), whole_table=args.whole_table))
            print(report(results[-1]), flush=True)
    return results


if __name__ == "__main__":
    main()
