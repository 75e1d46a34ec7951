"""Regression tests for hostile and extreme input (issue: a 358-byte request, one dense series, huge
attributes, over-deep values, a full disk, poison WAL records, the memory bound, honest status)."""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.metrics.v1 import metrics_pb2

from factorylens.rca_service import RcaService, RcaServiceConfig
from factorylens.rca_service.api.v1 import rca_pb2
from factorylens.rca_service.baselines import BaselineBank, fit_baseline
from factorylens.rca_service.baselines._season import to_grid
from factorylens.rca_service.ingest import RETRY_INFO_TRAILER
from factorylens.rca_service.snapshot import write_snapshot
from factorylens.rca_service.store import SeriesStore, StoreLimits
from factorylens.rca_service.store._attributes import AttributeLimits
from factorylens.rca_service.wal import WriteAheadLog

from ..conftest import free_port, wait_until
from .conftest import api, raw_export, serve_command
from .otlp_builders import T0, S, gauge, histogram, logs_request, metrics_request

MS = 10**6


def nested(levels: int, leaf: AnyValue | None = None) -> AnyValue:
    """A key-value list nested ``levels`` deep (one key per level: a few hundred bytes on the wire)."""
    value = leaf or AnyValue(string_value="x")
    for _ in range(levels):
        value = AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=value)]))
    return value


def deep_attribute_request(levels: int, name: str = "deep") -> bytes:
    """A metrics request with one point whose attribute is a key-value list nested ``levels`` deep,
    encoded field by field: the Python encoder refuses to build what lies past protobuf's depth limit."""
    value = _field(0x0A, b"x")  # AnyValue.string_value
    for _ in range(levels):  # AnyValue.kvlist_value → KeyValueList.values → KeyValue{key, value}
        value = _field(0x32, _field(0x0A, _field(0x0A, b"k") + _field(0x12, value)))
    attribute = _field(0x0A, b"a") + _field(0x12, value)
    point = metrics_pb2.NumberDataPoint(time_unix_nano=T0, as_double=1.0).SerializeToString() + _field(0x3A, attribute)
    metric = metrics_pb2.Metric(name=name).SerializeToString() + _field(0x2A, _field(0x0A, point))
    return _field(0x0A, _field(0x12, _field(0x12, metric)))


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field: tag byte, varint length, payload."""
    return bytes([tag]) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def series_named(stub, metric: str) -> list[rca_pb2.SeriesInfo]:
    return list(stub.ListSeries(rca_pb2.ListSeriesRequest(metric=metric), timeout=10).series)


# ---- 1. a 358-byte request -------------------------------------------------------------------------
@pytest.mark.parametrize("levels", [28, 30])
def test_a_deeply_nested_attribute_is_truncated_in_linear_time(make_service, levels):
    service = make_service()
    raw = deep_attribute_request(levels)
    assert len(raw) < 500
    send = raw_export(grpc.insecure_channel(service.address), "metrics")
    began = time.monotonic()
    response = send(raw, timeout=10)
    assert time.monotonic() - began < 2.0
    assert response.partial_success.rejected_data_points == 0
    assert "truncated" in response.partial_success.error_message
    stub = api(grpc.insecure_channel(service.address))
    [info] = series_named(stub, "deep")
    value = next(a.value for a in info.attributes if a.key == "a")
    assert len(value) <= AttributeLimits().value_length and "…" in value
    assert stub.Health(rca_pb2.HealthRequest(), timeout=1).status == rca_pb2.HealthResponse.SERVING


def test_a_deep_log_body_and_huge_attribute_values_stay_bounded():
    store = SeriesStore()
    body = nested(28)
    request = logs_request([{"time": T0, "body": "x", "attributes": {"big": "y" * 1_000_000}}])
    request.resource_logs[0].scope_logs[0].log_records[0].body.CopyFrom(body)
    store.ingest_logs(request)
    [event] = list(store.events)
    assert len(event["body"]) <= 1024 and len(event["attributes"]["big"]) == 1024
    before = store.stats()["bytes"]
    store.ingest_metrics(
        metrics_request([gauge("wide", [(T0, 1.0)], {"v": "z" * 1_000_000, "i": str(i)}) for i in range(5)])
    )
    assert store.stats()["bytes"] - before > 5 * 1024  # the attributes are counted, not 80 bytes a series
    assert all(len(s.info.attributes["v"]) == 1024 for s in store.series.values() if s.info.metric == "wide")


def test_a_kept_log_record_holds_a_bounded_number_of_bytes():
    """100,000 kept events of 128 attributes of 1 KB each would be 13 GB."""
    store = SeriesStore()
    attributes = {f"k{i}": "v" * 5000 for i in range(200)}
    result = store.ingest_logs(logs_request([{"time": T0, "attributes": attributes}]))
    [event] = list(store.events)
    assert result.accepted == 1 and any("cut" in w for w in result.warnings)
    assert 0 < len(event["attributes"]) <= 16 and all(len(v) == 1024 for v in event["attributes"].values())


def test_attribute_limits_follow_the_sdk_environment_variables(monkeypatch):
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "16")
    monkeypatch.setenv("OTEL_ATTRIBUTE_COUNT_LIMIT", "3")
    monkeypatch.setenv("FACTORYLENS_ATTRIBUTE_DEPTH_LIMIT", "2")
    store = SeriesStore()
    point = metrics_pb2.NumberDataPoint(
        time_unix_nano=T0,
        as_double=1.0,
        attributes=[KeyValue(key=f"k{i}", value=AnyValue(string_value="v" * 40)) for i in range(5)],
    )
    point.attributes.add(key="nest").value.CopyFrom(nested(5))
    result = store.ingest_metrics(
        ExportMetricsServiceRequest(
            resource_metrics=[
                metrics_pb2.ResourceMetrics(
                    scope_metrics=[
                        metrics_pb2.ScopeMetrics(
                            metrics=[metrics_pb2.Metric(name="m", gauge=metrics_pb2.Gauge(data_points=[point]))]
                        )
                    ]
                )
            ]
        )
    )
    [series] = store.series.values()
    assert series.info.attributes == {"k0": "v" * 16, "k1": "v" * 16, "k2": "v" * 16}
    assert result.accepted == 1 and result.warnings
    monkeypatch.setenv("OTEL_ATTRIBUTE_COUNT_LIMIT", "nope")
    with pytest.raises(ValueError, match="OTEL_ATTRIBUTE_COUNT_LIMIT"):
        SeriesStore()


# ---- 4. one over-deep item does not lose the batch -------------------------------------------------
def test_an_item_deeper_than_the_decoder_limit_is_rejected_alone(make_service):
    service = make_service()
    good = metrics_request([gauge("good", [(T0 + i * S, float(i)) for i in range(3)])])
    bad = ExportMetricsServiceRequest.FromString(deep_attribute_request(28, "bad"))
    raw_bad_metric = deep_attribute_request(120, "bad")
    with pytest.raises(DecodeError):
        ExportMetricsServiceRequest.FromString(raw_bad_metric)  # the whole batch does not decode
    # one request: the good metric and the over-deep one in the same scope
    good_metric = good.resource_metrics[0].scope_metrics[0].metrics[0].SerializeToString()
    scope = _field(0x12, good_metric) + _scope_items(raw_bad_metric)
    raw = _field(0x0A, _field(0x12, scope))
    send = raw_export(grpc.insecure_channel(service.address), "metrics")
    response = send(raw, timeout=10)
    assert response.partial_success.rejected_data_points == 1
    assert "do not decode" in response.partial_success.error_message
    stub = api(grpc.insecure_channel(service.address))
    [info] = series_named(stub, "good")
    assert info.points == 3
    assert bad.resource_metrics  # the 28-level one decodes whole (sanity of the builder)
    with pytest.raises(grpc.RpcError) as error:
        send(b"\xff\xff\xff garbage", timeout=10)
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def _scope_items(raw_request: bytes) -> bytes:
    """The ``metrics`` fields (tag, length, bytes) of the single scope in a hand-built request."""
    from factorylens.rca_service._decode import _SHALLOW_REQUEST, _SHALLOW_RESOURCE, _SHALLOW_SCOPE

    resource = _SHALLOW_RESOURCE.FromString(_SHALLOW_REQUEST.FromString(raw_request).resources[0])
    scope = _SHALLOW_SCOPE.FromString(resource.children[0])
    return b"".join(_field(0x12, item) for item in scope.children)


# ---- 2. one dense series -----------------------------------------------------------------------------
@pytest.mark.parametrize("spacing_s", [2e-3, 1e-6])
def test_baseline_cost_does_not_depend_on_the_spacing_or_the_time_of_day(spacing_s):
    n = 20_000
    t = time.time() - n * spacing_s + np.arange(n) * spacing_s
    v = np.sin(np.arange(n) / 5.0) + np.random.default_rng(0).normal(0, 0.1, n)
    began = time.process_time()
    baseline = fit_baseline(t, v)
    bank = BaselineBank()
    bank.warm_start("s", t, v)
    bank.observe("s", t[-1] + spacing_s * np.arange(1, 200), v[:199])
    assert time.process_time() - began < 10.0
    assert math.isfinite(baseline.level)


def test_no_grid_is_larger_than_its_bound():
    with pytest.raises(ValueError, match="larger than"):
        to_grid(np.array([0.0, 86_400.0]), np.array([1.0, 2.0]), 1e-6)
    grid = to_grid(np.array([86_000.0, 86_001.0]), np.array([1.0, 2.0]), 0.5, origin_s=0.0)
    assert grid.values.size == 3 and grid.origin_s == 86_000.0  # starts at the data, in phase with 0


def test_a_series_too_costly_to_model_is_skipped_and_counted(monkeypatch):
    bank = BaselineBank()
    from factorylens.rca_service.baselines import _bank

    ticks = iter(range(0, 10_000, 5))
    monkeypatch.setattr(_bank.time, "monotonic", lambda: float(next(ticks)))
    t = np.arange(100.0)
    bank.warm_start("slow", t, np.sin(t))
    assert bank.unmodelled_count == 1
    assert bank.observe("slow", t + 100, np.sin(t)).size == 0


@pytest.mark.slow
def test_dense_series_keeps_export_and_health_answering_and_sigterm_stops(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        serve_command(port, tmp_path / "data", "--analysis-interval", "0.2"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = api(channel)
        wait_until(lambda: _healthy(stub), what="the service")
        send = raw_export(channel, "metrics")
        now = time.time_ns()
        for spacing in (2 * MS, 1000):
            points = [(now - 20_000 * spacing + i * spacing, math.sin(i / 5)) for i in range(20_000)]
            send(metrics_request([gauge(f"dense{spacing}", points)]).SerializeToString(), timeout=10)
        deadline = time.monotonic() + 8
        latencies = []
        while time.monotonic() < deadline:  # while the analysis works through the dense series
            began = time.monotonic()
            stub.Health(rca_pb2.HealthRequest(), timeout=1)
            send(metrics_request([gauge("tick", [(time.time_ns(), 1.0)])]).SerializeToString(), timeout=10)
            latencies.append(time.monotonic() - began)
        assert max(latencies) < 2.0, f"slowest Health+Export {max(latencies):.2f}s"
        began = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(40)
        assert time.monotonic() - began < 35
    finally:
        server.kill()
        server.communicate()


def _healthy(stub) -> bool:
    try:
        return stub.Health(rca_pb2.HealthRequest(), timeout=1).status == rca_pb2.HealthResponse.SERVING
    except grpc.RpcError:
        return False


def test_health_counts_the_store_at_most_once_a_second(monkeypatch):
    """Health walked every series on every call: with the fuzzer's 100,000+ series it took half the
    service's time and slowed every export."""
    store = SeriesStore()
    store.ingest_metrics(metrics_request([gauge("g", [(T0, 1.0)], {"i": str(i)}) for i in range(100)]))
    walked = []
    monkeypatch.setattr(
        type(next(iter(store.series.values()))), "point_count", property(lambda self: walked.append(1) or 1)
    )
    assert store.stats(max_age_s=1.0)["points"] == 100 and len(walked) == 100
    for _ in range(50):
        store.stats(max_age_s=1.0)
    assert len(walked) == 100  # cached
    store.stats()
    assert len(walked) == 200  # max_age_s=0: always counted


# ---- 5. honest status ------------------------------------------------------------------------------
def test_points_outside_retention_or_far_ahead_are_refused_with_a_reason():
    now = T0 / 1e9 + 100
    store = SeriesStore(StoreLimits(retention_s=3600, max_future_s=60), clock=lambda: now)
    result = store.ingest_metrics(
        metrics_request([gauge("t", [(T0, 1.0), (T0 - 7200 * S, 2.0), (T0 + 3600 * S, 3.0), (int(7.2e18), 4.0)])])
    )
    assert result.accepted == 1 and result.rejected == 3
    assert any("older than the retention" in r for r in result.reasons)
    assert any("in the future" in r for r in result.reasons)
    replay_store = SeriesStore(StoreLimits(retention_s=3600), clock=lambda: now)  # replay: any time
    assert replay_store.ingest_metrics(metrics_request([gauge("t", [(T0 - 7200 * S, 2.0)])])).accepted == 1


def test_non_finite_histogram_bounds_and_sums_are_rejected():
    store = SeriesStore()
    result = store.ingest_metrics(
        metrics_request(
            [
                histogram("h", [(T0 - S, T0, [1.0, float("nan")], [1, 1, 1], 3.0)]),
                histogram("h2", [(T0 - S, T0, [1.0, 2.0], [1, 1, 1], float("inf"))]),
                histogram("ok", [(T0 - S, T0, [1.0, 2.0], [1, 1, 1], 3.0)]),
            ]
        )
    )
    assert result.accepted == 1 and result.rejected == 2
    assert any("not finite" in r for r in result.reasons) and any("non-finite" in r for r in result.reasons)


def test_a_summary_cannot_create_series_without_bound():
    store = SeriesStore()
    metric = metrics_pb2.Metric(name="s")
    point = metric.summary.data_points.add(time_unix_nano=T0, count=1, sum=1.0)
    for i in range(1000):
        point.quantile_values.add(quantile=i / 1000, value=1.0)
    result = store.ingest_metrics(metrics_request([metric]))
    assert result.rejected == 1 and not store.series


def test_full_disk_reports_degraded_and_logs_once_per_interval(tmp_path):
    port = free_port()
    script = f"""
import resource, signal, sys
from factorylens.rca_service import RcaService, RcaServiceConfig
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
service = RcaService(RcaServiceConfig(listen="127.0.0.1:{port}", metrics_listen="off",
                                      data_dir={str(tmp_path / "data")!r}, retry_after_s=0.25))
service.start()
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
print("ready", flush=True)
sys.stdin.read()
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
service.stop()
"""
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        send, stub = raw_export(channel, "metrics"), api(channel)
        refused = 0
        for i in range(60):
            try:
                send(
                    metrics_request([gauge("fill", [(T0 + i * S, 1.0)], {"pad": "p" * 200})]).SerializeToString(),
                    timeout=10,
                )
            except grpc.RpcError as error:
                assert RETRY_INFO_TRAILER in dict(error.trailing_metadata())
                refused += 1
        assert refused >= 30
        assert stub.Health(rca_pb2.HealthRequest(), timeout=5).status == rca_pb2.HealthResponse.DEGRADED
        _, stderr = child.communicate("", timeout=30)
        assert stderr.count("WAL append of") <= 2, stderr
    finally:
        child.kill()
        child.wait()


def test_failing_snapshots_back_off_and_leave_no_temporary_file(make_service, monkeypatch, tmp_path):
    from factorylens.rca_service import service as service_module

    target = tmp_path / "snaps"
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        write_snapshot(target, 7, {"x": 1})
    assert not list(target.glob("*.tmp"))
    service = make_service(snapshot_interval_s=10)
    send = raw_export(grpc.insecure_channel(service.address), "metrics")
    send(metrics_request([gauge("g", [(T0, 1.0)])]).SerializeToString(), timeout=10)
    assert service.snapshot() is None
    assert service._snapshot_failures == 1 and service._next_snapshot_try > time.monotonic() + 1
    assert not list((service.data_dir / "snapshots").glob("*.tmp"))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert service_module.SNAPSHOT_BACKOFF_MAX_S >= 60


def test_snapshots_are_written_in_pieces_and_old_ones_still_load(tmp_path):
    """One pickle of a large store held the GIL for a second: Health and exports stalled meanwhile."""
    import hashlib
    import pickle

    from factorylens.rca_service import snapshot

    state = {"store": {"series": [("info", i) for i in range(5 * snapshot.CHUNK_ITEMS + 1)], "events": []}}
    assert sum(op == "extend" for op, _, _ in snapshot._pieces(state)) == 6
    snapshot.write_snapshot(tmp_path, 5, state)
    assert snapshot.load_latest(tmp_path) == (5, state)
    payload = pickle.dumps({"n": 1})
    (tmp_path / "snapshot-00000000000000000009.pkl").write_bytes(
        snapshot.MAGIC_V1 + hashlib.sha256(payload).digest() + payload
    )
    assert snapshot.load_latest(tmp_path) == (9, {"n": 1})
    newest = snapshot.write_snapshot(tmp_path, 12, state)
    newest.write_bytes(newest.read_bytes()[:-100])  # torn
    assert snapshot.load_latest(tmp_path) == (9, {"n": 1})


def test_unusable_snapshots_are_reported_as_data_loss(tmp_path, caplog):
    data = tmp_path / "data"
    config = dict(listen="127.0.0.1:0", metrics_listen="off", data_dir=str(data), analysis_interval_s=3600.0)
    service = RcaService(RcaServiceConfig(**config))
    service.start()
    send = raw_export(grpc.insecure_channel(service.address), "metrics")
    for batch in range(3):
        send(metrics_request([gauge("g", [(T0 + batch * S, 1.0)])]).SerializeToString(), timeout=10)
        service.snapshot()
    service.stop()
    for path in (data / "snapshots").glob("snapshot-*.pkl"):
        path.write_bytes(b"garbage")
    caplog.set_level(logging.ERROR)
    again = RcaService(RcaServiceConfig(**config))
    again.start()
    try:
        assert again.recovery_data_loss > 0
        assert "DATA LOSS" in caplog.text
    finally:
        again.stop()


def test_exposed_endpoints_warn_at_start(make_service, caplog, tmp_path, monkeypatch):
    caplog.set_level(logging.WARNING)
    make_service(listen="0.0.0.0:0", metrics_listen="off")
    assert "neither TLS nor a bearer token" in caplog.text
    caplog.clear()
    monkeypatch.setenv("FACTORYLENS_RCA_BEARER_TOKEN", "s3cret-token")
    make_service(metrics_listen="off", data_dir=str(tmp_path / "other"))
    assert "TLS is off" in caplog.text and "s3cret-token" not in caplog.text


def test_idle_metrics_connections_are_closed(make_service, monkeypatch):
    from factorylens import exposition

    monkeypatch.setattr(exposition._QuietHandler, "timeout", 0.5)
    service = make_service()
    idle = socket.create_connection((service.metrics_server.host, service.metrics_server.port))
    idle.settimeout(5)
    began = time.monotonic()
    assert idle.recv(1) == b""  # the server closed it
    assert time.monotonic() - began < 4
    idle.close()


# ---- 3. poison records -----------------------------------------------------------------------------
def test_a_wal_record_that_cannot_be_replayed_is_quarantined(tmp_path):
    data = tmp_path / "data"
    wal = WriteAheadLog(data / "wal")
    list(wal.replay())
    wal.append(1, metrics_request([gauge("before", [(T0, 1.0)])]).SerializeToString())
    wal.append(99, b"unknown kind")
    wal.append(1, b"\xff\xff not a request")
    poison = wal.append(1, metrics_request([gauge("poison", [(T0, 1.0)])]).SerializeToString())
    wal.append(1, metrics_request([gauge("after", [(T0, 1.0)])]).SerializeToString())
    wal.close()
    (data / "replay.inprogress").write_bytes(poison.to_bytes(8, "little"))  # it died replaying this one
    service = RcaService(RcaServiceConfig(listen="127.0.0.1:0", metrics_listen="off", data_dir=str(data)))
    service.start()
    try:
        assert service.records_quarantined == 3
        assert len(list((data / "quarantine").iterdir())) == 3
        assert {s.info.metric for s in service.store.series.values()} == {"before", "after"}
        assert not (data / "replay.inprogress").exists()
    finally:
        service.stop()


# ---- 4. the memory bound ---------------------------------------------------------------------------
def test_over_the_memory_bound_exports_are_resource_exhausted_with_retry_info(make_service):
    service = make_service(max_memory_mb=1)
    channel = grpc.insecure_channel(service.address)
    send = raw_export(channel, "metrics")
    with pytest.raises(grpc.RpcError) as error:
        send(metrics_request([gauge("g", [(T0, 1.0)])]).SerializeToString(), timeout=10)
    assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert RETRY_INFO_TRAILER in dict(error.value.trailing_metadata())
    health = api(channel).Health(rca_pb2.HealthRequest(), timeout=5)
    assert health.status == rca_pb2.HealthResponse.DEGRADED and health.requests_refused == 1


def test_the_default_memory_bound_comes_from_the_machine():
    from factorylens.rca_service._memory import default_memory_limit_bytes, physical_memory_bytes
    from factorylens.rca_service.config import memory_limit_bytes

    assert 0 < default_memory_limit_bytes() <= physical_memory_bytes()
    assert memory_limit_bytes(-1) == 0 and memory_limit_bytes(64) == 64 << 20
