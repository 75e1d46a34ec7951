"""Build OTLP requests with the generated opentelemetry-proto messages (for store and server tests)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
# the origin of hand-made points: a whole hour, two to three hours ago, so that every point the tests
# send lies inside the service's retention and not in its future
T0 = (int(time.time()) // 3600 - 3) * 3600 * 10**9
S = 10**9


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def key_values(attributes: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()]


def metrics_request(
    metrics: Iterable[metrics_pb2.Metric], resource: Mapping[str, Any] | None = None
) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(key_values(resource or {"service.name": "test", "host.name": "node-1"}))
    rm.scope_metrics.add().metrics.extend(metrics)
    return request


def gauge(
    name: str, points: Iterable[tuple[int, float]], attributes: Mapping[str, Any] | None = None, unit: str = "1"
) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=name, unit=unit)
    for ts, value in points:
        dp = metric.gauge.data_points.add(time_unix_nano=ts)
        dp.attributes.extend(key_values(attributes or {}))
        if isinstance(value, int):
            dp.as_int = value
        else:
            dp.as_double = value
    return metric


def counter(
    name: str,
    points: Iterable[tuple[int, int, float]],
    attributes: Mapping[str, Any] | None = None,
    temporality: int = CUMULATIVE,
    monotonic: bool = True,
) -> metrics_pb2.Metric:
    """points: (start_time, time, value)."""
    metric = metrics_pb2.Metric(name=name, unit="{request}")
    metric.sum.aggregation_temporality = temporality
    metric.sum.is_monotonic = monotonic
    for start, ts, value in points:
        dp = metric.sum.data_points.add(start_time_unix_nano=start, time_unix_nano=ts, as_double=value)
        dp.attributes.extend(key_values(attributes or {}))
    return metric


def histogram(
    name: str, points: Iterable[tuple[int, int, list[float], list[int], float]], temporality: int = CUMULATIVE
) -> metrics_pb2.Metric:
    """points: (start, time, explicit_bounds, bucket_counts, sum)."""
    metric = metrics_pb2.Metric(name=name, unit="s")
    metric.histogram.aggregation_temporality = temporality
    for start, ts, bounds, counts, total in points:
        metric.histogram.data_points.add(
            start_time_unix_nano=start,
            time_unix_nano=ts,
            count=sum(counts),
            sum=total,
            explicit_bounds=bounds,
            bucket_counts=counts,
        )
    return metric


def trace_request(spans: Iterable[Mapping[str, Any]], service: str = "checkout") -> ExportTraceServiceRequest:
    """spans: dicts with name, start, end, and optional error, attributes, trace_id, span_id, parent_span_id,
    kind (default 2, server)."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(key_values({"service.name": service}))
    ss = rs.scope_spans.add()
    for s in spans:
        span = ss.spans.add(
            name=s["name"],
            start_time_unix_nano=s["start"],
            end_time_unix_nano=s["end"],
            trace_id=s.get("trace_id", os.urandom(16)),
            span_id=s.get("span_id", os.urandom(8)),
            parent_span_id=s.get("parent_span_id", b""),
            kind=s.get("kind", 2),
        )
        span.attributes.extend(key_values(s.get("attributes", {})))
        if s.get("error"):
            span.status.code = 2
            span.status.message = "boom"
    return request


def logs_request(
    records: Iterable[Mapping[str, Any]], resource: Mapping[str, Any] | None = None
) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.extend(key_values(resource or {"host.name": "node-1"}))
    sl = rl.scope_logs.add()
    for r in records:
        record = sl.log_records.add(
            time_unix_nano=r["time"],
            event_name=r.get("event_name", ""),
            severity_text=r.get("severity", "WARN"),
            severity_number=r.get("severity_number", 0),
        )
        record.body.string_value = r.get("body", "")
        record.attributes.extend(key_values(r.get("attributes", {})))
    return request
