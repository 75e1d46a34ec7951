"""The processors inside rotel, the embedded collector: ``process_metrics`` for
``--otlp-with-metrics-processor`` (see ``otel-config/rotel/normalize.py``).

rotel hands a processor ``rotel_sdk`` objects, not protobuf, and in the release on PyPI (agent
v0.0.1-alpha24) their metric types cannot be constructed from Python: values, names, units and
attributes can be changed in place, points and metrics cannot be added. So each batch is copied to
protobuf, normalized and enriched with ``reshape=False`` (nothing added or moved), and what changed
is written back. What needs new points (the throttle bitmask, node-exporter's used bytes, gauge →
sum) is done by the RCA service's own pass on ingest, which runs on every request anyway.

Enrichment reads ``FACTORYLENS_ENRICH_FILE`` and ``FACTORYLENS_GPU_JOBS_FROM_PROCESSES`` (as
``factorylens rca serve`` does) once, when rotel loads the module.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from factorylens.processors._enrich import EnrichConfig, GpuJobIndex, enrich_metrics
from factorylens.processors._normalize import normalize_metrics

log = logging.getLogger(__name__)


def _enrich_config() -> EnrichConfig:
    jobs_from_processes = os.environ.get("FACTORYLENS_GPU_JOBS_FROM_PROCESSES", "").lower() in ("1", "true", "yes")
    path = os.environ.get("FACTORYLENS_ENRICH_FILE", "")
    if path:
        return EnrichConfig.from_file(path, gpu_jobs_from_processes=jobs_from_processes)
    return EnrichConfig(gpu_jobs_from_processes=jobs_from_processes)


ENRICH = _enrich_config()
INDEX = GpuJobIndex(ENRICH.max_gpus)


def process_metrics(resource_metrics: Any) -> None:
    """rotel's hook: one ``ResourceMetrics`` per call, changed in place."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    proto = request.resource_metrics.add()
    numbers = _to_proto(resource_metrics, proto)
    before = [m.SerializeToString() for _, m in numbers]
    resource_before = proto.resource.SerializeToString()
    normalize_metrics(request, reshape=False)
    enrich_metrics(request, ENRICH, INDEX)
    if proto.resource.SerializeToString() != resource_before:
        resource_metrics.resource.attributes = _to_rotel_attributes(proto.resource.attributes)
    for (metric, changed), old in zip(numbers, before, strict=True):
        if changed.SerializeToString() != old:
            _write_back(metric, changed)


def _kind(metric: Any) -> str:
    """``gauge``/``sum`` for number metrics (rotel's ``MetricData_Gauge`` …), else ""."""
    name = type(metric.data).__name__ if metric.data is not None else ""
    return {"MetricData_Gauge": "gauge", "MetricData_Sum": "sum"}.get(name, "")


def _to_proto(resource_metrics: Any, proto: Any) -> list[tuple[Any, Any]]:
    """The number metrics of a rotel batch as protobuf, each paired with its rotel original."""
    if resource_metrics.resource is not None:
        _to_proto_attributes(resource_metrics.resource.attributes, proto.resource.attributes)
    pairs = []
    for scope_metrics in resource_metrics.scope_metrics:
        scope = proto.scope_metrics.add()
        if scope_metrics.scope is not None:
            scope.scope.name = scope_metrics.scope.name
        for metric in scope_metrics.metrics:
            kind = _kind(metric)
            if not kind:
                continue
            copy = scope.metrics.add(name=metric.name, unit=metric.unit, description=metric.description)
            target = getattr(copy, kind)
            for point in metric.data._0.data_points:
                one = target.data_points.add(time_unix_nano=point.time_unix_nano)
                value = point.value
                if type(value).__name__.endswith("AsInt"):
                    one.as_int = value[0]
                elif value is not None:
                    one.as_double = value[0]
                _to_proto_attributes(point.attributes, one.attributes)
            pairs.append((metric, copy))
    return pairs


def _to_proto_attributes(attributes: Any, out: Any) -> None:
    for kv in attributes:
        value = kv.value.value if kv.value is not None else None
        target = out.add(key=kv.key).value
        if isinstance(value, bool):
            target.bool_value = value
        elif isinstance(value, int):
            target.int_value = value
        elif isinstance(value, float):
            target.double_value = value
        elif isinstance(value, str):
            target.string_value = value
        else:  # arrays, maps, bytes: kept as text so renames still see the key
            target.string_value = str(value)


def _to_rotel_attributes(attributes: Any) -> list[Any]:
    from rotel_sdk.open_telemetry.common.v1 import KeyValue  # type: ignore[import-not-found]  # inside rotel only

    out = []
    for kv in attributes:
        kind = kv.value.WhichOneof("value")
        if kind == "int_value":
            out.append(KeyValue.new_int_value(kv.key, kv.value.int_value))
        elif kind == "double_value":
            out.append(KeyValue.new_double_value(kv.key, kv.value.double_value))
        elif kind == "bool_value":
            out.append(KeyValue.new_bool_value(kv.key, kv.value.bool_value))
        else:
            out.append(KeyValue.new_string_value(kv.key, kv.value.string_value))
    return out


def _write_back(metric: Any, changed: Any) -> None:
    metric.name = changed.name
    metric.unit = changed.unit
    metric.description = changed.description
    points = metric.data._0.data_points
    for point, new in zip(points, getattr(changed, changed.WhichOneof("data")).data_points, strict=True):
        variant = type(point.value)
        point.value = (
            variant.AsInt(new.as_int) if new.WhichOneof("value") == "as_int" else variant.AsDouble(new.as_double)
        )
        point.attributes = _to_rotel_attributes(new.attributes)
