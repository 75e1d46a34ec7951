"""`factorylens rca` commands against a running service; committed API stubs match the .proto;
every metric the service derives or emits is in the registry."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import grpc
import pytest

from factorylens.rca_service.api import _generate
from factorylens.rca_service.config import RcaServiceConfig
from factorylens.rca_service.outputs import INCIDENT_EVENT, health_series
from factorylens.rca_service.store import _spans, _store
from factorylens.registry import REGISTRY

from .conftest import raw_export
from .otlp_builders import S, gauge, metrics_request


def factorylens(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "factorylens", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_committed_stubs_match_the_proto():
    """Both stub sets: our rca.v1 API and the vendored Prometheus remote-write messages."""
    generated = _generate.generate()
    assert {path.parent.name for path in generated} == {"v1", "prompb"}
    for path, text in generated.items():
        committed = path.read_text()
        assert committed == text, f"{path.name} is stale: run python -m factorylens.rca_service.api._generate"


def test_client_commands_show_health_series_and_incidents(make_service, tmp_path):
    token = tmp_path / "token"
    token.write_text("tok\n")
    service = make_service(bearer_token_file=str(token), kpi_metrics="step.time")
    now = time.time_ns()
    history = [(now - (100 - i) * S, 10.0 + i % 2) for i in range(100)]
    raw_export(grpc.insecure_channel(service.address), "metrics")(
        metrics_request(
            [
                gauge("hw.temperature", history, {"hw.id": "GPU-c"}),
                gauge("step.time", history, {"factorylens.job.id": "llm"}),
            ]
        ).SerializeToString(),
        metadata=(("authorization", "Bearer tok"),),
    )
    service.analyze_now()
    raw_export(grpc.insecure_channel(service.address), "metrics")(
        metrics_request(
            [
                gauge("hw.temperature", [(now + i * S, 99.0) for i in range(1, 5)], {"hw.id": "GPU-c"}),
                gauge("step.time", [(now + i * S, 99.0) for i in range(1, 5)], {"factorylens.job.id": "llm"}),
            ]
        ).SerializeToString(),
        metadata=(("authorization", "Bearer tok"),),
    )
    service.analyze_now()
    target = ["--target", service.address, "--bearer-token-file", str(token)]
    denied = factorylens("rca", "health", "--target", service.address)
    assert denied.returncode == 1 and "UNAUTHENTICATED" in denied.stderr
    health = factorylens("rca", "health", *target, "--json")
    assert health.returncode == 0, health.stderr
    assert json.loads(health.stdout)["points_accepted"] == "208"
    series = factorylens("rca", "series", *target, "--entity", "gpu:*")
    assert "hw.temperature" in series.stdout and "gpu:GPU-c" in series.stdout and "1 series" in series.stdout
    incidents = factorylens("rca", "incidents", *target)
    assert "[open]" in incidents.stdout and "#1" in incidents.stdout and "gpu:GPU-c" in incidents.stdout
    incident_id = incidents.stdout.split()[0]
    one = factorylens("rca", "incident", incident_id, *target)
    assert one.returncode == 0
    assert re.search(
        r"\(hw\.temperature\) on gpu:GPU-c \(gpu\) rose from 10(\.\d+)?( \S+)? to 99", " ".join(one.stdout.split())
    )
    missing = factorylens("rca", "incident", "inc-nope", *target)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--listen", "localhost"], "expected HOST:PORT"),
        (["--fsync", "sometimes"], "invalid choice"),
        (["--tls-cert", "/nope.pem", "--tls-key", "/nope.key"], "no such file"),
        (["--max-series", "0"], "must be positive"),
    ],
)
def test_serve_rejects_bad_configuration_clearly(args, message, tmp_path):
    result = factorylens("rca", "serve", "--data-dir", str(tmp_path / "d"), *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_serve_reports_a_taken_port(make_service, tmp_path):
    service = make_service()
    result = factorylens(
        "rca", "serve", "--listen", service.address, "--metrics-listen", "off", "--data-dir", str(tmp_path / "other")
    )
    assert result.returncode == 2 and "cannot listen" in result.stderr


def test_config_reads_defaults_from_the_environment(monkeypatch):
    monkeypatch.setenv("FACTORYLENS_RCA_LISTEN", "0.0.0.0:5317")
    monkeypatch.setenv("FACTORYLENS_RCA_MAX_SERIES", "7")
    config = RcaServiceConfig()
    assert (config.listen, config.max_series) == ("0.0.0.0:5317", 7)
    assert RcaServiceConfig(listen="127.0.0.1:1").listen == "127.0.0.1:1"


def test_every_metric_the_service_writes_is_in_the_registry(make_service):
    for name in (_spans.SPAN_CALLS, _spans.SPAN_ERRORS, _spans.SPAN_DURATION, _store.EVENT_COUNT_METRIC):
        REGISTRY.metric(name)
    assert INCIDENT_EVENT in {e.name for e in REGISTRY.events}
    service = make_service()
    for name, points in health_series(
        service.stats, service.store, service.wal, service.analyzer, service.snapshot_age_s
    ).items():
        spec = REGISTRY.metric(name)
        for attributes, _ in points:
            assert set(attributes) <= set(REGISTRY.allowed_attributes(spec)), name


def test_sigterm_stops_cleanly_with_a_final_snapshot(tmp_path):
    import signal as signals

    from factorylens.rca_service.api.v1 import rca_pb2

    from ..conftest import free_port, wait_until
    from .conftest import api, serve_command

    port = free_port()
    server = subprocess.Popen(
        serve_command(port, tmp_path / "d"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stub = api(grpc.insecure_channel(f"127.0.0.1:{port}"))

        def up() -> bool:
            try:
                return bool(stub.Health(rca_pb2.HealthRequest(), timeout=1).version)
            except grpc.RpcError:
                return False

        wait_until(up, timeout_s=60, what="service up")
        raw_export(grpc.insecure_channel(f"127.0.0.1:{port}"), "metrics")(
            metrics_request([gauge("g", [(time.time_ns(), 1.0)])]).SerializeToString()
        )
        server.send_signal(signals.SIGTERM)
        assert server.wait(30) == 0
    finally:
        server.kill()
    assert list((tmp_path / "d" / "snapshots").glob("snapshot-*.pkl"))
