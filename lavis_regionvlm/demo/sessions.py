"""Per-user demo sessions: one image, its regions and a chat, behind an unguessable id.

Every session owns a `RegionPredictor` of its own (sharing the one loaded model), so one
user's image, regions and turns are never visible to another: the only way to reach a
session is its id, 128 random bits made by `secrets`. The store keeps at most
`max_sessions`; when full, the least recently used session is dropped, as is any session
idle for longer than `idle_seconds`.
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from PIL import Image

from lavis_regionvlm.demo.sam_clicks import ClickSegmenter
from lavis_regionvlm.interactive.chat import Chat
from lavis_regionvlm.interactive.predictor import RegionPredictor
from lavis_regionvlm.regions import region_json, text_to_points

__all__ = ["DemoSession", "SessionStore", "UnknownSessionError", "scaled_to"]


def scaled_to(image: Image.Image, max_side: int) -> Image.Image:
    """`image` itself when its long side is at most `max_side` pixels, else a copy scaled down
    to that long side (aspect kept)."""
    width, height = image.size
    if max(width, height) <= max_side:
        return image
    scale = max_side / max(width, height)
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BILINEAR)


class UnknownSessionError(KeyError):
    """No session has this id (never made, deleted, or expired)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class DemoSession:
    """One user's state. `chat.regions` are the regions, `chat.turns` the conversation.

    `lock` guards the session's state: every request that reads or changes the regions,
    turns or caches holds it (and takes the model lock, when it needs the model, inside it),
    so a summary is never built from a list another request is changing. `work` and
    `proposals`: the image scaled for SAM and the overlays, and SAM's proposals on it (made
    on first use). `clicks`: SAM's predictor on the work image for click-to-mask, its image
    embedding computed on the first click and kept (see `sam_clicks`)."""

    id: str
    predictor: RegionPredictor
    chat: Chat
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    work: Optional[Image.Image] = field(default=None, repr=False)
    proposals: Optional[list[dict]] = field(default=None, repr=False)
    clicks: Optional[ClickSegmenter] = field(default=None, repr=False)

    def work_image(self, max_side: int) -> Image.Image:
        """The session's image with its long side at most `max_side` pixels (the image itself
        when it is that small), made once."""
        if self.work is None or max(self.work.size) > max_side:
            self.work = scaled_to(self.predictor.image, max_side)
            self.proposals = None
            self.clicks = None
        return self.work

    def click_segmenter(self, sam: Any, max_side: int) -> ClickSegmenter:
        """SAM's predictor on the work image (`work_image(max_side)`), made (the image
        embedding computed) on first use and kept. The caller holds the model lock."""
        work = self.work_image(max_side)
        if self.clicks is None:
            self.clicks = ClickSegmenter(sam, work)
        return self.clicks

    def region_record(self, index: int) -> dict[str, Any]:
        """What the page draws for region `index`: its JSON form, the point text the model
        reads, and those K points as relative (x, y) in [0, 1] (`sent_points`)."""
        region = self.chat.regions[index]
        text = self.predictor.region_text(region)
        return {
            "index": index,
            "region": region_json(region),
            "point_text": text,
            "sent_points": text_to_points(text).round(4).tolist(),
        }

    def summary(self) -> dict[str, Any]:
        """JSON-ready view of the session (image size and hash, regions, turns, settings)."""
        width, height = self.predictor.image_size
        return {
            "session": self.id,
            "image": {"width": width, "height": height, "sha256": self.predictor.image_sha256},
            "regions": [self.region_record(i) for i in range(len(self.chat.regions))],
            "turns": [{"user": t.user, "answer": t.answer, "regions": t.regions} for t in self.chat.turns],
            "settings": self.predictor.settings,
        }


class SessionStore:
    """Thread-safe map id -> `DemoSession`, bounded in size and idle time.

    Args:
        base: the loaded predictor whose model, image processor and point settings every
            session shares (its own image state is never used).
        chat_factory: `predictor -> Chat`, how each session's chat is made.
        max_sessions: most sessions kept; the least recently used one goes first.
        idle_seconds: a session unused this long is dropped.
        clock: seconds, monotonic (tests pass a fake).
    """

    def __init__(
        self,
        base: RegionPredictor,
        chat_factory: Callable[[RegionPredictor], Chat] = Chat,
        *,
        max_sessions: int = 32,
        idle_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        self.base = base
        self.chat_factory = chat_factory
        self.max_sessions = int(max_sessions)
        self.idle_seconds = float(idle_seconds)
        self.clock = clock
        self._sessions: OrderedDict[str, DemoSession] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, image: Image.Image) -> DemoSession:
        """A new session on `image` (runs the ViT once)."""
        predictor = RegionPredictor(
            self.base.model, self.base.vis_processor, seed=self.base.seed,
            num_points=self.base.num_points, quantize=self.base.quantize, model_type=self.base.model_type,
        )
        predictor.set_image(image)
        session = DemoSession(secrets.token_urlsafe(16), predictor, self.chat_factory(predictor), self.clock())
        with self._lock:
            self._expire()
            while len(self._sessions) >= self.max_sessions:
                self._sessions.popitem(last=False)
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> DemoSession:
        """The session with this id, marked as just used.

        Raises:
            UnknownSessionError: no such session (or it expired).
        """
        with self._lock:
            self._expire()
            session = self._sessions.get(session_id)
            if session is None:
                raise UnknownSessionError(
                    f"no session {session_id!r}: it never existed, was deleted, or expired "
                    f"(sessions last {self.idle_seconds:.0f} s idle, at most {self.max_sessions} kept); "
                    "upload the image again"
                )
            session.last_used = self.clock()
            self._sessions.move_to_end(session_id)
            return session

    def delete(self, session_id: str) -> None:
        """Forget a session (raises `UnknownSessionError` when there is none)."""
        with self._lock:
            if self._sessions.pop(session_id, None) is None:
                raise UnknownSessionError(f"no session {session_id!r} to delete")

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _expire(self) -> None:
        now = self.clock()
        for session_id in [s.id for s in self._sessions.values() if now - s.last_used > self.idle_seconds]:
            del self._sessions[session_id]

