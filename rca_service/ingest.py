"""OTLP/gRPC ingest: MetricsService, TraceService and LogsService ``Export``.

Request path: admission (bounded in-flight requests and bytes, else UNAVAILABLE + RetryInfo; over
the memory bound, RESOURCE_EXHAUSTED + RetryInfo) → decode with the opentelemetry-proto messages
(items that do not decode are rejected one by one; bytes that are no request at all →
INVALID_ARGUMENT) → append the raw request to the write-ahead log (a failure → UNAVAILABLE +
RetryInfo, nothing acknowledged) → store → reply, with a partial success counting the items the
store refused. The handlers receive the request bytes undecoded, so the WAL stores exactly what the
client sent without re-encoding; replay decodes it the same way.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from factorylens.processors import MetricsProcessors
from factorylens.rca_service._decode import salvage
from factorylens.rca_service._memory import MemoryGuard
from factorylens.rca_service._ratelimit import RateLimitedLog
from factorylens.rca_service.store import IngestResult, SeriesStore
from factorylens.rca_service.wal import RecordKind, WalError, WriteAheadLog

log = logging.getLogger(__name__)
limited_log = RateLimitedLog(log)

RETRY_INFO_TRAILER = "google.rpc.retryinfo-bin"  # where the Python OTLP exporter looks for RetryInfo


@dataclass(frozen=True)
class Signal:
    name: str  # metrics | traces | logs
    item: str  # what rejected_* counts
    kind: RecordKind
    service: str  # fully qualified gRPC service name, from the generated descriptor
    request: Any
    response: Any
    partial: Any
    ingest: str  # SeriesStore method


SIGNALS = (
    Signal(
        "metrics",
        "data_points",
        RecordKind.METRICS,
        metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name,
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
        metrics_service_pb2.ExportMetricsPartialSuccess,
        "ingest_metrics",
    ),
    Signal(
        "traces",
        "spans",
        RecordKind.TRACES,
        trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name,
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
        trace_service_pb2.ExportTracePartialSuccess,
        "ingest_spans",
    ),
    Signal(
        "logs",
        "log_records",
        RecordKind.LOGS,
        logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name,
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
        logs_service_pb2.ExportLogsPartialSuccess,
        "ingest_logs",
    ),
)
SIGNAL_BY_KIND = {s.kind: s for s in SIGNALS}


class IngestGate:
    """Many exports at once, or one snapshot alone (a writer-preferring read/write lock)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass
class IngestStats:
    """Counters for /metrics and Health, updated from every handler thread."""

    accepted: dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))
    rejected: dict[tuple[str, str], int] = field(default_factory=lambda: collections.defaultdict(int))
    refused: dict[tuple[str, str], int] = field(default_factory=lambda: collections.defaultdict(int))
    pending_requests: int = 0
    pending_bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, signal: str, result: IngestResult) -> None:
        with self._lock:
            self.accepted[signal] += result.accepted
            for reason, n in result.reasons.items():
                self.rejected[(signal, reason)] += n

    def refuse(self, signal: str, reason: str) -> None:
        with self._lock:
            self.refused[(signal, reason)] += 1

    def copy(self) -> tuple[dict[str, int], dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        """(accepted, rejected, refused) as of now, safe to iterate while handlers count."""
        with self._lock:
            return dict(self.accepted), dict(self.rejected), dict(self.refused)

    def rejected_total(self, signal: str) -> int:
        return sum(n for (s, _), n in self.copy()[1].items() if s == signal)

    def refused_total(self) -> int:
        return sum(self.copy()[2].values())


class _RichStatus(collections.namedtuple("_RichStatus", ("code", "details", "trailing_metadata")), grpc.Status):
    pass


def retry_later_status(message: str, delay_s: float, code: int = code_pb2.UNAVAILABLE) -> grpc.Status:
    """UNAVAILABLE (or RESOURCE_EXHAUSTED, which OTLP clients retry only with it) with RetryInfo, in
    ``grpc-status-details-bin`` (collectors) and in the ``google.rpc.retryinfo-bin`` trailer (the
    Python OTLP exporter)."""
    info = error_details_pb2.RetryInfo()
    info.retry_delay.seconds = int(delay_s)
    info.retry_delay.nanos = int(round((delay_s - int(delay_s)) * 1e9))
    detail = any_pb2.Any()
    detail.Pack(info)
    status = rpc_status.to_status(status_pb2.Status(code=code, message=message, details=[detail]))
    trailers = (*tuple(status.trailing_metadata), (RETRY_INFO_TRAILER, info.SerializeToString()))
    return _RichStatus(status.code, status.details, trailers)


def decode(signal: Signal, raw: bytes) -> tuple[Any, IngestResult]:
    """The request, with the items that did not decode already counted as rejected; raises
    ``ValueError`` when the bytes are no request at all."""
    result = IngestResult()
    try:
        return signal.request.FromString(raw), result
    except Exception as whole:
        try:
            salvaged = salvage(signal.request, raw)
        except Exception:
            raise ValueError(f"{type(whole).__name__}: {whole}") from None
    if salvaged.rejected_items:
        result.reject(f"{signal.item} that do not decode ({salvaged.first_error[:200]})", salvaged.rejected_items)
    return salvaged.request, result


class OtlpIngest:
    """The three OTLP Export handlers over one store and one write-ahead log."""

    def __init__(
        self,
        store: SeriesStore,
        wal: WriteAheadLog,
        gate: IngestGate,
        stats: IngestStats,
        *,
        max_pending_requests: int,
        max_pending_bytes: int,
        retry_after_s: float,
        memory: MemoryGuard | None = None,
        processors: MetricsProcessors | None = None,
    ) -> None:
        self.store = store
        self.processors = processors or MetricsProcessors()
        self.wal = wal
        self.gate = gate
        self.stats = stats
        self.max_pending_requests = max_pending_requests
        self.max_pending_bytes = max_pending_bytes
        self.retry_after_s = retry_after_s
        self.memory = memory or MemoryGuard(0)
        self.writes_failing = False  # the last WAL append failed: Health says DEGRADED
        self._admission = threading.Lock()
        # called with each live metrics request once it is stored (processors applied), e.g. the
        # Prometheus remote-write exporter; they must not block. WAL replay does not call them: what
        # it replays was forwarded when it arrived, and sending it again after a restart would only
        # add samples Prometheus refuses (duplicates, or more than an hour old: out of bounds)
        self.metrics_listeners: list[Callable[[Any], None]] = []

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        return [
            grpc.method_handlers_generic_handler(
                signal.service,
                {
                    "Export": grpc.unary_unary_rpc_method_handler(
                        self._handler(signal),
                        request_deserializer=None,
                        response_serializer=signal.response.SerializeToString,
                    ),
                },
            )
            for signal in SIGNALS
        ]

    def _handler(self, signal: Signal) -> Callable[[bytes, grpc.ServicerContext], Any]:
        def export(raw: bytes, context: grpc.ServicerContext) -> Any:
            return self.export(signal, raw, context)

        return export

    def _admit(self, size: int) -> bool:
        with self._admission:
            stats = self.stats
            if stats.pending_requests >= self.max_pending_requests or (
                stats.pending_requests and stats.pending_bytes + size > self.max_pending_bytes
            ):
                return False
            stats.pending_requests += 1
            stats.pending_bytes += size
            return True

    def _leave(self, size: int) -> None:
        with self._admission:
            self.stats.pending_requests -= 1
            self.stats.pending_bytes -= size

    def export(self, signal: Signal, raw: bytes, context: grpc.ServicerContext) -> Any:
        if not self._admit(len(raw)):
            self.stats.refuse(signal.name, "overload")
            context.abort_with_status(
                retry_later_status(
                    f"RCA service overloaded ({self.stats.pending_requests} requests in flight); retry later",
                    self.retry_after_s,
                )
            )
        try:
            if not self.memory.admits(len(raw)):
                self._refuse_for_memory(signal, context)
            try:
                request, undecodable = decode(signal, raw)
            except ValueError as exc:
                self.stats.refuse(signal.name, "malformed")
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed OTLP {signal.name} request ({exc})")
            if not request.ListFields() and not undecodable.rejected:
                return signal.response()
            if not context.is_active():  # the client gave up while we waited, or the server is stopping
                self.stats.refuse(signal.name, "client gone")
                # UNAVAILABLE, not CANCELLED: a collector retries the one and drops the other (rotel does),
                # and nothing was stored
                context.abort(grpc.StatusCode.UNAVAILABLE, "the call was cancelled or the server is stopping; retry")
            result = self._persist_and_apply(signal, raw, request, context)
            result.merge(undecodable)
            self.stats.record(signal.name, result)
            if signal.kind is RecordKind.METRICS and result.accepted:
                self._notify(request)
            if not result.rejected and not result.warnings:
                return signal.response()
            return signal.response(
                partial_success=signal.partial(
                    error_message=result.message[:4096], **{f"rejected_{signal.item}": result.rejected}
                )
            )
        finally:
            self._leave(len(raw))

    def _refuse_for_memory(self, signal: Signal, context: grpc.ServicerContext) -> None:
        self.stats.refuse(signal.name, "memory")
        limited_log.log(
            logging.WARNING,
            "memory",
            "memory bound reached (%.0f of %.0f MB resident): "
            "exports refused with RESOURCE_EXHAUSTED until memory is freed (lower --retention "
            "or --max-series, or raise --max-memory)",
            self.memory.rss_bytes() / 1e6,
            self.memory.limit_bytes / 1e6,
        )
        context.abort_with_status(
            retry_later_status(
                "RCA service memory bound reached; retry later", self.retry_after_s, code_pb2.RESOURCE_EXHAUSTED
            )
        )

    def _persist_and_apply(
        self, signal: Signal, raw: bytes, request: Any, context: grpc.ServicerContext
    ) -> IngestResult:
        """To the WAL first (acknowledged = durable), then into the store."""
        with self.gate.shared():
            try:
                self.wal.append(signal.kind, raw)
            except WalError as exc:
                self.writes_failing = True
                self.stats.refuse(signal.name, "wal")
                context.abort_with_status(retry_later_status(f"cannot persist the request: {exc}", self.retry_after_s))
            self.writes_failing = False
            return self.apply(signal, request)

    def _notify(self, request: Any) -> None:
        """The listeners, after the reply's fate is sealed: a failing one never fails the export."""
        for listener in self.metrics_listeners:
            try:
                listener(request)
            except Exception:
                limited_log.log(logging.ERROR, "listener", "a metrics listener failed (%s)", listener, exc_info=True)

    def apply(self, signal: Signal, request: Any) -> IngestResult:
        """Store a decoded request; a store bug never takes the server down."""
        if not request.ListFields():
            return IngestResult()
        try:
            if signal.kind is RecordKind.METRICS:
                self.processors.process(request)
            return getattr(self.store, signal.ingest)(request)
        except Exception:
            limited_log.log(
                logging.ERROR,
                "store",
                "storing an OTLP %s request failed part way; it stays in the WAL",
                signal.name,
                exc_info=True,
            )
            result = IngestResult()
            result.reject("internal error while storing; the request is kept in the WAL (see the service log)")
            return result

    def replay(self, kind: int, payload: bytes) -> None:
        """Store one WAL record as live ingest would; raises ``ValueError`` for a record that cannot be
        stored (unknown kind, bytes that are no request, a store failure), which the caller
        quarantines."""
        signal = SIGNAL_BY_KIND.get(RecordKind(kind)) if kind in RecordKind._value2member_map_ else None
        if signal is None:
            raise ValueError(f"unknown record kind {kind}")
        request, _ = decode(signal, payload)
        try:
            if signal.kind is RecordKind.METRICS:
                self.processors.process(request)
            getattr(self.store, signal.ingest)(request)
        except Exception as exc:
            raise ValueError(f"storing it failed: {type(exc).__name__}: {exc}") from exc
