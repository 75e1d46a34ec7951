"""The service's memory bound: refuse new data before the kernel's OOM killer ends the process.

The limit is ``--max-memory`` or, by default, 80% of the smaller of the machine's memory and the
cgroup's limit (a container's ``memory.max``). The measure is the process's resident set, read from
``/proc/self/statm`` at most every ``sample_interval_s``: it counts everything (store, attribute
strings, baselines, gRPC buffers), which no estimate of ours would.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

DEFAULT_FRACTION = 0.8
CGROUP_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def default_memory_limit_bytes() -> int:
    """80% of min(machine, cgroup limit); a cgroup 'max' or a huge v1 value means no cgroup limit."""
    candidates = [n for n in (physical_memory_bytes(), *(_read_int(p) for p in CGROUP_FILES)) if n and n < 1 << 60]
    return int(DEFAULT_FRACTION * min(candidates)) if candidates else 0


def resident_bytes() -> int:
    """This process's resident set size (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class MemoryGuard:
    """Answers "may this request come in?" against the limit; 0 turns the guard off."""

    def __init__(self, limit_bytes: int, sample_interval_s: float = 0.05) -> None:
        self.limit_bytes = limit_bytes
        self._sample_interval_s = sample_interval_s
        self._lock = threading.Lock()
        self._sampled_at = -1e9
        self._rss = 0
        self.refusals = 0

    def rss_bytes(self) -> int:
        now = time.monotonic()
        with self._lock:
            if now - self._sampled_at >= self._sample_interval_s:
                self._rss = resident_bytes()
                self._sampled_at = now
            return self._rss

    def admits(self, request_bytes: int) -> bool:
        """Whether a request of this size fits: decoding takes a few times its size, so 4× is kept free."""
        if not self.limit_bytes:
            return True
        if self.rss_bytes() + 4 * request_bytes <= self.limit_bytes:
            return True
        self.refusals += 1
        return False

    @property
    def over(self) -> bool:
        return bool(self.limit_bytes) and self.rss_bytes() > self.limit_bytes
