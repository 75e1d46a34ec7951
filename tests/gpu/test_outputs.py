"""The receiver's outputs against real peers: an OTLP/gRPC sink, HTTP clients, and Prometheus 2.x."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest

from factorylens.receivers.gpu import GpuReceiverConfig, create_receiver
from factorylens.registry import REGISTRY
from tests.conftest import free_port, wait_until
from tests.otlp_sink import OtlpSink


@pytest.fixture
def sink():
    s = OtlpSink()
    yield s
    s.stop()


@pytest.fixture
def run_receiver():
    receivers = []

    def start(**config):
        cfg = GpuReceiverConfig(backend="sim", collection_interval_s=0.2, event_wait_ms=100, **config)
        receiver, cluster = create_receiver(cfg)
        receivers.append(receiver)
        receiver.start()
        return receiver, cluster

    yield start
    for r in receivers:
        r.shutdown()


def test_otlp_grpc_export_to_a_real_sink(sink, run_receiver, monkeypatch, tmp_path):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint)
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "300")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.cluster.name=test-cluster")
    scenario = tmp_path / "xid.yaml"
    scenario.write_text("faults: [{kind: xid, target: {host: 1, gpu: 2}, start: 0, params: {code: 48}}]\n")
    _receiver, cluster = run_receiver(sim_hosts=2, sim_gpus_per_host=4, scenario=str(scenario))
    points = wait_until(
        lambda: [p for p in sink.metric_points("hw.gpu.utilization") if p[0].get("host.name") == "sim-node-1"],
        what="utilization over OTLP",
    )
    resource, attributes, value = points[0]
    assert resource["k8s.cluster.name"] == "test-cluster" and resource["factorylens.simulated"] is True
    assert attributes["hw.id"] in {g.uuid for g in cluster.hosts[1].gpus} and 0 <= value <= 1
    records = wait_until(lambda: sink.log_records(), what="XID log record")
    record = records[0]
    attrs = {kv.key: kv.value for kv in record.attributes}
    assert record.event_name == "hw.gpu.xid" and attrs["hw.gpu.xid.code"].int_value == 48
    assert attrs["hw.id"].string_value == cluster.hosts[1].gpus[2].uuid
    xids = wait_until(
        lambda: [p for p in sink.metric_points("hw.errors") if p[1].get("error.type") == "xid"],
        what="XID counter over OTLP",
    )
    assert xids[-1][1]["hw.gpu.xid.code"] == 48 and xids[-1][2] == 1


@pytest.mark.slow
def test_a_dead_collector_does_not_stop_scraping(run_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nobody listens
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1000")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
    receiver, _ = run_receiver(sim_gpus_per_host=1)
    scrapes = receiver.scrapes
    wait_until(lambda: receiver.scrapes >= scrapes + 5, what="scrapes to continue")


def fetch(url, token=None, context=None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return response.status, response.read().decode()


def test_prometheus_endpoint_uses_registry_names(run_receiver):
    receiver, _ = run_receiver(sim_hosts=2, sim_gpus_per_host=2, prometheus_port=0, otlp="off")
    urls = [p.metrics_server.url for p in receiver.pipelines]
    assert all(u.startswith("http://127.0.0.1:") for u in urls) and len(set(urls)) == 2
    status, body = fetch(urls[1])
    assert status == 200
    assert "target_info{" in body and 'host_name="sim-node-1"' in body
    for name in (
        "hw_gpu_utilization_ratio",
        "hw_energy_joules_total",
        "hw_gpu_memory_usage_bytes",
        "hw_errors_total",
        "hw_status",
        "factorylens_receiver_devices",
    ):
        assert f"\n{name}{{" in body or f"\n{name} " in body, name
    names = {line.split("{")[0].split(" ")[0] for line in body.splitlines() if line and not line.startswith("#")}
    known = {m.prometheus_name for m in REGISTRY.metrics} | {
        "target_info",
        "factorylens_receiver_scrape_errors_created",
        "hw_energy_created",
        "hw_errors_created",
        "hw_gpu_io_created",
        "hw_gpu_interconnect_io_created",
    }
    assert names <= known, names - known
    assert "hw_gpu_utilization_ratio{" in body and 'hw_gpu_task="general"' in body


def test_prometheus_endpoint_bearer_token_and_tls(run_receiver, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    receiver, _ = run_receiver(
        sim_gpus_per_host=1,
        prometheus_port=0,
        otlp="off",
        prometheus_bearer_token_file=str(token_file),
        prometheus_tls_cert=str(cert),
        prometheus_tls_key=str(key),
    )
    url = receiver.pipelines[0].metrics_server.url
    assert url.startswith("https://")
    context = ssl.create_default_context(cafile=str(cert))
    with pytest.raises(urllib.error.HTTPError) as denied:
        fetch(url, context=context)
    assert denied.value.code == 401
    with pytest.raises(urllib.error.HTTPError):
        fetch(url, token="wrong", context=context)
    status, body = fetch(url, token="s3cret", context=context)
    assert status == 200 and "hw_power_watts" in body
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        fetch(url.replace("https://", "http://"), token="s3cret")


@pytest.mark.slow
def test_real_prometheus_scrapes_the_endpoint(run_receiver, tmp_path):
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus is installed by `make test` (make system-deps)"
    receiver, _ = run_receiver(sim_gpus_per_host=2, prometheus_port=0, otlp="off")
    target = receiver.pipelines[0].metrics_server
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: gpu, static_configs: [{{targets: ['127.0.0.1:{target.port}']}}]}}]\n"
    )
    check = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def query(expr):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?query={expr}", timeout=5) as r:
                    return json.loads(r.read())["data"]["result"]
            except (urllib.error.URLError, ConnectionError):
                return []

        up = wait_until(
            lambda: query("up") and query("up")[0]["value"][1] == "1" and query("up"),
            timeout_s=60,
            what="Prometheus to scrape the receiver",
        )
        assert up[0]["metric"]["job"] == "gpu"
        util = wait_until(
            lambda: query('hw_gpu_utilization_ratio{hw_gpu_task="general"}'),
            timeout_s=30,
            what="utilization in Prometheus",
        )
        assert len(util) == 2 and {r["metric"]["gpu_index"] for r in util} == {"0", "1"}
        rate = wait_until(lambda: query("rate(hw_energy_joules_total[5s])"), timeout_s=30, what="energy rate")
        assert all(float(r["value"][1]) > 0 for r in rate)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_shard_by_job_stamps_gpu_series_and_copies_host_series_per_job(sink, run_receiver, monkeypatch):
    """``--shard-by-job``: what a gateway routing by ``factorylens.job.id`` needs from the node agent."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint)
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "300")
    run_receiver(sim_hosts=1, sim_gpus_per_host=8, shard_by_job=True)
    processes = wait_until(
        lambda: [p for p in sink.metric_points("process.gpu.memory.usage") if p[1].get("factorylens.job.id")],
        what="process attribution with jobs",
    )
    jobs_by_gpu = {attributes["hw.id"]: attributes["factorylens.job.id"] for _, attributes, _ in processes}
    stamped = wait_until(
        lambda: [p for p in sink.metric_points("hw.temperature") if p[1].get("factorylens.job.id")],
        what="device series stamped with their job",
    )
    assert all(jobs_by_gpu.get(attributes["hw.id"]) == attributes["factorylens.job.id"] for _, attributes, _ in stamped)

    def host_copies() -> dict[str, bool]:
        copies: dict[str, bool] = {}
        for request in list(sink.metrics):
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    scope = {kv.key: kv.value for kv in sm.scope.attributes}
                    if "factorylens.job.id" in scope and any(m.name == "system.cpu.time" for m in sm.metrics):
                        copies[scope["factorylens.job.id"].string_value] = "factorylens.route.primary" in scope
        return copies

    copies = wait_until(
        lambda: host_copies() if set(host_copies()) >= set(jobs_by_gpu.values()) else None,
        what="the host's CPU series once per job",
    )
    assert sum(copies.values()) == 1  # one copy is the one a Prometheus pipeline keeps


def test_shard_by_job_needs_the_grpc_exporter(monkeypatch):
    from factorylens.receivers.gpu.config import ConfigError

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL=grpc"):
        GpuReceiverConfig(backend="sim", shard_by_job=True).validate()
