"""A rough time estimate per evaluation, from seconds per item on one process.

Only the RIS rate on a GPU comes from the cost model (benchmarks/cost_model.py, README
"Performance": 8.0 min for RefCOCO val's 1,500 images on one A100, FlanT5-XL, 20 proposals x 5
draws, i.e. 0.32 s an image; it is not imported here, it builds models on the meta device).
The others are rough guesses for the full-size model, and the `tiny` CPU rates were measured
on the synthetic data on a 2-core machine. The plan labels them so.
"""
from __future__ import annotations

# (kind, "tiny" | "full", "cuda" | "cpu") -> seconds per unit; unit = what the kind counts
UNIT = {"ris": "images", "vcr": "questions", "vqa": "questions", "gqa": "questions", "nocaps": "images",
        "proposals": "images"}
SECONDS_PER_UNIT = {
    ("ris", "full", "cuda"): 0.32,      # cost model
    ("ris", "full", "cpu"): 155.0,      # cost model: 2.7 days for 1,500 images on 2 cores
    ("vcr", "full", "cuda"): 0.6,       # rough: two 5-beam generations a question
    ("vqa", "full", "cuda"): 0.03,      # rough: batch 64, 5 beams, 10 tokens
    ("gqa", "full", "cuda"): 0.03,
    ("nocaps", "full", "cuda"): 0.08,   # rough: batch 64, 5 beams, 30 tokens
    ("proposals", "full", "cuda"): 1.0,  # rough: SAM ViT-H, 32x32 point grid
    ("proposals", "full", "cpu"): 60.0,
    ("ris", "tiny", "cpu"): 0.05, ("vcr", "tiny", "cpu"): 0.1, ("vqa", "tiny", "cpu"): 0.02,
    ("gqa", "tiny", "cpu"): 0.02, ("nocaps", "tiny", "cpu"): 0.05, ("proposals", "tiny", "cpu"): 0.5,
}
CPU_OVER_GPU = 300.0     # full size, a kind without a CPU rate: the GPU rate times this (rough)
STARTUP_S = {"tiny": 10.0, "full": 120.0}  # one process: LAVIS import, model load


def model_size(model_type: str) -> str:
    return "tiny" if model_type == "tiny" else "full"


def seconds(kind: str, units: int, model_type: str, device: str, nproc: int = 1) -> float:
    """Estimated wall time of `units` items of `kind` on `nproc` processes, startup included."""
    size, device = model_size(model_type), ("cuda" if device.startswith("cuda") else "cpu")
    rate = SECONDS_PER_UNIT.get((kind, size, device))
    if rate is None:
        rate = SECONDS_PER_UNIT.get((kind, size, "cuda"), SECONDS_PER_UNIT.get((kind, "full", "cuda"), 1.0))
        rate *= CPU_OVER_GPU if device == "cpu" and size == "full" else 1.0
    return STARTUP_S[size] + rate * units / max(nproc, 1)


def is_cost_model(kind: str, model_type: str, device: str) -> bool:
    """Whether the estimate comes from the cost model (else it is a rough guess or a tiny-size rate)."""
    return kind == "ris" and model_size(model_type) == "full"


def format_duration(total_s: float) -> str:
    """`42 s`, `13 min`, `5.2 h`, `2.7 days`."""
    if total_s < 90:
        return f"{total_s:.0f} s"
    if total_s < 90 * 60:
        return f"{total_s / 60:.0f} min"
    if total_s < 48 * 3600:
        return f"{total_s / 3600:.1f} h"
    return f"{total_s / 86400:.1f} days"
