"""`benchmarks/run.py` works end to end: its smallest mode writes every section, positive
figures and the ratio fields; the GPU mode's dry run builds the full-size model on the meta
device. This checks the commands, not timings: nothing here asserts a speed."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    completed = subprocess.run([sys.executable, str(RUN), *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                               timeout=timeout)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_smoke_run_writes_every_section(tmp_path):
    out = tmp_path / "bench.json"
    completed = run("--smoke", "--json", str(out))
    data = json.loads(out.read_text())
    for section in ("ris", "ris_sweep", "train", "chat", "fastpaths", "fastpaths_all", "data", "cost_model", "ratios",
                    "targets", "sections", "environment"):
        assert data.get(section), section
    assert "## RIS scoring" in completed.stdout and "## Targets" in completed.stdout

    ris = data["ris"][0]
    for key in ("ours_s", "floor_s", "naive_s", "naive_pair_s", "naive_over_ours", "ours_over_floor"):
        assert positive(ris[key]), key
    assert all(positive(v) for v in ris["ours_parts"].values()) and all(positive(v) for v in ris["floor_parts"].values())
    assert all(positive(v) for v in ris["expr_per_s"].values())
    assert set(ris["memory_mib"]) == {"ours", "floor", "naive", "process_peak"} and positive(ris["memory_mib"]["process_peak"])
    assert ris["max_abs_diff_naive"] < 1e-3  # fp32 tiny: ours and the official loop agree
    assert all(positive(r["ours_s"]) and positive(r["floor_s"]) for r in data["ris_sweep"])
    (opt,) = data["ris_lm"]  # the OPT model's fast path beside its naive loop
    assert opt["model"] == "blip2_opt_region" and positive(opt["naive_over_ours"]) and positive(opt["ours_s"])
    assert opt["max_abs_diff_naive"] < 1e-3
    assert "### Per language model" in completed.stdout and "| blip2_opt_region | tiny" in completed.stdout

    train = data["train"][0]
    for key in ("ours_s", "stock_s"):
        assert positive(train[key]), key
    assert train["parity_abs_diff"] == 0.0  # region path off = stock Blip2T5, bit for bit
    assert train["stock_missing_keys"] == 0
    chat = data["chat"][0]
    assert all(positive(chat[k]) for k in ("vit_s", "cached_s", "cold_s", "cold_over_cached"))
    assert all(positive(r["baseline_s"]) and positive(r["variant_s"]) for r in data["fastpaths_all"])
    assert positive(data["data"]["record_us"])

    cost = data["cost_model"]
    for key in ("ours_total_h", "official_total_h", "official_over_ours"):
        assert positive(cost["a100"][key]), key
    assert positive(cost["measured"]["official_over_ours"])
    assert abs(cost["full_size"]["counts"]["vit"]["flops"] / 1e12 - cost["full_size"]["vit_formula_tflops"]) < 0.01

    ratios = data["ratios"]
    assert set(ratios) == {"ris", "ris_lm", "train_overhead", "chat_cold_over_cached", "cost_model"}
    assert positive(ratios["ris"]["tiny"]["naive_over_ours"]) and positive(ratios["ris"]["tiny"]["ours_over_floor"])
    assert math.isfinite(ratios["train_overhead"]["tiny"])
    assert positive(ratios["chat_cold_over_cached"]["tiny"])
    assert positive(ratios["cost_model"]["a100_official_over_ours"])
    assert all({"target", "value", "met"} <= set(t) for t in data["targets"])


def test_gpu_mode_dry_runs_on_cpu(tmp_path):
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu.sh")]).returncode == 0
    out = tmp_path / "dry.json"
    completed = run("--device", "cuda", "--full-size", "--dry-run", "--json", str(out))
    data = json.loads(out.read_text())
    assert data["dry_run"] and [r["size"] for r in data["plan"]["ris"]] == ["tiny", "full"]
    assert "4.0" in completed.stdout.split("full-size model builds:")[1][:8]  # billion parameters
    assert positive(data["cost_model"]["a100"]["official_over_ours"])
