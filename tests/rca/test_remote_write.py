"""Prometheus remote-write from the RCA service, against the real Prometheus 2.42 binary
(``--web.enable-remote-write-receiver``): ingested points under their Prometheus names and labels,
the findings (baseline bands, anomaly scores, open incidents), Prometheus down and back, a restart's
refused samples, TLS and basic auth; retry semantics against a scripted endpoint."""

from __future__ import annotations

import http.server
import json
import shutil
import ssl
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import cramjam
import grpc
import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource

from factorylens.rca_service.api.prompb import remote_pb2
from factorylens.rca_service.config import ConfigError, RcaServiceConfig
from factorylens.rca_service.remote_write import (
    STALE_NAN,
    OtlpTranslator,
    RemoteWriteConfig,
    RemoteWriteExporter,
    label_name,
)
from factorylens.registry import REGISTRY

from ..conftest import free_port, wait_until
from .conftest import raw_export
from .otlp_builders import DELTA, S, counter, gauge, metrics_request
from .test_security_and_outputs import pki  # noqa: F401  (the fixture)

PROMETHEUS = shutil.which("prometheus")
TRAINER = {"service.name": "trainer", "service.instance.id": "trainer-0", "host.name": "node-7"}


class PrometheusServer:
    """The real Prometheus with the remote-write receiver on a free port; stop() and start() again
    keep its storage (a restart)."""

    def __init__(
        self, root: Path, web_config: Path | None = None, ca_file: Path | None = None, authorization: str = ""
    ) -> None:
        assert PROMETHEUS, "Debian's prometheus is installed by `make test` (make system-deps)"
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.web_config, self.port = root, web_config, free_port()
        self.config = root / "prometheus.yml"
        self.config.write_text("global: {scrape_interval: 15s}\n")
        scheme = "https" if web_config else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.write_url = f"{self.url}/api/v1/write"
        self._context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        self._auth = {"Authorization": authorization} if authorization else {}
        self.proc: subprocess.Popen | None = None

    def start(self) -> PrometheusServer:
        argv = [
            PROMETHEUS,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
        ]
        if self.web_config:
            argv.append(f"--web.config.file={self.web_config}")
        with open(self.root / "prometheus.log", "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
        wait_until(self._ready, timeout_s=60, what="Prometheus to start")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def _get(self, path: str) -> bytes:
        request = urllib.request.Request(self.url + path, headers=self._auth)
        with urllib.request.urlopen(request, timeout=5, context=self._context) as response:
            return response.read()

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, (self.root / "prometheus.log").read_text()[-2000:]
        try:
            self._get("/-/ready")
            return True
        except (urllib.error.URLError, ConnectionError):
            return False

    def query(self, expr: str) -> list[dict]:
        body = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        return json.loads(body)["data"]["result"]

    def series(self, expr: str, n: int = 1, timeout_s: float = 30) -> list[dict]:
        """Poll until the query returns ``n`` series."""
        return wait_until(lambda: len(found := self.query(expr)) == n and found, timeout_s, what=f"{n} x {expr}")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus")).start()
    yield server
    server.stop()


def sdk_request_sender(service):
    """A meter whose readings are exported over OTLP/gRPC to the service (the SDK's own exporter)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        views=[
            View(instrument_name="exp.*", aggregation=ExponentialBucketHistogramAggregation()),
            View(
                instrument_name="serving.latency",
                aggregation=ExplicitBucketHistogramAggregation([0.01, 0.1, 0.25, 1, 5]),
            ),
        ],
        resource=Resource.create({**TRAINER, "factorylens.job.id": "llm", "process.pid": 4242}),
    )
    exporter = OTLPMetricExporter(endpoint=service.address, insecure=True)

    def send() -> None:
        assert exporter.export(reader.get_metrics_data()) is MetricExportResult.SUCCESS

    return provider.get_meter("test"), send


def value(result: list[dict]) -> float:
    return float(result[0]["value"][1])


def test_points_and_findings_reach_prometheus_under_their_names(make_service, prometheus):
    service = make_service(remote_write_url=prometheus.write_url, remote_write_interval_s=0.2)
    meter, send = sdk_request_sender(service)
    meter.create_gauge("hw.gpu.utilization", unit="1").set(0.87, {"hw.id": "GPU-x"})
    meter.create_counter("serving.requests").add(5, {"route": "/a"})
    latency = meter.create_histogram("serving.latency", unit="s")
    exp_latency = meter.create_histogram("exp.latency", unit="s")
    for v in (0.02, 0.2, 0.2, 3.0):
        latency.record(v)
        exp_latency.record(v)
    send()
    # a KPI (tokens per second) streamed in two requests with an analysis pass after each; the
    # second ends with a collapse: a broken baseline, an anomaly score near 1, an open incident
    channel_export = raw_export(grpc.insecure_channel(service.address), "metrics")
    base = time.time_ns() - 70 * S
    kpi = [(base + i * 2 * S, 1000.0 + (i % 5)) for i in range(30)] + [
        (base + (30 + i) * 2 * S, 200.0) for i in range(4)
    ]
    resource = {**TRAINER, "factorylens.job.id": "llm"}
    for points in (kpi[:25], kpi[25:]):
        request = metrics_request([gauge("factorylens.train.tokens.rate", points, unit="{token}/s")], resource)
        channel_export(request.SerializeToString())
        service.analyze_now()
    delta = counter("serving.retries", [(base, base + S, 1.0)], temporality=DELTA)
    channel_export(metrics_request([delta], resource).SerializeToString())
    assert service.remote_write.force_flush(20_000)

    util = prometheus.series('hw_gpu_utilization_ratio{hw_id="GPU-x"}')
    assert value(util) == pytest.approx(0.87)
    labels = util[0]["metric"]
    assert labels["job"] == "trainer" and labels["instance"] == "trainer-0"
    assert labels["host_name"] == "node-7" and labels["factorylens_job_id"] == "llm"
    assert "process_pid" not in labels and "telemetry_sdk_name" not in labels  # not identity: dropped
    assert value(prometheus.series('serving_requests_total{route="/a",job="trainer"}')) == 5
    buckets = prometheus.series('serving_latency_seconds_bucket{job="trainer"}', n=6)
    counts = {b["metric"]["le"]: float(b["value"][1]) for b in buckets}
    assert counts == {"0.01": 0, "0.1": 1, "0.25": 3, "1": 3, "5": 4, "+Inf": 4}
    assert value(prometheus.series("serving_latency_seconds_count")) == 4
    assert value(prometheus.series("serving_latency_seconds_sum")) == pytest.approx(3.42)
    median = prometheus.series("histogram_quantile(0.5, exp_latency_seconds_bucket)")
    # the exponential histogram as classic buckets on the fixed √2 grid: inside the grid's bucket of 0.2
    assert 2**-2.5 < value(median) <= 0.25
    # every point kept, with its own timestamp (not one sample per scrape)
    assert value(prometheus.series("count_over_time(factorylens_train_tokens_rate_per_second[10m])")) == 34

    findings = {"factorylens_metric": "factorylens.train.tokens.rate", "job": "factorylens-rca"}
    selector = ",".join(f'{k}="{v}"' for k, v in findings.items())
    lower = prometheus.series(f"factorylens_baseline_lower{{{selector}}}")
    upper = prometheus.series(f"factorylens_baseline_upper{{{selector}}}")
    assert value(lower) < 1000 < value(upper)
    assert lower[0]["metric"]["instance"] == service.address
    score = prometheus.series(f"factorylens_anomaly_score_ratio{{{selector}}}")
    assert 0.5 < value(score) <= 1
    assert value(prometheus.series('factorylens_incidents_open{job="factorylens-rca"}')) == 1

    # the same names on the service's own /metrics; and its remote-write health
    text = urllib.request.urlopen(service.metrics_server.url, timeout=10).read().decode()
    assert 'factorylens_baseline_lower{factorylens_domain="app"' in text
    assert 'factorylens_metric="factorylens.train.tokens.rate"' in text
    counts = service.remote_write.counts()
    assert counts[("dropped", "delta temporality")] == 1
    assert counts[("sent", "")] > 34 and not any(outcome == "failed" for outcome, _ in counts)
    assert 'factorylens_rca_remote_write_samples_total{factorylens_rca_outcome="sent"' in text
    assert "factorylens_rca_remote_write_queue_depth" in text


def test_exponential_histograms_of_different_scales_add_up_by_le(make_service, prometheus):
    """Two replicas' latencies in exponential histograms of different ranges (so of different scales
    and bucket edges), summed by ``le`` as a fleet's p95 panel sums them: the p95 is the pooled
    requests' within a bucket of the grid, not the edge of one replica's top bucket."""
    service = make_service(remote_write_url=prometheus.write_url, remote_write_interval_s=0.2)
    meter, send = sdk_request_sender(service)
    latency = meter.create_histogram("exp.fleet.latency", unit="s")
    rng = np.random.default_rng(0)
    fast = rng.lognormal(np.log(0.05), 0.3, 900)  # most requests, on one replica
    slow = rng.lognormal(np.log(2.0), 0.2, 100)  # fewer and slower, on the other, to 3000 s on occasion
    for v in fast:
        latency.record(float(v), {"replica": "a"})
    for v in [*slow, 3000.0]:
        latency.record(float(v), {"replica": "b"})
    send()
    assert service.remote_write.force_flush(20_000)
    for replica in "ab":
        prometheus.series(f'exp_fleet_latency_seconds_count{{replica="{replica}"}}')
    les = [
        {r["metric"]["le"] for r in prometheus.query(f'exp_fleet_latency_seconds_bucket{{replica="{x}"}}')}
        for x in "ab"
    ]
    assert les[0] == les[1]  # one grid for both
    p95 = value(prometheus.query("histogram_quantile(0.95, sum by (le) (exp_fleet_latency_seconds_bucket))"))
    truth = float(np.quantile(np.r_[fast, slow, 3000.0], 0.95))
    assert truth / 2**0.5 < p95 < truth * 2**0.5, (p95, truth)


def test_prometheus_down_bounds_the_queue_never_ingest_and_sending_resumes(make_service, tmp_path):
    prometheus = PrometheusServer(tmp_path / "prometheus").start()
    try:
        queue, batch = 50, 10
        service = make_service(
            remote_write_url=prometheus.write_url,
            remote_write_interval_s=0.1,
            remote_write_queue=queue,
            remote_write_batch=batch,
            remote_write_timeout_s=2,
        )
        export = raw_export(grpc.insecure_channel(service.address), "metrics")
        now = time.time_ns()

        def send(i: int) -> float:
            began = time.monotonic()
            points = [(now - (300 - i * 10 - k) * S // 10, float(i * 10 + k)) for k in range(10)]
            export(metrics_request([gauge("outage.gauge", points, {"probe": "p"})], TRAINER).SerializeToString())
            return time.monotonic() - began

        send(0)
        assert service.remote_write.force_flush(10_000)
        prometheus.stop()
        slowest = max(send(i) for i in range(1, 30))  # 290 samples while Prometheus is down
        assert slowest < 1.0, "ingest waited for Prometheus"
        depth = service.remote_write.health_series()["factorylens.rca.remote_write.queue.depth"][0][1]
        assert depth <= queue + batch
        assert service.remote_write.counts()[("dropped", "queue full")] >= 290 - queue - batch
        assert service.health().points_accepted == 300
        prometheus.start()
        newest = prometheus.series("outage_gauge_ratio", timeout_s=60)
        wait_until(lambda: value(prometheus.query("outage_gauge_ratio")) == 299, timeout_s=60, what="the newest point")
        assert newest[0]["metric"]["probe"] == "p"
        assert service.remote_write.force_flush(10_000)
        counts = service.remote_write.counts()
        assert counts[("sent", "")] + counts[("dropped", "queue full")] == 300  # every sample accounted for
        assert value(prometheus.query("count_over_time(outage_gauge_ratio[10m])")) == counts[("sent", "")]
        assert service.remote_write.health_series()["factorylens.rca.remote_write.retries"][0][1] > 0
    finally:
        prometheus.stop()


def test_after_a_restart_refused_samples_are_counted_not_retried(prometheus, caplog):
    now = time.time_ns()
    config = RemoteWriteConfig(prometheus.write_url, interval_s=0.05)
    first = RemoteWriteExporter(config)
    first.start()
    first.export_metrics(metrics_request([gauge("restart.gauge", [(now, 1.0)])], TRAINER))
    assert first.force_flush(10_000)
    first.shutdown()
    assert first.counts() == {("sent", ""): 1}
    restarted = RemoteWriteExporter(config)  # its order guard starts empty, as after a restart
    restarted.start()
    try:
        with caplog.at_level("INFO", logger="factorylens.rca_service.remote_write"):
            for k in range(3):
                older = [(now - (3 - k) * S, 2.0)]  # in order here, but behind what Prometheus holds
                restarted.export_metrics(metrics_request([gauge("restart.gauge", older)], TRAINER))
                assert restarted.force_flush(10_000)
        assert restarted.counts() == {("failed", "rejected"): 3}
        assert restarted.health_series()["factorylens.rca.remote_write.retries"] == [({}, 0)]
        refused = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(refused) <= 1 and all(r.levelname == "INFO" for r in refused)  # expected: no spam
    finally:
        restarted.shutdown()
    assert value(prometheus.query("restart_gauge_ratio")) == 1


def test_https_with_a_ca_file_and_basic_auth(tmp_path, pki):  # noqa: F811
    d, _ = pki
    # bcrypt of "s3cret", fixed (Python 3.13 has no crypt module to make one)
    hashed = "$2b$12$3nDKFDjFHEbESAATAbk/8ubppIUc/qknU/3avBGEehYRcjnkbg76a"
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config: {{cert_file: {d / 'server.pem'}, key_file: {d / 'server.key'}}}\n"
        f"basic_auth_users: {{rca: '{hashed}'}}\n"
    )
    prometheus = PrometheusServer(tmp_path / "prometheus", web, d / "ca.pem", "Basic cmNhOnMzY3JldA==")  # rca:s3cret
    prometheus.start()
    try:
        password = tmp_path / "password"
        password.write_text("s3cret\n")
        settings = RcaServiceConfig(
            remote_write_url=prometheus.write_url,
            remote_write_username="rca",
            remote_write_password_file=str(password),
            remote_write_ca_file=str(d / "ca.pem"),
            remote_write_interval_s=0.05,
        ).remote_write_config()
        assert settings is not None
        exporter = RemoteWriteExporter(settings)
        exporter.start()
        exporter.export_metrics(metrics_request([gauge("tls.gauge", [(time.time_ns(), 3.0)])], TRAINER))
        assert exporter.force_flush(10_000)
        exporter.shutdown()
        assert exporter.counts() == {("sent", ""): 1}
        assert value(prometheus.series("tls_gauge_ratio")) == 3
        wrong = RemoteWriteExporter(RemoteWriteConfig(prometheus.write_url, ca_file=str(d / "ca.pem"), interval_s=0.05))
        wrong.start()  # no credentials: 401, a 4xx, not retried
        wrong.export_metrics(metrics_request([gauge("tls.gauge", [(time.time_ns(), 4.0)])], TRAINER))
        assert wrong.force_flush(10_000)
        wrong.shutdown()
        assert wrong.counts() == {("failed", "rejected"): 1}
    finally:
        prometheus.stop()


class ScriptedEndpoint(http.server.ThreadingHTTPServer):
    """Answers remote-write requests with the statuses it is given, keeping what it received; it
    speaks HTTP/1.1 but closes every connection after its answer without saying so, as a server's
    idle timeout does to a kept-alive connection."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses, self.received = list(statuses), []
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                endpoint.received.append((dict(self.headers), body))
                status = endpoint.statuses.pop(0) if endpoint.statuses else 204
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/receive"


def test_5xx_and_429_are_retried_4xx_not_and_the_request_is_the_spec_s():
    endpoint = ScriptedEndpoint([503, 429, 204, 400])
    try:
        config = RemoteWriteConfig(
            endpoint.url, bearer_token="tok", headers={"X-Scope-OrgID": "team-a"}, interval_s=0.05, retry_initial_s=0.01
        )
        exporter = RemoteWriteExporter(config)
        exporter.start()
        now = time.time_ns()
        exporter.export_metrics(metrics_request([gauge("g", [(now, 1.0)], {"a.b": "x"})], TRAINER))
        assert exporter.force_flush(10_000)
        exporter.export_metrics(metrics_request([gauge("g", [(now + S, 2.0)], {"a.b": "x"})], TRAINER))
        assert exporter.force_flush(10_000)
        exporter.shutdown()
        assert exporter.counts() == {("sent", ""): 1, ("failed", "rejected"): 1}
        assert exporter.health_series()["factorylens.rca.remote_write.retries"] == [({}, 2)]
        headers, body = endpoint.received[0]
        assert headers["Content-Encoding"] == "snappy" and headers["Content-Type"] == "application/x-protobuf"
        assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
        assert headers["Authorization"] == "Bearer tok" and headers["X-Scope-OrgID"] == "team-a"
        request = remote_pb2.WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
        (series,) = request.timeseries
        labels = [(label.name, label.value) for label in series.labels]
        assert labels == sorted(labels) and ("a_b", "x") in labels and ("__name__", "g_ratio") in labels
        assert [(s.timestamp, s.value) for s in series.samples] == [(now // 1_000_000, 1.0)]
    finally:
        endpoint.shutdown()
        endpoint.server_close()


def test_an_unreachable_endpoint_gives_up_after_the_retry_bound_and_shutdown_counts_the_rest():
    port = free_port()  # nothing listens there
    config = RemoteWriteConfig(
        f"http://127.0.0.1:{port}/w", interval_s=0.01, retry_initial_s=0.01, retry_max_elapsed_s=0.1, timeout_s=1
    )
    exporter = RemoteWriteExporter(config)
    exporter.start()
    now = time.time_ns()
    exporter.export_metrics(metrics_request([gauge("g", [(now, 1.0)])], TRAINER))
    wait_until(lambda: exporter.counts().get(("failed", "retries exhausted")) == 1, what="the retry bound")
    slow = RemoteWriteExporter(RemoteWriteConfig(config.url, interval_s=0.01, retry_initial_s=10))
    slow.start()
    slow.export_metrics(metrics_request([gauge("g", [(now + k * S, 1.0) for k in range(3)])], TRAINER))
    assert not slow.force_flush(200)  # stuck in back-off
    slow.shutdown(timeout_millis=100)
    exporter.shutdown(timeout_millis=100)
    assert slow.counts() == {("dropped", "unsent at shutdown"): 3}


def test_translation_of_every_otlp_type():
    now = time.time_ns()
    translator = OtlpTranslator()
    request = metrics_request(
        [
            counter("jobs.running", [(now - S, now, 3.0)], monotonic=False),  # an up-down counter: a gauge
            counter("energy", [(now - S, now, 9.0)]),
            counter("sent.delta", [(now - S, now, 1.0)], temporality=DELTA),
        ],
        {**TRAINER, "service.namespace": "ml", "k8s.pod.name": "p-1", "cloud.region": "eu"},
    )
    summary = request.resource_metrics[0].scope_metrics[0].metrics.add(name="rpc.latency", unit="ms")
    point = summary.summary.data_points.add(time_unix_nano=now, count=4, sum=10.0)
    point.quantile_values.add(quantile=0.5, value=2.0)
    point.quantile_values.add(quantile=0.99, value=5.0)
    stale = gauge("hw.gpu.utilization", [(now, 0.0)], {"hw.id": "GPU-y"})
    stale.gauge.data_points[0].flags = 1  # no recorded value: the series ended
    request.resource_metrics[0].scope_metrics[0].metrics.append(stale)
    samples, skipped = translator.translate(request)
    by_name = {
        dict(labels)["__name__"]: (dict(labels), v) for labels, _, v in samples if "quantile" not in dict(labels)
    }
    assert by_name["jobs_running"][1] == 3.0 and by_name["energy_total"][1] == 9.0
    labels = by_name["energy_total"][0]
    assert labels["job"] == "ml/trainer" and labels["k8s_pod_name"] == "p-1" and "cloud_region" not in labels
    quantiles = {dict(labels)["quantile"]: v for labels, _, v in samples if "quantile" in dict(labels)}
    assert quantiles == {"0.5": 2.0, "0.99": 5.0}
    assert by_name["rpc_latency_milliseconds_sum"][1] == 10.0 and by_name["rpc_latency_milliseconds_count"][1] == 4
    stale_bits = struct.pack("<d", by_name["hw_gpu_utilization_ratio"][1])
    assert stale_bits == struct.pack("<d", STALE_NAN) == struct.pack("<Q", 0x7FF0000000000002)
    assert skipped == {"delta temporality": 1}
    assert REGISTRY.metric("hw.gpu.utilization").prometheus_name == "hw_gpu_utilization_ratio"
    assert [label_name(k) for k in ("a.b", "1st", "_x", "__y")] == ["a_b", "key_1st", "key_x", "key_y"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"remote_write_url": "ftp://x/"}, "expected http"),
        ({"remote_write_url": "http://u:p@x/"}, "not in the URL"),
        ({"remote_write_url": "http://x/", "remote_write_headers": "nope"}, "NAME=VALUE"),
        ({"remote_write_url": "http://x/", "remote_write_password_file": __file__}, "username"),
        ({"remote_write_url": "http://x/", "remote_write_batch": 0}, "positive"),
        ({"remote_write_url": "http://x/", "remote_write_ca_file": "/nonexistent.pem"}, "no such file"),
    ],
)
def test_bad_remote_write_settings_are_clear_errors(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        RcaServiceConfig(data_dir=str(tmp_path), **overrides).validate()
