"""Run every benchmark and print one table: RIS scoring (FlanT5, and the tiny OPT model's fast path
against its naive loop), training step, chat, fast paths, data preparation, and the cost model of
a full RefCOCO val evaluation.

    python benchmarks/run.py [--quick | --smoke] [--json PATH] [--threads N]
    python benchmarks/run.py --device cuda --full-size [--json PATH]     # a GPU machine (benchmarks/gpu.sh)
    python benchmarks/run.py --device cuda --full-size --dry-run          # check the plan anywhere
    python benchmarks/run.py --quick --load-folder DIR   # + loading memory at full size (load.py; GBs in DIR)

Modes (CPU): the default (under 10 minutes on a 2-core machine) measures RIS at `tiny` (fp32) and
`large` (EVA ViT-L/14 at 224 px, the BERT-base Q-Former, FlanT5-base dims; under the CPU bf16 fast
path, all paths alike) at 20 proposals x 5 draws x 3 expressions, the tiny model's cost growth in
proposals, draws and expressions, the training step at `tiny` and `large`, chat at `tiny` and
`base`, the fast paths at `tiny` and `base`. `--quick` keeps the tiny measurements (1-2 minutes);
`--smoke` is the smallest check that every section works (a test runs it). `--full-size` on a GPU
uses `full` (EVA ViT-g at 364 px, FlanT5-XL) instead of `large`/`base`, with random weights.

Each section runs in its own process (so its peak memory is its own; see `common.py` for how
the peak of each measured call is taken), except under `--smoke`. Every figure is a median over
interleaved rounds: the things compared run in the same rounds, side by side.
CPU threads: 1 by default, because on a shared 2-core machine two threads fight other jobs
(3-5x slower here); pass --threads to change it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TARGETS = {"naive_over_ours_min": 10.0, "ours_over_floor_max": 1.3, "train_overhead_max": 0.10,
           "target_config": (20, 5, 3)}


def plan(mode: str, full_size: bool) -> dict:
    """What each section measures in a mode."""
    if mode == "smoke":
        return {"rounds": 1,
                "ris": [{"size": "tiny", "proposals": 4, "draws": 2, "expressions": 2, "naive_pairs": 1}],
                "ris_lm": [{"arch": "blip2_opt_region", "size": "tiny", "proposals": 4, "draws": 2, "expressions": 2,
                            "naive_pairs": 1}],
                "sweep": {"size": "tiny", "base": (4, 2, 2), "proposals": (2,), "draws": (1,), "expressions": (1,)},
                "train": [{"size": "tiny", "batch": 2}],
                "chat": [{"size": "tiny", "max_new_tokens": 3, "num_beams": 2}],
                "fastpaths": [{"size": "tiny", "proposals": 4, "draws": 2, "expressions": 2, "budgets": (512, 2048),
                               "budget_expressions": 3}],
                "data": {"lines": 50}}
    big = "full" if full_size else "large"
    rounds = 5 if full_size else 3
    target = dict(zip(("proposals", "draws", "expressions"), TARGETS["target_config"]))
    # the tiny model's calls take milliseconds and other jobs' load jitters them: more rounds
    out = {"rounds": rounds,
           "ris": [{"size": "tiny", **target, "naive_pairs": 10, "rounds": 5}],
           # the other language model's fast path against its naive loop, beside the T5 row
           "ris_lm": [{"arch": "blip2_opt_region", "size": "tiny", **target, "naive_pairs": 10, "rounds": 5}],
           "sweep": {"size": "tiny", "base": TARGETS["target_config"], "proposals": (5, 20, 40), "draws": (1, 5, 10),
                     "expressions": (1, 3, 10)},
           "train": [{"size": "tiny", "batch": 8, "rounds": 9}],
           "chat": [{"size": "tiny"}],
           "fastpaths": [{"size": "tiny", **target}],
           "data": {"lines": 1000}}
    if mode == "quick" and not full_size:
        out["sweep"].update(proposals=(5, 40), draws=(1, 10), expressions=(1, 10))
        return out
    # CPU: `large` RIS under the bf16 fast path (fp32 would take over 5 minutes here); GPU: LAVIS's precisions
    # its ratios sit far from the targets (about 30x and 0.7): 2 rounds on CPU keep the suite under 10 minutes
    out["ris"].append({"size": big, **target, "naive_pairs": rounds, "full_warmup": full_size,
                       "cpu_autocast": not full_size, "rounds": rounds if full_size else 2})
    # batch 8: the paper's per-GPU batch (64 over 8 GPUs); a step takes 15-25 s here at `large`
    out["train"].append({"size": big, "batch": 8})
    out["chat"].append({"size": "full" if full_size else "base"})
    out["fastpaths"].append({"size": "full", **target} if full_size else
                            {"size": "base", "proposals": 4, "draws": 5, "expressions": 3, "only": "precision"})
    out["data"] = {"lines": 3000}
    if full_size:
        out["fastpaths"][-1]["budgets"] = (2048, 8192, 32768)
    return out


# ------------------------------------------------------------------ sections (run in a child)


def section_ris(p: dict, device: str, workdir: str) -> dict:
    import common
    import ris_scoring

    rows, sweep = [], []
    naive_pair = {}
    for spec in p["ris"]:
        spec = dict(spec)
        size, autocast = spec.pop("size"), spec.pop("cpu_autocast", False)
        spec.setdefault("rounds", p["rounds"])
        model = common.build_model(size, workdir, device)
        model.cpu_autocast = autocast
        row = ris_scoring.bench(model, size, device=device, **spec)
        row["precision"] = "bf16 autocast (CPU)" if autocast and device == "cpu" else (
            "LAVIS (ViT fp16, Q-Former fp32, T5 bf16)" if device.startswith("cuda") else "fp32")
        print(ris_scoring.report(row), flush=True)
        rows.append(row)
        naive_pair[size] = row["naive_pair_s"]
        if p.get("sweep") and p["sweep"]["size"] == size:
            s = dict(p["sweep"])
            s.pop("size")
            sweep = ris_scoring.sweep(model, size, rounds=p["rounds"], device=device, naive_pair_s=row["naive_pair_s"],
                                      **s)
        del model
    lm_rows = []
    for spec in p.get("ris_lm", []):
        spec = dict(spec)
        size, arch = spec.pop("size"), spec.pop("arch")
        spec.setdefault("rounds", p["rounds"])
        model = common.build_model(size, workdir, device, arch=arch)
        lm_rows.append(ris_scoring.bench_vs_naive(model, size, device=device, **spec))
        print(ris_scoring.report_vs_naive(lm_rows[-1]), flush=True)
        del model
    return {"ris": rows, "ris_sweep": sweep, "ris_lm": lm_rows}


def section_train(p: dict, device: str, workdir: str) -> dict:
    import common
    import train_step

    rows = []
    for spec in p["train"]:
        model = common.build_model(spec["size"], workdir, device)
        rows.append(train_step.bench(model, spec["size"], spec["batch"], rounds=spec.get("rounds", p["rounds"]),
                                     device=device,
                                     workdir=os.path.join(workdir, "train_" + spec["size"])))
        print(train_step.report(rows[-1]), flush=True)
        del model
    return {"train": rows}


def section_chat(p: dict, device: str, workdir: str) -> dict:
    import chat_latency
    import common

    rows = []
    for spec in p["chat"]:
        spec = dict(spec)
        size = spec.pop("size")
        model = common.build_model(size, workdir, device)
        rows.append(chat_latency.bench(model, size, rounds=max(3, p["rounds"]), device=device, **spec))
        print(chat_latency.report(rows[-1]), flush=True)
        del model
    return {"chat": rows}


def section_fastpaths(p: dict, device: str, workdir: str) -> dict:
    import common
    import fastpaths

    rows = []
    for spec in p["fastpaths"]:
        spec = dict(spec)
        size, only = spec.pop("size"), spec.pop("only", None)
        model = common.build_model(size, workdir, device)
        found = fastpaths.bench(model, size, rounds=p["rounds"], device=device, only=only, **spec)
        print(fastpaths.report(found), flush=True)
        rows += found
        del model
    return {"fastpaths": rows}


def section_data(p: dict, device: str, workdir: str) -> dict:
    import ln_prepare

    result = ln_prepare.bench(Path(workdir) / "ln", p["data"]["lines"], reads=2000)
    print(ln_prepare.report(result), flush=True)
    return {"data": result}


def section_cost(p: dict, device: str, workdir: str, ris_rows: list[dict] | None = None) -> dict:
    import cost_model

    result = cost_model.estimate(ris_rows, workdir)
    print(cost_model.report(result), flush=True)
    return {"cost_model": result}


SECTIONS = {"ris": section_ris, "train": section_train, "chat": section_chat, "fastpaths": section_fastpaths,
            "data": section_data, "cost": section_cost}


def run_section_here(name: str, p: dict, device: str, inputs: dict) -> dict:
    import common

    common.quiet_warnings()
    import lavis  # noqa: F401  (registers the plugin)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        if name == "cost":
            result = section_cost(p, device, workdir, inputs.get("ris"))
        else:
            result = SECTIONS[name](p, device, workdir)
    result.setdefault("sections", {})[name] = {"seconds": time.perf_counter() - started,
                                               "process_peak_mib": common.process_peak_mib()}
    return result


def run_section_child(name: str, args, inputs: dict, workdir: str) -> dict:
    out = Path(workdir) / f"{name}.json"
    inputs_path = Path(workdir) / f"{name}.inputs.json"
    inputs_path.write_text(json.dumps(inputs))
    command = [sys.executable, str(Path(__file__).resolve()), "--section", name, "--section-out", str(out),
               "--section-inputs", str(inputs_path), "--device", args.device, "--mode", args.mode]
    if args.full_size:
        command.append("--full-size")
    if args.threads:
        command += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"}
    completed = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in completed.stdout.splitlines():
        if "Warning" not in line and "warnings.warn" not in line and "return torch.cuda.amp" not in line:
            print(line, flush=True)
    if completed.returncode != 0:
        raise SystemExit(f"section {name} failed (exit {completed.returncode})")
    return json.loads(out.read_text())


# ------------------------------------------------------------------ summary


def ratios(results: dict) -> dict:
    return {
        "ris": {r["size"]: {"naive_over_ours": r["naive_over_ours"], "ours_over_floor": r["ours_over_floor"]}
                for r in results["ris"]},
        "ris_lm": {f"{r['model']} {r['size']}": {"naive_over_ours": r["naive_over_ours"]}
                   for r in results.get("ris_lm", [])},
        "train_overhead": {r["size"]: r["overhead"] for r in results["train"]},
        "chat_cold_over_cached": {r["size"]: r["cold_over_cached"] for r in results["chat"]},
        "cost_model": {"a100_official_over_ours": results["cost_model"]["a100"]["official_over_ours"],
                       **({"measured_official_over_ours": results["cost_model"]["measured"]["official_over_ours"]}
                          if "measured" in results["cost_model"] else {}),
                       "full_size_train_flops_overhead": results["cost_model"]["training_full_size"]["flops_overhead"]},
    }


def targets(results: dict) -> list[dict]:
    out = []
    for r in results["ris"]:
        if (r["proposals"], r["draws"], r["expressions"]) != TARGETS["target_config"]:
            continue
        out.append({"target": f"RIS naive/ours >= {TARGETS['naive_over_ours_min']:.0f}x ({r['size']})",
                    "value": r["naive_over_ours"], "met": r["naive_over_ours"] >= TARGETS["naive_over_ours_min"]})
        out.append({"target": f"RIS ours/floor <= {TARGETS['ours_over_floor_max']} ({r['size']})",
                    "value": r["ours_over_floor"], "met": r["ours_over_floor"] <= TARGETS["ours_over_floor_max"]})
    for r in results["train"]:
        if r["size"] == "tiny":  # a 2M-parameter toy whose compute is mostly the Q-Former: shown, not a target
            continue
        out.append({"target": f"training overhead < {100 * TARGETS['train_overhead_max']:.0f}% ({r['size']}, batch "
                              f"{r['batch']})", "value": r["overhead"], "met": r["overhead"] < TARGETS["train_overhead_max"]})
    flops = results["cost_model"]["training_full_size"]["flops_overhead"]
    out.append({"target": "training overhead < 10% (full size, counted FLOPs)", "value": flops,
                "met": flops < TARGETS["train_overhead_max"]})
    return out


def _round_overrides(p: dict) -> str:
    found = [f"{name} {spec['size']} {spec['rounds']}" for name in ("ris", "train") for spec in p[name] if "rounds" in spec]
    return f" ({', '.join(found)})" if found else ""


def table(results: dict) -> str:
    """The printed summary (the README performance section is taken from it)."""
    env = results["environment"]
    lines = [f"# RegionVLM benchmarks ({results['mode']}, {results['device']}): torch {env['torch']}, {env['threads']} "
             f"thread(s), {env['cpus']} CPUs ({env['cpu']}){', GPU ' + env['gpu'] if env.get('gpu') else ''}; "
             f"medians of {results['plan']['rounds']} interleaved rounds{_round_overrides(results['plan'])}", ""]
    lines += ["## RIS scoring, one image (expressions/s; higher is better)", "",
              "| size | precision | P x R x E | ours | floor | naive | naive/ours | ours/floor | memory MiB ours / floor / naive | max abs(naive - ours) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["ris"]:
        e, m = r["expr_per_s"], r["memory_mib"]
        lines.append(f"| {r['size']} ({r['params_m']:.0f}M) | {r['precision']} | {r['proposals']} x {r['draws']} x "
                     f"{r['expressions']} | {e['ours']:.3f} | {e['floor']:.3f} | {e['naive']:.5f} | "
                     f"{r['naive_over_ours']:.1f}x | {r['ours_over_floor']:.2f} | {m['ours']:.0f} / {m['floor']:.0f} / "
                     f"{m['naive']:.0f} | {r['max_abs_diff_naive']:.1e} |")
    if results.get("ris_lm"):
        lines += ["", "### Per language model (ours through `model.lm.score` vs the naive per-pair loop; "
                      "expressions/s)", "",
                  "| model | size | P x R x E | ours | naive | naive/ours | max abs(naive - ours) |",
                  "|---|---|---|---|---|---|---|"]
        same = [(r["size"], r["proposals"], r["draws"], r["expressions"]) for r in results["ris_lm"]]
        t5 = [dict(r, model="blip2_t5_region") for r in results["ris"]
              if (r["size"], r["proposals"], r["draws"], r["expressions"]) in same]
        for r in t5 + results["ris_lm"]:
            e = r["expr_per_s"]
            lines.append(f"| {r['model']} | {r['size']} ({r['params_m']:.0f}M) | {r['proposals']} x {r['draws']} x "
                         f"{r['expressions']} | {e['ours']:.3f} | {e['naive']:.5f} | {r['naive_over_ours']:.1f}x | "
                         f"{r['max_abs_diff_naive']:.1e} |")
    if results.get("ris_sweep"):
        lines += ["", f"### Cost growth ({results['ris_sweep'][0]['size']}; seconds per image; naive = measured "
                      "per-pair time x P x R x E)", "",
                  "| varied | P x R x E | rows | ours s | floor s | naive s | naive/ours | ours/floor |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in results["ris_sweep"]:
            lines.append(f"| {r['varied']} | {r['proposals']} x {r['draws']} x {r['expressions']} | {r['rows']} | "
                         f"{r['ours_s']:.3f} | {r['floor_s']:.3f} | {r.get('naive_s', float('nan')):.1f} | "
                         f"{r.get('naive_over_ours', float('nan')):.0f}x | {r['ours_over_floor']:.2f} |")
    lines += ["", "## Training step (forward + backward + AdamW; ours with point text on every sample vs stock LAVIS "
                  "`Blip2T5`, same weights; the stock model deletes the Q-Former text branch, ours trains it)", "",
              "| size | batch | ours s | stock s | overhead | fwd / bwd / opt ours | fwd / bwd / opt stock | memory MiB ours / stock | loss parity (region path off) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in results["train"]:
        o, s = r["ours_parts"], r["stock_parts"]
        lines.append(f"| {r['size']} | {r['batch']} | {r['ours_s']:.3f} | {r['stock_s']:.3f} | "
                     f"{100 * r['overhead']:+.1f}% | {o['forward']:.3f} / {o['backward']:.3f} / {o['optimizer']:.3f} | "
                     f"{s['forward']:.3f} / {s['backward']:.3f} / {s['optimizer']:.3f} | "
                     f"{r['ours_memory_mib']:.0f} / {r['stock_memory_mib']:.0f} | {r['parity_abs_diff']:.1e} |")
    lines += ["", "## Chat: region question on a cached image vs a cold call", "",
              "| size | ViT ms | cached ask ms | cold ask ms | cold/cached | memory MiB cached / cold |", "|---|---|---|---|---|---|"]
    for r in results["chat"]:
        lines.append(f"| {r['size']} ({r['params_m']:.0f}M) | {1e3 * r['vit_s']:.1f} | {1e3 * r['cached_s']:.1f} | "
                     f"{1e3 * r['cold_s']:.1f} | {r['cold_over_cached']:.2f}x | {r['memory_mib']['cached']:.0f} / "
                     f"{r['memory_mib']['cold']:.0f} |")
    lines += ["", "## Fast paths (each against the path it replaces; same run)", "",
              "| size | fast path | before s | after s | speedup | note |", "|---|---|---|---|---|---|"]
    for r in results["fastpaths_all"]:
        note = (f"max score change {r['max_abs_score_change']:.1e} nats, same choice {100 * r['same_choice']:.0f}%"
                if "max_abs_score_change" in r else "")
        lines.append(f"| {r['size']} | {r['name']} | {r['baseline_s']:.3f} | {r['variant_s']:.3f} | "
                     f"{r['speedup']:.2f}x | {note} |")
    c = results["cost_model"]
    a, fl, counts = c["a100"], c["flops"], c["full_size"]["counts"]
    lines += ["", "## Cost model: full RefCOCO val (1,500 images, 10,834 expressions; 20 proposals x 5 draws), real sizes",
              "", "| | ours | official loop | official/ours |", "|---|---|---|---|",
              f"| FLOPs (counted, EVA ViT-g 364 px + Q-Former + FlanT5-XL) | {fl['ours_total_pflops']:.0f} PFLOP "
              f"({fl['ours_per_image_tflops']:.1f} TFLOP/image) | {fl['official_total_pflops']:.0f} PFLOP "
              f"({fl['official_per_pair_tflops']:.2f} TFLOP/pass) | {fl['official_total_pflops'] / fl['ours_total_pflops']:.0f}x |",
              f"| A100 estimate (assumed 312/19.5 TFLOP/s bf16/fp32 at 50%, 2 TB/s at 70%, 8 us/kernel) | "
              f"{a['ours_total_h'] * 60:.1f} min ({1e3 * a['ours_per_image_s']:.0f} ms/image) | {a['official_total_h']:.1f} h "
              f"({1e3 * a['official_per_pair_s']:.1f} ms/pass) | {a['official_over_ours']:.0f}x |",
              f"| A100 estimate, ours with the Q-Former in bf16 (`qformer_bf16`, opt-in) | "
              f"{a['ours_bf16_qformer_total_h'] * 60:.1f} min | | |"]
    if "measured" in c:
        p = c["measured"]
        lines.append(f"| this machine, scaled from the '{p['from_size']}' component rates ({p['precision']}) | "
                     f"{p['ours_total_h'] / 24:.1f} days "
                     f"| {p['official_total_h'] / 24 / 365:.1f} years | {p['official_over_ours']:.0f}x |")
    lines += ["", "Counted FLOPs per call at full size: ViT " + f"{counts['vit']['flops'] / 1e12:.3f} T (formula "
              f"{c['full_size']['vit_formula_tflops']:.3f} T); Q-Former over 100 rows ours {counts['qformer_ours']['flops'] / 1e12:.2f} T"
              f" vs stock {counts['qformer_stock']['flops'] / 1e12:.2f} T; T5 encoder over 100 rows "
              f"{counts['t5_encoder']['flops'] / 1e12:.2f} T; decoder 100 rows x 7 expressions ours "
              f"{counts['decoder_ours']['flops'] / 1e12:.2f} T vs stock {counts['decoder_stock']['flops'] / 1e12:.2f} T; "
              f"one whole-model pass {counts['naive_pair']['flops'] / 1e12:.3f} T."]
    if "measured" in c:
        lines.append("Component rates here (GFLOP/s): " + ", ".join(f"{k} {v:.0f}" for k, v in c["measured"]["gflops_per_s"].items()) + ".")
    t = c["training_full_size"]
    lines.append(f"Training step at full size (counted FLOPs, forward + backward per sample): ours/stock "
                 f"{1 + t['flops_overhead']:.3f}; A100 step estimate at batch {t['batch']} with AdamW: "
                 f"+{100 * t['a100_overhead']:.1f}%.")
    d = results.get("data")
    if d:
        lines += ["", f"## Data: Localized Narratives preparation: {d['lines']} generated lines ({d['raw_mib']:.0f} MiB) in "
                      f"{d['prepare'][0]['s']:.1f} s ({d['prepare'][0]['lines_per_s']:.0f} lines/s); builder start "
                      f"{1e3 * d['builder_start_s']:.0f} ms; random record + K points {d['record_us']:.0f} us"]
    lines += ["", "## Peak memory of each section's process (ru_maxrss), MiB", "",
              " | ".join(f"{k} {v['process_peak_mib']:.0f} ({v['seconds']:.0f} s)" for k, v in results["sections"].items())]
    lines += ["", "## Targets", ""]
    for t in results["targets"]:
        value = f"{t['value']:.2f}x" if "RIS" in t["target"] else f"{100 * t['value']:+.1f}%"
        lines.append(f"- {'PASS' if t['met'] else 'FAIL'} {t['target']}: {value}")
    return "\n".join(lines)


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_const", dest="mode", const="quick", help="tiny sizes only (1-2 min)")
    group.add_argument("--smoke", action="store_const", dest="mode", const="smoke", help="smallest check, in one process")
    parser.set_defaults(mode="full")
    parser.add_argument("--json", help="write every figure here")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--full-size", action="store_true", help="GPU: the released model's dims (random weights)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, build the full-size model on the "
                        "meta device and count its FLOPs; measure nothing")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1 on CPU)")
    parser.add_argument("--load-folder", help="also measure full-size loading memory (benchmarks/load.py), writing "
                        "its checkpoint sets (7.7 GB at FlanT5-large dims, 15.9 GB at XL) into this folder")
    parser.add_argument("--load-sizes", default="large,xl", help="sizes for --load-folder (large, xl)")
    parser.add_argument("--mode", dest="mode", help=argparse.SUPPRESS)
    parser.add_argument("--section", help=argparse.SUPPRESS)
    parser.add_argument("--section-out", help=argparse.SUPPRESS)
    parser.add_argument("--section-inputs", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads is None and args.device == "cpu":
        args.threads = 1
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    p = plan(args.mode, args.full_size)

    if args.section:  # a child process: one section
        inputs = json.loads(Path(args.section_inputs).read_text()) if args.section_inputs else {}
        result = run_section_here(args.section, p, args.device, inputs)
        Path(args.section_out).write_text(json.dumps(result))
        return None

    if args.full_size and args.device == "cpu" and not args.dry_run:
        parser.error("--full-size needs a GPU (--device cuda), or --dry-run")
    if args.device.startswith("cuda") and not args.dry_run and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no GPU (use --dry-run to check the plan)")
    if args.dry_run:
        return dry_run(args, p)

    import common

    started = time.perf_counter()
    results: dict = {"mode": args.mode, "device": args.device, "plan": p, "environment": None, "sections": {}}
    with tempfile.TemporaryDirectory() as workdir:
        for name in ("ris", "train", "chat", "fastpaths", "data", "cost"):
            inputs = {"ris": results.get("ris")} if name == "cost" else {}
            print(f"-- {name}", flush=True)
            if args.mode == "smoke":
                part = run_section_here(name, p, args.device, inputs)
            else:
                part = run_section_child(name, args, inputs, workdir)
            results["sections"].update(part.pop("sections"))
            results.update(part)
    import fastpaths

    results["environment"] = {**common.environment(), "threads": torch.get_num_threads()}
    results["fastpaths_all"] = fastpaths.structural(results["ris"]) + results["fastpaths"]
    results["ratios"] = ratios(results)
    results["targets"] = targets(results)
    results["total_seconds"] = time.perf_counter() - started
    if args.load_folder:
        import load

        print("-- load", flush=True)
        results["load"] = load.main(["--folder", args.load_folder, "--sizes", args.load_sizes])
        results["total_seconds"] = time.perf_counter() - started
    print()
    print(table(results))
    if results.get("load"):
        print()
        print(load.table(results["load"]["rows"], results["load"]["machine"], results["load"]["stock_formula"]))
        print()
        print(load.estimates_table(results["load"]["estimates"]))
    print(f"\ntotal {results['total_seconds']:.0f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return results


def dry_run(args, p: dict) -> dict:
    """The plan, and the full-size model built on the meta device with its FLOP counts."""
    import common

    common.quiet_warnings()
    import lavis  # noqa: F401
    import cost_model

    print(json.dumps({"device": args.device, "full_size": args.full_size, "mode": args.mode, "plan": p}, indent=1,
                     default=str))
    with tempfile.TemporaryDirectory() as workdir:
        model = common.build_model("full", workdir, "meta")
        print(f"full-size model builds: {common.parameter_count(model) / 1e9:.2f} B parameters (meta device)")
        result = cost_model.estimate(None, workdir)
    print(cost_model.report(result))
    if args.json:
        Path(args.json).write_text(json.dumps({"dry_run": True, "plan": p, "cost_model": result}, indent=1, default=str))
    return {"dry_run": True, "plan": p, "cost_model": result}


if __name__ == "__main__":
    main()
