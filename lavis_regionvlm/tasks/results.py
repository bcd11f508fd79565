"""What the evaluation tasks share at the end of an evaluation: merging the ranks' results
and appending metrics to the run's `evaluate.txt` (the file LAVIS's own tasks write)."""
from __future__ import annotations

import json
import os
from typing import Any, Optional

from lavis.common.dist_utils import is_main_process
from lavis.common.registry import registry


def merged_results(task: Any, val_result: list[dict], split_name: str, epoch: Any,
                   key: str) -> tuple[str, Optional[list[dict]]]:
    """Save every rank's records through LAVIS's `save_result` (one record per `key`) ->
    (the merged result file, its records on the main process; None on the other ranks)."""
    result_file = task.save_result(
        val_result, result_dir=registry.get_path("result_dir"),
        filename=f"{split_name}_epoch{epoch}", remove_duplicate=key,
    )
    if not is_main_process():
        return result_file, None
    with open(result_file) as f:
        return result_file, json.load(f)


def append_metrics(split_name: str, metrics: dict, epoch: Any = None) -> None:
    """Append `{split_name: metrics, "epoch": epoch}` as one JSON line to
    `<output_dir>/evaluate.txt` (no-op when the runner set no output_dir)."""
    output_dir = registry.get_path("output_dir")
    if not output_dir:
        return
    record = {split_name: metrics} if epoch is None else {split_name: metrics, "epoch": epoch}
    with open(os.path.join(output_dir, "evaluate.txt"), "a") as f:
        f.write(json.dumps(record) + "\n")
