"""`region_captioning`: train with the LM loss on region (and global) captions; evaluate
by captioning held-out regions.

Its training loop replaces `BaseTask._train_inner_loop` to add what RegionVLM training
needs and LAVIS 1.0.2's loop lacks: gradient clipping (`max_grad_norm`), log lines with
loss, lr, samples/s and ETA, statistics that also reduce over gloo (the base syncs through
a CUDA tensor), and continuing from the iteration a resumed loader starts at.

Evaluation generates a caption for every region sample and reports exact match (the
caption equals the target after lower-casing and trimming punctuation) and, from
pycocoevalcap, BLEU-4 and CIDEr. Works with LAVIS's stock `runner_base` and with
`runner_region`.
"""
from __future__ import annotations

import logging
import re
import time

import torch
import torch.distributed as dist
from lavis.common.dist_utils import get_world_size
from lavis.common.registry import registry
from lavis.datasets.data_utils import prepare_sample
from lavis.tasks.base_task import BaseTask

from lavis_regionvlm.runners.resumable_loader import RunningLoss
from lavis_regionvlm.tasks.results import append_metrics, merged_results


def normalize_caption(text: str) -> str:
    """Lower-case, drop punctuation, collapse spaces: "A red circle." -> "a red circle"."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


@registry.register_task("region_captioning")
class RegionCaptioningTask(BaseTask):
    """Run config keys: `num_beams` (default 5), `max_len` (new tokens, default 30), `min_len`
    (1): the released `LN_ft.yaml`'s generation settings; `max_grad_norm` (null = no clipping)."""

    def __init__(self, num_beams: int = 5, max_len: int = 30, min_len: int = 1,
                 max_grad_norm: float | None = None):
        super().__init__()
        self.num_beams, self.max_len, self.min_len = num_beams, max_len, min_len
        self.max_grad_norm = max_grad_norm

    @classmethod
    def setup_task(cls, cfg):
        run_cfg = cfg.run_cfg
        return cls(
            num_beams=run_cfg.get("num_beams", 5),
            max_len=run_cfg.get("max_len", 30),
            min_len=run_cfg.get("min_len", 1),
            max_grad_norm=run_cfg.get("max_grad_norm", None),
        )

    # ------------------------------------------------------------------ training

    def _train_inner_loop(self, epoch, iters_per_epoch, model, data_loader, optimizer,
                          lr_scheduler, scaler=None, start_iters=None, log_freq=50,
                          cuda_enabled=False, accum_grad_iters=1):
        first = getattr(data_loader, "start_iter", 0)
        batches = iter(data_loader)
        # A resumed loader carries the loss sums of the batches before `first`.
        running = getattr(data_loader, "running_loss", None) or RunningLoss()
        epoch_start = time.time()
        for i in range(first, first + iters_per_epoch):
            samples = prepare_sample(next(batches), cuda_enabled=cuda_enabled)
            lr_scheduler.step(cur_epoch=epoch, cur_step=i)
            with torch.autocast("cuda", enabled=scaler is not None):
                loss = self.train_step(model=model, samples=samples) / accum_grad_iters
            if scaler is not None:
                scaler.scale(loss).backward()
            else:
                loss.backward()
            if (i + 1) % accum_grad_iters == 0:
                self._optimizer_step(model, optimizer, scaler)
            running.add(loss.item() * accum_grad_iters)
            if (i + 1 - first) % log_freq == 0 or i + 1 == first + iters_per_epoch:
                done = i + 1 - first
                elapsed = time.time() - epoch_start
                rate = done * len(samples["text_output"]) * get_world_size() / elapsed
                eta = elapsed / done * (iters_per_epoch - done)
                logging.info(
                    "Train epoch %d [%d/%d] loss %.4f lr %.2e %.1f samples/s eta %s",
                    epoch, i + 1, first + iters_per_epoch, loss.item() * accum_grad_iters,
                    optimizer.param_groups[0]["lr"], rate, time.strftime("%H:%M:%S", time.gmtime(eta)),
                )
        mean_loss = _mean_over_ranks(running.total, running.count)
        logging.info("Epoch %d mean loss %.4f", epoch, mean_loss)
        return {"loss": f"{mean_loss:.4f}", "lr": f"{optimizer.param_groups[0]['lr']:.6f}"}

    def _optimizer_step(self, model, optimizer, scaler) -> None:
        if scaler is not None:
            scaler.unscale_(optimizer)
        if self.max_grad_norm:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad()

    # ------------------------------------------------------------------ evaluation

    def valid_step(self, model, samples):
        captions = model.generate(
            {"image": samples["image"], "region_text": samples["region_text"]},
            num_beams=self.num_beams, max_length=self.max_len, min_length=self.min_len,
        )
        return [
            {"instance_id": str(i), "caption": c, "target": t, "region_text": r}
            for i, c, t, r in zip(
                samples["instance_id"], captions, samples["text_output"], samples["region_text"]
            )
        ]

    def after_evaluation(self, val_result, split_name, epoch, **kwargs):
        _, records = merged_results(self, val_result, split_name, epoch, "instance_id")
        if records is None:
            return {"agg_metrics": 0.0}
        metrics = caption_metrics(records)
        append_metrics(split_name, metrics, epoch)
        logging.info("%s metrics: %s", split_name, metrics)
        return {**metrics, "agg_metrics": metrics["exact_match"]}


def caption_metrics(records: list[dict]) -> dict:
    """Exact match (%), BLEU-4 and CIDEr of `caption` against `target` over records."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    if not records:
        raise ValueError("no evaluation results to score")
    exact = sum(normalize_caption(r["caption"]) == normalize_caption(r["target"]) for r in records)
    refs = {i: [normalize_caption(r["target"])] for i, r in enumerate(records)}
    hyps = {i: [normalize_caption(r["caption"]) or "empty"] for i, r in enumerate(records)}
    bleu, _ = Bleu(4).compute_score(refs, hyps, verbose=0)
    cider, _ = Cider().compute_score(refs, hyps)
    return {
        "exact_match": 100.0 * exact / len(records),
        "bleu4": 100.0 * bleu[3],
        "cider": 100.0 * cider,
        "count": len(records),
    }


def _mean_over_ranks(total: float, count: int) -> float:
    """Sum / count over all ranks, reduced on the process group's own device (gloo: CPU)."""
    if dist.is_available() and dist.is_initialized():
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.tensor([total, count], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        total, count = tensor.tolist()
    return total / max(count, 1)
