"""RIS metrics: per-expression IoU, mIoU, oIoU and precision@threshold.

- mIoU: mean over expressions of intersection / union (an expression whose prediction and
  ground truth are both empty counts 0, as in the official script).
- oIoU: summed intersections / summed unions over all expressions.
- prec@t: share of expressions with IoU >= t.
Reported in percent.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

PRECISION_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def intersection_union(pred: np.ndarray | None, target: np.ndarray) -> tuple[int, int]:
    """Pixel counts (intersection, union) of two (H, W) bool masks; pred None = empty."""
    target = np.asarray(target, dtype=bool)
    if pred is None:
        return 0, int(target.sum())
    pred = np.asarray(pred, dtype=bool)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {target.shape} differ in size")
    return int(np.logical_and(pred, target).sum()), int(np.logical_or(pred, target).sum())


def iou(intersection: int, union: int) -> float:
    """intersection / union, 0 for an empty union."""
    return intersection / union if union else 0.0


def summarize(
    records: Iterable[Mapping], thresholds: Iterable[float] = PRECISION_THRESHOLDS
) -> dict[str, float]:
    """Metrics over per-expression records holding `intersection` and `union` (pixels).

    Returns {"mIoU", "oIoU", "prec@0.5", ..., "count"}; percentages, count as a float.
    """
    pairs = np.array([(r["intersection"], r["union"]) for r in records], dtype=np.float64).reshape(-1, 2)
    if len(pairs) == 0:
        raise ValueError("no records to summarize")
    ious = np.divide(pairs[:, 0], pairs[:, 1], out=np.zeros(len(pairs)), where=pairs[:, 1] > 0)
    total_union = pairs[:, 1].sum()
    metrics = {
        "mIoU": 100.0 * float(ious.mean()),
        "oIoU": 100.0 * float(pairs[:, 0].sum() / total_union) if total_union else 0.0,
    }
    for threshold in thresholds:
        metrics[f"prec@{threshold:g}"] = 100.0 * float((ious >= threshold).mean())
    metrics["count"] = float(len(pairs))
    return metrics
