"""VCR choice parsing and the three accuracies.

Definitions, over the questions of a labeled split (percent):
- Q->A: the chosen answer is the gold answer.
- QA->R: the chosen rationale, given the GOLD answer, is the gold rationale.
- Q->AR: the chosen answer is the gold answer AND the rationale chosen given the PREDICTED
  answer is the gold rationale (when the answer is right this is the QA->R choice).
An invalid choice (-1: a generated number other than 1-4) counts as wrong.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping, Optional

_NUMBER = re.compile(r"\d+")
NO_NUMBER = ("choice1", "invalid")


def parse_choice(text: Optional[str], num_choices: int = 4, no_number: str = "choice1") -> int:
    """0-based choice from generated text, as the released evaluation reads it: the FIRST run
    of digits, which must be written exactly "1".."num_choices" ("02" and "12" are invalid).

    no_number: what an output without any digit is: `choice1` (as released: choice 1, index
    0) or `invalid` (ours: -1, counted wrong and reported).

    >>> parse_choice("2. because ..."), parse_choice("12"), parse_choice("none"), parse_choice("none", no_number="invalid")
    (1, -1, 0, -1)
    """
    if no_number not in NO_NUMBER:
        raise ValueError(f"vcr_no_number must be one of {NO_NUMBER}, got {no_number!r}")
    match = _NUMBER.search(text or "")
    if match is None:
        return 0 if no_number == "choice1" else -1
    valid = {str(n): n - 1 for n in range(1, num_choices + 1)}
    return valid.get(match.group(), -1)


def has_number(text: Optional[str]) -> bool:
    """Whether generated text holds a digit (one without is parsed by the `no_number` rule)."""
    return _NUMBER.search(text or "") is not None


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
        "answers_without_number": _without_number(records, "answer_output"),
        "rationales_without_number": _without_number(records, "rationale_output_gold"),
    }


def _without_number(records: list, key: str) -> int:
    """How many records hold generated text under `key` with no digit in it."""
    return sum(r.get(key) is not None and not has_number(r[key]) for r in records)
