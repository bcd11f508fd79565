"""`Chat`: a multi-turn conversation about regions of one image, over a `RegionPredictor`.

Regions are added with `add_region` and referred to in the user's text by index: "[0]", "[1]"
(brackets around one integer; point text such as "[32 64]" is not a reference). A turn that
refers to regions is a turn "with a region"; the user's text is sent as typed.

Two layouts of the language model's input (`layout=`):

"released" (default): the layout of the authors' multi-turn code
(`predict_answers_interactive_multiturn` in their `blip2_t5.py`). Each question is tokenized on
its own, with its own `</s>`; a turn's region soft prompts (Z, N vectors each) come directly
before its question; answers are never fed back. The input of a turn is
  - no region yet, turn without a region: the question alone (no image prompt at all);
  - no region yet, turn with a region: Z, question (earlier questions are left out);
  - later turn without a region: the kept context, question;
  - later turn with a region: the previous turn's whole input becomes the kept context, then
    Z, question.
The kept context starts as the first region turn's Z and changes only when a turn adds a
region, so a turn without a region forgets the questions asked since. Example (regions 0, 1):

    turn 1 "what is [0]?"          Z0 "what is [0]?</s>"
    turn 2 "what colour is it?"    Z0 "what colour is it?</s>"
    turn 3 "and what is [1]?"      Z0 "what colour is it?</s>" Z1 "and what is [1]?</s>"
    turn 4 "is it big?"            Z0 "what colour is it?</s>" "is it big?</s>"

A turn referring to several regions puts their soft prompts one after another, in order of
first mention (their code takes one region per turn). Their code also crashes on a turn asked
before any region (a debug print of the missing context); here that turn gets its question alone,
as their code builds it.

"history" (our option): turns are laid out oldest first, each as "Question: {user} Answer:
{answer}" (`feed_answers=False` leaves the answers out), the current one ending at "Answer:".
Right before the first kept turn that refers to a region, that region is declared as the text
"Let [i] be" followed by its soft prompt and ".", so a region brought up later appends its soft
prompt later, and earlier input stays a prefix. When no kept turn refers to any region, the
whole-image soft prompt opens the input. Example, two turns:

    "Let [0] be" Z0 "." "Question: what is [0]? Answer: a dog"
    "Let [1] be" Z1 "." "Question: is [1] left of [0]? Answer:" </s>

Generation (both layouts): `CHAT_DEFAULTS`, the settings of their multi-turn code (5 beams, at
most 30 new tokens, min length 1, length and repetition penalties 1).

Length budget: `max_input_tokens` counts the language model's text tokens plus N per soft prompt
plus the `</s>`s (`model.lm.count_tokens`).
When the input would be longer, the oldest turns are left out (for this turn and every later
one; the layout is built as if the chat had started at the first kept turn); the reply says so
(`ChatReply.notice`), and it is logged.

Export / replay: `export()` gives a JSON-ready dict (image sha256, regions, turns, settings,
layout included); `Chat.replay(session, predictor)` re-runs it on the same image and returns the
answers, which match the recorded ones (beam search and seeded point draws are deterministic).
A session without a "layout" setting (format version 1) was recorded with the history layout.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from lavis_regionvlm.models.lm import Piece
from lavis_regionvlm.interactive.predictor import RegionPredictor
from lavis_regionvlm.regions.region_input import RegionInput, read_region, region_json

logger = logging.getLogger(__name__)

REFERENCE = re.compile(r"\[(\d+)\]")
SESSION_FORMAT = "regionvlm-chat"
SESSION_VERSION = 2  # 2: settings record "layout"
CHAT_DEFAULTS: dict[str, Any] = {"num_beams": 5, "max_new_tokens": 30, "min_length": 1, "length_penalty": 1.0,
                                 "repetition_penalty": 1.0}
RELEASED, HISTORY = "released", "history"
LAYOUTS = (RELEASED, HISTORY)
QUESTION_PROMPTS = {RELEASED: "{}", HISTORY: "Question: {} Answer:"}  # each layout's default

__all__ = ["Chat", "ChatError", "ChatReply", "Turn", "find_references", "check_layout", "LAYOUTS", "RELEASED",
           "HISTORY", "CHAT_DEFAULTS"]


class ChatError(ValueError):
    """A bad chat input: unknown region reference, empty text, a session that does not fit."""


def check_layout(layout: str) -> str:
    """`layout` if it is one of `LAYOUTS`, else ValueError saying which are."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown chat layout {layout!r}; choose one of {', '.join(map(repr, LAYOUTS))}")
    return layout


def find_references(text: str) -> list[int]:
    """Region indices referred to in `text` ("[0]", "[12]"), in order of first mention."""
    seen: list[int] = []
    for match in REFERENCE.finditer(text):
        index = int(match.group(1))
        if index not in seen:
            seen.append(index)
    return seen


@dataclass
class Turn:
    """One exchange. `regions`: indices it refers to."""

    user: str
    answer: str
    regions: list[int] = field(default_factory=list)


@dataclass
class ChatReply:
    """The answer to one turn.

    answer: the generated text. input_tokens: length of the language model's input used.
    dropped_turns: how many of the oldest turns were left out of the prompt (0: none).
    notice: a human-readable message when turns were left out for this reply, else None.
    """

    answer: str
    input_tokens: int
    dropped_turns: int = 0
    notice: Optional[str] = None

    @property
    def truncated(self) -> bool:
        return self.dropped_turns > 0

    def to_json(self) -> dict[str, Any]:
        return {"answer": self.answer, "input_tokens": self.input_tokens,
                "dropped_turns": self.dropped_turns, "notice": self.notice}


class Chat:
    """A conversation about one image (the predictor's current image).

    Args:
        predictor: a `RegionPredictor` with (or soon given) an image.
        layout: "released" (their multi-turn layout, answers not fed back) or "history"
            (ours: every turn with its answer); see the module docstring.
        max_input_tokens: budget of the language model's input (text tokens + N per region + the
            special and end tokens).
        feed_answers: history layout only: put previous answers into the prompt (None: True).
            The released layout never does (True is refused).
        question_prompt: how a question is written, "{}" being the user's text; None: the
            layout's own ("{}" released, "Question: {} Answer:" history).
        generate_kwargs: Hugging Face `generate` options over `CHAT_DEFAULTS`.
    """

    def __init__(
        self,
        predictor: RegionPredictor,
        *,
        layout: str = RELEASED,
        max_input_tokens: int = 512,
        feed_answers: Optional[bool] = None,
        question_prompt: Optional[str] = None,
        generate_kwargs: Optional[Mapping[str, Any]] = None,
    ):
        if max_input_tokens < 2:
            raise ValueError(f"max_input_tokens must be >= 2, got {max_input_tokens}")
        self.layout = check_layout(layout)
        if layout == RELEASED and feed_answers:
            raise ValueError("feed_answers=True needs layout='history': the released layout never feeds answers back")
        self.predictor = predictor
        self.max_input_tokens = int(max_input_tokens)
        self.feed_answers = layout == HISTORY and feed_answers is not False
        self.question_prompt = QUESTION_PROMPTS[layout] if question_prompt is None else question_prompt
        self.generate_kwargs = {**CHAT_DEFAULTS, **dict(generate_kwargs or {})}
        self.regions: list[RegionInput] = []  # a Region, or point text kept as given
        self.turns: list[Turn] = []
        self.first_kept_turn = 0  # turns before this index are no longer in the prompt

    # ------------------------------------------------------------------ state

    def add_region(self, region: Any) -> int:
        """Add a region (any form `regions.read_region` reads; point text is kept as given);
        returns its index, to write as "[i]"."""
        self.regions.append(read_region(region, f"region [{len(self.regions)}]"))
        return len(self.regions) - 1

    def reset(self, *, keep_regions: bool = False) -> None:
        """Forget the turns (and the regions unless `keep_regions`)."""
        self.turns, self.first_kept_turn = [], 0
        if not keep_regions:
            self.regions = []

    # ------------------------------------------------------------------ asking

    def ask(self, text: str) -> ChatReply:
        """One user turn -> the model's reply (also appended to the history)."""
        if not isinstance(text, str) or not text.strip():
            raise ChatError("empty message: write a question, referring to regions as [0], [1], ...")
        text = text.strip()
        references = find_references(text)
        unknown = [i for i in references if i >= len(self.regions)]
        if unknown:
            have = f"regions [0]..[{len(self.regions) - 1}]" if self.regions else "no regions"
            raise ChatError(f"the message refers to {', '.join(f'[{i}]' for i in unknown)}, but the chat has {have}; "
                            "add a region first")
        current = Turn(user=text, answer="", regions=references)
        embeds = self._region_embeds()
        start = self.first_kept_turn
        while True:
            pieces = self._pieces(self.turns[start:] + [current], embeds)
            tokens = self.predictor.model.lm.count_tokens(pieces)
            if tokens <= self.max_input_tokens:
                break
            if start == len(self.turns):
                raise ChatError(
                    f"this message alone needs {tokens} input tokens (text + {self._query_count()} per region), "
                    f"more than max_input_tokens={self.max_input_tokens}; shorten it or raise the budget"
                )
            start += 1
        newly_dropped = start - self.first_kept_turn
        notice = None
        if newly_dropped:
            notice = (f"history cut: the {start} oldest turn(s) of {len(self.turns)} no longer fit in "
                      f"max_input_tokens={self.max_input_tokens} and are left out of the prompt")
            logger.warning(notice)
        self.first_kept_turn = start
        current.answer = self.predictor.generate([pieces], **self.generate_kwargs)[0]
        self.turns.append(current)
        return ChatReply(answer=current.answer, input_tokens=tokens, dropped_turns=start, notice=notice)

    def _query_count(self) -> int:
        return int(self.predictor.model.query_tokens.shape[1])

    def _region_embeds(self):
        """Soft prompts (R + 1, N, D): the chat's regions, then the whole image."""
        return self.predictor.region_embeds(list(self.regions) + [None])

    def _pieces(self, turns: list[Turn], embeds) -> list[Piece]:
        """The input pieces for `turns` (the last one being asked) in the chat's layout.
        The closing `</s>` is not among them: the language model's `embed` adds it."""
        if self.layout == RELEASED:
            return self._released_pieces(turns, embeds)
        return self._history_pieces(turns, embeds)

    def _released_pieces(self, turns: list[Turn], embeds) -> list[Piece]:
        """Their multi-turn layout (module docstring): a question piece carries its own `</s>`
        as text (`model.lm.end_text`), which the tokenizer reads as the token, so "q</s>" gives
        the ids of `tokenizer(q)`; the last question's `</s>` is the one `lm.embed` closes with."""
        eos = self.predictor.model.lm.end_text
        context: list[Piece] = []  # what precedes a turn without a region; empty until a region turn
        pieces: list[Piece] = []  # the turn's whole input
        for turn in turns:
            regions = [embeds[index] for index in turn.regions]
            question = self.question_prompt.format(turn.user) + eos
            if not regions:
                pieces = context + [question]
            elif not context:  # the first turn with a region: its Z becomes the context
                context = regions
                pieces = regions + [question]
            else:  # a later region: the previous turn's input becomes the context
                context = pieces
                pieces = context + regions + [question]
        pieces[-1] = pieces[-1][: -len(eos)]
        return pieces

    def _history_pieces(self, turns: list[Turn], embeds) -> list[Piece]:
        """Our layout (module docstring): every kept turn with its answer, regions declared."""
        pieces: list[Piece] = []
        declared: set[int] = set()
        if not any(turn.regions for turn in turns):
            pieces.append(embeds[-1])  # whole image
        for position, turn in enumerate(turns):
            for index in turn.regions:
                if index not in declared:
                    declared.add(index)
                    pieces += [f"Let [{index}] be", embeds[index], "."]
            last = position == len(turns) - 1
            text = self.question_prompt.format(turn.user)
            if not last and self.feed_answers:
                text = f"{text} {turn.answer}"
            pieces.append(text)
        return pieces

    # ------------------------------------------------------------------ sessions

    def export(self) -> dict[str, Any]:
        """The session as a JSON-ready dict: image hash and size, regions, turns, settings."""
        predictor = self.predictor
        return {
            "format": SESSION_FORMAT,
            "version": SESSION_VERSION,
            "image": {"sha256": predictor.image_sha256, "size": list(predictor.image_size)},
            "regions": [region_json(region) for region in self.regions],
            "turns": [{"user": t.user, "answer": t.answer, "regions": t.regions} for t in self.turns],
            "settings": {
                **predictor.settings,
                "layout": self.layout,
                "max_input_tokens": self.max_input_tokens,
                "feed_answers": self.feed_answers,
                "question_prompt": self.question_prompt,
                "generate_kwargs": dict(self.generate_kwargs),
            },
        }

    def save(self, path: Union[str, PathLike]) -> Path:
        """Write `export()` to a JSON file; returns its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.export(), indent=1))
        return path

    @classmethod
    def from_session(
        cls, session: Union[Mapping[str, Any], str, PathLike], predictor: RegionPredictor, *, check_image: bool = True
    ) -> "Chat":
        """Re-run a session exported by `export` on `predictor` (its image must be set).

        The predictor's point settings are replaced by the session's (through
        `with_settings`, sharing the model and the image). Raises `ChatError` when the
        session is malformed or (with `check_image`) the image hash differs.
        """
        if not isinstance(session, Mapping):
            try:
                session = json.loads(Path(session).read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ChatError(f"cannot read chat session {str(session)!r}: {exc}") from None
        if session.get("format") != SESSION_FORMAT:
            raise ChatError(f"not a chat session: 'format' is {session.get('format')!r}, expected {SESSION_FORMAT!r}")
        try:
            settings, regions, turns = session["settings"], session["regions"], session["turns"]
            image_hash = session["image"]["sha256"]
        except (KeyError, TypeError) as exc:
            raise ChatError(f"chat session lacks {exc}") from None
        if check_image and image_hash != predictor.image_sha256:
            raise ChatError(f"the session was recorded on image sha256 {image_hash[:12]}..., "
                            f"the predictor's image is {predictor.image_sha256[:12]}...")
        if settings.get("model_type") and predictor.model_type and settings["model_type"] != predictor.model_type:
            logger.warning("replaying a %s session on a %s model: answers may differ",
                           settings["model_type"], predictor.model_type)
        view = predictor.with_settings(seed=settings.get("seed"), num_points=settings.get("num_points"),
                                       quantize=settings.get("quantize"))
        layout = settings.get("layout", HISTORY)  # version 1 sessions were all recorded with the history layout
        try:
            chat = cls(view, layout=layout, max_input_tokens=settings.get("max_input_tokens", 512),
                       feed_answers=settings.get("feed_answers"), question_prompt=settings.get("question_prompt"),
                       generate_kwargs=settings.get("generate_kwargs"))
        except ValueError as exc:
            raise ChatError(f"chat session settings: {exc}") from None
        for region in regions:
            chat.add_region(region)
        for turn in turns:
            chat.ask(turn["user"])
        return chat

    @classmethod
    def replay(cls, session: Union[Mapping[str, Any], str, PathLike], predictor: RegionPredictor, **kwargs: Any
               ) -> list[str]:
        """Re-run a session (see `from_session`) and return its answers, in turn order."""
        return [turn.answer for turn in cls.from_session(session, predictor, **kwargs).turns]
