"""RCA service fixtures: an in-process service on a free 127.0.0.1 port, always stopped."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from factorylens.rca_service import RcaService, RcaServiceConfig
from factorylens.rca_service.api.v1 import rca_pb2_grpc

EXPORT = {
    "metrics": ("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                metrics_service_pb2.ExportMetricsServiceResponse),
    "traces": ("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
               trace_service_pb2.ExportTraceServiceResponse),
    "logs": ("/opentelemetry.proto.collector.logs.v1.LogsService/Export", logs_service_pb2.ExportLogsServiceResponse),
}


@pytest.fixture
def make_service(tmp_path):
    """``make_service(**config)`` → a started RcaService; every one is stopped at teardown."""
    started: list[RcaService] = []

    def make(**overrides) -> RcaService:
        values = {"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0", "data_dir": str(tmp_path / "data"),
                  "analysis_interval_s": 3600.0, **overrides}
        service = RcaService(RcaServiceConfig(**values))
        service.start()
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop(grace_s=1)


def raw_export(channel: grpc.Channel, signal: str):
    """A callable sending serialized request bytes (so tests can send anything, even garbage)."""
    method, response = EXPORT[signal]
    return channel.unary_unary(method, request_serializer=None, response_deserializer=response.FromString)


def api(channel: grpc.Channel) -> rca_pb2_grpc.RcaServiceStub:
    return rca_pb2_grpc.RcaServiceStub(channel)
