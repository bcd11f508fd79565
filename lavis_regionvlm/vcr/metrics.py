"""VCR choice parsing and the three accuracies.

Definitions, over the questions of a labeled split (percent):
- Q->A: the chosen answer is the gold answer.
- QA->R: the chosen rationale, given the GOLD answer, is the gold rationale.
- Q->AR: the chosen answer is the gold answer AND the rationale chosen given the PREDICTED
  answer is the gold rationale (when the answer is right this is the QA->R choice).
An invalid choice (-1: generation produced no number 1-4) counts as wrong.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping

_NUMBER = re.compile(r"\d+")


def parse_choice(text: str, num_choices: int = 4) -> int:
    """0-based choice from generated text: its FIRST number, if it is 1..num_choices; else -1.

    >>> parse_choice("2. because ..."), parse_choice("12"), parse_choice("none")
    (1, -1, -1)
    """
    match = _NUMBER.search(text or "")
    if match is None:
        return -1
    number = int(match.group())
    return number - 1 if 1 <= number <= num_choices else -1


def vcr_accuracies(records: Iterable[Mapping]) -> dict:
    """Q->A, QA->R, Q->AR (percent) and counts from per-question records with keys
    `answer_label`, `rationale_label`, `answer_pred`, `rationale_pred_gold` (given the gold
    answer) and `rationale_pred` (given the predicted answer; -1 when there was none)."""
    records = list(records)
    if not records:
        raise ValueError("no VCR results to score")
    unlabeled = [r for r in records if r.get("answer_label") is None or r.get("rationale_label") is None]
    if unlabeled:
        raise ValueError(f"{len(unlabeled)} of {len(records)} records have no labels")
    q2a = [r["answer_pred"] == r["answer_label"] for r in records]
    qa2r = [r["rationale_pred_gold"] == r["rationale_label"] for r in records]
    q2ar = [a and r["rationale_pred"] == r["rationale_label"] for a, r in zip(q2a, records)]
    count = len(records)
    return {
        "q2a": 100.0 * sum(q2a) / count,
        "qa2r": 100.0 * sum(qa2r) / count,
        "q2ar": 100.0 * sum(q2ar) / count,
        "count": count,
        "invalid_answers": sum(r["answer_pred"] < 0 for r in records),
        "invalid_rationales": sum(r["rationale_pred_gold"] < 0 for r in records),
    }
