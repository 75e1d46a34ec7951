"""The RCA service over real gRPC: OTLP round trips from the SDK exporter and raw stubs, bad input,
limits, backpressure with RetryInfo, and a real collector (rotel) in front."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from factorylens.rca_service.api.v1 import rca_pb2
from factorylens.rca_service.ingest import RETRY_INFO_TRAILER
from factorylens.rca_service.store import View as StoreView

from ..conftest import free_port, wait_until
from .conftest import api, raw_export
from .otlp_builders import T0, S, counter, gauge, histogram, key_values, logs_request, metrics_request, trace_request


def series_by_metric(stub, metric: str) -> dict[str, rca_pb2.SeriesInfo]:
    return {s.metric: s for s in stub.ListSeries(rca_pb2.ListSeriesRequest(metric=metric)).series}


def values_of(stub, series_id: str, view: str = "") -> list[float]:
    response = stub.QuerySeries(rca_pb2.QuerySeriesRequest(series_ids=[series_id], view=view))
    return list(response.series[0].values)


def sdk_metrics(temporality: AggregationTemporality, exponential: bool = False):
    preferred = {Counter: temporality, Histogram: temporality}
    reader = InMemoryMetricReader(preferred_temporality=preferred)
    views = [View(instrument_name="exp.*", aggregation=ExponentialBucketHistogramAggregation())] if exponential else []
    provider = MeterProvider(
        metric_readers=[reader],
        views=views,
        resource=Resource.create({"service.name": "trainer", "host.name": "node-7"}),
    )
    return provider.get_meter("test"), reader


@pytest.mark.parametrize("temporality", [AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA])
def test_sdk_exporter_round_trips_every_metric_type(make_service, temporality):
    service = make_service()
    exporter = OTLPMetricExporter(endpoint=service.address, insecure=True)
    meter, reader = sdk_metrics(temporality, exponential=True)
    steps = meter.create_counter("train.steps")
    queue = meter.create_up_down_counter("queue.depth")
    temp = meter.create_gauge("hw.temperature", unit="Cel")
    latency = meter.create_histogram("step.time", unit="s")
    exp_latency = meter.create_histogram("exp.step.time", unit="s")
    for i in range(4):
        steps.add(10, {"job": "j1"})
        queue.add(2 if i < 3 else -1)
        temp.set(60 + i, {"hw.id": "GPU-x"})
        for v in (0.1, 0.2, 0.3):
            latency.record(v * (i + 1))
            exp_latency.record(v * (i + 1))
        assert exporter.export(reader.get_metrics_data()) is MetricExportResult.SUCCESS
        time.sleep(0.01)
    exporter.shutdown()
    stub = api(grpc.insecure_channel(service.address))
    found = series_by_metric(stub, "*")
    assert set(found) >= {"train.steps", "queue.depth", "hw.temperature", "step.time", "exp.step.time"}
    expected_kind = "cumulative_sum" if temporality is AggregationTemporality.CUMULATIVE else "delta_sum"
    assert found["train.steps"].kind == expected_kind
    increase = values_of(stub, found["train.steps"].id, "increase")
    assert increase[1:] == [10.0, 10.0, 10.0]
    if temporality is AggregationTemporality.DELTA:
        assert increase[0] == 10.0
    assert values_of(stub, found["queue.depth"].id) == [2.0, 4.0, 6.0, 5.0]
    assert values_of(stub, found["hw.temperature"].id) == [60.0, 61.0, 62.0, 63.0]
    assert found["hw.temperature"].entity == "gpu:GPU-x" and found["hw.temperature"].domain == "gpu"
    mean = values_of(stub, found["step.time"].id, "mean")
    assert mean[1:] == pytest.approx([0.4, 0.6, 0.8])
    p50 = values_of(stub, found["exp.step.time"].id, "p50")
    assert p50[1:] == pytest.approx([0.4, 0.6, 0.8], rel=0.05)
    health = stub.Health(rca_pb2.HealthRequest())
    assert health.points_accepted > 0 and health.points_rejected == 0 and health.wal_last_lsn == 4


def test_traces_and_logs_from_raw_stubs(make_service):
    service = make_service()
    channel = grpc.insecure_channel(service.address)
    spans = [
        {"name": "load_batch", "start": T0 + i * S, "end": T0 + i * S + 20_000_000, "error": i == 0} for i in range(5)
    ]
    response = raw_export(channel, "traces")(trace_request(spans, "trainer").SerializeToString())
    assert not response.HasField("partial_success")
    logs = logs_request([{"time": T0, "event_name": "hw.gpu.xid", "attributes": {"hw.gpu.xid.code": 79}}])
    raw_export(channel, "logs")(logs.SerializeToString())
    stub = api(channel)
    calls = stub.ListSeries(rca_pb2.ListSeriesRequest(metric="factorylens.span.calls")).series[0]
    assert calls.entity == "service:trainer" and values_of(stub, calls.id, "increase") == [5.0]
    assert service.store.events[0]["event_name"] == "hw.gpu.xid"
    health = stub.Health(rca_pb2.HealthRequest())
    assert (health.spans_accepted, health.log_records_accepted, health.events) == (5, 1, 1)


def test_sdk_span_exporter_round_trip(make_service):
    service = make_service()
    provider = TracerProvider(resource=Resource.create({"service.name": "loader"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=service.address, insecure=True)))
    tracer = provider.get_tracer("test")
    for _ in range(3):
        with tracer.start_as_current_span("read_shard"):
            time.sleep(0.01)
    provider.shutdown()
    sample = service.store.span_sample.spans("loader", "read_shard")
    assert len(sample) == 3 and all(s["duration_s"] >= 0.01 for s in sample)


def test_the_service_builds_its_call_graph_and_edge_latencies_from_sdk_spans(make_service):
    """Three services traced by the OpenTelemetry SDK, each exporting its own spans over OTLP/gRPC as they
    end (children first): the service joins them into call edges with counts, per-edge latency on the
    callee, each service's own time, and the database the SDK names only as ``db.system``."""
    service = make_service(span_settle_s=0.0)
    providers = {}
    for name in ("frontend", "checkout", "payments"):
        providers[name] = TracerProvider(resource=Resource.create({"service.name": name}))
        providers[name].add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=service.address, insecure=True))
        )
    tracer = {name: provider.get_tracer("test") for name, provider in providers.items()}
    server, client = trace_api.SpanKind.SERVER, trace_api.SpanKind.CLIENT
    for _ in range(3):
        with tracer["frontend"].start_as_current_span("GET /buy", kind=server):
            with tracer["frontend"].start_as_current_span("PlaceOrder", kind=client):
                with tracer["checkout"].start_as_current_span("PlaceOrder", kind=server):
                    with tracer["checkout"].start_as_current_span("Charge", kind=client):
                        with tracer["payments"].start_as_current_span("Charge", kind=server):
                            time.sleep(0.03)
                    with tracer["checkout"].start_as_current_span(
                        "SELECT", kind=client, attributes={"db.system": "postgresql"}
                    ):
                        time.sleep(0.005)
    for provider in providers.values():
        provider.shutdown()
    service.analyze_now()  # settles what the last export left waiting
    assert service.store.call_counts() == {
        ("frontend", "checkout"): 3,
        ("checkout", "payments"): 3,
        ("checkout", "db:postgresql"): 3,
    }
    topology = service.analyzer.ranker.topology(service.store)
    assert {("service:frontend", "service:checkout"), ("service:checkout", "service:payments")} <= set(topology.edges)
    stub = api(grpc.insecure_channel(service.address))
    edges = {
        (s.entity, {a.key: a.value for a in s.attributes}["factorylens.span.caller"]): s.id
        for s in stub.ListSeries(rca_pb2.ListSeriesRequest(metric="factorylens.span.edge.duration")).series
    }
    assert set(edges) == {
        ("service:checkout", "frontend"),
        ("service:payments", "checkout"),
        ("service:db:postgresql", "checkout"),
    }
    payments_p95 = values_of(stub, edges[("service:payments", "checkout")], "p95")
    assert payments_p95 and min(payments_p95) >= 0.03
    own = {
        s.entity: values_of(stub, s.id, "p95")
        for s in stub.ListSeries(rca_pb2.ListSeriesRequest(metric="factorylens.span.self_duration")).series
        if {a.key: a.value for a in s.attributes}["span.kind"] == "server"
    }
    # the 30 ms sleep is payments' own time; checkout's and frontend's own time is what they add around it
    assert min(own["service:payments"]) >= 0.03 and max(own["service:checkout"]) < 0.03
    assert max(own["service:frontend"]) < 0.03


def test_counter_reset_out_of_order_and_duplicates_over_the_wire(make_service):
    service = make_service()
    send = raw_export(grpc.insecure_channel(service.address), "metrics")
    send(metrics_request([counter("c", [(T0, T0 + 20 * S, 30.0), (T0, T0 + 10 * S, 10.0)])]).SerializeToString())
    send(metrics_request([counter("c", [(T0, T0 + 20 * S, 30.0)])]).SerializeToString())  # a retried duplicate
    send(metrics_request([counter("c", [(T0 + 25 * S, T0 + 30 * S, 4.0)])]).SerializeToString())  # restarted
    stub = api(grpc.insecure_channel(service.address))
    sid = series_by_metric(stub, "c")["c"].id
    assert values_of(stub, sid, "raw") == [10.0, 30.0, 4.0]
    assert values_of(stub, sid, "increase")[1:] == [20.0, 4.0]


def test_malformed_bytes_are_invalid_argument_and_bad_points_a_partial_success(make_service):
    service = make_service()
    send = raw_export(grpc.insecure_channel(service.address), "metrics")
    with pytest.raises(grpc.RpcError) as error:
        send(b"\xff\xff\xff\xff garbage")
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed OTLP metrics" in error.value.details()
    bad = histogram("h", [(T0, T0 + S, [1.0], [1, 2, 3], 1.0)])
    response = send(metrics_request([bad, gauge("g", [(T0, 1.0), (0, 2.0)])]).SerializeToString())
    assert response.partial_success.rejected_data_points == 2
    assert "bucket_counts" in response.partial_success.error_message
    assert service.stats.refused[("metrics", "malformed")] == 1


_any_value = st.one_of(st.text(max_size=8), st.integers(-(2**63), 2**63 - 1), st.floats(), st.booleans())
_points = st.lists(st.tuples(st.integers(0, 2**64 - 1), st.floats()), max_size=4)


@st.composite
def _metric(draw) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=draw(st.text(max_size=12)), unit=draw(st.text(max_size=3)))
    kind = draw(st.sampled_from(["gauge", "sum", "histogram", "exp", "summary", "empty"]))
    attributes = draw(st.dictionaries(st.text(max_size=6), _any_value, max_size=3))
    if kind in ("gauge", "sum"):
        data = getattr(metric, kind)
        if kind == "sum":
            data.aggregation_temporality = draw(st.integers(0, 3))
            data.is_monotonic = draw(st.booleans())
        for ts, value in draw(_points):
            dp = data.data_points.add(
                time_unix_nano=ts,
                start_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
                as_double=value,
                flags=draw(st.integers(0, 3)),
            )
            dp.attributes.extend(key_values(attributes))
    elif kind == "histogram":
        metric.histogram.aggregation_temporality = draw(st.integers(0, 2))
        for ts, total in draw(_points):
            metric.histogram.data_points.add(
                time_unix_nano=ts,
                sum=total,
                count=draw(st.integers(0, 2**64 - 1)),
                explicit_bounds=draw(st.lists(st.floats(), max_size=4)),
                bucket_counts=draw(st.lists(st.integers(0, 2**64 - 1), max_size=5)),
            )
    elif kind == "exp":
        metric.exponential_histogram.aggregation_temporality = draw(st.integers(0, 2))
        for ts, total in draw(_points):
            dp = metric.exponential_histogram.data_points.add(
                time_unix_nano=ts,
                sum=total,
                scale=draw(st.integers(-30, 30)),
                count=draw(st.integers(0, 100)),
                zero_count=draw(st.integers(0, 2**64 - 1)),
            )
            dp.positive.offset = draw(st.integers(-(2**31), 2**31 - 1))
            dp.positive.bucket_counts.extend(draw(st.lists(st.integers(0, 2**64 - 1), max_size=5)))
            dp.negative.bucket_counts.extend(draw(st.lists(st.integers(0, 10), max_size=2)))
    elif kind == "summary":
        for ts, total in draw(_points):
            dp = metric.summary.data_points.add(time_unix_nano=ts, sum=total, count=draw(st.integers(0, 9)))
            dp.quantile_values.add(quantile=draw(st.floats()), value=draw(st.floats()))
    return metric


def test_fuzzed_payloads_never_crash_the_server(make_service):
    service = make_service()
    channel = grpc.insecure_channel(service.address)
    senders = {signal: raw_export(channel, signal) for signal in ("metrics", "traces", "logs")}
    stub = api(channel)

    def send(signal: str, payload: bytes) -> None:
        try:
            senders[signal](payload, timeout=10)
        except grpc.RpcError as error:
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(["metrics", "traces", "logs"]), st.binary(max_size=600))
    def random_bytes(signal: str, payload: bytes) -> None:
        send(signal, payload)

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(_metric(), min_size=1, max_size=4), st.data())
    def odd_but_valid_metrics(metrics, data) -> None:
        payload = metrics_request(metrics).SerializeToString()
        send("metrics", payload)
        if payload and data.draw(st.booleans()):  # and a bit-flipped copy
            flipped = bytearray(payload)
            position = data.draw(st.integers(0, len(flipped) - 1))
            flipped[position] ^= data.draw(st.integers(1, 255))
            send("metrics", bytes(flipped))

    random_bytes()
    odd_but_valid_metrics()
    for info in stub.ListSeries(rca_pb2.ListSeriesRequest(limit=100000)).series:  # every stored series reads
        for view in ("", "raw", "rate", "p99"):
            try:
                stub.QuerySeries(rca_pb2.QuerySeriesRequest(series_ids=[info.id], view=view))
            except grpc.RpcError as error:
                assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert stub.Health(rca_pb2.HealthRequest()).status == rca_pb2.HealthResponse.SERVING


def test_gzip_requests_are_accepted(make_service):
    service = make_service()
    channel = grpc.insecure_channel(service.address, compression=grpc.Compression.Gzip)
    raw_export(channel, "metrics")(metrics_request([gauge("gz", [(T0, 7.0)])]).SerializeToString())
    assert [i.metric for i in service.store.list_series()] == ["gz"]


def test_oversize_request_is_resource_exhausted(make_service):
    service = make_service(max_message_mb=1)
    request = metrics_request([gauge("big", [(T0 + i, 1.0) for i in range(1)], {"pad": "x" * (2 << 20)})])
    with pytest.raises(grpc.RpcError) as error:
        raw_export(grpc.insecure_channel(service.address), "metrics")(request.SerializeToString())
    assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_overload_returns_retry_info_and_the_sdk_exporter_retries_into_success(make_service):
    service = make_service(max_pending_requests=1, retry_after_s=0.5)
    channel = grpc.insecure_channel(service.address)
    send = raw_export(channel, "metrics")
    results: list = []
    with service.gate.exclusive():  # ingest paused, as during a snapshot
        blocked = threading.Thread(
            target=lambda: results.append(
                send(metrics_request([gauge("first", [(T0, 1.0)])]).SerializeToString(), timeout=20)
            )
        )
        blocked.start()
        wait_until(lambda: service.stats.pending_requests == 1, what="first request in flight")
        with pytest.raises(grpc.RpcError) as refused:
            send(metrics_request([gauge("second", [(T0, 1.0)])]).SerializeToString(), timeout=5)
        error = refused.value
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        trailers = dict(error.trailing_metadata())
        assert error_details_pb2.RetryInfo.FromString(trailers[RETRY_INFO_TRAILER]).retry_delay.nanos == 500_000_000
        status = rpc_status.from_call(error)
        assert status is not None and status.details[0].Is(error_details_pb2.RetryInfo.DESCRIPTOR)
        # the SDK exporter is refused too, waits the RetryInfo delay, and retries
        meter, reader = sdk_metrics(AggregationTemporality.CUMULATIVE)
        meter.create_counter("retried").add(1)
        exporter = OTLPMetricExporter(endpoint=service.address, insecure=True, timeout=20)
        outcome: list = []
        retrying = threading.Thread(target=lambda: outcome.append(exporter.export(reader.get_metrics_data())))
        retrying.start()
        wait_until(lambda: service.stats.refused[("metrics", "overload")] >= 2, what="SDK export refused")
    blocked.join(20)
    retrying.join(20)
    exporter.shutdown()
    assert outcome == [MetricExportResult.SUCCESS]
    assert {i.metric for i in service.store.list_series()} == {"first", "retried"}


def test_wal_write_failure_refuses_with_retry_info_and_nothing_is_acknowledged(tmp_path):
    """A disk that fills up (RLIMIT_FSIZE stands in for it, in a child process)."""
    port = free_port()
    data = tmp_path / "data"
    script = f"""
import resource, signal, sys, time
from factorylens.rca_service import RcaService, RcaServiceConfig
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
service = RcaService(RcaServiceConfig(listen="127.0.0.1:{port}", metrics_listen="off", data_dir={str(data)!r},
                                      retry_after_s=0.25))
service.start()
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
print("ready", flush=True)
sys.stdin.read()
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
service.stop()
"""
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        send = raw_export(grpc.insecure_channel(f"127.0.0.1:{port}"), "metrics")
        acked, refused = [], []
        for i in range(40):
            request = metrics_request([gauge("fill", [(T0 + i * S, float(i))], {"pad": "p" * 200})])
            try:
                send(request.SerializeToString(), timeout=10)
                acked.append(i)
            except grpc.RpcError as error:
                assert error.code() is grpc.StatusCode.UNAVAILABLE
                assert RETRY_INFO_TRAILER in dict(error.trailing_metadata())
                refused.append(i)
        assert acked and refused
        stub = api(grpc.insecure_channel(f"127.0.0.1:{port}"))
        sid = series_by_metric(stub, "fill")["fill"].id
        stored = [int(v) for v in values_of(stub, sid)]
        assert stored == acked  # only what was on disk was acknowledged and stored
        child.communicate("", timeout=30)
    finally:
        child.kill()
        child.wait()


def test_a_real_collector_forwards_to_the_service(make_service, tmp_path):
    """rotel (a Rust OTLP collector, gzip by default) between the SDK and the RCA service."""
    import rotel

    service = make_service()
    agent = Path(rotel.__file__).parent / "rotel-agent"
    port = free_port()
    collector = subprocess.Popen(
        [
            str(agent),
            "start",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{port}",
            "--otlp-http-endpoint",
            f"127.0.0.1:{free_port()}",
            "--exporter",
            "otlp",
            "--otlp-exporter-endpoint",
            f"http://{service.address}",
            "--batch-timeout",
            "100ms",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "rotel.log", "w"),
    )
    try:
        meter, reader = sdk_metrics(AggregationTemporality.CUMULATIVE)
        meter.create_counter("via.collector").add(5, {"hw.id": "GPU-r"})
        exporter = OTLPMetricExporter(endpoint=f"127.0.0.1:{port}", insecure=True, timeout=5)

        def delivered() -> bool:
            exporter.export(reader.get_metrics_data())
            return bool(service.store.list_series("via.collector"))

        wait_until(delivered, timeout_s=30, interval_s=0.3, what="metrics through rotel")
        exporter.shutdown()
        info = service.store.list_series("via.collector")[0]
        assert info.entity == "gpu:GPU-r" and service.store.query(info.id, StoreView.RAW)[2][-1] == 5.0
    finally:
        collector.terminate()
        collector.wait(10)


def test_query_and_baseline_api(make_service):
    service = make_service()
    now = time.time_ns()
    points = [(now - (200 - i) * S, 10.0 + (i % 5)) for i in range(200)]
    raw_export(grpc.insecure_channel(service.address), "metrics")(
        metrics_request([gauge("util", points, {"hw.id": "GPU-q"})]).SerializeToString()
    )
    stub = api(grpc.insecure_channel(service.address))
    sid = series_by_metric(stub, "util")["util"].id
    window = stub.QuerySeries(rca_pb2.QuerySeriesRequest(series_ids=[sid], start_time_unix_nano=now - 50 * S))
    assert len(window.series[0].values) == 50
    baseline = stub.GetBaseline(rca_pb2.GetBaselineRequest(series_id=sid, start_time_unix_nano=now - 100 * S))
    assert baseline.method == "robust-z" and len(baseline.expected) == 100
    assert all(lo <= 12.0 <= hi for lo, hi in zip(baseline.lower, baseline.upper, strict=False))
    assert all(0 <= s < 0.9999 for s in baseline.score)  # calibrated: inside the 4-deviation band
    for bad in (rca_pb2.QuerySeriesRequest(series_ids=["nope"]),):
        with pytest.raises(grpc.RpcError) as error:
            stub.QuerySeries(bad)
        assert error.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as error:
        stub.QuerySeries(rca_pb2.QuerySeriesRequest(series_ids=[sid], view="rate"))
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert not math.isnan(baseline.expected[-1])
    assert os.environ.get("FACTORYLENS_RCA_LISTEN") is None  # the fixture's explicit config wins
