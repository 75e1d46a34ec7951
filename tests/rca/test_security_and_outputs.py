"""TLS, mTLS and bearer tokens on every RPC and /metrics; /metrics contents checked by promtool;
incidents end to end: detected, ranked, exported as OTLP log records, kept across restarts."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import grpc
import pytest

from factorylens.rca_service.api.v1 import rca_pb2
from factorylens.registry import REGISTRY

from ..otlp_sink import OtlpSink
from .conftest import api, raw_export
from .otlp_builders import T0, S, gauge, metrics_request

TOKEN = "s3cret-token"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made for this test."""
    d = tmp_path / "pki"
    d.mkdir()
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
    )
    for name, extra in (("server", ["-addext", "subjectAltName=IP:127.0.0.1"]), ("client", [])):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
            *extra,
        )
        ext = d / f"{name}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\n" if name == "server" else "extendedKeyUsage=clientAuth\n")
        openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.pem"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            str(d / f"{name}.pem"),
            "-extfile",
            str(ext),
        )
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    return d, token


def tls_channel(address: str, d, *, client_cert: bool = False) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        (d / "ca.pem").read_bytes(),
        (d / "client.key").read_bytes() if client_cert else None,
        (d / "client.pem").read_bytes() if client_cert else None,
    )
    return grpc.secure_channel(address, creds)


def auth(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


def test_bearer_token_is_checked_on_otlp_and_api_calls(make_service, pki):
    _, token_file = pki
    service = make_service(bearer_token_file=str(token_file))
    channel = grpc.insecure_channel(service.address)
    payload = metrics_request([gauge("g", [(T0, 1.0)])]).SerializeToString()
    for metadata in ((), auth("wrong")):
        with pytest.raises(grpc.RpcError) as error:
            raw_export(channel, "metrics")(payload, metadata=metadata)
        assert error.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as error:
            api(channel).Health(rca_pb2.HealthRequest(), metadata=metadata)
        assert error.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert service.store.list_series() == []
    raw_export(channel, "metrics")(payload, metadata=auth(TOKEN))
    assert api(channel).Health(rca_pb2.HealthRequest(), metadata=auth(TOKEN)).points_accepted == 1
    assert service.stats.refused[("metrics", "unauthenticated")] == 2
    assert service.stats.refused[("api", "unauthenticated")] == 2


def test_tls_and_mutual_tls(make_service, pki):
    d, _ = pki
    service = make_service(tls_cert=str(d / "server.pem"), tls_key=str(d / "server.key"))
    payload = metrics_request([gauge("g", [(T0, 1.0)])]).SerializeToString()
    raw_export(tls_channel(service.address, d), "metrics")(payload, timeout=10)
    with pytest.raises(grpc.RpcError) as error:  # plaintext against a TLS port
        raw_export(grpc.insecure_channel(service.address), "metrics")(payload, timeout=5)
    assert error.value.code() is grpc.StatusCode.UNAVAILABLE
    mutual = make_service(
        tls_cert=str(d / "server.pem"),
        tls_key=str(d / "server.key"),
        tls_client_ca=str(d / "ca.pem"),
        data_dir=str(d.parent / "mtls"),
    )
    with pytest.raises(grpc.RpcError) as error:  # no client certificate
        raw_export(tls_channel(mutual.address, d), "metrics")(payload, timeout=5)
    assert error.value.code() is grpc.StatusCode.UNAVAILABLE
    raw_export(tls_channel(mutual.address, d, client_cert=True), "metrics")(payload, timeout=10)
    assert len(mutual.store.list_series()) == 1


def test_metrics_endpoint_needs_the_token_over_tls_and_passes_promtool(make_service, pki):
    d, token_file = pki
    service = make_service(
        tls_cert=str(d / "server.pem"), tls_key=str(d / "server.key"), bearer_token_file=str(token_file)
    )
    channel = tls_channel(service.address, d)
    raw_export(channel, "metrics")(metrics_request([gauge("g", [(T0, 1.0)])]).SerializeToString(), metadata=auth(TOKEN))
    url = service.metrics_server.url
    assert url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=str(d / "ca.pem"))
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(url, context=context, timeout=10)
    assert denied.value.code == 401
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    text = urllib.request.urlopen(request, context=context, timeout=10).read().decode()
    for name in (
        "factorylens.rca.ingest.accepted",
        "factorylens.rca.store.series",
        "factorylens.rca.wal.size",
        "factorylens.rca.queue.depth",
        "factorylens.incidents.open",
    ):
        assert REGISTRY.metric(name).prometheus_name in text, name
    assert 'factorylens_rca_ingest_accepted_total{otlp_signal="metrics"} 1.0' in text
    assert "factorylens_rca_requests_refused_total" not in text or "unauthenticated" not in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make test` installs Debian's prometheus"
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def steady_then_spike(now: int, metric: str, attributes: dict, spike_at: int, spike: float, n: int = 120):
    return gauge(
        metric, [(now - (n - i) * S, (spike if i >= spike_at else 50.0 + (i % 3))) for i in range(n)], attributes
    )


def test_incident_is_detected_ranked_exported_and_survives_restart(make_service, tmp_path):
    sink = OtlpSink()
    try:
        data_dir = str(tmp_path / "incidents")
        service = make_service(data_dir=data_dir, incidents_otlp_endpoint=sink.endpoint, kpi_metrics="step.time")
        now = time.time_ns()
        send = raw_export(grpc.insecure_channel(service.address), "metrics")
        # history first: the baseline is what came before the analyzed points
        send(
            metrics_request(
                [
                    steady_then_spike(now, "hw.temperature", {"hw.id": "GPU-hot"}, 999, 0.0),
                    steady_then_spike(now, "step.time", {"factorylens.job.id": "llm"}, 999, 0.0),
                    steady_then_spike(now, "hw.power", {"hw.id": "GPU-ok"}, 999, 0.0),
                ],
            ).SerializeToString()
        )
        service.analyze_now()
        later = now + 30 * S
        # the GPU overheats first; the step time degrades 10 s later; the other GPU stays normal
        send(
            metrics_request(
                [
                    gauge("hw.temperature", [(now + i * S, 95.0) for i in range(1, 31)], {"hw.id": "GPU-hot"}),
                    gauge(
                        "step.time",
                        [(now + i * S, 50.0 if i < 11 else 80.0) for i in range(1, 31)],
                        {"factorylens.job.id": "llm"},
                    ),
                    gauge("hw.power", [(now + i * S, 50.0 + i % 3) for i in range(1, 31)], {"hw.id": "GPU-ok"}),
                ]
            ).SerializeToString()
        )
        service.analyze_now()
        stub = api(grpc.insecure_channel(service.address))
        incidents = stub.ListIncidents(rca_pb2.ListIncidentsRequest(open_only=True)).incidents
        assert len(incidents) == 1
        incident = stub.GetIncident(rca_pb2.GetIncidentRequest(id=incidents[0].id))
        top = incident.causes[0]
        assert (top.rank, top.entity, top.domain, top.signal) == (1, "gpu:GPU-hot", "gpu", "hw.temperature")
        assert [c.entity for c in incident.causes[1:]] == ["gpu:GPU-ok"]  # the KPI itself is not a cause
        assert incident.causes[1].score < top.score / 2
        assert top.evidence[0].observed == 95.0 and top.evidence[0].upper < 95.0
        assert re.search(
            r"\(hw\.temperature\) on gpu:GPU-hot \(gpu\) rose from 51(\.\d+)?( Cel)? to 95", top.explanation
        )
        assert re.search(r"step\.time on job:llm went from 5[01] to 80", top.explanation)
        assert "10 s before the KPI broke" in top.explanation
        assert top.onset_time_unix_nano < incident.onset_time_unix_nano <= later
        metrics_text = urllib.request.urlopen(service.metrics_server.url, timeout=10).read().decode()
        assert 'factorylens_incident_cause_score_ratio{factorylens_cause_rank="1",' in metrics_text
        assert "factorylens_incidents_open 1.0" in metrics_text
        service.stop()
        records = sink.log_records()
        assert records and records[0].event_name == "factorylens.incident"
        attributes = {kv.key: kv.value.string_value for kv in records[0].attributes}
        assert attributes["factorylens.incident.id"] == incident.id
        assert attributes["factorylens.entity"] == "gpu:GPU-hot"
        restarted = make_service(data_dir=data_dir)
        again = api(grpc.insecure_channel(restarted.address)).GetIncident(rca_pb2.GetIncidentRequest(id=incident.id))
        assert again.causes[0].entity == "gpu:GPU-hot"
    finally:
        sink.stop()


def test_mutual_tls_also_guards_the_metrics_endpoint(make_service, pki):
    d, _ = pki
    service = make_service(
        tls_cert=str(d / "server.pem"), tls_key=str(d / "server.key"), tls_client_ca=str(d / "ca.pem")
    )
    context = ssl.create_default_context(cafile=str(d / "ca.pem"))
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(service.metrics_server.url, context=context, timeout=10).read()
    context.load_cert_chain(str(d / "client.pem"), str(d / "client.key"))
    assert (
        b"factorylens_rca_store_series"
        in urllib.request.urlopen(service.metrics_server.url, context=context, timeout=10).read()
    )
