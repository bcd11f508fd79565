"""Read an evaluation's metrics from what the tasks wrote in its LAVIS job folder.

`lavis_regionvlm.evaluate` calls the runner's `evaluate(skip_reload=True)`, whose epoch label
is "best", so files are named `<split>_epochbest...`:
- ris:    result/<split>_epochbest_metrics.json (mIoU, oIoU, prec@..., count; percent)
- vcr:    result/<split>_epochbest_metrics.json (q2a, qa2r, q2ar, count; percent)
- vqa:    evaluate.txt, LAVIS's VQAEval line (agg_metrics = overall accuracy, percent, and one
          key per answer type); count from result/<split>_vqa_result.json
- gqa:    evaluate.txt, LAVIS's line (acc, percent); count from result/<split>_vqa_result.json
- nocaps: evaluate.txt, `{"<split>": {Bleu_4, CIDEr, SPICE | SPICE_skipped, count}}`;
          pycocoevalcap's fractions are reported x 100, as the paper does.
Returns {split: {metric: number, or a string saying why it is absent}}.
"""
from __future__ import annotations

import json
from pathlib import Path

EPOCH = "best"


class MetricsError(Exception):
    """The evaluation finished without the files or numbers expected (incomplete)."""


def _json(path: Path):
    if not path.is_file():
        raise MetricsError(f"{path} was not written")
    with open(path) as f:
        return json.load(f)


def _evaluate_lines(job_dir: Path) -> list[dict]:
    path = job_dir / "evaluate.txt"
    if not path.is_file():
        raise MetricsError(f"{path} was not written")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_metrics(kind: str, splits: tuple[str, ...], job_dir: Path) -> dict[str, dict]:
    """See the module docstring."""
    found = {}
    for split in splits:
        result = job_dir / "result"
        if kind in ("ris", "vcr"):
            metrics = _json(result / f"{split}_epoch{EPOCH}_metrics.json")
            keep = ("mIoU", "oIoU", "count") if kind == "ris" else ("q2a", "qa2r", "q2ar", "count")
            if any(k not in metrics for k in keep):
                raise MetricsError(f"{result / f'{split}_epoch{EPOCH}_metrics.json'} lacks one of {keep}")
            found[split] = {k: metrics[k] for k in keep}
        elif kind in ("vqa", "gqa"):
            lines = [line for line in _evaluate_lines(job_dir) if "agg_metrics" in line]
            if not lines:
                raise MetricsError(f"{job_dir / 'evaluate.txt'} holds no accuracy")
            count = len(_json(result / f"{split}_vqa_result.json"))
            found[split] = {"accuracy": float(lines[-1]["agg_metrics"]), "count": count}
        elif kind == "nocaps":
            lines = [line[split] for line in _evaluate_lines(job_dir) if split in line]
            if not lines:
                raise MetricsError(f"{job_dir / 'evaluate.txt'} holds no {split} caption metrics")
            scores = lines[-1]
            found[split] = {k: 100.0 * float(scores[k]) for k in ("Bleu_4", "CIDEr")}
            found[split]["SPICE"] = (100.0 * float(scores["SPICE"]) if "SPICE" in scores
                                     else f"skipped: {scores.get('SPICE_skipped', 'not computed')}")
            found[split]["count"] = scores.get("count")
        else:
            raise ValueError(f"unknown evaluation kind {kind!r}")
    return found
