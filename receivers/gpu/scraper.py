"""The scraper: one backend read per interval, checked against the registry, kept as a snapshot.

Instruments and the Prometheus endpoint read the latest snapshot, so a scrape costs one pass over
NVML however many readers export it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from factorylens.receivers.gpu.backend import AttributeMap, GpuBackend, GpuEvent
from factorylens.receivers.gpu.usage import UsageMeter
from factorylens.registry import REGISTRY, Attributes, Metrics, Registry

_log = logging.getLogger(__name__)


class RegistryViolation(ValueError):
    """The code emitted a metric or attribute the registry does not declare."""


@dataclass(frozen=True)
class Snapshot:
    """The values of one scrape, by metric name: ``[(attributes, value), ...]``."""

    timestamp_s: float
    series: Mapping[str, list[tuple[AttributeMap, float]]] = field(default_factory=dict)

    def get(self, metric: str) -> list[tuple[AttributeMap, float]]:
        return self.series.get(metric, [])


class GpuScraper:
    """``start`` / ``scrape`` / ``shutdown`` over a :class:`GpuBackend`.

    Args:
        backend: where readings come from.
        registry: the declarations every point is checked against.
        strict: raise :class:`RegistryViolation` on an undeclared metric or attribute (tests);
            otherwise log it once and drop the point.
        usage: integrates each GPU's time and energy by job (the cost counters); its ``attributes``
            carry the cluster name.
    """

    def __init__(
        self,
        backend: GpuBackend,
        registry: Registry = REGISTRY,
        *,
        strict: bool = False,
        usage: UsageMeter | None = None,
    ) -> None:
        self.backend = backend
        self.usage = usage if usage is not None else UsageMeter()
        self._registry = registry
        self._strict = strict
        self._allowed = {m.name: frozenset(registry.allowed_attributes(m)) for m in registry.metrics}
        self._values = {a.name: frozenset(a.values) for a in registry.attributes if a.values}
        self._errors: dict[tuple[str, str], int] = {}
        self._reported: set[str] = set()
        self.snapshot = Snapshot(0.0)

    def start(self) -> None:
        self.backend.start()

    def shutdown(self) -> None:
        self.backend.shutdown()

    def wait_events(self, timeout_ms: int) -> list[GpuEvent]:
        events = self.backend.wait_events(timeout_ms)
        for event in events:
            self._check(Metrics.HW_ERRORS, event.attributes)
        return events

    def scrape(self) -> Snapshot:
        started = time.perf_counter()
        result = self.backend.scrape()
        series: dict[str, list[tuple[AttributeMap, float]]] = {}
        for point in [*result.points, *self.usage.observe(result.points)]:
            if self._check(point.metric, point.attributes):
                series.setdefault(point.metric, []).append((point.attributes, point.value))
        for error in result.errors:
            key = (error.function, error.error)
            self._errors[key] = self._errors.get(key, 0) + 1
        series[Metrics.FACTORYLENS_RECEIVER_SCRAPE_ERRORS] = [
            ({Attributes.NVML_FUNCTION: fn, Attributes.FACTORYLENS_RECEIVER_ERROR: err}, n)
            for (fn, err), n in self._errors.items()
        ]
        series[Metrics.FACTORYLENS_RECEIVER_DEVICES] = [({}, result.devices)]
        series[Metrics.FACTORYLENS_RECEIVER_SCRAPE_DURATION] = [({}, time.perf_counter() - started)]
        self.snapshot = Snapshot(time.time(), series)
        return self.snapshot

    @property
    def error_counts(self) -> dict[tuple[str, str], int]:
        return dict(self._errors)

    def _check(self, metric: str, attributes: Mapping[str, Any]) -> bool:
        allowed = self._allowed.get(metric)
        problem = None
        if allowed is None:
            problem = f"metric {metric!r} is not declared in the registry"
        elif not allowed.issuperset(attributes):
            problem = f"{metric}: undeclared attributes {sorted(set(attributes) - allowed)}"
        else:
            for key, value in attributes.items():
                values = self._values.get(key)
                if values is not None and value not in values:
                    problem = f"{metric}: {key}={value!r} is not one of the declared values"
                    break
        if problem is None:
            return True
        if self._strict:
            raise RegistryViolation(problem)
        if problem not in self._reported:
            self._reported.add(problem)
            _log.error("dropping data the registry does not declare (a bug): %s", problem)
        return False
