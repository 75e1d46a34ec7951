"""OpenTelemetry SDK wiring shared by every factorylens component.

Exporters are configured the standard way: ``OTEL_EXPORTER_OTLP_ENDPOINT``/``_HEADERS``/
``_PROTOCOL`` (and the per-signal ``_METRICS_``/``_LOGS_`` variants), ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_SERVICE_NAME`` and ``OTEL_METRIC_EXPORT_INTERVAL`` (ms).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace.export import SpanExporter

from factorylens import __version__
from factorylens.registry import Attributes


def otlp_endpoint_configured(signal: str = "metrics") -> bool:
    """Whether the standard variables name an OTLP endpoint for ``signal`` (or for all signals)."""
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    )


def otlp_protocol(signal: str) -> str:
    """``grpc`` or ``http/protobuf``, from the standard variables (the per-signal one first)."""
    protocol = (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    )
    if protocol not in ("grpc", "http/protobuf"):
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported (use grpc or http/protobuf)")
    return protocol


def otlp_metric_exporter(
    transform: Callable[[Any], object] | None = None, *, exponential_histograms: bool = False
) -> MetricExporter:
    """The OTLP metric exporter the standard variables ask for; ``transform`` rewrites each encoded
    ``ExportMetricsServiceRequest`` in place before it is sent (gRPC only); ``exponential_histograms``:
    base-2 exponential histograms unless ``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION``
    says otherwise (a p95 to a few per cent, whatever the buckets)."""
    aggregation: dict[type, Any] | None = None
    if exponential_histograms and not os.environ.get("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"):
        aggregation = {Histogram: ExponentialBucketHistogramAggregation()}
    if otlp_protocol("metrics") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        if transform is None:
            return OTLPMetricExporter(preferred_aggregation=aggregation)
        rewrite = transform

        class TransformingOTLPMetricExporter(OTLPMetricExporter):
            def _translate_data(self, data: Any) -> Any:  # the SDK's encoding step, then ours
                request = super()._translate_data(data)
                try:
                    rewrite(request)
                except Exception:  # sent as encoded rather than lost
                    logging.getLogger(__name__).exception("rewriting an OTLP export failed; sending it as it was")
                    return super()._translate_data(data)
                return request

        return TransformingOTLPMetricExporter()
    if transform is not None:
        raise ValueError("rewriting the export (--shard-by-job) needs OTEL_EXPORTER_OTLP_PROTOCOL=grpc")
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as OTLPMetricExporterHttp

    return OTLPMetricExporterHttp(preferred_aggregation=aggregation)


def otlp_log_exporter() -> LogRecordExporter:
    if otlp_protocol("logs") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter()
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as OTLPLogExporterHttp

    return OTLPLogExporterHttp()


def otlp_span_exporter() -> SpanExporter:
    if otlp_protocol("traces") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as OTLPSpanExporterHttp

    return OTLPSpanExporterHttp()


def periodic_reader(exporter: MetricExporter, default_interval_s: float) -> MetricReader:
    """Export on ``OTEL_METRIC_EXPORT_INTERVAL`` when set, else on the component's own interval."""
    interval_ms = None if os.environ.get("OTEL_METRIC_EXPORT_INTERVAL") else default_interval_s * 1000.0
    return PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms)


def make_resource(attributes: Mapping[str, Any], service_name: str) -> Resource:
    """Our detected attributes, overridden by ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME``."""
    resource = Resource.create(
        {Attributes.SERVICE_NAME: service_name, Attributes.SERVICE_VERSION: __version__, **attributes}
    )
    resource = resource.merge(OTELResourceDetector().detect())
    if os.environ.get("OTEL_SERVICE_NAME"):
        resource = resource.merge(Resource({Attributes.SERVICE_NAME: os.environ["OTEL_SERVICE_NAME"]}))
    return resource


MAX_SERIES_PER_METRIC = 16_384


def make_meter_provider(
    resource: Resource, readers: list[MetricReader], max_series_per_metric: int = MAX_SERIES_PER_METRIC
) -> MeterProvider:
    """A provider whose every metric keeps at most ``max_series_per_metric`` attribute sets.

    The SDK's default (2,000) would fold a large node's per-GPU series into an overflow series;
    ours is high enough for 64 devices × every label value, and still bounds memory.
    """
    view = View(instrument_name="*", aggregation_cardinality_limit=max_series_per_metric)
    return MeterProvider(resource=resource, metric_readers=readers, views=[view])


def make_logger_provider(resource: Resource, exporters: list[LogRecordExporter]) -> LoggerProvider:
    provider = LoggerProvider(resource=resource)
    for exporter in exporters:
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    return provider
