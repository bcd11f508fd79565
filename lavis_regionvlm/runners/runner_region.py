"""`runner_region`: LAVIS's `RunnerBase` made to run on CPU (gloo) as on GPU, and to
resume mid-epoch with nothing lost.

What it changes, and why (LAVIS 1.0.2's `RunnerBase` assumes CUDA, and its resume loads
strictly although checkpoints hold the trainable weights only):
- the `model` property returns the (DDP-wrapped) model also when the model is already
  on the run device (the base returns None then), and gives DDP `device_ids` only on GPU;
- loaders skip `PrefetchLoader` (CUDA streams) on CPU, and the train loader is a
  `ResumableLoader`: seeded order per epoch, restartable at any batch;
- `dist.barrier()` only when a process group exists;
- evaluation is called with `cuda_enabled` matching the device;
- checkpoints (trainable weights, optimizer, scaler, epoch, batch position, every rank's
  RNG state and loss sums so far in the epoch) are written atomically every
  `checkpoint_every_iters` and at each epoch end, read with `read_checkpoint`
  (`torch.load(weights_only=True)`, errors naming the file); `resume_ckpt_path: auto`
  resumes from the newest intact one in the output folder (`checkpoint_latest.pth`, else
  `checkpoint_<N>.pth` from the highest N), saying which it skipped and why;
- a relative `output_dir` is taken from the working directory, not LAVIS's install folder.
"""
from __future__ import annotations

import datetime
import logging
import os
import re
import time
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from lavis.common.dist_utils import get_rank, get_world_size, is_main_process
from lavis.common.registry import registry
from lavis.datasets.datasets.dataloader_utils import PrefetchLoader
from lavis.runners.runner_base import RunnerBase
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset

from lavis_regionvlm.datasets import set_epoch
from lavis_regionvlm.models.checkpoints import CheckpointError, read_checkpoint
from lavis_regionvlm.runners.resumable_loader import ResumableDistributedSampler, ResumableLoader, RunningLoss

LATEST = "checkpoint_latest.pth"
RESUME_KEYS = ("model", "optimizer", "epoch")


def resume_candidates(output_dir: Path) -> list[Path]:
    """The checkpoints a run in `output_dir` can resume from, newest first:
    `checkpoint_latest.pth`, then `checkpoint_<N>.pth` by decreasing N (those that exist)."""
    numbered = [(int(m.group(1)), p) for p in output_dir.glob("checkpoint_*.pth")
                if (m := re.fullmatch(r"checkpoint_(\d+)\.pth", p.name))]
    latest = [output_dir / LATEST] if (output_dir / LATEST).is_file() else []
    return latest + [p for _, p in sorted(numbered, reverse=True)]


def read_resume_checkpoint(path: str | Path) -> dict:
    """`read_checkpoint`, plus a check that the file is a training checkpoint to resume from."""
    checkpoint = read_checkpoint(path)
    missing = [key for key in RESUME_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} has no {', '.join(missing)}: it holds weights, not a training state "
            "to resume; to start training from these weights, set the model's `finetuned` or "
            "`pretrained` path instead of resume_ckpt_path"
        )
    return checkpoint


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@registry.register_runner("runner_region")
class RegionRunner(RunnerBase):
    """Epoch-based runner for CPU and GPU. Extra `run` config keys:

    - `checkpoint_every_iters` (int, default 0 = epoch ends only): how often to write
      `checkpoint_latest.pth` inside an epoch;
    - `resume_ckpt_path`: a checkpoint path, or `auto` for the output folder's newest intact one;
    - `job_id`: output sub-folder name (default: a timestamp, as LAVIS does);
    - `find_unused_parameters` (bool, default False): passed to DDP.
    """

    def __init__(self, cfg, task, model, datasets, job_id):
        self._start_iter = 0
        self._start_loss: Optional[RunningLoss] = None
        super().__init__(cfg, task, model, datasets, cfg.run_cfg.get("job_id") or job_id)

    # ------------------------------------------------------------------ setup

    def setup_output_dir(self):
        output_dir = Path(self.config.run_cfg.output_dir).expanduser()
        if not output_dir.is_absolute():
            output_dir = Path.cwd() / output_dir
        self.output_dir = output_dir / self.job_id
        self.result_dir = self.output_dir / "result"
        self.result_dir.mkdir(parents=True, exist_ok=True)
        registry.register_path("result_dir", str(self.result_dir))
        registry.register_path("output_dir", str(self.output_dir))

    @property
    def model(self):
        if self._wrapped_model is None:
            self._model = self._model.to(self.device)
            if self.use_distributed:
                on_gpu = self.device.type == "cuda"
                self._wrapped_model = DDP(
                    self._model,
                    device_ids=[self.config.run_cfg.gpu] if on_gpu else None,
                    find_unused_parameters=self.config.run_cfg.get("find_unused_parameters", False),
                )
            else:
                self._wrapped_model = self._model
        return self._wrapped_model

    def create_loaders(self, datasets, num_workers, batch_sizes, is_trains, collate_fns,
                       dataset_ratios=None):
        loaders = []
        for dataset, batch_size, is_train, collate_fn in zip(datasets, batch_sizes, is_trains, collate_fns):
            if isinstance(dataset, (list, tuple, IterableDataset)):
                raise ValueError(
                    "runner_region needs one map-style dataset per split (it resumes at a "
                    "batch position); mix sources with a map-style mixture dataset, or "
                    "use runner_base for webdataset pipelines"
                )
            loaders.append(self._create_loader(dataset, num_workers, batch_size, is_train, collate_fn))
        return loaders

    def _create_loader(self, dataset, num_workers, batch_size, is_train, collate_fn):
        on_gpu = self.device.type == "cuda"
        if is_train:
            sampler = ResumableDistributedSampler(
                dataset, get_world_size(), get_rank(), batch_size,
                seed=int(self.config.run_cfg.get("seed", 0)),
            )
        elif self.use_distributed and self.use_dist_eval_sampler:
            sampler = DistributedSampler(dataset, shuffle=False, num_replicas=get_world_size(), rank=get_rank())
        else:
            sampler = None
        loader = DataLoader(
            dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=on_gpu,
            sampler=sampler, collate_fn=collate_fn, drop_last=is_train,
            generator=torch.Generator() if is_train else None,
        )
        if is_train:
            resumable = ResumableLoader(loader, sampler)
            resumable.on_step_done = self._checkpoint_inside_epoch
            return resumable
        return PrefetchLoader(loader) if on_gpu else loader

    # ------------------------------------------------------------------ loop

    def train(self):
        start_time = time.time()
        best_agg_metric, best_epoch = 0, 0
        self.log_config()
        if not self.evaluate_only and self.resume_ckpt_path:
            self._resume(self.resume_ckpt_path)
        cur_epoch = self.start_epoch
        for cur_epoch in range(self.start_epoch, self.max_epoch):
            if not self.evaluate_only:
                logging.info("Start training epoch %d", cur_epoch)
                self.log_stats(split_name="train", stats=self.train_epoch(cur_epoch))
                self._save(cur_epoch + 1, 0, also_as=f"checkpoint_{cur_epoch}.pth")
            for split_name in self.valid_splits:
                logging.info("Evaluating on %s.", split_name)
                val_log = self.eval_epoch(split_name=split_name, cur_epoch=cur_epoch)
                if val_log is not None and is_main_process():
                    if val_log["agg_metrics"] > best_agg_metric and split_name == "val":
                        best_epoch, best_agg_metric = cur_epoch, val_log["agg_metrics"]
                        self._save(cur_epoch + 1, 0, also_as="checkpoint_best.pth", only="best")
                    self.log_stats({**val_log, "best_epoch": best_epoch}, split_name)
            if self.evaluate_only:
                break
            barrier()
        test_epoch = "best" if self.valid_splits and not self.evaluate_only else cur_epoch
        self.evaluate(cur_epoch=test_epoch, skip_reload=self.evaluate_only)
        logging.info("Training time %s", datetime.timedelta(seconds=int(time.time() - start_time)))

    def train_epoch(self, epoch):
        loader = self.train_loader
        loader.set_position(epoch, self._start_iter, self._start_loss)
        set_epoch(loader, epoch)  # before the epoch's first batch: per-epoch point draws
        self._start_iter, self._start_loss = 0, None
        self.model.train()
        return self.task.train_epoch(
            epoch=epoch, model=self.model, data_loader=loader, optimizer=self.optimizer,
            scaler=self.scaler, lr_scheduler=self.lr_scheduler, cuda_enabled=self.cuda_enabled,
            log_freq=self.log_freq, accum_grad_iters=self.accum_grad_iters,
        )

    @torch.no_grad()
    def eval_epoch(self, split_name, cur_epoch, skip_reload=False):
        data_loader = self.dataloaders.get(split_name)
        if data_loader is None:
            raise KeyError(f"no dataset provides the split {split_name!r} listed in run config")
        model = self.unwrap_dist_model(self.model)
        if not skip_reload and cur_epoch == "best":
            model = self._reload_best_model(model)
        model.eval()
        self.task.before_evaluation(model=model, dataset=self.datasets[split_name])
        results = self.task.evaluation(model, data_loader, cuda_enabled=self.cuda_enabled)
        if results is None:
            return None
        return self.task.after_evaluation(val_result=results, split_name=split_name, epoch=cur_epoch)

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint_inside_epoch(self, epoch: int, iters_done: int) -> None:
        every = int(self.config.run_cfg.get("checkpoint_every_iters", 0))
        if every and iters_done % every == 0 and iters_done % self.accum_grad_iters == 0:
            self._save(epoch, iters_done)

    def _save(self, epoch: int, iters_done: int, also_as: str | None = None, only: str | None = None):
        """Write a checkpoint positioned at (epoch, iters_done); called on every rank.

        `checkpoint_latest.pth` is the resume point; `also_as` keeps a named copy.
        With `only="best"` just the best-model file is written (validation, rank 0).
        """
        # Each rank's RNG state and its loss sums of this epoch so far (none at an epoch start).
        loss = self.train_loader.running_loss if iters_done and only is None else RunningLoss()
        mine = (torch.get_rng_state(), [loss.total, loss.count])
        gathered = [mine]
        if dist.is_available() and dist.is_initialized() and only is None:
            gathered = [None] * get_world_size()
            dist.all_gather_object(gathered, mine)
        if not is_main_process():
            return
        model = self.unwrap_dist_model(self.model)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        state = {
            "model": {k: v for k, v in model.state_dict().items() if k in trainable},
            "optimizer": self.optimizer.state_dict(),
            "config": self.config.to_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "epoch": epoch,
            "iters_done": iters_done,
            "rng_states": [rng for rng, _ in gathered],
            "loss_sums": [sums for _, sums in gathered],
        }
        names = [also_as] if only == "best" else [LATEST] + ([also_as] if also_as else [])
        for name in names:
            target = self.output_dir / name
            tmp = target.with_suffix(".tmp")
            torch.save(state, tmp)
            os.replace(tmp, target)
        logging.info("Saved %s at epoch %d, iteration %d", ", ".join(names), epoch, iters_done)

    def _resume(self, path: str) -> None:
        """Restore the training state from `path` (or, with "auto", from the newest intact
        checkpoint of the output folder). A checkpoint that cannot be used ends the run with
        one message naming the file and what is wrong."""
        try:
            if path == "auto":
                found = self._newest_intact_checkpoint()
                if found is None:
                    return
                path, checkpoint = found
            elif not os.path.isfile(path):
                raise CheckpointError(f"resume_ckpt_path {path} does not exist")
            else:
                checkpoint = read_resume_checkpoint(path)
        except CheckpointError as exc:
            raise SystemExit(f"cannot resume: {exc}") from None
        self.unwrap_dist_model(self.model).load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scaler and checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.start_epoch = checkpoint["epoch"]
        self._start_iter = checkpoint.get("iters_done", 0)
        states = checkpoint.get("rng_states") or []
        if len(states) == get_world_size():
            torch.set_rng_state(states[get_rank()])
        sums = checkpoint.get("loss_sums") or []
        if self._start_iter and len(sums) == get_world_size():
            self._start_loss = RunningLoss(float(sums[get_rank()][0]), int(sums[get_rank()][1]))
        elif self._start_iter:
            logging.warning("%s holds no loss sums for %d ranks: this epoch's mean loss will cover "
                            "only the batches after iteration %d", path, get_world_size(), self._start_iter)
        logging.info(
            "Resumed from %s at epoch %d, iteration %d", path, self.start_epoch, self._start_iter
        )

    def _newest_intact_checkpoint(self) -> Optional[tuple[Path, dict]]:
        """(path, contents) of the first readable checkpoint in `resume_candidates`; None when
        the folder has none at all. Skipped files are logged with the reason; a folder whose
        checkpoints are all unusable is a `CheckpointError` listing them."""
        candidates = resume_candidates(self.output_dir)
        if not candidates:
            logging.info("resume_ckpt_path is auto and %s holds no checkpoint: starting fresh", self.output_dir)
            return None
        problems = []
        for path in candidates:
            try:
                checkpoint = read_resume_checkpoint(path)
            except CheckpointError as exc:
                problems.append(str(exc))
                logging.warning("not resuming from %s: %s", path.name, exc)
                continue
            if problems:
                logging.warning("resuming from %s instead, the newest intact checkpoint", path.name)
            return path, checkpoint
        raise CheckpointError(
            f"no intact checkpoint in {self.output_dir} to resume from:\n  " + "\n  ".join(problems)
            + "\nmove them away to start fresh, or set resume_ckpt_path to a good copy"
        )

    def _reload_best_model(self, model):
        path = self.output_dir / "checkpoint_best.pth"
        if not path.exists():
            logging.warning("no %s (no validation improved on 0): testing the last weights", path)
            return model
        logging.info("Loading checkpoint from %s.", path)
        model.load_state_dict(read_checkpoint(path)["model"])
        return model
