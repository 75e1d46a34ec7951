"""Cumulative counters from raw readings of hardware/kernel counters that may reset."""

from __future__ import annotations


class MonotonicCounter:
    """A cumulative counter fed raw readings of a counter that may reset (driver reload, remount)."""

    __slots__ = ("_last", "_offset")

    def __init__(self) -> None:
        self._offset = 0.0
        self._last: float | None = None

    def update(self, raw: float) -> float:
        if self._last is not None and raw < self._last:
            self._offset += self._last
        self._last = raw
        return self._offset + raw
