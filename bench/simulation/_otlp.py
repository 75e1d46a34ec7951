"""What a component's OTel SDK would put on the wire, stamped with simulated time.

Each simulated component (a node agent, a training rank) has a real SDK meter provider with an
in-memory reader; a collection goes through the OTLP exporter's own encoder
(``opentelemetry.exporter.otlp.proto.common``), and the SDK's wall-clock stamps are replaced by the
simulated time of the collection (cumulative series start when the component started).

The encoder costs ~10 µs a data point in Python, more than the simulation itself, and a component's
series rarely change from one collection to the next. :class:`MetricExport` therefore keeps the
request the encoder made last time and, when the new collection has exactly the same metrics and
attribute sets in the same order, writes the new values into a copy of it (the fields the encoder
set, the way it sets them); anything else (a new series, an exemplar, an exponential histogram)
goes through the encoder again. The tests check both paths give identical requests.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics.export import Gauge, Histogram, HistogramDataPoint, MetricsData, NumberDataPoint, Sum

_GAUGE, _SUM, _HISTOGRAM = 0, 1, 2


def _kind(data: Any) -> int | None:
    if isinstance(data, Gauge):
        return _GAUGE
    if isinstance(data, Sum):
        return _SUM
    if isinstance(data, Histogram):
        return _HISTOGRAM
    return None  # exponential histograms and anything new: always through the encoder


def _pb_points(request: ExportMetricsServiceRequest) -> list[tuple[int, Any]]:
    """``(kind, data point)`` of every point in the request, in the encoder's order."""
    found: list[tuple[int, Any]] = []
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                which = metric.WhichOneof("data")
                if which == "gauge":
                    found.extend((_GAUGE, p) for p in metric.gauge.data_points)
                elif which == "sum":
                    found.extend((_SUM, p) for p in metric.sum.data_points)
                elif which == "histogram":
                    found.extend((_HISTOGRAM, p) for p in metric.histogram.data_points)
                elif which == "exponential_histogram":
                    found.extend((_HISTOGRAM, p) for p in metric.exponential_histogram.data_points)
    return found


def stamp(request: ExportMetricsServiceRequest, now_ns: int, start_ns: int) -> None:
    """Every point at ``now_ns``; cumulative sums and histograms counted from ``start_ns``."""
    for kind, point in _pb_points(request):
        point.time_unix_nano = now_ns
        if kind != _GAUGE:
            point.start_time_unix_nano = start_ns


class MetricExport:
    """One component's metric exports: collect its in-memory reader, encode, stamp.

    Args:
        reader: the component's ``InMemoryMetricReader``.
        start_ns: when the component started (simulated epoch ns): the start of its cumulative series.
        reuse: write new values into the last encoding when the series are unchanged (see the module).
    """

    def __init__(self, reader: Any, start_ns: int, *, reuse: bool = True) -> None:
        self._reader = reader
        self.start_ns = start_ns
        self._reuse = reuse
        self._request: ExportMetricsServiceRequest | None = None
        self._shape: list[tuple[Any, ...]] = []
        self._attributes: list[Any] = []
        self.encoded = 0  # collections that went through the encoder (the rest reused its request)

    def export(self, now_ns: int) -> ExportMetricsServiceRequest | None:
        data = self._reader.get_metrics_data()
        if data is None or not data.resource_metrics:
            return None
        if self._reuse and self._request is not None:
            reused = self._refill(data, now_ns)
            if reused is not None:
                return reused
        return self._encode(data, now_ns)

    def _encode(self, data: MetricsData, now_ns: int) -> ExportMetricsServiceRequest:
        request = encode_metrics(data)
        stamp(request, now_ns, self.start_ns)
        self.encoded += 1
        self._request = request if self._reuse else None
        if self._reuse:
            self._shape, self._attributes = self._describe(data)
        return request

    @staticmethod
    def _describe(data: MetricsData) -> tuple[list[tuple[Any, ...]], list[Any]]:
        shape: list[tuple[Any, ...]] = []
        attributes: list[Any] = []
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                shape.append(("scope", rm.resource, sm.scope))
                for metric in sm.metrics:
                    d = metric.data
                    kind = _kind(d)
                    shape.append(
                        (
                            metric.name,
                            metric.description,
                            metric.unit,
                            kind,
                            getattr(d, "aggregation_temporality", None),
                            getattr(d, "is_monotonic", None),
                            len(d.data_points),
                        )
                    )
                    for point in d.data_points:
                        attributes.append(point.attributes)
                        if kind == _HISTOGRAM:
                            assert isinstance(point, HistogramDataPoint)
                            shape.append(tuple(point.explicit_bounds))
        return shape, attributes

    def _refill(self, data: MetricsData, now_ns: int) -> ExportMetricsServiceRequest | None:
        """A copy of the last request with this collection's values, or None if the series changed."""
        shape, attributes = self._describe(data)
        if shape != self._shape or attributes != self._attributes:
            return None
        points = [
            (metric.data, point)
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            for point in metric.data.data_points
        ]
        if any(point.exemplars for _, point in points) or any(_kind(d) is None for d, _ in points):
            return None
        request = ExportMetricsServiceRequest()
        request.CopyFrom(self._request)
        start_ns = self.start_ns
        for (kind, pb), (_, point) in zip(_pb_points(request), points, strict=False):
            pb.time_unix_nano = now_ns
            if kind == _HISTOGRAM:  # the shape matched: the SDK point is of the same kind as the encoded one
                assert isinstance(point, HistogramDataPoint)
                pb.start_time_unix_nano = start_ns
                pb.count = point.count
                pb.sum = point.sum
                del pb.bucket_counts[:]
                pb.bucket_counts.extend(point.bucket_counts)
                pb.max = point.max
                pb.min = point.min
                continue
            if kind == _SUM:
                pb.start_time_unix_nano = start_ns
            assert isinstance(point, NumberDataPoint)
            value = point.value
            if isinstance(value, int):
                pb.as_int = value
            else:
                pb.as_double = value
        return request


class LogExport:
    """One component's log records (XID events): the in-memory exporter's batch, encoded, stamped."""

    def __init__(self, exporter: Any) -> None:
        self._exporter = exporter

    def export(self, now_ns: int) -> ExportLogsServiceRequest | None:
        batch = self._exporter.get_finished_logs()
        if not batch:
            return None
        self._exporter.clear()
        request = encode_logs(batch)
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    record.time_unix_nano = now_ns
                    record.observed_time_unix_nano = now_ns
        return request
