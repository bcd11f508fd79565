"""What `train.py` and `evaluate.py` of a LAVIS source checkout do, shipped with the
package (the LAVIS wheel has neither), plus a CPU/gloo path.

`python -m torch.distributed.run --nproc_per_node=N -m lavis_regionvlm.train --cfg-path X`
runs LAVIS's config, task, datasets, model and runner exactly as LAVIS's `train.py`
does. On a machine without CUDA the process group uses gloo instead of nccl. The known
torch deprecation warnings of LAVIS's own calls are hidden, and a missing start-up hook
(which LAVIS's own scripts need, these launchers do not) is reported once.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import random

import numpy as np
import torch

# First: every plugin name and the YAML resolvers, hook or not; it imports LAVIS with the
# known third-party deprecation warnings hidden also when the start-up hook is off.
import lavis_regionvlm.registration  # noqa: F401,I001  (isort: skip)
from lavis.common.config import Config
from lavis.common.dist_utils import get_rank, init_distributed_mode, setup_for_distributed
from lavis.common.logger import setup_logger
from lavis.common.registry import registry
from lavis.common.utils import now

import lavis.common.optims  # noqa: F401  (registers LAVIS's lr schedulers, as its train.py does)
import lavis.tasks as tasks
from lavis_regionvlm_autoload import ignore_lavis_call_warnings, startup_hook_problem


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    """The arguments of LAVIS's `train.py` / `evaluate.py`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cfg-path", required=True, help="path to the configuration YAML")
    parser.add_argument(
        "--options", nargs="+",
        help="override settings in the YAML: key=value pairs, e.g. run.max_epoch=2",
    )
    return parser.parse_args(argv)


def init_distributed(run_cfg) -> None:
    """Start the process group from torch.distributed.run's environment, if any.

    With CUDA this is LAVIS's `init_distributed_mode` (nccl); without, gloo on CPU.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        run_cfg.distributed = False
        return
    if torch.cuda.is_available() and run_cfg.get("device", "cuda") == "cuda":
        init_distributed_mode(run_cfg)
        return
    run_cfg.distributed = True
    run_cfg.rank, run_cfg.world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    run_cfg.gpu = None
    torch.distributed.init_process_group(
        backend="gloo", world_size=run_cfg.world_size, rank=run_cfg.rank,
        timeout=datetime.timedelta(minutes=30),
    )
    torch.distributed.barrier()
    setup_for_distributed(run_cfg.rank == 0)


def close_distributed() -> None:
    """Leave the process group cleanly: every rank waits for the others, then the group is
    destroyed. A gloo group left to interpreter shutdown can abort a rank at exit
    ("terminate called without an active exception") after the work has finished."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def setup_seeds(run_cfg) -> None:
    """Seed python, numpy and torch with `run.seed + rank`, as LAVIS's `train.py` does."""
    seed = int(run_cfg.get("seed", 42)) + get_rank()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare(argv: list[str] | None, description: str):
    """Parse, configure, seed, log; build task, datasets, model and runner."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # loader workers fork after use
    ignore_lavis_call_warnings()
    args = parse_args(argv, description)
    cfg = Config(args)
    if cfg.run_cfg.get("device") == "cpu":
        torch.set_num_threads(int(cfg.run_cfg.get("cpu_threads", torch.get_num_threads())))
    init_distributed(cfg.run_cfg)
    setup_seeds(cfg.run_cfg)
    setup_logger()
    problem = startup_hook_problem()
    if problem and get_rank() == 0:
        logging.warning("%s (This launcher imports the plugin itself and goes on.)", problem)
    cfg.pretty_print()
    task = tasks.setup_task(cfg)
    datasets = task.build_datasets(cfg)
    model = task.build_model(cfg)
    runner_cls = registry.get_runner_class(cfg.run_cfg.get("runner", "runner_base"))
    return runner_cls(cfg=cfg, job_id=now(), task=task, model=model, datasets=datasets)
