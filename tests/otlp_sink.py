"""A real OTLP/gRPC sink on 127.0.0.1 built from the opentelemetry-proto stubs (for export tests)."""

from __future__ import annotations

import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc


class OtlpSink(metrics_service_pb2_grpc.MetricsServiceServicer, logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self) -> None:
        self.metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.logs: list[logs_service_pb2.ExportLogsServiceRequest] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self, self._server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def Export(self, request, context):
        with self._lock:
            if isinstance(request, metrics_service_pb2.ExportMetricsServiceRequest):
                self.metrics.append(request)
                return metrics_service_pb2.ExportMetricsServiceResponse()
            self.logs.append(request)
            return logs_service_pb2.ExportLogsServiceResponse()

    def metric_points(self, name: str) -> list[tuple[dict, dict, float]]:
        """(resource attributes, point attributes, value) of every exported point of ``name``."""
        out = []
        with self._lock:
            requests = list(self.metrics)
        for request in requests:
            for rm in request.resource_metrics:
                resource = {kv.key: _any(kv.value) for kv in rm.resource.attributes}
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name != name:
                            continue
                        data = getattr(metric, metric.WhichOneof("data"))
                        for p in data.data_points:
                            value = p.as_double if p.HasField("as_double") else p.as_int
                            out.append((resource, {kv.key: _any(kv.value) for kv in p.attributes}, value))
        return out

    def log_records(self) -> list:
        with self._lock:
            return [r for req in self.logs for rl in req.resource_logs for sl in rl.scope_logs for r in sl.log_records]

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)


def _any(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None
