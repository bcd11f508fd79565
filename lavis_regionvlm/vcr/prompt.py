"""T5 prompt layouts for VCR: text pieces interleaved with object slots.

A prompt is a list of pieces: a `str` is text, an `ObjectSlot(i)` is object i's N soft-prompt
vectors (Z_i from `model.encode_regions`). Layouts (the task's `vcr_layout`):

- `official` (default, the released code): "Let [0] be" Z_0 "[1] be" Z_1 ... then the
  question text. Q->A: "Question: q 1. a1 2. a2 3. a3 4. a4 Answer:";
  QA->R: "Question: q Answer: a Why? 1. r1 2. r2 3. r3 4. r4 Answer:".
- `compact`: "[0]" Z_0 "[1]" Z_1 ... then the same question text (no "Let ... be").
- `text_only`: no regions at all, the question text alone (the no-region ablation).

The question texts come from templates (`qa_template`, `qar_template`, `choice_template`);
see `PromptLayout`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

from lavis_regionvlm.vcr.data import VcrExample, render_tokens

LAYOUTS = ("official", "compact", "text_only")


@dataclass(frozen=True)
class ObjectSlot:
    """Where object `object_id`'s soft prompt goes."""

    object_id: int


Piece = Union[str, ObjectSlot]


@dataclass(frozen=True)
class PromptLayout:
    """How a VCR question becomes a T5 input.

    layout: one of LAYOUTS.
    qa_template: Q->A text; fields {question}, {choices}.
    qar_template: QA->R text; fields {question}, {answer}, {choices}.
    choice_template: one numbered choice; fields {n} (1-4), {text}. Choices are joined by " ".
    """

    layout: str = "official"
    qa_template: str = "Question: {question} {choices} Answer:"
    qar_template: str = "Question: {question} Answer: {answer} Why? {choices} Answer:"
    choice_template: str = "{n}. {text}"

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"vcr_layout must be one of {LAYOUTS}, got {self.layout!r}")

    def object_pieces(self, object_ids: Sequence[int]) -> list[Piece]:
        """The region part of the prompt for these objects."""
        if self.layout == "text_only" or not object_ids:
            return []
        pieces: list[Piece] = []
        for position, i in enumerate(object_ids):
            if self.layout == "official":
                pieces.append(("Let " if position == 0 else "") + f"[{i}] be")
            else:
                pieces.append(f"[{i}]")
            pieces.append(ObjectSlot(int(i)))
        return pieces

    def choices_text(self, choices: Sequence[Sequence]) -> str:
        return " ".join(self.choice_template.format(n=n, text=render_tokens(c)) for n, c in enumerate(choices, 1))

    def qa_prompt(self, example: VcrExample) -> list[Piece]:
        """Q->A: the objects, the question and the four answers."""
        text = self.qa_template.format(
            question=render_tokens(example.question), choices=self.choices_text(example.answer_choices)
        )
        return [*self.object_pieces(example.object_ids), text]

    def qar_prompt(self, example: VcrExample, answer: int) -> list[Piece]:
        """QA->R given answer choice `answer` (0-3): the objects, question, answer, rationales."""
        text = self.qar_template.format(
            question=render_tokens(example.question),
            answer=render_tokens(example.answer_choices[answer]),
            choices=self.choices_text(example.rationale_choices),
        )
        return [*self.object_pieces(example.object_ids), text]


def prompt_text(pieces: Sequence[Piece], slot_text: Optional[str] = "<Z{}>") -> str:
    """A readable form of a prompt (logs, results): slots shown as `slot_text.format(i)`."""
    return " ".join(p if isinstance(p, str) else slot_text.format(p.object_id) for p in pieces)
