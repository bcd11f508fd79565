"""Language-model prompts for VCR: text pieces interleaved with object slots.

A prompt is a list of pieces: a `str` is text (each piece is tokenized on its own, one `</s>`
ends the prompt), an `ObjectSlot(i)` is object i's N soft-prompt vectors (Z_i from
`model.encode_regions`). The defaults are the released evaluation (`eval_VCR.py` and
`predict_answers_describe_first` in the authors' `blip2_t5.py`), with one deliberate fix: an
id written with two digits, `[12]`, is object 12.

Released layout (the defaults), for the Q->A prompt of a question about [2]:

    "Let"  "[2] be"  Z_2  "Question: Does [2] feel comfortable ? 1. Yes ... 4. Yes , she is cold . Answer: "

- text (`text`, run key `vcr_prompt`): `released`: tokens joined by single spaces, an id list
  printed as a list ("[1, 10]"); Q->A is "Question: " + q + " 1. a1 2. a2 3. a3 4. a4" +
  " Answer: "; QA->R is "Question: " + q + " Answer: " + a + " Why? " + " 1. r1 ... 4. r4",
  with no "Answer:" after the rationales (the spaces exactly as the released string building
  leaves them). `natural` (ours): detokenised text, id lists as "[1] and [10]",
  "Question: q 1. a1 ... 4. a4 Answer:" and "Question: q Answer: a Why? 1. r1 ... 4. r4 Answer:".
- objects (`objects`, run key `vcr_objects`): `prompt` (released): the objects the prompt's
  own text refers to, in the order the released code visits them (that of a Python `set` of
  the ids); `all` (ours): every object the question, answers and rationales refer to, sorted,
  the same for every prompt of a question.
- object parser (`object_parser`, run key `vcr_object_parser`): how ids are read from the
  text. `ids` (default, the fix): the numbers between brackets, "[1, 10]" -> 1, 10.
  `digits_bug` (the released parser, for exact reproduction): every digit between brackets
  is an object, "[12]" -> 1, 2 and "[1, 10]" -> 1, 1, 0.
- region part (`layout`, run key `vcr_layout`): `official` (released): "Let", then per object
  "[i] be" and Z_i; a prompt without objects still starts with "Let". `compact`: "[i]" Z_i per
  object, nothing else. `text_only`: no regions (the no-region ablation).

The question texts come from templates (`qa_template`, `qar_template`, `choice_template`;
None = the text style's own); see `PromptLayout`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence, Union

from lavis_regionvlm.vcr.data import VcrExample, join_tokens, render_tokens

LAYOUTS = ("official", "compact", "text_only")
TEXT_STYLES = ("released", "natural")
OBJECT_SCOPES = ("prompt", "all")
OBJECT_PARSERS = ("ids", "digits_bug")

# Per text style: (qa_template, qar_template, choice_template). Choices are concatenated
# with nothing between them, so " {n}. {text}" gives " 1. a1 2. a2 ...".
TEMPLATES = {
    "released": ("Question: {question}{choices} Answer: ",
                 "Question: {question} Answer: {answer} Why? {choices}",
                 " {n}. {text}"),
    "natural": ("Question: {question}{choices} Answer:",
                "Question: {question} Answer: {answer} Why?{choices} Answer:",
                " {n}. {text}"),
}

_BRACKETS = re.compile(r"\[([^\[\]]*)\]")
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class ObjectSlot:
    """Where object `object_id`'s soft prompt goes."""

    object_id: int


Piece = Union[str, ObjectSlot]


def parse_object_ids(text: str, parser: str = "ids") -> list[int]:
    """Object ids written between brackets in `text`, in order, repeats kept.

    >>> parse_object_ids("Is [12] near [1, 10] ?"), parse_object_ids("Is [12] near [1, 10] ?", "digits_bug")
    ([12, 1, 10], [1, 2, 1, 1, 0])

    parser: `ids` reads each number whole; `digits_bug` reads every digit as an object, as
    the released parser did (it pairs the k-th "[" with the k-th "]").
    """
    if parser == "ids":
        return [int(n) for span in _BRACKETS.findall(text) for n in _NUMBER.findall(span)]
    if parser == "digits_bug":
        opens = [m.start() for m in re.finditer(r"\[", text)]
        closes = [m.start() + 1 for m in re.finditer(r"\]", text)]
        return [int(c) for start, end in zip(opens, closes) for c in text[start:end] if c in "0123456789"]
    raise ValueError(f"vcr_object_parser must be one of {OBJECT_PARSERS}, got {parser!r}")


def released_object_order(ids: Sequence[int]) -> list[int]:
    """Distinct ids in the order the released code gives their "[i] be" Z_i blocks: the
    iteration order of a Python `set` of them (ascending for most prompts, not all:
    [9, 1] stays [9, 1])."""
    return list(set(int(i) for i in ids))


@dataclass(frozen=True)
class PromptLayout:
    """How a VCR question becomes a language-model input (see the module docstring for each option).

    layout: one of LAYOUTS (the region part).
    text: one of TEXT_STYLES (how tokens and the question text are written).
    objects: one of OBJECT_SCOPES (which objects get a soft prompt).
    object_parser: one of OBJECT_PARSERS (how ids are read from the text).
    qa_template: Q->A text; fields {question}, {choices}. None: the text style's.
    qar_template: QA->R text; fields {question}, {answer}, {choices}. None: the text style's.
    choice_template: one numbered choice; fields {n} (1-4), {text}; the four are concatenated.
        None: the text style's.
    """

    layout: str = "official"
    text: str = "released"
    objects: str = "prompt"
    object_parser: str = "ids"
    qa_template: Optional[str] = None
    qar_template: Optional[str] = None
    choice_template: Optional[str] = None

    def __post_init__(self) -> None:
        for key, value, allowed in (("vcr_layout", self.layout, LAYOUTS), ("vcr_prompt", self.text, TEXT_STYLES),
                                    ("vcr_objects", self.objects, OBJECT_SCOPES),
                                    ("vcr_object_parser", self.object_parser, OBJECT_PARSERS)):
            if value not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {value!r}")
        for key, template in zip(("qa_template", "qar_template", "choice_template"), TEMPLATES[self.text]):
            if getattr(self, key) is None:
                object.__setattr__(self, key, template)

    # ------------------------------------------------------------------ text

    def render(self, tokens: Sequence) -> str:
        """A token list as text in this layout's style."""
        return join_tokens(tokens) if self.text == "released" else render_tokens(tokens)

    def choices_text(self, choices: Sequence[Sequence]) -> str:
        return "".join(self.choice_template.format(n=n, text=self.render(c)) for n, c in enumerate(choices, 1))

    def qa_text(self, example: VcrExample) -> str:
        """Q->A text: the question and the four answers."""
        return self.qa_template.format(question=self.render(example.question).strip(),
                                       choices=self.choices_text(example.answer_choices))

    def qar_text(self, example: VcrExample, answer: int) -> str:
        """QA->R text given answer choice `answer` (0-3): question, answer, four rationales."""
        return self.qar_template.format(
            question=self.render(example.question).strip(),
            answer=self.render(example.answer_choices[answer]),
            choices=self.choices_text(example.rationale_choices),
        )

    # ------------------------------------------------------------------ objects

    def prompt_objects(self, text: str, example: VcrExample) -> list[int]:
        """The objects that get a soft prompt in a prompt with this `text`, in slot order."""
        if self.objects == "prompt":
            return released_object_order(parse_object_ids(text, self.object_parser))
        return self.candidate_objects(example)

    def candidate_objects(self, example: VcrExample) -> list[int]:
        """Sorted: every object any prompt of this question can name (the soft prompts to
        compute once per question)."""
        texts = [example.question, *example.answer_choices, *example.rationale_choices]
        return sorted(set(parse_object_ids(" ".join(self.render(t) for t in texts), self.object_parser)))

    def object_pieces(self, object_ids: Sequence[int]) -> list[Piece]:
        """The region part of the prompt for these objects (in this order)."""
        if self.layout == "text_only":
            return []
        pieces: list[Piece] = ["Let"] if self.layout == "official" else []
        for i in object_ids:
            pieces.append(f"[{i}] be" if self.layout == "official" else f"[{i}]")
            pieces.append(ObjectSlot(int(i)))
        return pieces

    # ------------------------------------------------------------------ prompts

    def prompt(self, text: str, example: VcrExample) -> list[Piece]:
        """The region part for the objects of `text`, then `text`."""
        return [*self.object_pieces(self.prompt_objects(text, example)), text]

    def qa_prompt(self, example: VcrExample) -> list[Piece]:
        """Q->A: the objects, the question and the four answers."""
        return self.prompt(self.qa_text(example), example)

    def qar_prompt(self, example: VcrExample, answer: int) -> list[Piece]:
        """QA->R given answer choice `answer` (0-3): the objects, question, answer, rationales."""
        return self.prompt(self.qar_text(example, answer), example)


def slot_ids(pieces: Sequence[Piece]) -> list[int]:
    """The object ids of a prompt's slots, in order."""
    return [p.object_id for p in pieces if isinstance(p, ObjectSlot)]


def prompt_text(pieces: Sequence[Piece], slot_text: Optional[str] = "<Z{}>") -> str:
    """A readable form of a prompt (logs, results): slots shown as `slot_text.format(i)`."""
    return " ".join(p if isinstance(p, str) else slot_text.format(p.object_id) for p in pieces)
