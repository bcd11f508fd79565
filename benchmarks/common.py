"""What the benchmarks share: offline set-up, interleaved timing, peak memory, model building.

Timing: every measured call runs once per round, in turn with the others, and the reported
figure is the median over rounds, so a change in load from other jobs on a shared machine
falls on every call alike. On CUDA the device is synchronised before each clock read.

Peak memory of one call (`PeakMemory`):
- CPU: the process's resident-set high-water mark. Before the call, glibc's `malloc_trim(0)`
  hands freed heap back to the OS and writing "5" to /proc/self/clear_refs resets the mark
  (`VmHWM` in /proc/self/status) to the current RSS; after it, `VmHWM` is the peak reached
  during the call. Reported: that peak (the whole process, model included) and its growth over
  the RSS before the call (what the call itself needs). Without /proc (not Linux) the process's
  `ru_maxrss` is used, which cannot be reset: then only the first call's figure is meaningful.
- CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats` (tensors only, not
  the caching allocator's reserve); growth over `memory_allocated` before the call.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import re
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

MIB = 2**20
BERT_VOCAB = 30523  # bert-base-uncased + BLIP-2's [DEC]: the stage-1 Q-Former's word embedding rows
BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:  # the benchmark modules import each other by name
    sys.path.insert(0, str(BENCH_DIR))


def quiet_warnings() -> None:
    """Silence the deprecation warnings LAVIS's dependencies print at import."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("transformers").setLevel(logging.ERROR)


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- peak memory

_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _PROC_STATUS.read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_cpu_peak() -> bool:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def process_peak_mib() -> float:
    """The process's lifetime peak RSS (ru_maxrss), MiB."""
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MIB


class PeakMemory:
    """Context manager: `peak_mib` and `delta_mib` of the block (see the module docstring)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.peak_mib = self.delta_mib = 0.0
        self.method = ""

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self.method = "cuda max_memory_allocated"
        else:
            resettable = _reset_cpu_peak()
            rss = _status_kib("VmRSS")
            if resettable and rss is not None:
                self._base, self.method = rss * 1024, "VmHWM after clear_refs"
            else:
                self._base, self.method = process_peak_mib() * MIB, "ru_maxrss (not resettable)"
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self.method.startswith("VmHWM"):
            peak = (_status_kib("VmHWM") or 0) * 1024
        else:
            peak = process_peak_mib() * MIB
        self.peak_mib = peak / MIB
        self.delta_mib = max(0.0, (peak - self._base) / MIB)


# ---------------------------------------------------------------- timing


def measure(
    calls: dict[str, Callable[[], Any]],
    rounds: int,
    device: torch.device | str = "cpu",
    warmup: bool = True,
) -> tuple[dict[str, dict], dict[str, Any]]:
    """Interleaved timing and peak memory of each call.

    Every call runs once untimed first (unless `warmup` is False); then each of `rounds`
    rounds runs every call once, in turn. Returns ({name: {"s": median seconds, "times": [...],
    "peak_mib": max over rounds, "delta_mib": max over rounds}}, {name: last result}).
    """
    results = {name: call() for name, call in calls.items()} if warmup else {}
    stats: dict[str, dict] = {name: {"times": [], "peak_mib": 0.0, "delta_mib": 0.0} for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            with PeakMemory(device) as memory:
                start = time.perf_counter()
                results[name] = call()
                sync(device)
                elapsed = time.perf_counter() - start
            entry = stats[name]
            entry["times"].append(elapsed)
            entry["peak_mib"] = max(entry["peak_mib"], memory.peak_mib)
            entry["delta_mib"] = max(entry["delta_mib"], memory.delta_mib)
    for entry in stats.values():
        entry["s"] = statistics.median(entry["times"])
    return stats, results


def median(values: list[float]) -> float:
    return float(statistics.median(values))


# ---------------------------------------------------------------- models


def build_context(device: torch.device | str):
    """Tensors created inside go straight to `device` (random init on the GPU; shapes only on
    "meta"), so a 4 B-parameter model builds in seconds."""
    from lavis_regionvlm.models.lean_load import meta_device

    device = torch.device(device)
    if device.type == "meta":
        return meta_device()
    if device.type == "cpu":
        return contextlib.nullcontext()
    return torch.device(device)


def build_model(size: str, workdir: str | Path, device: torch.device | str = "cpu", arch: str = "blip2_t5_region",
                **overrides):
    """A `Blip2T5Region` (or the registered region model `arch`) in eval mode on `device`.

    size: "tiny" (the shipped model type, its YAML) or a `random_model.SIZES` preset (random
    weights; `blip2_t5_region` only). On CUDA the precisions are LAVIS's (ViT fp16, T5 bf16
    weights); on CPU and meta fp32. overrides: further model arguments (e.g. `global_region_mode`).
    """
    from lavis.common.registry import registry
    from omegaconf import OmegaConf

    from lavis_regionvlm.models import Blip2T5Region
    from lavis_regionvlm.models.point_embeddings import PointRowsEmbedding, point_text_token_ids
    from lavis_regionvlm.models.random_model import build_sized_model

    device = torch.device(device)
    precisions = {"vit_precision": "fp16", "t5_precision": "bf16"} if device.type == "cuda" else {}
    with build_context(device):
        if size == "tiny":
            model_cls = registry.get_model_class(arch)
            cfg = OmegaConf.load(model_cls.default_config_path("tiny")).model
            model = model_cls.from_config(OmegaConf.merge(cfg, overrides))
        elif registry.get_model_class(arch) is not Blip2T5Region:
            raise ValueError(f"size {size!r} is built for blip2_t5_region only; {arch} has 'tiny'")
        else:
            model = build_sized_model(size, Path(workdir) / size, **precisions, **overrides)
            # The random sizes borrow the tiny BERT tokenizer (351 tokens); give the Q-Former the
            # real vocabulary's rows, so the text branch's optimizer and memory costs are real.
            # (Resizing makes a plain nn.Embedding: train its point-text rows only again.)
            embeddings = model.Qformer.bert.embeddings
            point_rows_only = isinstance(embeddings.word_embeddings, PointRowsEmbedding)
            model.Qformer.bert.resize_token_embeddings(BERT_VOCAB)
            if point_rows_only:
                embeddings.word_embeddings = PointRowsEmbedding(
                    embeddings.word_embeddings, point_text_token_ids(model.tokenizer))
    return model.to(device).eval() if device.type != "meta" else model.eval()


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def environment() -> dict:
    """Torch version, threads, CPU, GPU: printed with every run."""
    import platform

    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "cpu": _cpu_name(),
        "cpu_bf16": _cpu_has_bf16(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
