"""A log-friendly progress line: done/total, items per second, ETA (no carriage returns)."""
from __future__ import annotations

import datetime
import logging
import time
from typing import Callable, Optional

logger = logging.getLogger(__name__)


class Progress:
    """Count items (e.g. images) over `total_steps` steps (e.g. batches) and log the rate.

    A line is logged at most every `interval_s` seconds and once at the end:
    `"<name> [12/300] 48 images, 3.10 images/s, ETA 0:01:33"`. The ETA assumes the
    remaining steps take as long as the finished ones on average.
    """

    def __init__(
        self,
        name: str,
        total_steps: int,
        unit: str = "images",
        interval_s: float = 30.0,
        emit: Optional[Callable[[str], None]] = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.name, self.total_steps, self.unit, self.interval_s = name, total_steps, unit, interval_s
        self.emit = emit or logger.info
        self.clock = clock
        self.start = self.last = clock()
        self.steps = self.items = 0

    def update(self, items: int) -> None:
        """One step done, holding `items` items; log if the interval has passed or this was the last step."""
        self.steps += 1
        self.items += items
        now = self.clock()
        if now - self.last >= self.interval_s or self.steps == self.total_steps:
            self.last = now
            self.emit(self.line(now))

    def line(self, now: float) -> str:
        """The progress text at time `now`."""
        elapsed = max(now - self.start, 1e-9)
        remaining = max(self.total_steps - self.steps, 0) * elapsed / max(self.steps, 1)
        eta = datetime.timedelta(seconds=round(remaining))
        return (
            f"{self.name} [{self.steps}/{self.total_steps}] {self.items} {self.unit}, "
            f"{self.items / elapsed:.2f} {self.unit}/s, ETA {eta}"
        )
