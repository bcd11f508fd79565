"""Run the proposal jobs and the evaluations as child processes, resumably.

Each evaluation runs `python -m lavis_regionvlm.evaluate --cfg-path <out>/<name>/config.yaml`
(under `torch.distributed.run` with nproc > 1), its output in `<out>/<name>/log.txt`. When it
exits 0 and its metrics are read and complete (as many records as the inputs hold), the
metrics and the config that ran are written to `<out>/<name>/done.json` (atomically). On a
rerun, an evaluation whose done.json holds the same config is not run again; any other
folder is an unfinished (killed or failed) or outdated run: it is removed and the evaluation
starts over. The proposal job resumes by itself (it skips images already cached).
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from lavis_regionvlm.reproduce.inputs import Inspection
from lavis_regionvlm.reproduce.metrics import MetricsError, read_metrics
from lavis_regionvlm.reproduce.plan import Evaluation, save_config
from lavis_regionvlm.ris.proposal_cache import write_json_atomic

DONE = "done.json"
COUNTED = {"ris": "expressions", "vcr": "questions", "vqa": "questions", "gqa": "questions", "nocaps": "images"}


@dataclass
class Outcome:
    """How an evaluation ended: status done (now or earlier) or failed, its metrics, a message."""

    name: str
    status: str
    metrics: dict = field(default_factory=dict)
    seconds: Optional[float] = None
    message: str = ""


def child_env() -> dict:
    """The environment of the child processes: ours, without a parent launcher's rank."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def run_logged(commands: list[list[str]], log_path: Path) -> int:
    """Run the commands side by side, all output appended to `log_path`; the first non-zero
    exit code, or 0. Interrupted (Ctrl-C, SIGTERM), the children are stopped first."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        children = [subprocess.Popen(c, stdout=log, stderr=subprocess.STDOUT, env=child_env()) for c in commands]
        try:
            codes = [child.wait() for child in children]
        except BaseException:
            for child in children:
                child.terminate()
            for child in children:
                child.wait()
            raise
    return next((c for c in codes if c != 0), 0)


def evaluate_command(config_path: Path, nproc: int) -> list[str]:
    module = ["-m", "lavis_regionvlm.evaluate", "--cfg-path", str(config_path)]
    if nproc <= 1:
        return [sys.executable, *module]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *module]


def finished(folder: Path, config: dict) -> Optional[dict]:
    """The done.json of a finished run of exactly this config, else None."""
    path = folder / DONE
    if not path.is_file():
        return None
    try:
        with open(path) as f:
            done = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return done if done.get("config") == config else None


def run_evaluation(evaluation: Evaluation, config: dict, inspection: Inspection, out: Path, nproc: int,
                   say: Callable[[str], None]) -> Outcome:
    """Run one evaluation unless it finished earlier (see the module docstring)."""
    folder = out / evaluation.name
    done = finished(folder, config)
    if done is not None:
        say(f"skip {evaluation.name}: finished earlier ({folder / DONE})")
        return Outcome(evaluation.name, "done", done["metrics"], done.get("seconds"), "finished earlier")
    if folder.exists():
        say(f"restart {evaluation.name}: removing the unfinished or outdated run in {folder}")
        shutil.rmtree(folder)
    config_path = folder / "config.yaml"
    save_config(config, config_path)
    log_path = folder / "log.txt"
    say(f"run {evaluation.name} ({', '.join(evaluation.splits)}): log {log_path}")
    start = time.perf_counter()
    code = run_logged([evaluate_command(config_path, nproc)], log_path)
    seconds = round(time.perf_counter() - start, 1)
    if code != 0:
        return Outcome(evaluation.name, "failed", seconds=seconds,
                       message=f"exit code {code}; the end of {log_path} says why")
    try:
        metrics = read_metrics(evaluation.kind, evaluation.splits, folder / "run")
        counted = sum(int(m.get("count") or 0) for m in metrics.values())
        expected = inspection.size.get(COUNTED[evaluation.kind])
        if expected is not None and counted != expected:
            raise MetricsError(f"{counted} records scored, the inputs hold {expected}")
    except MetricsError as exc:
        return Outcome(evaluation.name, "failed", seconds=seconds, message=f"incomplete: {exc}")
    write_json_atomic(folder / DONE, {
        "config": config, "metrics": metrics, "seconds": seconds,
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
    })
    say(f"done {evaluation.name} in {seconds:.0f} s")
    return Outcome(evaluation.name, "done", metrics, seconds)


def make_proposals(name: str, config: dict, out: Path, nproc: int, device: str,
                   say: Callable[[str], None]) -> Outcome:
    """Fill a proposal folder with `python -m lavis_regionvlm.ris.proposals`; on CUDA with
    nproc > 1, one shard per GPU (`shard.index=i shard.count=n sam.device=cuda:i`)."""
    config_path = out / "proposals" / f"{name}.yaml"
    save_config(config, config_path)
    shards = nproc if device.startswith("cuda") and nproc > 1 else 1
    base = [sys.executable, "-m", "lavis_regionvlm.ris.proposals", "--config", str(config_path)]
    commands = [base] if shards == 1 else [
        [*base, f"shard.index={i}", f"shard.count={shards}", f"sam.device=cuda:{i}"] for i in range(shards)]
    log_path = out / "proposals" / f"{name}.log"
    say(f"proposals {name} -> {config['output_dir']}: log {log_path}")
    start = time.perf_counter()
    code = run_logged(commands, log_path)
    seconds = round(time.perf_counter() - start, 1)
    if code != 0:
        return Outcome(f"proposals {name}", "failed", seconds=seconds,
                       message=f"exit code {code}; the end of {log_path} says why")
    return Outcome(f"proposals {name}", "done", seconds=seconds)
