"""RCA service ingest: OTLP points/s and spans/s through the real gRPC path on one server core, next to
bare protobuf decode of the same payloads (the Python ceiling); memory per stored point and per series.

Method. The server (``RcaService``, product defaults, ``fsync=always`` unless ``--fsync``) runs in a
subprocess of this script pinned to one CPU; the load generator runs here, pinned to another CPU.
Payloads are realistic OTLP built with the generated ``opentelemetry.proto`` messages and serialized
before anything is timed: metrics requests of 2 hosts x 20 GPU metrics (gauges and cumulative sums)
x N GPUs, one point per series per request (attributes ``hw.id``, ``gpu.index``, ``hw.type``), so the
series set is fixed and every request brings new points; trace requests of whole traces down 4
services (a server and a client span in each, a database call at the end; 20 operations), ~3%
errors and two attributes, so the service's trace assembly (exclusive time, error origins, call
edges; ``--span-settle`` 10 s) joins every span to its parent. A few templates are
built and each request is a template whose timestamps are moved to its own 2**32 ns (~4.3 s) slot by
rewriting their high 32 bits, so the client only sends bytes (``request_serializer=None``) with
``--concurrency`` requests in flight. A warm-up (which creates the series) precedes each timed phase.
Every response must be OK without ``partial_success`` rejections, and the server's Health counters
must equal what was sent.

The ceiling is measured in the same run on the server's CPU before the server starts: ``FromString``
of the first payloads (parse only), then the same plus walking every data point to Python values
(timestamp, value, each attribute key and AnyValue via ``WhichOneof``). ratio = points/s / ceiling.
Memory: stored bytes per point (Health ``store_bytes / points`` after the metrics phase), and bytes
per series = growth of a fresh server's RSS (``/proc/PID/status``) while ``--series`` new series
with one point each arrive, divided by the series created.

Usage: python bench/ingest.py [--seconds 10] [--fsync always|interval|never] [--points-per-request 1000]
                              [--spans-per-request 500] [--concurrency 8] [--series 20000]
Last line: {"bench": "ingest", "points_per_s": x, "spans_per_s": x, "decode_points_per_s": x, "ratio": x,
            "bytes_per_point": x, ...extra keys}
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import select
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from factorylens.rca_service.api.v1 import rca_pb2, rca_pb2_grpc

METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
GAUGES = (
    "hw.gpu.utilization",
    "hw.gpu.memory.usage",
    "hw.gpu.memory.utilization",
    "hw.gpu.memory.free",
    "hw.gpu.memory.limit",
    "hw.gpu.sm.utilization",
    "hw.gpu.sm.occupancy",
    "hw.gpu.pipe.utilization",
    "hw.gpu.memory.bandwidth.utilization",
    "hw.gpu.memory.controller.utilization",
    "hw.gpu.speed",
    "hw.temperature",
    "hw.power",
    "hw.fan.speed_ratio",
)
SUMS = ("hw.energy", "hw.errors", "hw.gpu.io", "hw.gpu.interconnect.io", "hw.gpu.xid", "hw.gpu.clock_event.active")
METRICS = GAUGES + SUMS
HOSTS = 2
GPUS_PER_FLEET_HOST = 8
SERVICES = {  # service.name -> its operations (span names)
    "job-scheduler": ("schedule", "admit", "preempt", "place", "heartbeat"),
    "train-worker": ("train.step", "forward", "backward", "optimizer.step", "allreduce"),
    "data-loader": ("read.shard", "decode.batch", "augment", "prefetch", "shuffle"),
    "checkpoint-writer": ("checkpoint.save", "upload.part", "fsync", "manifest.write", "checkpoint.verify"),
}
ERROR_RATE = 0.03
TEMPLATES = 8
SLOT_SHIFT = 32  # a request's timestamps share their high 32 bits: one slot is 2**32 ns (~4.3 s)
SLOT_BACK = 4000  # the first slot: ~4.8 h ago, well within the default 24 h retention
WARMUP_REQUESTS_PER_INFLIGHT = 2
DECODE_ROUNDS = 3  # best of: the machine may be shared, a disturbed round only reads slower
DECODE_ROUND_S = 0.5
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
RPC_TIMEOUT_S = 60.0
PAYLOAD_HEADROOM = 2.0  # pre-serialize for twice the bare-decode rate over --seconds (up to MAX_PAYLOAD_BYTES)
MAX_PAYLOAD_BYTES = 1 << 30
TARGET_POINTS_PER_S = 100_000
TARGET_SPANS_PER_S = 30_000
TARGET_RATIO = 0.40
TARGET_BYTES_PER_POINT = 24


# ---- payloads -----------------------------------------------------------------------------------
def _kv(key: str, value: str | int) -> KeyValue:
    kv = KeyValue(key=key)
    if isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.string_value = value
    return kv


def _gpu_uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _add_gpu_points(rm: Any, rng: random.Random, gpus: list[tuple[str, int]], slot: int) -> None:
    """One point per GPU for each metric, all at the start of ``slot``."""
    sm = rm.scope_metrics.add()
    sm.scope.name = "factorylens.receivers.gpu"
    ts = slot << SLOT_SHIFT
    started = (slot - SLOT_BACK) << SLOT_SHIFT  # counters started long before; not re-stamped
    for name in METRICS:
        metric = sm.metrics.add(name=name, unit="1")
        if name in GAUGES:
            points = metric.gauge.data_points
        else:
            metric.sum.is_monotonic = True
            metric.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
            points = metric.sum.data_points
        for hw_id, index in gpus:
            point = points.add(time_unix_nano=ts)
            point.attributes.extend([_kv("hw.id", hw_id), _kv("gpu.index", index), _kv("hw.type", "gpu")])
            if name in GAUGES:
                point.as_double = rng.uniform(0.0, 100.0)
            else:
                point.start_time_unix_nano = started
                point.as_int = rng.randrange(1 << 40)


def metrics_template(rng: random.Random, fleet: list[list[tuple[str, int]]], slot: int) -> bytes:
    request = ExportMetricsServiceRequest()
    for host, gpus in enumerate(fleet):
        rm = request.resource_metrics.add()
        rm.resource.attributes.extend(
            [_kv("host.name", f"gpu-node-{host:03d}"), _kv("service.name", "factorylens-gpu")]
        )
        _add_gpu_points(rm, rng, gpus, slot)
    return request.SerializeToString()


def traces_template(rng: random.Random, spans: int, slot: int) -> bytes:
    """Whole traces down a chain of the services (a server span in each, a client span at each call,
    a database call at the end), ids carrying the slot so that every restamped request brings new
    spans and new traces to join: the service's trace assembly does its full work on each."""
    request = ExportTraceServiceRequest()
    services = list(SERVICES.items())
    scopes = []
    for i, (service, _) in enumerate(services):
        rs = request.resource_spans.add()
        rs.resource.attributes.extend([_kv("service.name", service), _kv("host.name", f"gpu-node-{i:03d}")])
        ss = rs.scope_spans.add()
        ss.scope.name = "factorylens.bench"
        scopes.append(ss)
    tag = _slot_bytes(slot)
    made = 0
    while made < spans:
        trace_id = tag + rng.randbytes(12)
        start = (slot << SLOT_SHIFT) + rng.randrange(1 << 30)
        duration = min(int(rng.lognormvariate(math.log(40e6), 1.0)), (1 << 30) - 1)  # ~40 ms, < 1.07 s
        parent = b""
        for depth, (ss, (_, names)) in enumerate(zip(scopes, services, strict=True)):
            for kind in (trace_pb2.Span.SPAN_KIND_SERVER, trace_pb2.Span.SPAN_KIND_CLIENT):
                if made == spans:
                    break
                span_id = tag + rng.randbytes(4)
                span = ss.spans.add(
                    trace_id=trace_id,
                    span_id=span_id,
                    parent_span_id=parent,
                    name=names[depth % len(names)] if kind == trace_pb2.Span.SPAN_KIND_SERVER else rng.choice(names),
                    kind=kind,
                    start_time_unix_nano=start,
                    end_time_unix_nano=start + duration,
                )
                span.attributes.extend([_kv("job.id", f"job-{rng.randrange(64)}"), _kv("gpu.index", rng.randrange(8))])
                if kind == trace_pb2.Span.SPAN_KIND_CLIENT and depth == len(scopes) - 1:
                    span.attributes.append(_kv("db.system", "postgresql"))
                if rng.random() < ERROR_RATE:
                    span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
                    span.status.message = "CUDA error: an illegal memory access was encountered"
                parent = span_id
                made += 1
                start += duration // 10
                duration = duration * 8 // 10
    return request.SerializeToString()


def _slot_bytes(slot: int) -> bytes:
    return struct.pack("<I", slot)


def restamp(template: bytes, slot: int, to_slot: int) -> bytes:
    """The template with every timestamp moved from ``slot`` to ``to_slot`` (fixed64: high 32 bits last)."""
    return template.replace(_slot_bytes(slot), _slot_bytes(to_slot))


def _timestamps(payload: bytes, kind: str) -> list[int]:
    if kind == "metrics":
        request = ExportMetricsServiceRequest.FromString(payload)
        return [
            p.time_unix_nano
            for rm in request.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            for p in getattr(m, m.WhichOneof("data")).data_points
        ]
    request = ExportTraceServiceRequest.FromString(payload)
    return [
        t
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
        for t in (s.start_time_unix_nano, s.end_time_unix_nano)
    ]


def checked_templates(build: Callable[[random.Random], bytes], kind: str, slot: int) -> list[bytes]:
    """Templates whose slot bytes occur exactly at their timestamps and ids (a random value may collide:
    retry)."""
    rng = random.Random(1)
    templates: list[bytes] = []
    while len(templates) < TEMPLATES:
        template = build(rng)
        expected = _timestamps(template, kind)
        moved = _timestamps(restamp(template, slot, slot + 1), kind)
        tags = len(expected) + _tagged_ids(template, kind)
        if template.count(_slot_bytes(slot)) == tags and moved == [t + (1 << SLOT_SHIFT) for t in expected]:
            templates.append(template)
    return templates


def _tagged_ids(payload: bytes, kind: str) -> int:
    """Span, trace and parent ids, which begin with the slot bytes (see :func:`traces_template`)."""
    if kind == "metrics":
        return 0
    request = ExportTraceServiceRequest.FromString(payload)
    return sum(2 + bool(s.parent_span_id) for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans)


def payloads(templates: list[bytes], slot: int, count: int) -> list[bytes]:
    """Request k is template k mod TEMPLATES moved to slot + k: new timestamps for every request."""
    return [restamp(templates[k % len(templates)], slot, slot + k) for k in range(count)]


def fleet_requests(prefix: str, series: int, points_per_request: int) -> tuple[list[bytes], int]:
    """Requests bringing ``series`` distinct series (hosts x 8 GPUs x 20 metrics), one point each;
    returns them and the series they bring (``series`` rounded down to whole hosts, at least one)."""
    rng = random.Random(prefix)
    per_host = GPUS_PER_FLEET_HOST * len(METRICS)
    hosts = max(1, series // per_host)
    hosts_per_request = max(1, points_per_request // per_host)
    requests = []
    slot = (time.time_ns() >> SLOT_SHIFT) - 1
    for first in range(0, hosts, hosts_per_request):
        request = ExportMetricsServiceRequest()
        for host in range(first, min(hosts, first + hosts_per_request)):
            rm = request.resource_metrics.add()
            rm.resource.attributes.extend(
                [_kv("host.name", f"{prefix}-{host:05d}"), _kv("service.name", "factorylens-gpu")]
            )
            _add_gpu_points(rm, rng, [(_gpu_uuid(rng), i) for i in range(GPUS_PER_FLEET_HOST)], slot)
        requests.append(request.SerializeToString())
    return requests, hosts * per_host


# ---- the Python ceiling ---------------------------------------------------------------------------
def walk_metrics(request: ExportMetricsServiceRequest) -> int:
    """Every resource attribute and data point to Python values; returns the points."""
    points = 0
    for rm in request.resource_metrics:
        for kv in rm.resource.attributes:
            _key, _value = kv.key, getattr(kv.value, kv.value.WhichOneof("value"))
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                _name = metric.name
                for point in getattr(metric, metric.WhichOneof("data")).data_points:
                    _ts, _number = point.time_unix_nano, getattr(point, point.WhichOneof("value"))
                    for kv in point.attributes:
                        _key, _value = kv.key, getattr(kv.value, kv.value.WhichOneof("value"))
                    points += 1
    return points


def walk_spans(request: ExportTraceServiceRequest) -> int:
    """Every resource attribute and span (ids, name, kind, times, status, attributes) to Python values."""
    spans = 0
    for rs in request.resource_spans:
        for kv in rs.resource.attributes:
            _key, _value = kv.key, getattr(kv.value, kv.value.WhichOneof("value"))
        for ss in rs.scope_spans:
            for span in ss.spans:
                _fields = (
                    span.trace_id,
                    span.span_id,
                    span.name,
                    span.kind,
                    span.start_time_unix_nano,
                    span.end_time_unix_nano,
                    span.status.code,
                )
                for kv in span.attributes:
                    _key, _value = kv.key, getattr(kv.value, kv.value.WhichOneof("value"))
                spans += 1
    return spans


def items_per_s(sample: list[bytes], items: int, decode: Callable[[bytes], object]) -> float:
    """Items (``items`` a payload) decoded per second: the best of DECODE_ROUNDS passes over ``sample``
    of at least DECODE_ROUND_S each."""
    best = 0.0
    for _ in range(DECODE_ROUNDS):
        done, start = 0, time.perf_counter()
        while True:
            for payload in sample:
                decode(payload)
            done += len(sample) * items
            elapsed = time.perf_counter() - start
            if elapsed >= DECODE_ROUND_S:
                best = max(best, done / elapsed)
                break
    return best


@dataclass
class Ceiling:
    parse_points_per_s: float
    decode_points_per_s: float
    parse_spans_per_s: float
    decode_spans_per_s: float


def measure_ceiling(metrics: list[bytes], points: int, traces: list[bytes], spans: int) -> Ceiling:
    for payload in metrics:
        if walk_metrics(ExportMetricsServiceRequest.FromString(payload)) != points:
            raise AssertionError(f"a metrics payload does not hold {points} points")
    for payload in traces:
        if walk_spans(ExportTraceServiceRequest.FromString(payload)) != spans:
            raise AssertionError(f"a traces payload does not hold {spans} spans")
    return Ceiling(
        items_per_s(metrics, points, ExportMetricsServiceRequest.FromString),
        items_per_s(metrics, points, lambda p: walk_metrics(ExportMetricsServiceRequest.FromString(p))),
        items_per_s(traces, spans, ExportTraceServiceRequest.FromString),
        items_per_s(traces, spans, lambda p: walk_spans(ExportTraceServiceRequest.FromString(p))),
    )


# ---- the server subprocess ------------------------------------------------------------------------
def serve(cpu: int, data_dir: str, fsync: str) -> int:
    """Child: pinned to ``cpu``; prints its address, serves until stdin closes, then stops."""
    os.sched_setaffinity(0, {cpu})
    from factorylens.rca_service import RcaService, RcaServiceConfig

    service = RcaService(RcaServiceConfig(listen="127.0.0.1:0", metrics_listen="off", data_dir=data_dir, fsync=fsync))
    service.start()
    try:
        print(json.dumps({"address": service.address}), flush=True)
        sys.stdin.read()
    finally:
        service.stop()
    return 0


class ServerProcess:
    """``serve`` in a subprocess on ``cpu``, with a channel to it; killed if it does not stop cleanly."""

    def __init__(self, cpu: int, fsync: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="factorylens-bench-ingest-")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(cpu), "--data-dir", self._tmp.name, "--fsync", fsync],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        except BaseException:
            self._tmp.cleanup()
            raise
        self.channel: grpc.Channel | None = None
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT_S)
            line = self.proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
            if not line:
                raise RuntimeError(f"the server did not start (exit status {self.proc.poll()})")
            self.channel = grpc.insecure_channel(
                json.loads(line)["address"], options=[("grpc.max_send_message_length", 64 << 20)]
            )
            self._api = rca_pb2_grpc.RcaServiceStub(self.channel)
            self._api.Health(
                rca_pb2.HealthRequest(), wait_for_ready=True, timeout=max(0.1, deadline - time.monotonic())
            )
        except BaseException:
            self.close()
            raise

    def health(self) -> rca_pb2.HealthResponse:
        return self._api.Health(rca_pb2.HealthRequest(), timeout=RPC_TIMEOUT_S)

    def settled_health(self, points: int = 0, series: int = 0, deadline_s: float = 30.0) -> rca_pb2.HealthResponse:
        """Health once it counts ``points`` stored and ``series``: the service recounts its store at most
        once per ten times the count's own duration, so right after a burst the figures may lag (polled
        until they arrive or the deadline passes)."""
        deadline = time.monotonic() + deadline_s
        health = self.health()
        while (health.points < points or health.series < series) and time.monotonic() < deadline:
            time.sleep(0.1)
            health = self.health()
        return health

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc/PID/status")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process (all its threads) so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        try:
            if self.channel is not None:
                self.channel.close()
            if self.proc.poll() is None:
                self.proc.stdin.close()  # type: ignore[union-attr]
                try:
                    self.proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    print("the server did not stop in time: killed", file=sys.stderr)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()  # type: ignore[union-attr]
            self._tmp.cleanup()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# ---- load -----------------------------------------------------------------------------------------
@dataclass
class Phase:
    requests: int
    seconds: float


@dataclass
class Run:
    timed: Phase
    items_sent: int  # warm-up included
    rss_growth: int  # server RSS over the timed phase, bytes
    server_cpu_s: float  # server CPU time over the timed phase


def drive(
    channel: grpc.Channel,
    method: str,
    response: Any,
    rejected_field: str,
    sent: list[bytes],
    seconds: float,
    concurrency: int,
) -> Phase:
    """Send ``sent`` in order, ``concurrency`` in flight, until it runs out or ``seconds`` pass."""
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=response.FromString)
    inflight: deque[grpc.Future] = deque()

    def finish(future: grpc.Future) -> None:
        partial = future.result().partial_success
        if getattr(partial, rejected_field):
            raise AssertionError(
                f"{method}: {getattr(partial, rejected_field)} {rejected_field} ({partial.error_message})"
            )

    requests, start = 0, time.perf_counter()
    deadline = start + seconds
    for payload in sent:
        if len(inflight) >= concurrency:
            finish(inflight.popleft())
        if time.perf_counter() >= deadline:
            break
        inflight.append(call.future(payload, timeout=RPC_TIMEOUT_S))
        requests += 1
    while inflight:
        finish(inflight.popleft())
    return Phase(requests, time.perf_counter() - start)


def timed_run(
    server: ServerProcess,
    method: str,
    response: Any,
    rejected_field: str,
    templates: list[bytes],
    slot: int,
    per_request: int,
    ceiling_per_s: float,
    args: argparse.Namespace,
) -> Run:
    """Warm-up (creates the series), then the timed phase over pre-serialized requests."""
    assert server.channel is not None
    warmup = WARMUP_REQUESTS_PER_INFLIGHT * args.concurrency
    budget = MAX_PAYLOAD_BYTES // max(len(t) for t in templates)
    count = min(budget, math.ceil(args.seconds * ceiling_per_s * PAYLOAD_HEADROOM / per_request))
    sent = payloads(templates, slot, warmup + count)
    drive(server.channel, method, response, rejected_field, sent[:warmup], math.inf, args.concurrency)
    rss_before, cpu_before = server.rss_bytes(), server.cpu_seconds()
    timed = drive(server.channel, method, response, rejected_field, sent[warmup:], args.seconds, args.concurrency)
    if timed.requests == count:
        print(
            f"note: all {count} pre-serialized {method.split('.')[-1]} requests were sent before "
            f"{args.seconds:g}s (rate over {timed.seconds:.2f}s)",
            file=sys.stderr,
        )
    return Run(
        timed,
        (warmup + timed.requests) * per_request,
        server.rss_bytes() - rss_before,
        server.cpu_seconds() - cpu_before,
    )


def series_memory(cpu: int, args: argparse.Namespace) -> tuple[float, int]:
    """Fresh server: RSS growth per new series (one point each); returns it and the series created."""
    warm, warm_series = fleet_requests("warm-node", args.points_per_request, args.points_per_request)
    sent, series = fleet_requests("fleet-node", args.series, args.points_per_request)
    with ServerProcess(cpu, args.fsync) as server:
        assert server.channel is not None
        drive(
            server.channel,
            METRICS_METHOD,
            ExportMetricsServiceResponse,
            "rejected_data_points",
            warm,
            math.inf,
            args.concurrency,
        )
        before, rss_before = server.settled_health(series=warm_series), server.rss_bytes()
        drive(
            server.channel,
            METRICS_METHOD,
            ExportMetricsServiceResponse,
            "rejected_data_points",
            sent,
            math.inf,
            args.concurrency,
        )
        after, rss_after = server.settled_health(series=before.series + series), server.rss_bytes()
    created = after.series - before.series
    if created != series:
        raise AssertionError(f"{created} series created, {series} sent")
    return (rss_after - rss_before) / created, created


# ---- main -----------------------------------------------------------------------------------------
def cpus() -> tuple[int, int]:
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        raise SystemExit("needs two CPUs: one for the server, one for the load generator")
    return available[0], available[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="timed load per signal (default 10)")
    parser.add_argument("--fsync", default="always", choices=["always", "interval", "never"])
    parser.add_argument(
        "--points-per-request",
        type=int,
        default=1000,
        help=f"rounded down to a multiple of {HOSTS * len(METRICS)} (hosts x metrics)",
    )
    parser.add_argument("--spans-per-request", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--series", type=int, default=20_000, help="series for the memory-per-series phase")
    parser.add_argument("--serve", type=int, metavar="CPU", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        return serve(args.serve, args.data_dir, args.fsync)
    server_cpu, client_cpu = cpus()
    os.sched_setaffinity(0, {client_cpu})

    gpus = args.points_per_request // (HOSTS * len(METRICS))
    if gpus < 1 or args.spans_per_request < 1:
        parser.error(f"--points-per-request must be at least {HOSTS * len(METRICS)}, --spans-per-request 1")
    points = HOSTS * len(METRICS) * gpus
    rng = random.Random(0)
    fleet = [[(_gpu_uuid(rng), index) for index in range(gpus)] for _ in range(HOSTS)]
    slot = (time.time_ns() >> SLOT_SHIFT) - SLOT_BACK
    metric_templates = checked_templates(lambda r: metrics_template(r, fleet, slot), "metrics", slot)
    trace_templates = checked_templates(lambda r: traces_template(r, args.spans_per_request, slot), "traces", slot)

    print(f"bare decode on CPU {server_cpu}...", file=sys.stderr, flush=True)
    os.sched_setaffinity(0, {server_cpu})
    ceiling = measure_ceiling(
        payloads(metric_templates, slot, TEMPLATES),
        points,
        payloads(trace_templates, slot, TEMPLATES),
        args.spans_per_request,
    )
    os.sched_setaffinity(0, {client_cpu})

    print(
        f"gRPC load: server on CPU {server_cpu}, client on CPU {client_cpu}, fsync={args.fsync}, "
        f"{args.seconds:g}s per signal...",
        file=sys.stderr,
        flush=True,
    )
    with ServerProcess(server_cpu, args.fsync) as server:
        metrics = timed_run(
            server,
            METRICS_METHOD,
            ExportMetricsServiceResponse,
            "rejected_data_points",
            metric_templates,
            slot,
            points,
            ceiling.decode_points_per_s,
            args,
        )
        after_metrics = server.settled_health(metrics.items_sent)
        traces = timed_run(
            server,
            TRACES_METHOD,
            ExportTraceServiceResponse,
            "rejected_spans",
            trace_templates,
            slot,
            args.spans_per_request,
            ceiling.decode_spans_per_s,
            args,
        )
        final = server.health()
    for what, got, want in (
        ("points accepted", final.points_accepted, metrics.items_sent),
        ("points stored", after_metrics.points, metrics.items_sent),
        ("series", after_metrics.series, points),
        ("spans accepted", final.spans_accepted, traces.items_sent),
        ("points/spans rejected", final.points_rejected + final.spans_rejected, 0),
        ("requests refused", final.requests_refused, 0),
    ):
        if got != want:
            raise AssertionError(f"server Health: {what} = {got}, expected {want}")

    print(f"memory per series: {args.series} new series on a fresh server...", file=sys.stderr, flush=True)
    bytes_per_series, series = series_memory(server_cpu, args)

    points_per_s = metrics.timed.requests * points / metrics.timed.seconds
    spans_per_s = traces.timed.requests * args.spans_per_request / traces.timed.seconds
    ratio = points_per_s / ceiling.decode_points_per_s
    bytes_per_point = after_metrics.store_bytes / after_metrics.points
    print(
        f"server on CPU {server_cpu}, client on CPU {client_cpu}, fsync={args.fsync}, "
        f"{args.concurrency} requests in flight"
    )
    print(
        f"metrics: {points} points ({len(metric_templates[0]) / 1024:.0f} KiB) a request over {points} series; "
        f"{metrics.timed.requests} requests in {metrics.timed.seconds:.2f}s, server CPU busy "
        f"{metrics.server_cpu_s / metrics.timed.seconds:.0%}"
    )
    print(
        f"traces: {args.spans_per_request} spans ({len(trace_templates[0]) / 1024:.0f} KiB) a request; "
        f"{traces.timed.requests} requests in {traces.timed.seconds:.2f}s, server CPU busy "
        f"{traces.server_cpu_s / traces.timed.seconds:.0%}"
    )
    print(
        f"server Health: {final.points_accepted:,} points and {final.spans_accepted:,} spans accepted "
        f"(= sent, warm-up included), none rejected; {final.series:,} series"
    )
    rows = [
        (
            "metrics points/s (gRPC, 1 server core)",
            f"{points_per_s:,.0f}",
            f">= {TARGET_POINTS_PER_S:,}",
            points_per_s >= TARGET_POINTS_PER_S,
        ),
        (
            "spans/s (gRPC, 1 server core)",
            f"{spans_per_s:,.0f}",
            f">= {TARGET_SPANS_PER_S:,}",
            spans_per_s >= TARGET_SPANS_PER_S,
        ),
        ("bare decode points/s (Python ceiling)", f"{ceiling.decode_points_per_s:,.0f}", "", None),
        ("parse-only points/s (FromString)", f"{ceiling.parse_points_per_s:,.0f}", "", None),
        ("points/s / bare decode", f"{ratio:.1%}", f">= {TARGET_RATIO:.0%}", ratio >= TARGET_RATIO),
        ("bare decode spans/s", f"{ceiling.decode_spans_per_s:,.0f}", "", None),
        ("parse-only spans/s (FromString)", f"{ceiling.parse_spans_per_s:,.0f}", "", None),
        ("spans/s / bare decode", f"{spans_per_s / ceiling.decode_spans_per_s:.1%}", "", None),
        (
            "stored bytes per point",
            f"{bytes_per_point:.1f}",
            f"<= {TARGET_BYTES_PER_POINT}",
            bytes_per_point <= TARGET_BYTES_PER_POINT,
        ),
        (
            "server RSS growth per timed point",
            f"{metrics.rss_growth / (metrics.timed.requests * points):.1f}",
            "",
            None,
        ),
        (f"RSS bytes per series ({series:,} new series)", f"{bytes_per_series:,.0f}", "", None),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'metric':<{width}} {'value':>12} {'target':>10}  ok?")
    for name, value, target, ok in rows:
        print(f"{name:<{width}} {value:>12} {target:>10}  {'' if ok is None else 'yes' if ok else 'NO'}")
    print(
        json.dumps(
            {
                "bench": "ingest",
                "points_per_s": round(points_per_s),
                "spans_per_s": round(spans_per_s),
                "decode_points_per_s": round(ceiling.decode_points_per_s),
                "ratio": round(ratio, 3),
                "bytes_per_point": round(bytes_per_point, 2),
                "parse_only_points_per_s": round(ceiling.parse_points_per_s),
                "decode_spans_per_s": round(ceiling.decode_spans_per_s),
                "bytes_per_series": round(bytes_per_series),
                "fsync": args.fsync,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
