"""Merging per-rank RIS results: each expression exactly once.

A `DistributedSampler` pads the image list with repeats so every rank gets the same number
of images, so an expression may come back from two ranks (with identical results: the point
draws are seeded per image). Merging keeps the first copy and checks that every expected
expression is there.
"""
from __future__ import annotations

import logging
from typing import Iterable, Optional, Sequence

logger = logging.getLogger(__name__)


def merge_rank_results(
    rank_results: Iterable[Sequence[dict]], expected_ids: Optional[Sequence[str]] = None
) -> list[dict]:
    """One record per `id`, in `expected_ids` order when given (else first-seen order).

    Raises:
        RuntimeError: an expected id is missing, or an id is not expected.
    """
    merged: dict[str, dict] = {}
    repeats = 0
    for results in rank_results:
        for record in results:
            if record["id"] in merged:
                repeats += 1
            else:
                merged[record["id"]] = record
    if repeats:
        logger.info("dropped %d repeated expression results (sampler padding)", repeats)
    if expected_ids is None:
        return list(merged.values())
    expected = list(expected_ids)
    missing = [i for i in expected if i not in merged]
    unknown = sorted(set(merged) - set(expected))
    if missing or unknown:
        raise RuntimeError(
            f"RIS results do not match the dataset: {len(missing)} expressions missing "
            f"(e.g. {missing[:5]}), {len(unknown)} unknown (e.g. {unknown[:5]})"
        )
    return [merged[i] for i in expected]
