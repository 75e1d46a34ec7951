"""Raw OTLP and RCA API clients for the RCA service tests (the service fixture is in tests/conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from factorylens.rca_service.api.v1 import rca_pb2_grpc

EXPORT = {
    "metrics": (
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        metrics_service_pb2.ExportMetricsServiceResponse,
    ),
    "traces": (
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        trace_service_pb2.ExportTraceServiceResponse,
    ),
    "logs": ("/opentelemetry.proto.collector.logs.v1.LogsService/Export", logs_service_pb2.ExportLogsServiceResponse),
}


def raw_export(channel: grpc.Channel, signal: str):
    """A callable sending serialized request bytes (so tests can send anything, even garbage)."""
    method, response = EXPORT[signal]
    return channel.unary_unary(method, request_serializer=None, response_deserializer=response.FromString)


def api(channel: grpc.Channel) -> rca_pb2_grpc.RcaServiceStub:
    return rca_pb2_grpc.RcaServiceStub(channel)


def serve_command(port: int, data_dir: str | Path, *options: str) -> list[str]:
    """``factorylens rca serve`` on 127.0.0.1:``port`` with /metrics off, as a subprocess's argv."""
    return [
        sys.executable,
        "-m",
        "factorylens",
        "rca",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--metrics-listen",
        "off",
        "--data-dir",
        str(data_dir),
        *options,
    ]
