"""Loading memory at full size: peak RSS, wall time and the weights' own bytes, ours vs stock LAVIS.

    python benchmarks/load.py --folder DIR [--sizes large,xl] [--cap-gib G] [--delete]
    python benchmarks/load.py --estimates          # the memory table for XL/XXL only (no files)

1. Writes, once per size, into DIR/<size>/ a LAVIS-layout checkpoint set of the real shapes filled
   with seeded random values (`lavis_regionvlm.models.checkpoint_files`): EVA ViT-g (fp16 file at
   224 px, loaded at 364 px), a BERT-base folder, a FlanT5 folder (float32 shards of at most 10 GB,
   as `save_pretrained` writes them), BLIP-2 stage-1 and stage-2 files and a released-style RegionVLM
   file. `large` has FlanT5-large's dims (7.7 GB of files), `xl` FlanT5-XL's (15.9 GB). A size is
   skipped with a message when the disk lacks room, or memory lacks room to write its largest file.
2. Loads them, each load in a fresh process, with the page cache of the set's files dropped first
   (every load reads from disk alike):
   - `ours lean`: model type `pretrain_flant5xl` as shipped (`lean_load: true`);
   - `ours standard`: the same with `lean_load: false` (today's path, LAVIS's pattern);
   - `ours regionvlm`: model type `regionvlm_flant5xl` on the released-style file (lean);
   - `stock`: LAVIS's own `Blip2T5` (`pretrain_flant5xl`, at 364 px) on the same files, its
     hub name `bert-base-uncased` and the `eva_vit_g.pth` URL answered by a local cache folder.
   Each child runs under a memory cap: the parent reads the child's resident set
   (/proc/PID/status VmRSS) every 20 ms and kills it above the cap, reported as "exceeded the cap".
   (`RLIMIT_AS` would count address space, not memory: a memory-mapped 10 GB file costs 10 GB of
   it while only the pages in use are resident.) A load starts only when the machine's available
   memory is at least the cap + 4 GiB; otherwise it is skipped with the command to repeat it.
3. Prints the table: peak RSS (the child's VmHWM: everything resident, imports and mapped file
   pages included), the RSS after imports, load wall time, the final weights' bytes (every
   parameter and buffer once), peak / weights, and ours / stock.

The memory estimates (`--estimates`, printed after the table too) count every weight of the
XL and XXL model types on the meta device: exact weight bytes at LAVIS's precisions, and the
training state of the trainable part (fp32 gradient + AdamW's two moments); activations are not
included (they need a GPU to measure: `run.py --device cuda --full-size`).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GIB = 2**30
SIZES = ("large", "xl")  # written and measured; "xxl" (49 GB of files) is computed only
LOADS = ("ours lean", "ours standard", "ours regionvlm", "stock")
POLL_S = 0.02
MARGIN_GIB = 4.0  # memory left to the rest of the machine during a load


# ------------------------------------------------------------------ machine


def mem_available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024 / GIB
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def _status_kib(pid: int | str, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def drop_page_cache(folder: Path) -> None:
    """Ask the kernel to drop the cached pages of every file under `folder` (clean pages only)."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


# ------------------------------------------------------------------ files


def t5_config_path(size: str) -> Path:
    from lavis_regionvlm.models.checkpoint_files import FLAN_T5_CONFIGS

    return FLAN_T5_CONFIGS / size / "config.json"


def ensure_set(folder: Path, size: str) -> tuple[dict | None, str]:
    """Write DIR/<size> once. Returns (paths, message); paths None when skipped."""
    from lavis_regionvlm.models.checkpoint_files import plan_checkpoint_set, planned_bytes, write_checkpoint_set

    target = folder / size
    marker = target / "set.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        return info["paths"], f"{size}: using the set in {target} ({info['gb']:.1f} GB)"
    with tempfile.TemporaryDirectory() as scratch:
        sizes = planned_bytes(plan_checkpoint_set(scratch, t5_config=t5_config_path(size)))
    total, largest = sum(sizes.values()), max(sizes.values())
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < total + GIB:
        return None, (f"{size}: skipped: its files need {total / 1e9:.1f} GB and {folder} has "
                      f"{free / 1e9:.1f} GB free (name a folder with room: --folder)")
    if mem_available_gib() < largest / GIB + MARGIN_GIB:
        return None, (f"{size}: skipped: writing its largest file ({largest / 1e9:.1f} GB) needs that much "
                      f"memory + {MARGIN_GIB:.0f} GiB, {mem_available_gib():.1f} GiB available")
    print(f"{size}: writing {total / 1e9:.1f} GB of random LAVIS-layout files into {target} ...", flush=True)
    started = time.perf_counter()
    paths = write_checkpoint_set(target, t5_config=t5_config_path(size))
    marker.write_text(json.dumps({"paths": paths, "gb": total / 1e9, "bytes": sizes}))
    return paths, f"{size}: wrote {total / 1e9:.1f} GB in {time.perf_counter() - started:.0f} s"


def stock_caches(paths: dict, target: Path) -> dict[str, str]:
    """Environment that answers stock LAVIS's fixed names from the set: `bert-base-uncased`
    from a Hugging Face cache folder, the `eva_vit_g.pth` URL from a torch hub folder."""
    snapshot = target / "hf_cache" / "models--bert-base-uncased" / "snapshots" / "local"
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot.parents[1] / "refs").mkdir(exist_ok=True)
    (snapshot.parents[1] / "refs" / "main").write_text("local")
    for path in Path(paths["bert"]).iterdir():
        link = snapshot / path.name
        if not link.exists():
            link.symlink_to(path)
    hub = target / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    if not (hub / "eva_vit_g.pth").exists():
        (hub / "eva_vit_g.pth").symlink_to(paths["vit_weights"])
    return {"TRANSFORMERS_CACHE": str(target / "hf_cache"), "HF_HOME": str(target / "hf_home"),
            "TORCH_HOME": str(target / "torch_home")}


# ------------------------------------------------------------------ one load (child)


def weight_bytes(model) -> dict[str, int]:
    """Bytes of every parameter and buffer (each storage once), per component and in total."""
    seen: set[int] = set()
    out: dict[str, int] = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen:
            continue
        seen.add(storage.data_ptr())
        part = name.split(".")[0]
        out[part] = out.get(part, 0) + storage.nbytes()
    out["total"] = sum(out.values())
    return out


def child(spec: dict) -> dict:
    """Import, then build and load one model; report memory and time."""
    import torch

    torch.set_num_threads(spec["threads"])
    import common

    common.quiet_warnings()
    from omegaconf import OmegaConf

    import lavis  # noqa: F401  (registers the plugin)

    paths = spec["paths"]
    if spec["load"] == "stock":
        from lavis.models.blip2_models.blip2_t5 import Blip2T5

        cfg = OmegaConf.load(Path(lavis.__file__).parent / "configs/models/blip2/blip2_pretrain_flant5xl.yaml").model
        cfg = OmegaConf.merge(cfg, {"image_size": 364, "t5_model": paths["t5_model"], "pretrained": paths["stage2"]})
        build = lambda: Blip2T5.from_config(cfg)  # noqa: E731
    else:
        from lavis_regionvlm.models import Blip2T5Region

        model_type = "regionvlm_flant5xl" if spec["load"] == "ours regionvlm" else "pretrain_flant5xl"
        cfg = OmegaConf.load(Blip2T5Region.default_config_path(model_type)).model
        files = {"vit_weights": paths["vit_weights"], "qformer_bert": paths["bert"], "t5_model": paths["t5_model"]}
        if model_type == "pretrain_flant5xl":
            files.update(pretrained=paths["stage2"], text_branch_pretrained=paths["stage1"])
        else:
            files.update(finetuned=paths["regionvlm"])
        if spec["load"] == "ours standard":
            files["lean_load"] = False
        cfg = OmegaConf.merge(cfg, files)
        build = lambda: Blip2T5Region.from_config(cfg)  # noqa: E731
    baseline_kib = _status_kib("self", "VmRSS")
    started = time.perf_counter()
    model = build()
    seconds = time.perf_counter() - started
    return {"peak_gib": _status_kib("self", "VmHWM") * 1024 / GIB, "baseline_gib": baseline_kib * 1024 / GIB,
            "seconds": seconds, "weights": weight_bytes(model), "lean": bool(getattr(model, "lean_load", False))}


# ------------------------------------------------------------------ one load (parent)


def run_load(load: str, size: str, paths: dict, target: Path, cap_gib: float, threads: int) -> dict:
    """Run one load in a child under the memory cap."""
    available = mem_available_gib()
    row = {"load": load, "size": size, "cap_gib": cap_gib}
    if available < cap_gib + MARGIN_GIB:
        row.update(status="skipped", reason=f"{available:.1f} GiB available < cap {cap_gib:.1f} + {MARGIN_GIB:.0f} GiB")
        return row
    drop_page_cache(target)
    spec = {"load": load, "paths": paths, "threads": threads}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore",
           "TOKENIZERS_PARALLELISM": "false"}
    if load == "stock":
        env.update(stock_caches(paths, target))
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec), "--child-out", out.name]
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        watched_kib, exceeded = 0, False
        while process.poll() is None:
            rss = _status_kib(process.pid, "VmRSS") or 0
            watched_kib = max(watched_kib, rss)
            if rss * 1024 > cap_gib * GIB:
                exceeded = True
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(POLL_S)
        log = process.communicate()[0]
        row["process_s"] = time.perf_counter() - started  # imports included
        row["watched_peak_gib"] = watched_kib * 1024 / GIB
        if exceeded:
            row.update(status="exceeded the cap", peak_gib=watched_kib * 1024 / GIB)
        elif process.returncode != 0:
            row.update(status=f"failed (exit {process.returncode})", log=log[-2000:])
        else:
            row.update(status="ok", **json.loads(Path(out.name).read_text()))
    return row


# ------------------------------------------------------------------ estimates


def estimates(measured: list[dict] | None = None) -> dict:
    """Weights and training state of the XL/XXL model types, counted on the meta device, with
    the measured XL load peaks scaled to XXL (marked computed)."""
    import torch

    from lavis_regionvlm.models import Blip2T5Region
    from lavis_regionvlm.models.checkpoint_files import EVA_VIT_G, plan_checkpoint_set
    from lavis_regionvlm.models.lean_load import meta_device

    out: dict = {}
    for size in ("xl", "xxl"):
        with tempfile.TemporaryDirectory() as scratch:
            plan_checkpoint_set(scratch, t5_config=t5_config_path(size))
            row = {}
            for t5_precision in ("bf16", "fp32"):
                with meta_device():
                    model = Blip2T5Region(
                        vit_model="eva_vit", img_size=364, vit_config=EVA_VIT_G, vit_precision="fp16",
                        qformer_bert=f"{scratch}/bert", qformer_init="random", t5_model=f"{scratch}/t5",
                        t5_init="random", t5_precision=t5_precision, init_seed=None,
                    )
                weights = {part: sum(t.numel() * t.element_size() for n, t in
                                     [*model.named_parameters(), *model.named_buffers()] if n.split(".")[0] == part)
                           for part in ("visual_encoder", "Qformer", "t5_model")}
                weights["total"] = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
                trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
                params = sum(p.numel() for p in model.parameters())
                row[t5_precision] = {
                    "weights_gib": {k: v / GIB for k, v in weights.items()},
                    "trainable_m": trainable / 1e6, "params_b": params / 1e9,
                    # fp32 gradient + AdamW exp_avg + exp_avg_sq per trainable weight
                    "train_state_gib": trainable * 12 / GIB,
                    "cpu_float32_gib": params * 4 / GIB,  # LAVIS's load_model(device="cpu") casts to float32
                }
            out[size] = row
    for size in ("xl", "large"):  # the load peak / weights ratio of the largest measured lean load
        lean = [r for r in measured or [] if r["size"] == size and r["load"] == "ours lean" and r["status"] == "ok"]
        if lean:
            out["lean_ratio"] = lean[0]["peak_gib"] / (lean[0]["weights"]["total"] / GIB)
            out["lean_ratio_from"] = size
            if size == "xl":
                out["xl"]["load_peak_gib_measured"] = lean[0]["peak_gib"]
            break
    return out


def estimates_table(est: dict) -> str:
    lines = ["## Memory of the full-size model types (weights counted on the meta device; activations excluded)",
             "", "| model type | T5 precision | weights GiB (ViT / Q-Former / T5) | GPU to run: weights | GPU to "
                 "train: + grads and AdamW of the trainable part | CPU to load (peak RSS) | CPU to run in float32 |",
             "|---|---|---|---|---|---|---|"]
    for size in ("xl", "xxl"):
        for precision in ("bf16", "fp32"):
            r = est[size][precision]
            w = r["weights_gib"]
            if size == "xl" and "load_peak_gib_measured" in est["xl"] and precision == "bf16":
                load = f"{est['xl']['load_peak_gib_measured']:.1f} (measured, lean)"
            elif "lean_ratio" in est:
                load = f"{w['total'] * est['lean_ratio']:.1f} (computed: {est['lean_ratio_from']}'s lean peak / weights)"
            else:
                load = "(no lean load measured)"
            lines.append(
                f"| `pretrain_flant5{size}` / `regionvlm_flant5{size}` | {precision} | {w['total']:.1f} "
                f"({w['visual_encoder']:.1f} / {w['Qformer']:.2f} / {w['t5_model']:.1f}) | {w['total']:.1f} | "
                f"{w['total'] + r['train_state_gib']:.1f} ({r['trainable_m']:.0f} M trainable) | {load} | "
                f"{r['cpu_float32_gib']:.1f} |")
    lines.append("Figures marked computed come from the counted weights and a measured ratio, not a measurement.")
    return "\n".join(lines)


def stock_peak_formula(rows: list[dict]) -> dict[str, dict]:
    """Stock LAVIS's peak by its loading pattern, per measured size: the RSS after imports +
    the ViT (fp16 after its cast) + the stock Q-Former + T5 built in float32 + T5's largest
    weight file read whole (`from_pretrained`'s shard-at-a-time load; the ViT's own float32
    transient comes earlier and is smaller). Shown beside the measurement where stock fits
    under the cap, and in its place where it does not (marked computed)."""
    from lavis_regionvlm.models.checkpoint_files import plan_checkpoint_set, planned_bytes

    out = {}
    for size in sorted({r["size"] for r in rows}):
        ours = next((r for r in rows if r["size"] == size and r["status"] == "ok" and r["load"] != "stock"), None)
        if ours is None:
            continue
        with tempfile.TemporaryDirectory() as scratch:
            files = planned_bytes(plan_checkpoint_set(scratch, t5_config=t5_config_path(size)))
        t5_files = {k: v for k, v in files.items() if k.startswith("t5/")}
        w = ours["weights"]
        stock_qformer = files["stage2.pth"] - w["t5_proj"] - w["query_tokens"] - w["ln_vision"]
        peak = (ours["baseline_gib"] * GIB + w["visual_encoder"] + stock_qformer + sum(t5_files.values())
                + max(t5_files.values()))
        measured = next((r for r in rows if r["size"] == size and r["load"] == "stock"), None)
        out[size] = {"computed_gib": peak / GIB,
                     "measured_gib": measured["peak_gib"] if measured and measured["status"] == "ok" else None}
    return out


# ------------------------------------------------------------------ table


def table(rows: list[dict], machine: str, formula: dict | None = None) -> str:
    lines = [f"## Loading full-size model types ({machine}); each load in a fresh process, page cache dropped", "",
             "| size | load | status | peak RSS GiB | after imports GiB | load s (process s) | final weights GiB | peak / weights | "
             "peak / stock peak |", "|---|---|---|---|---|---|---|---|---|"]
    for size in sorted({r["size"] for r in rows}, key=SIZES.index):
        stock = next((r for r in rows if r["size"] == size and r["load"] == "stock"), None)
        for r in (r for r in rows if r["size"] == size):
            if r["status"] != "ok":
                after = f" after {r['process_s']:.0f} s with imports" if "process_s" in r else ""
                extra = (f"> {r['cap_gib']:.1f} (killed at {r['peak_gib']:.1f}{after})" if r["status"] == "exceeded the cap"
                         else r.get("reason", ""))
                lines.append(f"| {size} | {r['load']} | {r['status']} | {extra} | | | | | |")
                continue
            weights = r["weights"]["total"] / GIB
            if stock and stock["status"] == "ok":
                vs = f"{r['peak_gib'] / stock['peak_gib']:.2f}"
            elif stock and stock["status"] == "exceeded the cap":
                vs = f"< {r['peak_gib'] / stock['cap_gib']:.2f} (stock exceeded {stock['cap_gib']:.1f} GiB)"
                if formula and size in formula:
                    vs += f"; {r['peak_gib'] / formula[size]['computed_gib']:.2f} of its computed peak"
            else:
                vs = ""
            process = f" ({r['process_s']:.0f})" if "process_s" in r else ""
            lines.append(f"| {size} | {r['load']} | ok | {r['peak_gib']:.2f} | {r['baseline_gib']:.2f} | "
                         f"{r['seconds']:.0f}{process} | {weights:.2f} | "
                         f"{r['peak_gib'] / weights:.2f} | {vs} |")
    for size, f in (formula or {}).items():
        seen = f"measured {f['measured_gib']:.2f}" if f["measured_gib"] is not None else "not measurable under the cap"
        lines.append(f"\nStock's peak at {size} by its loading pattern (after-imports RSS + ViT fp16 + Q-Former + "
                     f"T5 in float32 + T5's largest file read whole): {f['computed_gib']:.2f} GiB computed; {seen}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", help="where the checkpoint sets are written (GBs; outside the repository)")
    parser.add_argument("--sizes", default="large,xl", help=f"comma-separated, of {SIZES}")
    parser.add_argument("--loads", default=",".join(LOADS), help=f"comma-separated, of {LOADS}")
    parser.add_argument("--cap-gib", type=float, default=None,
                        help="memory cap of each load (default: min(20, available - 5 GiB), whole GiB)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads in each load")
    parser.add_argument("--delete", action="store_true", help="delete each size's files after its loads")
    parser.add_argument("--estimates", action="store_true", help="print the XL/XXL memory table only")
    parser.add_argument("--json", help="write every figure here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import common

    common.quiet_warnings()
    if args.child:
        Path(args.child_out).write_text(json.dumps(child(json.loads(args.child))))
        return None
    if args.estimates:
        est = estimates()
        print(estimates_table(est))
        return est
    if not args.folder:
        parser.error("--folder is required: the checkpoint sets take 7.7 GB (large) and 15.9 GB (xl)")
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    loads = [s.strip() for s in args.loads.split(",") if s.strip()]
    for value, allowed, name in ((sizes, SIZES, "--sizes"), (loads, LOADS, "--loads")):
        bad = [v for v in value if v not in allowed]
        if bad:
            parser.error(f"{name}: unknown {bad}; choose from {allowed}")
    # default: 1 GiB below what the per-load check asks, so that small swings in other jobs' use pass
    cap = args.cap_gib if args.cap_gib is not None else float(min(20, int(mem_available_gib() - MARGIN_GIB - 1)))
    folder = Path(args.folder).resolve()
    env = common.environment()
    machine = f"{env['cpus']} CPUs ({env['cpu']}), {_mem_total_gib():.0f} GiB RAM, cap {cap:.1f} GiB"
    rows: list[dict] = []
    for size in sizes:
        paths, message = ensure_set(folder, size)
        print(message, flush=True)
        if paths is None:
            continue
        for load in loads:
            row = run_load(load, size, paths, folder / size, cap, args.threads)
            if row["status"] == "skipped":
                row["repeat"] = (f"python benchmarks/load.py --folder {folder} --sizes {size} --loads '{load}' "
                                 f"--cap-gib {cap:.0f}   # on a machine with {cap + MARGIN_GIB:.0f} GiB available")
            print(json.dumps({k: v for k, v in row.items() if k != "log"}), flush=True)
            if "log" in row:
                print(row["log"], flush=True)
            rows.append(row)
        if args.delete:
            shutil.rmtree(folder / size)
            print(f"{size}: deleted {folder / size}", flush=True)
    est = estimates(rows)
    formula = stock_peak_formula(rows)
    print()
    print(table(rows, machine, formula))
    for row in rows:
        if row.get("repeat"):
            print(f"- {row['size']} {row['load']} skipped ({row['reason']}): repeat with `{row['repeat']}`")
    print()
    print(estimates_table(est))
    result = {"machine": machine, "rows": rows, "estimates": est, "stock_formula": formula}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return result


def _mem_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024 / GIB
    return float("nan")


if __name__ == "__main__":
    main()
