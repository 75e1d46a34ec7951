"""A vLLM /metrics page, scraped over HTTP and sent to a running RCA service over OTLP/gRPC, is stored under the
OTel GenAI names (issue 19: "a real vLLM /metrics scraped by the collector lands under the GenAI names").

The path is the project's for a serving engine's Prometheus endpoint, with one stand-in. The collector that scrapes
it is otelcol-contrib's ``prometheus`` receiver (``otel-config/agent.yaml``; rotel, the embedded collector, cannot
scrape), which is a Go binary that is not installable here; its scrape-to-OTLP rules are reproduced by
``tests/collector/prometheus_receiver.py`` (each rule cited to the receiver's source). Everything else is real: the
page is the checked-in vLLM V1 fixture served by an HTTP server on 127.0.0.1, fetched with an HTTP GET as the
receiver's scrape loop does (``Accept`` for the text format), and the OTLP request goes over gRPC into a started
``RcaService``, whose ingest runs the normalize and enrich processors before the store.
"""

from __future__ import annotations

import http.server
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest

from factorylens.rca_service.store import SeriesStore
from tests.collector.prometheus_receiver import exposition_to_otlp, read_fixture
from tests.conftest import wait_until
from tests.rca.conftest import raw_export

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
PROMETHEUS_ACCEPT = "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


@contextmanager
def serving_metrics(page: str) -> Iterator[str]:
    """``page`` served at http://127.0.0.1:<free port>/metrics as vLLM serves it; the server always stops."""
    body = page.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="vllm-metrics", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def scrape(target: str, timestamp_ns: int) -> bytes:
    """One scrape of ``target`` by a receiver job ``vllm``: the OTLP request it hands on, serialized."""
    request = urllib.request.Request(f"http://{target}/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return exposition_to_otlp(text, job="vllm", instance=target, timestamp_ns=timestamp_ns).SerializeToString()


def series_of(store: SeriesStore, metric: str) -> dict[str, object]:
    [series] = store.list_series(metric)
    return series.attributes


def test_a_scraped_vllm_page_is_stored_under_the_genai_names(make_service) -> None:
    service = make_service()
    store = service.store
    now_ms = time.time_ns() // 10**6
    with serving_metrics(read_fixture("serving/vllm-v1.prom")) as target:
        send = raw_export(grpc.insecure_channel(service.address), "metrics")
        for step in range(2):  # two scrapes, 15 s apart: the cumulative histograms become rates
            send(scrape(target, (now_ms - 15_000 * (1 - step)) * 10**6), timeout=10)

    names = (
        "gen_ai.server.time_to_first_token",
        "gen_ai.server.time_per_output_token",
        "gen_ai.server.request.duration",
    )
    wait_until(lambda: all(store.list_series(name) for name in names), timeout_s=20, what="the GenAI series")
    assert not store.list_series("vllm:*"), "a vLLM series kept its own name"

    ttft = series_of(store, "gen_ai.server.time_to_first_token")
    assert ttft["gen_ai.request.model"] == LLAMA and ttft["gen_ai.provider.name"] == "vllm"
    assert ttft["factorylens.inference.engine"] == "0"
    assert "server.address" not in ttft  # a loopback target is not "discernible": the receiver names no address
    # each scraped engine is its own replica, named by its scrape target, owned by its scrape job
    assert {s.info.entity for s in store.series.values() if s.info.metric.startswith("gen_ai.server.")} == {
        f"replica:vllm/{target}"
    }
    [series] = [s for s in store.series.values() if s.info.metric == "gen_ai.server.time_to_first_token"]
    last = series.points[-1]
    assert (last.count, last.sum) == (380, pytest.approx(41.7))
    assert last.bounds[:5] == (0.001, 0.005, 0.01, 0.02, 0.04) and len(last.bounds) == 22
    assert int(last.counts.sum()) == 380

    usage = {s.attributes["gen_ai.token.type"] for s in store.list_series("gen_ai.client.token.usage")}
    assert usage == {"input", "output"}
    [running] = store.list_series("factorylens.inference.requests.running")
    assert store.query(running.id)[2][-1] == 12.0
    [kv] = store.list_series("factorylens.inference.kv_cache.usage")
    assert store.query(kv.id)[2][-1] == pytest.approx(0.42)
    finished = {s.attributes["factorylens.inference.finish_reason"] for s in store.list_series("*requests.finished")}
    assert finished == {"stop", "length", "abort"}
    assert store.list_series("factorylens.inference.prefix_cache.hits")
