"""The series store: OTLP metrics, spans and logs in, columnar series and pandas frames out.

Keyed by series = metric + resource + point attributes, with each series' domain and entity from the
registry. Decoding is the hot path of ingest: attribute sets are looked up by their serialized bytes
(one C call per attribute) and decoded to Python only the first time a series is seen.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import itertools
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from factorylens.rca_service.store._attributes import (
    DICT_BYTES,
    MAX_METRIC_NAME,
    MAX_UNIT,
    AttributeDecoder,
    AttributeLimits,
    attribute_nbytes,
    attributes_nbytes,
)
from factorylens.rca_service.store._entity import domain_of, entity_of
from factorylens.rca_service.store._logs import Batch, LogCounts, severity_of
from factorylens.rca_service.store._series import (
    HistogramPoint,
    HistogramSeries,
    ScalarSeries,
    SeriesInfo,
    SeriesKind,
    View,
)
from factorylens.rca_service.store._spans import SpanAggregator, SpanSample
from factorylens.rca_service.store._traces import CallGraph, TraceAssembler
from factorylens.registry import Attributes, Events, Metrics

log = logging.getLogger(__name__)

Series = ScalarSeries | HistogramSeries
_S = TypeVar("_S", ScalarSeries, HistogramSeries)
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
MAX_TIME_NS = 2**63  # OTLP times are uint64; ours are int64 (until the year 2262)
MAX_BUCKETS = 4096  # the SDK's exponential default is 160; more is hostile or broken
MAX_QUANTILES = 64  # each quantile of a summary is a series of its own
KEY_CACHE_MAX_BYTES = 8192  # longer attribute sets are looked up the slow way, not kept as cache keys
MAX_EVENT_ATTRIBUTE_BYTES = 16384  # per kept log record: max_events of them must fit in memory
RESOURCE_CACHE_MAX_BYTES = 65536
SERIES_OVERHEAD_BYTES = 600  # a series' objects beyond its points and attributes (measured with tracemalloc)
NO_RECORDED_VALUE = 1  # DataPointFlags.FLAG_NO_RECORDED_VALUE
EVENT_COUNT_METRIC = Metrics.FACTORYLENS_EVENTS
INCIDENT_EVENT = Events.FACTORYLENS_INCIDENT


@dataclass(frozen=True)
class StoreLimits:
    max_series: int = 200_000
    retention_s: float = 24 * 3600.0
    max_events: int = 100_000
    span_bin_s: float = 10.0
    # a span waits this long (data time) for the rest of its trace before its exclusive time, error
    # origin and call edge are derived (see _traces)
    span_settle_s: float = 10.0
    log_bin_s: float = 10.0  # log records counted per severity and template (see LogCounts)
    span_sample_per_operation: int = 16
    attributes: AttributeLimits = field(default_factory=AttributeLimits)
    # live ingest refuses points older than the retention or further ahead than this (None: accept
    # any time, as replay and back-fill do)
    max_future_s: float | None = None

    def validate(self) -> None:
        if min(self.max_series, self.retention_s, self.max_events, self.span_bin_s, self.log_bin_s) <= 0:
            raise ValueError("max_series, retention_s, max_events, span_bin_s and log_bin_s must be positive")
        if self.span_settle_s < 0:
            raise ValueError("span_settle_s must be >= 0")
        if self.max_future_s is not None and self.max_future_s < 0:
            raise ValueError("max_future_s must be >= 0")
        self.attributes.validate()


@dataclass
class IngestResult:
    accepted: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def reject(self, reason: str, n: int = 1) -> None:
        self.rejected += n
        self.reasons[reason] = self.reasons.get(reason, 0) + n

    def warn(self, warning: str) -> None:
        """Accepted, but changed (e.g. attributes truncated): said in the partial success."""
        if warning not in self.warnings:
            self.warnings.append(warning)

    def merge(self, other: IngestResult) -> None:
        self.accepted += other.accepted
        for reason, n in other.reasons.items():
            self.reject(reason, n)
        for warning in other.warnings:
            self.warn(warning)

    @property
    def message(self) -> str:
        parts = [f"{n} rejected: {reason}" for reason, n in sorted(self.reasons.items())]
        return "; ".join(parts + self.warnings)


def series_id(metric: str, kind: SeriesKind, resource: Mapping[str, Any], attributes: Mapping[str, Any]) -> str:
    """A stable id (same input, same id across restarts and replicas)."""
    canonical = json.dumps(
        [metric, kind.value, sorted(resource.items()), sorted(attributes.items())], default=str, separators=(",", ":")
    )
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


class _Resource:
    __slots__ = ("attributes", "caches", "histograms", "scalars")

    def __init__(self, attributes: dict[str, Any]) -> None:
        self.attributes = attributes
        # alias caches: a metric's series under this resource, by their attributes' serialized bytes
        self.scalars: dict[tuple[str, SeriesKind], dict[tuple[bytes, ...], ScalarSeries]] = {}
        self.histograms: dict[str, dict[tuple[bytes, ...], HistogramSeries]] = {}
        # the span RED series of an operation, by ("span", name, kind) (see SpanAggregator)
        self.caches: dict[tuple[str, str, int], tuple[Series, ...]] = {}


class SeriesStore:
    """Thread-safe; every ingest and read takes the store lock (the GIL serializes them anyway)."""

    def __init__(
        self,
        limits: StoreLimits | None = None,
        *,
        clock: Callable[[], float] = time.time,
        on_cardinality_limit: Callable[[int], None] | None = None,
    ) -> None:
        self.limits = limits or StoreLimits()
        self.limits.validate()
        self.decoder = AttributeDecoder(self.limits.attributes)
        self.lock = threading.RLock()
        self.series: dict[str, Series] = {}
        self._by_metric: dict[str, dict[str, Series]] = {}  # metric -> series id -> series
        self._resources: dict[bytes, _Resource] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=self.limits.max_events)
        self.spans = SpanAggregator(self, self.limits.span_bin_s)
        self.span_sample = SpanSample(self.limits.span_sample_per_operation)
        self.call_graph = CallGraph()
        self.traces = TraceAssembler(
            functools.partial(self.get_or_create, cumulative=False),
            self.call_graph,
            self.limits.span_bin_s,
            self.limits.span_settle_s,
        )
        self.logs = LogCounts(self, self.limits.log_bin_s)
        self._clock = clock
        self._on_cardinality_limit = on_cardinality_limit
        self._last_limit_log = 0.0
        self.points_dropped_by_retention = 0
        self._info_bytes = 0
        self._stats_cache: tuple[float, float, dict[str, int]] | None = None
        # the times live ingest accepts, set per request (see _open_window)
        self._lo_ns, self._hi_ns = 0, MAX_TIME_NS

    # ---- series lookup -------------------------------------------------------------------------
    def _resource(self, resource: Any) -> _Resource:
        raw = resource.SerializeToString()
        found = self._resources.get(raw)
        if found is None:
            found = _Resource(self.decoder.attributes(resource.attributes))
            if len(raw) <= RESOURCE_CACHE_MAX_BYTES:
                if len(self._resources) > 4 * self.limits.max_series:
                    self._resources.clear()  # an alias cache; entries are rebuilt on demand
                self._resources[raw] = found
        return found

    def _open_window(self) -> None:
        """The times this request's points may have: inside the retention and not far ahead."""
        if self.limits.max_future_s is None:
            self._lo_ns, self._hi_ns = 0, MAX_TIME_NS
            return
        now = self._clock()
        self._lo_ns = max(0, int((now - self.limits.retention_s) * 1e9))
        self._hi_ns = min(MAX_TIME_NS, int((now + self.limits.max_future_s) * 1e9))

    def _reject_time(self, ts: int, result: IngestResult, what: str = "data point") -> None:
        if not 0 < ts < MAX_TIME_NS:
            result.reject(f"{what} without a valid time_unix_nano")
        elif ts <= self._lo_ns:
            result.reject(f"{what} older than the retention ({self.limits.retention_s:g} s)")
        else:
            result.reject(f"{what} more than {self.limits.max_future_s:g} s in the future")

    def get_or_create(
        self,
        metric: str,
        kind: SeriesKind,
        unit: str,
        resource: Mapping[str, Any],
        attributes: Mapping[str, Any],
        description: str = "",
        *,
        cumulative: bool = True,
        result: IngestResult | None = None,
    ) -> Series | None:
        """The series for this identity, or None (counted) when the cardinality limit is reached."""
        sid = series_id(metric, kind, resource, attributes)
        found = self.series.get(sid)
        if found is not None:
            return found
        if len(self.series) >= self.limits.max_series:
            self._cardinality_limited(result)
            return None
        info = SeriesInfo(
            sid,
            metric,
            kind,
            unit[:MAX_UNIT],
            domain_of(metric).value,
            entity_of(resource, attributes),
            resource,
            dict(attributes),
            self.decoder.text(description),
        )
        created: Series = HistogramSeries(info, cumulative) if kind is SeriesKind.HISTOGRAM else ScalarSeries(info)
        self.series[sid] = created
        self._by_metric.setdefault(metric, {})[sid] = created
        self._info_bytes += _info_nbytes(info)
        return created

    def redescribe(self, info: SeriesInfo, description: str) -> None:
        """A derived series' description changed (a log template generalized)."""
        self._info_bytes += len(description) - len(info.description)
        info.description = description

    def _cardinality_limited(self, result: IngestResult | None) -> None:
        if result is not None:
            result.reject("series limit reached")
        now = self._clock()
        if now - self._last_limit_log > 60:
            self._last_limit_log = now
            log.warning(
                "series limit of %d reached: points of new series are rejected (raise "
                "--max-series, lower --retention, or drop high-cardinality attributes upstream)",
                self.limits.max_series,
            )
        if self._on_cardinality_limit:
            self._on_cardinality_limit(1)

    def _scalar_cache(self, res: _Resource, metric: str, kind: SeriesKind) -> dict[tuple[bytes, ...], ScalarSeries]:
        """Scalar series of one metric under one resource, by their attributes' serialized bytes."""
        cache = res.scalars.get((metric, kind))
        if cache is None:
            cache = res.scalars[(metric, kind)] = {}
        return cache

    def _histogram_cache(self, res: _Resource, metric: str) -> dict[tuple[bytes, ...], HistogramSeries]:
        """Histogram series of one metric under one resource, by their attributes' serialized bytes."""
        cache = res.histograms.get(metric)
        if cache is None:
            cache = res.histograms[metric] = {}
        return cache

    def _cached(
        self,
        cache: dict[tuple[bytes, ...], _S],
        series_type: type[_S],
        res: _Resource,
        metric: Any,
        kind: SeriesKind,
        point: Any,
        result: IngestResult,
        *,
        cumulative: bool = True,
        key: tuple[bytes, ...] | None = None,
    ) -> _S | None:
        """The point's series, by its attributes' serialized bytes (``key``, when the caller has them)."""
        if key is None:
            key = tuple([kv.SerializeToString() for kv in point.attributes])
        found = cache.get(key)
        if found is None:
            made = self.get_or_create(
                metric.name,
                kind,
                metric.unit,
                res.attributes,
                self.decoder.attributes(point.attributes),
                metric.description,
                cumulative=cumulative,
                result=result,
            )
            if made is None:
                return None
            assert isinstance(made, series_type)  # the kind is part of the series id, so of the series found
            found = made
            if sum(map(len, key)) <= KEY_CACHE_MAX_BYTES:
                cache[key] = found
        return found

    def _scalar(
        self,
        metric: str,
        kind: SeriesKind,
        unit: str,
        resource: Mapping[str, Any],
        attributes: Mapping[str, Any],
        description: str = "",
        *,
        result: IngestResult | None = None,
    ) -> ScalarSeries | None:
        """:meth:`get_or_create` for a gauge or sum kind, whose series are scalar."""
        series = self.get_or_create(metric, kind, unit, resource, attributes, description, result=result)
        assert series is None or isinstance(series, ScalarSeries)
        return series

    # ---- OTLP ingest ---------------------------------------------------------------------------
    def ingest_metrics(self, request: ExportMetricsServiceRequest) -> IngestResult:
        result = IngestResult()
        with self.lock:
            self._open_window()
            truncated = self.decoder.truncated
            for rm in request.resource_metrics:
                res = self._resource(rm.resource)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        self._ingest_metric(res, metric, result)
            self._note_truncation(truncated, result)
        return result

    def _note_truncation(self, before: int, result: IngestResult) -> None:
        cut = self.decoder.truncated - before
        if cut > 0:
            limits = self.limits.attributes
            result.warn(
                f"{cut} attribute values or lists truncated to the service's limits ({limits.value_length} "
                f"characters, {limits.count} attributes, depth {limits.depth})"
            )

    def _ingest_metric(self, res: _Resource, metric: Any, result: IngestResult) -> None:
        data = metric.WhichOneof("data")
        if not metric.name:
            result.reject("metric without a name", _point_count(metric, data))
            return
        if len(metric.name) > MAX_METRIC_NAME:
            result.reject(f"metric name longer than {MAX_METRIC_NAME} characters", _point_count(metric, data))
            return
        if data == "gauge" or data == "sum":
            if data == "gauge":
                kind, points = SeriesKind.GAUGE, metric.gauge.data_points
            else:
                s = metric.sum
                points = s.data_points
                if not s.is_monotonic:
                    kind = SeriesKind.UPDOWN
                elif s.aggregation_temporality == CUMULATIVE:
                    kind = SeriesKind.CUMULATIVE
                elif s.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA:
                    kind = SeriesKind.DELTA
                else:
                    result.reject("sum without aggregation temporality", len(points))
                    return
            self._ingest_scalars(res, metric, kind, points, result)
        elif data == "histogram":
            self._ingest_histograms(res, metric, metric.histogram, result, exponential=False)
        elif data == "exponential_histogram":
            self._ingest_histograms(res, metric, metric.exponential_histogram, result, exponential=True)
        elif data == "summary":
            self._ingest_summaries(res, metric, result)
        else:
            result.reject("metric without data")

    def _ingest_scalars(self, res: _Resource, metric: Any, kind: SeriesKind, points: Any, result: IngestResult) -> None:
        accepted = 0
        cumulative = kind is SeriesKind.CUMULATIVE
        cache = self._scalar_cache(res, metric.name, kind)
        lo, hi = self._lo_ns, self._hi_ns
        for point in points:
            ts = point.time_unix_nano
            if not lo < ts < hi or point.start_time_unix_nano >= MAX_TIME_NS:
                self._reject_time(ts if point.start_time_unix_nano < MAX_TIME_NS else 0, result)
                continue
            if point.flags & NO_RECORDED_VALUE:
                accepted += 1  # a staleness marker: valid, nothing to store
                continue
            key = tuple([kv.SerializeToString() for kv in point.attributes])
            series = cache.get(key)
            if series is None:
                series = self._cached(cache, ScalarSeries, res, metric, kind, point, result, key=key)
                if series is None:
                    continue
            # exactly one of as_double/as_int is set; the other reads as zero
            series.append(ts, point.as_double or float(point.as_int))
            if cumulative:
                series.note_start(point.start_time_unix_nano)
            accepted += 1
        result.accepted += accepted

    def _ingest_histograms(
        self, res: _Resource, metric: Any, histogram: Any, result: IngestResult, *, exponential: bool
    ) -> None:
        cumulative = histogram.aggregation_temporality == CUMULATIVE
        cache = self._histogram_cache(res, metric.name)
        lo, hi = self._lo_ns, self._hi_ns
        for point in histogram.data_points:
            if not lo < point.time_unix_nano < hi or point.start_time_unix_nano >= MAX_TIME_NS:
                self._reject_time(point.time_unix_nano if point.start_time_unix_nano < MAX_TIME_NS else 0, result)
                continue
            if not (math.isfinite(point.sum) and math.isfinite(point.min) and math.isfinite(point.max)):
                result.reject("histogram with a non-finite sum, min or max")
                continue
            buckets = (
                len(point.positive.bucket_counts) + len(point.negative.bucket_counts)
                if exponential
                else len(point.bucket_counts)
            )
            if buckets > MAX_BUCKETS:
                result.reject(f"histogram with more than {MAX_BUCKETS} buckets")
                continue
            if point.flags & NO_RECORDED_VALUE:
                result.accepted += 1
                continue
            hp = _exponential_point(point, result) if exponential else _explicit_point(point, result)
            if hp is None:
                continue
            series = self._cached(
                cache, HistogramSeries, res, metric, SeriesKind.HISTOGRAM, point, result, cumulative=cumulative
            )
            if series is None:
                continue
            series.append(hp)
            result.accepted += 1

    def _ingest_summaries(self, res: _Resource, metric: Any, result: IngestResult) -> None:
        """Summaries become a gauge per quantile plus cumulative ``.count`` and ``.sum`` series."""
        for point in metric.summary.data_points:
            if not self._lo_ns < point.time_unix_nano < self._hi_ns:
                self._reject_time(point.time_unix_nano, result)
                continue
            if len(point.quantile_values) > MAX_QUANTILES:
                result.reject(f"summary with more than {MAX_QUANTILES} quantiles")
                continue
            attributes = self.decoder.attributes(point.attributes)
            ts = point.time_unix_nano
            made: list[tuple[ScalarSeries | None, float]] = []
            for q in point.quantile_values:
                made.append(
                    (
                        self._scalar(
                            metric.name,
                            SeriesKind.GAUGE,
                            metric.unit,
                            res.attributes,
                            {**attributes, "quantile": q.quantile},
                            metric.description,
                            result=result,
                        ),
                        q.value,
                    )
                )
            for suffix, value in ((".count", float(point.count)), (".sum", point.sum)):
                made.append(
                    (
                        self._scalar(
                            metric.name + suffix,
                            SeriesKind.CUMULATIVE,
                            metric.unit,
                            res.attributes,
                            attributes,
                            metric.description,
                            result=result,
                        ),
                        value,
                    )
                )
            ready = [(series, value) for series, value in made if series is not None]
            if len(ready) == len(made):
                for series, value in ready:
                    series.append(ts, value)
                result.accepted += 1

    def ingest_spans(self, request: ExportTraceServiceRequest) -> IngestResult:
        with self.lock:
            self._open_window()
            truncated = self.decoder.truncated
            result = self.spans.ingest(request)
            self._note_truncation(truncated, result)
            return result

    def settle_spans(self, now_unix_nano: int | None = None, *, flush: bool = False) -> None:
        """Derive the trace series of spans whose trace has had time to arrive (see ``_traces``):
        the analysis calls this with its clock so a trace that ends the traffic still counts."""
        with self.lock:
            self.traces.settle(now_unix_nano, flush=flush)

    def ingest_logs(self, request: ExportLogsServiceRequest) -> IngestResult:
        """Log records are kept as events (bounded), counted per event name, and per resource by
        severity and by template (see :class:`LogCounts`): delta series all."""
        result = IngestResult()
        decoder = self.decoder
        with self.lock:
            self._open_window()
            truncated = decoder.truncated
            counts: dict[tuple[int, str, int], int] = {}
            resources: dict[int, dict[str, Any]] = {}
            batch: Batch = {}
            for index, rl in enumerate(request.resource_logs):
                resource = self._resource(rl.resource).attributes
                resources[index] = resource
                source = None
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        ts = record.time_unix_nano or record.observed_time_unix_nano
                        if not self._lo_ns < ts < self._hi_ns:
                            self._reject_time(ts, result, "log record")
                            continue
                        attributes = decoder.attributes(record.attributes)
                        if attributes_nbytes(attributes) > MAX_EVENT_ATTRIBUTE_BYTES:
                            attributes = _first_within(attributes, MAX_EVENT_ATTRIBUTE_BYTES)
                            result.warn(f"log record attributes cut to about {MAX_EVENT_ATTRIBUTE_BYTES} bytes")
                        name = decoder.text(str(record.event_name or attributes.get(Attributes.EVENT_NAME) or "log"))
                        severity_text = decoder.text(record.severity_text)
                        body = str(decoder.value(record.body))
                        self.events.append(
                            {
                                "time_unix_nano": ts,
                                "event_name": name,
                                "severity": severity_text or str(record.severity_number),
                                "body": body,
                                "attributes": attributes,
                                "resource": resource,
                                "trace_id": record.trace_id.hex(),
                                "span_id": record.span_id.hex(),
                            }
                        )
                        bin_ts = int(ts // 1_000_000_000 * 1_000_000_000)
                        counts[(index, str(name), bin_ts)] = counts.get((index, str(name), bin_ts), 0) + 1
                        if name != INCIDENT_EVENT:  # our own findings fed back are no evidence
                            source = source or self.logs.source(resource)
                            severity = severity_of(record.severity_number, severity_text)
                            self.logs.count(batch, source, ts, severity, body or name)
                        result.accepted += 1
            self._count_events(counts, resources)
            self.logs.write(batch)
            self._note_truncation(truncated, result)
        return result

    def _count_events(self, counts: dict[tuple[int, str, int], int], resources: dict[int, dict[str, Any]]) -> None:
        """Records per (resource, event name, second) as points of ``factorylens.events``."""
        for (index, name, bin_ts), n in counts.items():
            series = self._scalar(
                EVENT_COUNT_METRIC,
                SeriesKind.DELTA,
                "{event}",
                resources[index],
                {Attributes.EVENT_NAME: name},
                "Log records (events) received.",
            )
            if series is not None:
                series.append(bin_ts, float(n))

    # ---- reads ---------------------------------------------------------------------------------
    def list_series(
        self,
        metric: str = "*",
        match: Mapping[str, str] | None = None,
        domain: str = "",
        entity: str = "",
        limit: int = 0,
    ) -> list[SeriesInfo]:
        """Series whose metric matches the glob, attributes (point or resource) equal ``match``."""
        found = []
        with self.lock:
            for series in self.series.values():
                info = series.info
                if not fnmatch.fnmatchcase(info.metric, metric or "*"):
                    continue
                if domain and info.domain != domain:
                    continue
                if entity and not fnmatch.fnmatchcase(info.entity, entity):
                    continue
                if match and any(str(info.attributes.get(k, info.resource.get(k))) != v for k, v in match.items()):
                    continue
                found.append(info)
                if limit and len(found) >= limit:
                    break
        return found

    # ---- the read API: everything outside the store reads through these ---------------------------
    def __len__(self) -> int:
        return len(self.series)

    def info(self, series_id_: str) -> SeriesInfo | None:
        """What the series is, or None when the store does not have it (any more)."""
        series = self.series.get(series_id_)
        return series.info if series is not None else None

    def require_info(self, series_id_: str) -> SeriesInfo:
        """What the series is; KeyError when the store does not have it."""
        info = self.info(series_id_)
        if info is None:
            raise KeyError(series_id_)
        return info

    def infos(self, exclude_domains: Iterable[str] = ()) -> dict[str, SeriesInfo]:
        """Every series' identity by id (a snapshot), leaving out those of ``exclude_domains``."""
        excluded = set(exclude_domains)
        with self.lock:
            return {sid: s.info for sid, s in self.series.items() if s.info.domain not in excluded}

    def updated_since(
        self, seen: Mapping[str, int], until_ns: int, exclude_domains: Iterable[str] = ()
    ) -> tuple[list[SeriesInfo], set[str]]:
        """The series with a point after ``seen[id]`` (and at or before ``until_ns``, a bound on clock
        skew), and the ids of every series the store holds: one lock for both."""
        excluded = set(exclude_domains)
        with self.lock:
            live = set(self.series)
            fresh = [
                s.info
                for s in self.series.values()
                if min(s.last_ts, until_ns) > seen.get(s.info.id, 0) and s.info.domain not in excluded
            ]
        return fresh, live

    def extent(self, series_id_: str) -> tuple[int, int, int]:
        """``(points, first, last)`` time of a series; zeros when the store does not have it."""
        with self.lock:
            series = self.series.get(series_id_)
            return (series.point_count, series.first_ts, series.last_ts) if series is not None else (0, 0, 0)

    def call_edges(self) -> list[tuple[str, str]]:
        """``(caller, callee)`` services seen calling each other in spans."""
        with self.lock:
            return list(self.call_graph.edges)

    def call_counts(self) -> dict[tuple[str, str], int]:
        """Calls seen per ``(caller, callee)`` edge (a peer that sends no spans is a callee too)."""
        with self.lock:
            return {edge: calls for edge, (calls, _) in self.call_graph.edges.items()}

    def example_spans(self, service: str, span_name: str) -> list[dict[str, Any]]:
        """The sampled spans of one operation, slowest and failed first."""
        with self.lock:
            return list(self.span_sample.spans(service, span_name))

    def of_metric(self, metric: str) -> list[SeriesInfo]:
        """Every series of one metric (an index lookup, unlike :meth:`list_series`'s scan)."""
        with self.lock:
            return [s.info for s in self._by_metric.get(metric, {}).values()]

    def tails(
        self, positions: Iterable[tuple[str, int]]
    ) -> list[tuple[SeriesInfo, Sequence[int], Sequence[float], list[int]] | None]:
        """For each (series id, position): the series' points after the position, sorted, and its counter
        start times after it (see :meth:`ScalarSeries.tail`); None for a series that is gone or is a
        histogram. One lock for the whole batch: what incremental readers (the cost ledger) use."""
        out: list[tuple[SeriesInfo, Sequence[int], Sequence[float], list[int]] | None] = []
        with self.lock:
            for sid, after_ns in positions:
                series = self.series.get(sid)
                if not isinstance(series, ScalarSeries):
                    out.append(None)
                    continue
                out.append((series.info, *series.tail(after_ns)))
        return out

    def increase(self, series_id_: str, start_ns: int, end_ns: int) -> float:
        """How much a counter grew over (start_ns, end_ns]: the increase between consecutive points
        (resets counted from zero), the first one from the point before the window; NaN without points."""
        _, _, increases = self.query(series_id_, View.INCREASE, start_ns + 1, end_ns)
        finite = increases[np.isfinite(increases)]
        return float(finite.sum()) if len(finite) else math.nan

    def mean(self, series_id_: str, start_ns: int, end_ns: int) -> float:
        """The mean of a gauge's points in [start_ns, end_ns]; NaN without points."""
        _, _, values = self.query(series_id_, View.RAW, start_ns, end_ns)
        finite = values[np.isfinite(values)]
        return float(finite.mean()) if len(finite) else math.nan

    def query(
        self, series_id_: str, view: View | None = None, start_ns: int = 0, end_ns: int = 2**63 - 1
    ) -> tuple[SeriesInfo, np.ndarray, np.ndarray]:
        with self.lock, np.errstate(all="ignore"):  # inf/NaN from odd input propagate as values
            series = self.series.get(series_id_)
            if series is None:
                raise KeyError(series_id_)
            ts, values = series.query(view or series.info.default_view, start_ns, end_ns)
            return series.info, ts, values

    def frame(
        self, series_ids: Iterable[str], start_ns: int = 0, end_ns: int = 2**63 - 1, view: View | None = None
    ) -> pd.DataFrame:
        """A wide frame, one column per series (its default view unless ``view``), indexed by time (UTC):
        every series' points placed on the union of their times in one array (a point repeated at one
        time keeps its last value)."""
        ids: list[str] = []
        points: list[tuple[np.ndarray, np.ndarray]] = []
        for sid in dict.fromkeys(series_ids):
            _, ts, values = self.query(sid, view, start_ns, end_ns)
            ids.append(sid)
            points.append((ts, values))
        if not ids:
            return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC"))
        times = np.unique(np.concatenate([ts for ts, _ in points])) if points else np.zeros(0, dtype=np.int64)
        grid = np.full((len(times), len(ids)), np.nan)
        for column, (ts, values) in enumerate(points):
            if len(ts):
                grid[np.searchsorted(times, ts), column] = values
        return pd.DataFrame(grid, index=pd.to_datetime(times, unit="ns", utc=True), columns=ids)

    def stats(self, max_age_s: float = 0.0) -> dict[str, int]:
        """Series, points, bytes and events. Counting points and bytes walks every series, so callers
        that run often (Health, /metrics) pass ``max_age_s`` and may get a count that old, or older when
        the count itself is slow: it is redone at most once per ten times its own duration, which
        keeps it under a tenth of the service's time whatever the number of series."""
        cached = self._stats_cache
        if max_age_s > 0 and cached is not None:
            counted_at, took_s, counts = cached
            if time.monotonic() - counted_at <= max(max_age_s, 10 * took_s):
                return dict(counts)
        began = time.monotonic()
        # without the store lock (a snapshot holds it while it captures every series): a copy of the
        # series table is atomic, and a count that misses a point being appended is fine here
        series = list(self.series.values())
        points = sum(s.point_count for s in series)
        nbytes = sum(s.nbytes for s in series) + self._info_bytes
        counts = {"series": len(series), "points": points, "bytes": nbytes, "events": len(self.events)}
        self._stats_cache = (time.monotonic(), time.monotonic() - began, counts)
        return dict(counts)

    # ---- housekeeping --------------------------------------------------------------------------
    def enforce_retention(self, now_s: float | None = None) -> int:
        """Drop data older than the retention; series left empty are forgotten. Returns points dropped."""
        cutoff = int(((now_s if now_s is not None else self._clock()) - self.limits.retention_s) * 1e9)
        dropped = 0
        with self.lock:
            for sid in list(self.series):
                series = self.series[sid]
                dropped += series.drop_before(cutoff)
                if series.last_ts < cutoff:
                    del self.series[sid]
                    self._forget_metric(series.info)
                    self._info_bytes -= _info_nbytes(series.info)
                    self._resources.clear()  # the alias caches may point at forgotten series
            while self.events and self.events[0]["time_unix_nano"] < cutoff:
                self.events.popleft()
            self.span_sample.drop_before(cutoff)
            self.call_graph.drop_before(cutoff)
            self.logs.drop_before(cutoff)
        self.points_dropped_by_retention += dropped
        return dropped

    def _forget_metric(self, info: SeriesInfo) -> None:
        same = self._by_metric.get(info.metric)
        if same is not None:
            same.pop(info.id, None)
            if not same:
                del self._by_metric[info.metric]

    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the store (sealed arrays are shared, not copied)."""
        with self.lock:
            return {
                "series": [(s.info, getattr(s, "cumulative", None), s.state()) for s in self.series.values()],
                "events": list(self.events),
                "span_sample": self.span_sample.state(),
                "call_edges": self.call_graph.state(),
                "log_sources": self.logs.state(),
            }

    def restore(self, state: Mapping[str, Any]) -> None:
        with self.lock:
            self.series.clear()
            self._by_metric.clear()
            self._resources.clear()
            for info, cumulative, series_state in state["series"]:
                series: Series = (
                    HistogramSeries(info, bool(cumulative)) if info.kind is SeriesKind.HISTOGRAM else ScalarSeries(info)
                )
                series.restore(series_state)
                self.series[info.id] = series
                self._by_metric.setdefault(info.metric, {})[info.id] = series
            self._info_bytes = sum(_info_nbytes(s.info) for s in self.series.values())
            self.events.clear()
            self.events.extend(state["events"])
            self.span_sample.restore(state["span_sample"])
            self.call_graph.restore(state.get("call_edges", []))
            self.logs.restore(state.get("log_sources", []))


def _exponential_point(point: Any, result: IngestResult) -> HistogramPoint | None:
    """An exponential histogram point as stored (negative buckets join the zero bucket), or None when
    its scale is out of range."""
    if not -10 <= point.scale <= 20:
        result.reject("exponential histogram scale outside [-10, 20]")
        return None
    positive = np.asarray(point.positive.bucket_counts, dtype=float)
    zero = float(point.zero_count) + float(sum(point.negative.bucket_counts))
    return HistogramPoint(
        point.time_unix_nano,
        point.start_time_unix_nano,
        float(point.count),
        point.sum if point.HasField("sum") else math.nan,
        (),
        np.concatenate([[zero], positive]),
        int(point.scale),
        int(point.positive.offset),
    )


def _explicit_point(point: Any, result: IngestResult) -> HistogramPoint | None:
    """An explicit-bounds histogram point as stored, or None when its bounds are malformed."""
    bounds = tuple(point.explicit_bounds)
    if len(point.bucket_counts) != len(bounds) + 1 and len(point.bucket_counts) != 0:
        result.reject("histogram bucket_counts length is not len(explicit_bounds) + 1")
        return None
    if not all(map(math.isfinite, bounds)):
        result.reject("histogram explicit_bounds not finite")
        return None
    if any(b >= a for b, a in itertools.pairwise(bounds)):
        result.reject("histogram explicit_bounds not strictly increasing")
        return None
    counts = (
        np.asarray(point.bucket_counts, dtype=float) if len(point.bucket_counts) else np.array([float(point.count)])
    )
    return HistogramPoint(
        point.time_unix_nano,
        point.start_time_unix_nano,
        float(point.count),
        point.sum if point.HasField("sum") else math.nan,
        bounds if len(point.bucket_counts) else (),
        counts,
    )


def _point_count(metric: Any, data: str | None) -> int:
    if data is None:
        return 1
    return max(1, len(getattr(metric, data).data_points))


def _info_nbytes(info: SeriesInfo) -> int:
    return SERIES_OVERHEAD_BYTES + attributes_nbytes(info.attributes) + len(info.metric) + len(info.description)


def _first_within(attributes: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """The first attributes whose size (as ``attributes_nbytes`` counts it) stays within ``max_bytes``."""
    kept: dict[str, Any] = {}
    used = DICT_BYTES
    for key, value in attributes.items():
        used += attribute_nbytes(key, value)
        if used > max_bytes:
            break
        kept[key] = value
    return kept
