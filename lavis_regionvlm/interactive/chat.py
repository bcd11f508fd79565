"""`Chat`: a multi-turn conversation about regions of one image, over a `RegionPredictor`.

Regions are added with `add_region` and referred to in the user's text by index: "[0]", "[1]"
(brackets around one integer; point text such as "[32 64]" is not a reference).

T5 input layout (DESIGN.md section 2, the official dialogue layout, plus previous answers):
turns are laid out oldest first, each as "Question: {user} Answer: {answer}", the current one
ending at "Answer:". Right before the first kept turn that refers to a region, that region is
declared as the text "Let [i] be" followed by its N soft-prompt vectors and ".", so a region
brought up later appends its soft prompt later, and earlier input stays a prefix. When no kept
turn refers to any region, the whole-image soft prompt opens the input. Example, two turns:

    "Let [0] be" Z0 "." "Question: what is [0]? Answer: a dog"
    "Let [1] be" Z1 "." "Question: is [1] left of [0]? Answer:" </s>

Length budget: `max_input_tokens` counts T5 text tokens plus N per soft prompt plus `</s>`.
When the input would be longer, the oldest turns are left out of the prompt (for this turn and
every later one); the reply says so (`ChatReply.notice`), and it is logged.

Export / replay: `export()` gives a JSON-ready dict (image sha256, regions, turns, settings);
`Chat.replay(session, predictor)` re-runs it on the same image and returns the answers, which
match the recorded ones (beam search and seeded point draws are deterministic).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from lavis_regionvlm.models.pieces import Piece, count_tokens
from lavis_regionvlm.interactive.predictor import RegionPredictor
from lavis_regionvlm.interactive.regions_input import as_region
from lavis_regionvlm.regions import Region

logger = logging.getLogger(__name__)

REFERENCE = re.compile(r"\[(\d+)\]")
SESSION_FORMAT = "regionvlm-chat"
SESSION_VERSION = 1
CHAT_DEFAULTS: dict[str, Any] = {"num_beams": 5, "max_new_tokens": 30, "min_length": 1}

__all__ = ["Chat", "ChatError", "ChatReply", "Turn", "find_references"]


class ChatError(ValueError):
    """A bad chat input: unknown region reference, empty text, a session that does not fit."""


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

    answer: the generated text. input_tokens: length of the T5 input used.
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
        max_input_tokens: budget of the T5 encoder input (text tokens + N per region + 1).
        feed_answers: put previous answers into the prompt (the released code does not).
        question_prompt: how a turn is written; "{}" is the user's text.
        generate_kwargs: T5 `generate` options (default `CHAT_DEFAULTS`).
    """

    def __init__(
        self,
        predictor: RegionPredictor,
        *,
        max_input_tokens: int = 512,
        feed_answers: bool = True,
        question_prompt: str = "Question: {} Answer:",
        generate_kwargs: Optional[Mapping[str, Any]] = None,
    ):
        if max_input_tokens < 2:
            raise ValueError(f"max_input_tokens must be >= 2, got {max_input_tokens}")
        self.predictor = predictor
        self.max_input_tokens = int(max_input_tokens)
        self.feed_answers = bool(feed_answers)
        self.question_prompt = question_prompt
        self.generate_kwargs = {**CHAT_DEFAULTS, **dict(generate_kwargs or {})}
        self.regions: list[Region] = []
        self.turns: list[Turn] = []
        self.first_kept_turn = 0  # turns before this index are no longer in the prompt

    # ------------------------------------------------------------------ state

    def add_region(self, region: Any) -> int:
        """Add a region (any form `as_region` reads); returns its index, to write as "[i]"."""
        self.regions.append(as_region(region, f"region [{len(self.regions)}]"))
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
            tokens = count_tokens(self.predictor.model, pieces)
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
        """The T5 input pieces for `turns` (the last one being asked). See the module docstring."""
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
            "regions": [region.to_json() for region in self.regions],
            "turns": [{"user": t.user, "answer": t.answer, "regions": t.regions} for t in self.turns],
            "settings": {
                **predictor.settings,
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
        chat = cls(view, max_input_tokens=settings.get("max_input_tokens", 512),
                   feed_answers=settings.get("feed_answers", True),
                   question_prompt=settings.get("question_prompt", "Question: {} Answer:"),
                   generate_kwargs=settings.get("generate_kwargs"))
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
