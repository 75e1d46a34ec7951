"""A node source: one layer of a GPU node other than its GPUs (host, storage, fabric).

A source reads its data into ``{metric: [(attributes, value)]}`` with registry names; the node agent
exports them through the same OTel pipeline and resource as the GPUs. A source whose data is missing
(no InfiniBand, no /proc/self/mountstats) raises :class:`SourceUnavailable`: the agent reports it on
``factorylens.receiver.source.up`` and keeps going.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Mapping
from typing import Any

from factorylens.receivers._counters import MonotonicCounter

log = logging.getLogger(__name__)

Points = dict[str, list[tuple[dict[str, Any], float]]]


class SourceUnavailable(Exception):
    """The source's data is not there (missing hardware, file system or permission)."""


class NodeSource(abc.ABC):
    name: str = "source"

    def start(self) -> None:  # noqa: B027 - an optional hook
        """Open what the source needs (nothing by default)."""

    @abc.abstractmethod
    def read(self) -> Points:
        """The current values; raises :class:`SourceUnavailable` when the data is missing."""

    def shutdown(self) -> None:  # noqa: B027 - an optional hook
        """Release what ``start`` opened (nothing by default)."""


class SimulatedSource(NodeSource):
    """A layer of a simulated node: brings the simulation to now, then reads its state."""

    def __init__(self, node: Any, advance: Callable[[], None]) -> None:
        self._node = node
        self._advance = advance

    def read(self) -> Points:
        self._advance()
        return self.points()

    @abc.abstractmethod
    def points(self) -> Points:
        """The node's current values."""


class Counters:
    """Raw kernel counters that may reset (reboot of a device, remount, port reset) → monotonic totals."""

    def __init__(self) -> None:
        self._counters: dict[tuple, MonotonicCounter] = {}

    def total(self, key: tuple, raw: float) -> float:
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = MonotonicCounter()
        return counter.update(raw)


def add(points: Points, metric: str, attributes: Mapping[str, Any], value: float) -> None:
    points.setdefault(metric, []).append((dict(attributes), value))
