"""The demo's per-request limits: what bounds each request's memory and time.

Each limit is a server option (`regionvlm demo --help`); a request over one is refused with a
4xx JSON `{"error": ...}` that names the limit and the option. Defaults are safe on a machine
with 24 GB of memory serving `max_sessions` users:

| limit | option | default | bounds |
| --- | --- | --- | --- |
| `max_body_bytes` | `--max-body-mb` | 1 MiB | a JSON body, counted while it streams in |
| `max_text_tokens` | `--max-text-tokens` | 128 | `question` (/ask), each of `texts` (/score), `expression` (/segment), in the model's tokens |
| `max_score_texts` | `--max-score-texts` | 32 | how many `texts` one /score scores |
| `max_mask_pixels` | `--max-mask-mp` | 4 MP | a region's mask (RLE or polygons canvas), height * width |
| `max_regions` | `--max-regions` | 16 | regions kept per session |
| `max_work_side` | `--max-work-side` | 1024 | the long side SAM and the overlay pictures work at (SAM's own input size) |
| `max_sam_clicks` | `--max-sam-clicks` | 32 | clicks in one /sam request |
| `max_top_proposals` | `--max-top-proposals` | 10 | proposals (with their masks) one /segment returns as `top` |
| `max_active_requests` | `--max-active-requests` | 32 | requests handled at once (more: 503, retry) |
| `body_timeout_s` | `--body-timeout` | 30 s | the whole request body must arrive within this |

Server-level limits (connections, header and keep-alive timeouts) are in `server.py`.
"""
from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from lavis_regionvlm.regions import RegionError
from lavis_regionvlm.regions.masks import check_mask_pixels, check_size

__all__ = ["RequestLimits", "LimitError", "TokenCounter", "region_mask_size"]

# A token (T5 sentencepiece, OPT byte-level BPE) covers at most a few dozen characters; longer text is refused
# without tokenising it (a 1 MB string costs the tokenizer time even to be refused).
MAX_CHARS_PER_TOKEN = 32


class LimitError(ValueError):
    """A request over one of the limits. `status`: 413 (too large), 408 (too slow), 503 (busy)."""

    def __init__(self, message: str, status: int = 413):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RequestLimits:
    """Per-request limits (see the module docstring for what each bounds, and its option)."""

    max_body_bytes: int = 1024 * 1024
    max_text_tokens: int = 128
    max_score_texts: int = 32
    max_mask_pixels: int = 4_000_000
    max_regions: int = 16
    max_work_side: int = 1024
    max_sam_clicks: int = 32
    max_top_proposals: int = 10
    max_active_requests: int = 32
    body_timeout_s: float = 30.0

    def __post_init__(self):
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"RequestLimits.{name} must be positive, got {value!r}")

    def check_text(self, count: "TokenCounter", text: str, what: str) -> int:
        """Token count of `text` (no special tokens); raises `LimitError` over `max_text_tokens`."""
        limit = self.max_text_tokens
        if len(text) > limit * MAX_CHARS_PER_TOKEN:
            raise LimitError(f"{what} is {len(text)} characters, far over the limit of {limit} tokens "
                             "(server option --max-text-tokens)")
        tokens = count(text)
        if tokens > limit:
            raise LimitError(f"{what} is {tokens} tokens, over the limit of {limit} (server option --max-text-tokens)")
        return tokens

    def check_score_texts(self, count: "TokenCounter", texts: list[str]) -> None:
        """Raises `LimitError` for more than `max_score_texts` texts or one over `max_text_tokens`."""
        if len(texts) > self.max_score_texts:
            raise LimitError(f"texts: {len(texts)} texts, over the limit of {self.max_score_texts} a request "
                             "(server option --max-score-texts)")
        for i, text in enumerate(texts):
            self.check_text(count, text, f"texts[{i}]")

    def check_top(self, top: int) -> None:
        """Refuse asking /segment for more than `max_top_proposals` proposals."""
        if top > self.max_top_proposals:
            raise LimitError(f"top: {top} proposals, over the limit of {self.max_top_proposals} "
                             "(server option --max-top-proposals)")

    def check_region(self, region: Any) -> None:
        """Refuse a region whose mask (RLE or polygons canvas) is over `max_mask_pixels`,
        before anything is decoded."""
        size = region_mask_size(region)
        if size is not None:
            try:
                check_mask_pixels(*size, self.max_mask_pixels, "server option --max-mask-mp")
            except RegionError as exc:
                raise LimitError(f"region: {exc}") from None

    def check_region_count(self, count: int) -> None:
        """Refuse adding a region to a session that has `count` already."""
        if count >= self.max_regions:
            raise LimitError(f"the session has {count} regions, the limit (server option --max-regions); "
                             "remove one (DELETE .../regions/last) or reset the chat", 409)


class TokenCounter:
    """`counter(text)`: how many tokens the model's tokenizer makes of `text` (no special tokens).

    Uses a private copy of the tokenizer behind its own lock: Hugging Face's fast tokenizers
    are not thread-safe (two threads at once fail with "RuntimeError: Already borrowed", which
    the soak test met), and the model's own tokenizer is busy under the model lock, which a
    refusal should not wait for.
    """

    def __init__(self, tokenizer: Any):
        self._tokenizer = copy.deepcopy(tokenizer)
        self._lock = threading.Lock()

    def __call__(self, text: str) -> int:
        with self._lock:
            return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])


def region_mask_size(region: Any) -> Optional[tuple[int, int]]:
    """(height, width) of the mask a region in request form would decode to: an RLE's `size`,
    a polygons region's `height` and `width` (also inside region JSON text); None for other
    forms, or when the size is malformed (the region parser then says what is wrong)."""
    if isinstance(region, str) and region.strip().startswith("{"):
        try:
            region = json.loads(region)
        except (ValueError, RecursionError):
            return None
    if not isinstance(region, Mapping):
        return None
    if isinstance(region.get("rle"), Mapping):
        size = region["rle"].get("size")
    elif "polygons" in region:
        size = (region.get("height"), region.get("width"))
    else:
        return None
    try:
        return check_size(size)
    except RegionError:
        return None
