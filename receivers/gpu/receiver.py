"""The GPU receiver: scrapers on a schedule, exported through the OTel SDK and ``/metrics``.

One pipeline per host: a real node has one; a simulated cluster has one per simulated host, each
with its own OTel resource (``host.name``) and ``/metrics`` port, exactly as N node agents would.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider

from factorylens import __version__
from factorylens.exposition import MetricsServer, SnapshotCollector
from factorylens.receivers.gpu.backend import GpuEvent
from factorylens.receivers.gpu.scraper import GpuScraper, Snapshot
from factorylens.receivers.node import NodeSource, Points, SourceUnavailable, host_metric_names
from factorylens.registry import GPU_RECEIVER, REGISTRY, Attributes, Instrument, Metrics, MetricSpec, Registry

_log = logging.getLogger(__name__)
INSTRUMENTATION_SCOPE = "factorylens.receivers.gpu"


@dataclass
class HostPipeline:
    """Everything that serves one host: its scraper and its OTel providers."""

    name: str
    resource_attributes: Mapping[str, Any]
    scraper: GpuScraper
    meter_provider: MeterProvider
    logger_provider: LoggerProvider | None = None
    metrics_server: MetricsServer | None = None
    events_seen: int = 0
    sources: list[NodeSource] = field(default_factory=list)  # host, storage, fabric
    host_instrumentor: Any = None  # the real host layer (system metrics) registered on meter_provider
    source_points: dict[str, Points] = field(default_factory=dict)
    source_up: dict[str, int] = field(default_factory=dict)
    _instruments: list[Any] = field(default_factory=list)

    def register_instruments(self, registry: Registry) -> None:
        """One observable instrument per registry metric, reading the latest snapshot."""
        meter = self.meter_provider.get_meter(INSTRUMENTATION_SCOPE, __version__)
        host_layer = set(host_metric_names()) if self.host_instrumentor is not None else set()
        for spec in registry.emitted_by(GPU_RECEIVER):
            if spec.name in host_layer:
                continue  # the system-metrics instrumentor registered these itself
            create = {
                Instrument.GAUGE: meter.create_observable_gauge,
                Instrument.COUNTER: meter.create_observable_counter,
                Instrument.UPDOWNCOUNTER: meter.create_observable_up_down_counter,
            }[spec.instrument]
            self._instruments.append(
                create(spec.name, callbacks=[self._callback(spec)], unit=spec.unit, description=spec.description)
            )

    def _callback(self, spec: MetricSpec) -> Callable[[CallbackOptions], list[Observation]]:
        def observe(options: CallbackOptions) -> list[Observation]:
            return [Observation(value, attributes) for attributes, value in self.points(spec.name)]

        return observe

    def points(self, metric: str) -> list[tuple[Mapping[str, Any], float]]:
        """The latest values of ``metric`` from the GPUs and every node source."""
        if metric == Metrics.FACTORYLENS_RECEIVER_SOURCE_UP:
            return [({Attributes.FACTORYLENS_RECEIVER_SOURCE: name}, up) for name, up in list(self.source_up.items())]
        found = list(self.scraper.snapshot.get(metric))
        for points in list(self.source_points.values()):  # a copy: the scrape thread may add a source
            found.extend(points.get(metric, ()))
        return found

    def read_sources(self) -> None:
        """Read every node source; a missing one is reported (source.up = 0), never fatal."""
        for source in self.sources:
            try:
                self.source_points[source.name] = source.read()
                up = 1
            except SourceUnavailable as exc:
                self.source_points[source.name] = {}
                up = 0
                if self.source_up.get(source.name) != 0:
                    _log.warning("%s: %s source unavailable: %s", self.name, source.name, exc)
            except Exception:  # a bug in one source must not stop the others or the GPUs
                self.source_points[source.name] = {}
                up = 0
                _log.exception("%s: reading the %s source failed", self.name, source.name)
            self.source_up[source.name] = up

    def series(self) -> dict[str, list[tuple[Mapping[str, Any], float]]]:
        """Everything the node reports, by metric (for ``/metrics``)."""
        merged = {name: list(points) for name, points in self.scraper.snapshot.series.items()}
        for points in self.source_points.values():
            for name, values in points.items():
                merged.setdefault(name, []).extend(values)
        if self.source_up:
            merged[Metrics.FACTORYLENS_RECEIVER_SOURCE_UP] = self.points(Metrics.FACTORYLENS_RECEIVER_SOURCE_UP)
        return merged

    def emit_event(self, event: GpuEvent) -> None:
        self.events_seen += 1
        _log.warning("%s: %s", self.name, event.message)
        if self.logger_provider is None:
            return
        logger = self.logger_provider.get_logger(INSTRUMENTATION_SCOPE, __version__)
        logger.emit(
            timestamp=event.timestamp_ns,
            observed_timestamp=time.time_ns(),
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            body=event.message,
            attributes=dict(event.attributes),
            event_name=event.name,
        )


class GpuReceiver:
    """Runs host pipelines: scrape every ``interval_s``, wait for XID events, serve ``/metrics``.

    Args:
        pipelines: one per host (see :mod:`factorylens.receivers.gpu.factory`).
        interval_s: collection interval.
        event_wait_ms: how long one event wait blocks (bounds shutdown latency).
        on_scrape: called with ``[(pipeline, snapshot), ...]`` after each scrape round (console).
    """

    def __init__(
        self,
        pipelines: list[HostPipeline],
        interval_s: float,
        *,
        event_wait_ms: int = 1000,
        registry: Registry = REGISTRY,
        on_scrape: Callable[[list[tuple[HostPipeline, Snapshot]]], None] | None = None,
    ) -> None:
        self.pipelines = pipelines
        self._interval_s = interval_s
        self._event_wait_ms = event_wait_ms
        self.on_scrape = on_scrape
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.scrapes = 0
        self.shutdown_timeout_ms = 5_000  # bounded: a dead collector must not hang a node agent's stop
        for pipeline in pipelines:
            pipeline.register_instruments(registry)

    def start(self) -> None:
        for pipeline in self.pipelines:
            pipeline.scraper.start()
            for source in pipeline.sources:
                source.start()
        self.scrape_once()
        self._spawn(self._scrape_loop, "gpu-scrape")
        for pipeline in self.pipelines:
            self._spawn(functools.partial(self._event_loop, pipeline), f"gpu-events:{pipeline.name}")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def scrape_once(self) -> list[tuple[HostPipeline, Snapshot]]:
        results = []
        for pipeline in self.pipelines:
            try:
                results.append((pipeline, pipeline.scraper.scrape()))
            except Exception:  # a bug in one host's scrape must not stop the agent
                _log.exception("scrape of %s failed", pipeline.name)
            pipeline.read_sources()
        self.scrapes += 1
        if self.on_scrape is not None:
            self.on_scrape(results)
        return results

    def _scrape_loop(self) -> None:
        next_at = time.monotonic() + self._interval_s
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            self.scrape_once()
            next_at += self._interval_s
            if next_at < time.monotonic():  # fell behind (slow NVML): skip, don't burst
                next_at = time.monotonic() + self._interval_s

    def _event_loop(self, pipeline: HostPipeline) -> None:
        while not self._stop.is_set():
            try:
                events = pipeline.scraper.wait_events(self._event_wait_ms)
            except Exception:
                _log.exception("event wait on %s failed", pipeline.name)
                self._stop.wait(self._event_wait_ms / 1000.0)
                continue
            for event in events:
                pipeline.emit_event(event)

    def run(self, duration_s: float | None = None) -> None:
        """Block until ``stop()``, Ctrl-C or ``duration_s``."""
        try:
            self._stop.wait(duration_s)
        except KeyboardInterrupt:
            pass

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        """Stop threads, flush exporters (the last values reach the collector), release NVML."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self._event_wait_ms / 1000.0 + 5.0)
        for pipeline in self.pipelines:
            if pipeline.metrics_server is not None:
                pipeline.metrics_server.shutdown()
            pipeline.meter_provider.shutdown(timeout_millis=self.shutdown_timeout_ms)
            if pipeline.logger_provider is not None:
                pipeline.logger_provider.shutdown()
            pipeline.scraper.shutdown()
            for source in pipeline.sources:
                source.shutdown()
            if pipeline.host_instrumentor is not None:
                pipeline.host_instrumentor.uninstrument()


def tune_gc_for_agent() -> None:
    """Collect young garbage less often in a long-running agent process.

    Each scrape allocates ~50 short-lived objects per GPU (points, SDK measurements) that
    reference counting frees; CPython's default gen-0 threshold (700) still triggers a cyclic GC
    dozens of times per scrape, which cost ~30% of scrape CPU at 512 GPUs (bench/receiver.py).
    Process-wide, so the CLI calls it, not the library.
    """
    gc.set_threshold(20_000, 50, 100)


def metrics_server_for(pipeline: HostPipeline, host: str, port: int, **security: Any) -> MetricsServer:
    collector = SnapshotCollector(pipeline.series, pipeline.resource_attributes)
    return MetricsServer([collector], host, port, **security)
