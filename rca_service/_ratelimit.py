"""Log lines that repeat under load (a full disk refuses every request) at most once per interval."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any


class RateLimitedLog:
    """The first line of each kind is logged; repeats within ``interval_s`` are counted and the count
    is told with the next line of that kind, so a full disk costs one line per interval, not one per
    refused request."""

    def __init__(
        self, logger: logging.Logger, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, kind: str, message: str, *args: Any, exc_info: bool = False) -> bool:
        """Log unless a line of ``kind`` was logged less than ``interval_s`` ago; True if logged."""
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._interval_s:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return False
            self._last[kind] = now
            suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += " (%d more like this in the last %.0f s)"
            args = (*args, suppressed, self._interval_s)
        self._logger.log(level, message, *args, exc_info=exc_info)
        return True
