"""normalize over LLM serving engines' /metrics (vLLM V1 and V0, SGLang, TGI, Triton; see
tests/fixtures/serving/SOURCE.md): every series the tables name lands under its GenAI or
factorylens.inference name, with the engine and model as attributes, histograms kept whole."""

from __future__ import annotations

from typing import Any

import pytest

from factorylens.processors import normalize_metrics
from factorylens.processors._normalize import string_attributes
from factorylens.registry import METRIC_TRANSLATIONS, REGISTRY, Instrument, Producer
from tests.collector.prometheus_receiver import read_fixture, scrape_fixture

T = 1_700_000_000 * 10**9
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
FIXTURES = {
    "serving/vllm-v1.prom": Producer.VLLM,
    "serving/vllm-v0.prom": Producer.VLLM,
    "serving/sglang.prom": Producer.SGLANG,
    "serving/tgi.prom": Producer.TGI,
    "serving/triton.prom": Producer.TRITON,
}
MODELS = {
    "serving/vllm-v1.prom": LLAMA,
    "serving/vllm-v0.prom": LLAMA,
    "serving/sglang.prom": "Qwen/Qwen2.5-7B-Instruct",
    "serving/triton.prom": "ensemble_llm",
}


def scrape(path: str) -> Any:
    return scrape_fixture(path, job="inference", instance="10.0.8.2:8000", timestamp_ns=T)


def metrics(request: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out.setdefault(m.name, []).append(m)
    return out


def data_points(metric: Any) -> list[Any]:
    return list(getattr(metric, metric.WhichOneof("data")).data_points)


@pytest.mark.parametrize("path", FIXTURES)
def test_every_named_series_lands_under_its_registry_name(path: str) -> None:
    producer = FIXTURES[path]
    exposed = {line.split()[2] for line in read_fixture(path).splitlines() if line.startswith("# TYPE ")}
    expected = {t.source: t.target for t in METRIC_TRANSLATIONS if t.producer is producer and t.source in exposed}
    assert expected, "the fixture exposes none of the engine's translated names"
    request = scrape(path)
    stats = normalize_metrics(request)
    got = metrics(request)
    assert not set(expected) & set(got), "a translated name is left under the engine's spelling"
    for target in set(expected.values()):
        spec = REGISTRY.metric(target)
        for metric in got[target]:
            assert metric.unit == spec.unit
            kind = metric.WhichOneof("data")
            assert kind == {Instrument.HISTOGRAM: "histogram", Instrument.GAUGE: "gauge"}.get(spec.instrument, "sum")
            for point in data_points(metric):
                attributes = string_attributes(point.attributes)
                assert attributes["gen_ai.provider.name"] == producer.value
                assert set(attributes) <= set(REGISTRY.allowed_attributes(spec)), (target, attributes)
                if path in MODELS:
                    assert attributes["gen_ai.request.model"] == MODELS[path]
    assert stats.translated == sum(len(data_points(m)) for t in set(expected.values()) for m in got[t])


def normalized(path: str) -> dict[str, list[Any]]:
    request = scrape(path)
    normalize_metrics(request)
    return metrics(request)


def test_vllm_v0_and_v1_names_meet_under_one_name() -> None:
    v0, v1 = normalized("serving/vllm-v0.prom"), normalized("serving/vllm-v1.prom")
    for name in (
        "factorylens.inference.kv_cache.usage",
        "factorylens.inference.inter_token_latency",
        "factorylens.inference.request.queue_time",
        "gen_ai.server.time_to_first_token",
        "gen_ai.server.request.duration",
        "factorylens.inference.preemptions",
        "factorylens.inference.tokens",
    ):
        assert name in v0 and name in v1, name
    assert data_points(v0["factorylens.inference.kv_cache.usage"][0])[0].as_double == 0.87  # gpu_cache_usage_perc
    itl = data_points(v0["factorylens.inference.inter_token_latency"][0])[0]  # time_per_output_token_seconds
    assert (itl.count, itl.sum) == (20300, 507.5)
    assert "vllm:num_requests_swapped" in v0  # V0-only, no name of ours: passes through


def test_vllm_v1_histograms_keep_their_buckets_and_labels_become_attributes() -> None:
    got = normalized("serving/vllm-v1.prom")
    [ttft] = data_points(got["gen_ai.server.time_to_first_token"][0])
    assert list(ttft.explicit_bounds)[:5] == [0.001, 0.005, 0.01, 0.02, 0.04] and len(ttft.explicit_bounds) == 22
    assert (ttft.count, ttft.sum, sum(ttft.bucket_counts)) == (380, 41.7, 380)
    assert string_attributes(ttft.attributes) == {
        "factorylens.inference.engine": "0",
        "gen_ai.request.model": LLAMA,
        "gen_ai.provider.name": "vllm",
        "server.address": "10.0.8.2",  # the scrape target's, from the resource (GenAI: recommended)
        "server.port": "8000",
    }
    assert [kv.value.int_value for kv in ttft.attributes if kv.key == "server.port"] == [8000]  # an int
    # factorylens.inference.* metrics keep the resource's address where it is
    [running] = data_points(got["factorylens.inference.requests.running"][0])
    assert "server.address" not in string_attributes(running.attributes)
    # OTel's TPOT is vLLM's per-request TPOT; its per-token ITL is ours
    assert data_points(got["gen_ai.server.time_per_output_token"][0])[0].count == 380
    assert data_points(got["factorylens.inference.inter_token_latency"][0])[0].count == 71500
    finished = {
        string_attributes(p.attributes)["factorylens.inference.finish_reason"]: p.as_double
        for p in data_points(got["factorylens.inference.requests.finished"][0])
    }
    assert finished == {"stop": 245, "length": 131, "abort": 4}
    tokens = {
        string_attributes(p.attributes)["gen_ai.token.type"]: p.as_double
        for m in got["factorylens.inference.tokens"]
        for p in data_points(m)
    }
    assert tokens == {"input": 52310, "output": 71880}
    usage = {
        string_attributes(p.attributes)["gen_ai.token.type"]: p.sum
        for m in got["gen_ai.client.token.usage"]
        for p in data_points(m)
    }
    assert usage == {"input": 52310, "output": 71880}
    assert got["factorylens.inference.preemptions"][0].sum.is_monotonic


def test_triton_microseconds_and_milliseconds_become_seconds() -> None:
    got = normalized("serving/triton.prom")
    [request_time] = data_points(got["factorylens.inference.request.time"][0])
    assert request_time.as_double == pytest.approx(2500.0)  # 2.5e9 us
    assert data_points(got["factorylens.inference.queue.time"][0])[0].as_double == pytest.approx(120.0)
    [first] = data_points(got["gen_ai.server.time_to_first_token"][0])
    assert list(first.explicit_bounds) == pytest.approx([0.1, 0.5, 2.0, 5.0])
    assert first.sum == pytest.approx(540.0) and first.count == 1200
    assert string_attributes(first.attributes)["factorylens.inference.model_version"] == "1"
    compute = {
        string_attributes(p.attributes)["factorylens.inference.compute.stage"]: p.as_double
        for p in data_points(got["factorylens.inference.compute.time"][0])
    } | {
        string_attributes(p.attributes)["factorylens.inference.compute.stage"]: p.as_double
        for m in got["factorylens.inference.compute.time"][1:]
        for p in data_points(m)
    }
    assert compute == pytest.approx({"input": 15.0, "infer": 2300.0, "output": 9.0})
    [failed] = data_points(got["factorylens.inference.requests.failed"][0])
    assert failed.as_double == 3 and string_attributes(failed.attributes)["error.type"] == "REJECTED"
    assert got["factorylens.inference.requests.failed"][0].sum.is_monotonic
    assert data_points(got["factorylens.inference.requests.finished"][0])[0].as_double == 1200


def test_tgi_has_no_model_label_but_its_engine_is_said() -> None:
    got = normalized("serving/tgi.prom")
    assert data_points(got["factorylens.inference.requests.waiting"][0])[0].as_double == 6
    assert data_points(got["factorylens.inference.batch.size"][0])[0].as_double == 16
    [queue] = data_points(got["factorylens.inference.request.queue_time"][0])
    assert string_attributes(queue.attributes) == {"gen_ai.provider.name": "tgi"}
    forward = {
        string_attributes(p.attributes)["factorylens.inference.phase"]: (p.count, p.sum)
        for p in data_points(got["factorylens.inference.batch.forward_time"][0])
    }
    assert forward == {"prefill": (90, 4.1)}


def test_a_histogram_under_a_number_name_is_left_alone() -> None:
    """A producer that exposes a gauge's name as a histogram (a version we have not read) is not half-renamed."""
    request = scrape("serving/sglang.prom")
    for rm in request.resource_metrics:
        for m in rm.scope_metrics[0].metrics:
            if m.name == "sglang:queue_time_seconds":
                m.name = "sglang:num_queue_reqs"
    normalize_metrics(request)
    got = metrics(request)
    assert "sglang:num_queue_reqs" in got and got["sglang:num_queue_reqs"][0].WhichOneof("data") == "histogram"


def test_a_number_under_a_histogram_name_is_left_alone_in_both_forms() -> None:
    """The reverse: a gauge under a histogram's name is neither turned into a sum under the histogram's GenAI name
    (the service's pass) nor a crash (the rotel adapter's, ``reshape=False``)."""
    for reshape in (True, False):
        request = scrape("serving/vllm-v1.prom")
        for rm in request.resource_metrics:
            for m in rm.scope_metrics[0].metrics:
                if m.name == "vllm:num_requests_running":
                    m.name = "vllm:request_decode_time_seconds"
        normalize_metrics(request, reshape=reshape)
        [metric] = metrics(request)["vllm:request_decode_time_seconds"]
        assert metric.WhichOneof("data") == "gauge"
        assert "gen_ai.request.model" not in string_attributes(data_points(metric)[0].attributes)


def _histogram_request(points: list[dict[str, Any]]) -> Any:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    request = ExportMetricsServiceRequest()
    sm = request.resource_metrics.add().scope_metrics.add()
    metric = sm.metrics.add(name="vllm:time_to_first_token_seconds")
    metric.histogram.aggregation_temporality = 2
    for spec in points:
        point = metric.histogram.data_points.add(time_unix_nano=T, count=3, sum=1.5)
        point.explicit_bounds.extend([0.1, 1.0])
        point.bucket_counts.extend([1, 1, 1])
        for key, value in spec.get("labels", {}).items():
            point.attributes.add(key=key).value.string_value = value
        for name in ("min", "max", "flags"):
            if name in spec:
                setattr(point, name, spec[name])
        if "exemplar" in spec:
            point.exemplars.add(time_unix_nano=T, as_double=spec["exemplar"])
    return request


def test_histogram_labels_are_translated_whatever_fields_surround_them() -> None:
    """Histogram label sets are cached by their encoding: points with min, max, flags or exemplars around the
    attributes, points with no labels and points of two models each get their own translation, and a second
    request (the cache's) gets the same as the first."""
    specs: list[dict[str, Any]] = [
        {"labels": {"model_name": "a", "engine": "0"}},
        {"labels": {"model_name": "b", "engine": "0"}, "min": 0.01, "max": 0.9},
        {"labels": {"model_name": "a", "engine": "1"}, "flags": 1},
        {"labels": {"model_name": "b", "engine": "1"}, "exemplar": 0.3},
        {"labels": {}},
        {"labels": {"model_name": "a", "engine": "0"}, "max": 0.5, "exemplar": 0.2},
    ]
    want = [
        {"gen_ai.request.model": "a", "factorylens.inference.engine": "0", "gen_ai.provider.name": "vllm"},
        {"gen_ai.request.model": "b", "factorylens.inference.engine": "0", "gen_ai.provider.name": "vllm"},
        {"gen_ai.request.model": "a", "factorylens.inference.engine": "1", "gen_ai.provider.name": "vllm"},
        {"gen_ai.request.model": "b", "factorylens.inference.engine": "1", "gen_ai.provider.name": "vllm"},
        {"gen_ai.provider.name": "vllm"},
        {"gen_ai.request.model": "a", "factorylens.inference.engine": "0", "gen_ai.provider.name": "vllm"},
    ]
    for _ in range(2):
        request = _histogram_request(specs)
        normalize_metrics(request)
        [metric] = metrics(request)["gen_ai.server.time_to_first_token"]
        got = data_points(metric)
        assert [string_attributes(p.attributes) for p in got] == want
        assert (got[1].min, got[1].max, got[2].flags, got[3].exemplars[0].as_double) == (0.01, 0.9, 1, 0.3)
        assert all(list(p.bucket_counts) == [1, 1, 1] and p.sum == 1.5 for p in got)


def test_the_translation_caches_are_bounded() -> None:
    """Label values come from the senders: a rule keeps at most MAX_CACHED_LABEL_SETS translated label sets, and
    caches are kept for at most MAX_HOOK_STATES label-hook states."""
    from factorylens.processors import _normalize
    from factorylens.processors._normalize import DEFAULT_TABLES

    class Hook:
        def __init__(self, version: int) -> None:
            self.version = version

        def state(self) -> int:
            return self.version

        def __call__(self, attributes: Any) -> None:
            pass

    limit = 50
    original = _normalize.MAX_CACHED_LABEL_SETS
    _normalize.MAX_CACHED_LABEL_SETS = limit
    try:
        for version in range(5):
            request = _histogram_request([{"labels": {"model_name": f"m{i}"}} for i in range(3 * limit)])
            normalize_metrics(request, labels=Hook(version))
            assert len(DEFAULT_TABLES.translated_attributes) <= _normalize.MAX_HOOK_STATES
            for caches in DEFAULT_TABLES.translated_attributes.values():
                assert all(len(cache) <= limit for cache in caches.values())
            [metric] = metrics(request)["gen_ai.server.time_to_first_token"]
            models = [string_attributes(p.attributes)["gen_ai.request.model"] for p in data_points(metric)]
            assert models == [f"m{i}" for i in range(3 * limit)]
    finally:
        _normalize.MAX_CACHED_LABEL_SETS = original


def test_prefix_cache_and_retraction_series_get_our_names() -> None:
    """vLLM's prefix-cache counters (V1, and the gpu_ names they replaced), SGLang's hit rate and retractions."""
    from tests.collector.prometheus_receiver import exposition_to_otlp

    v1 = normalized("serving/vllm-v1.prom")
    assert data_points(v1["factorylens.inference.prefix_cache.queries"][0])[0].as_double == 52310
    assert data_points(v1["factorylens.inference.prefix_cache.hits"][0])[0].as_double == 18400
    assert v1["factorylens.inference.prefix_cache.hits"][0].sum.is_monotonic
    older = exposition_to_otlp(
        "# TYPE vllm:gpu_prefix_cache_queries_total counter\n"
        'vllm:gpu_prefix_cache_queries_total{engine="0",model_name="m"} 100.0\n'
        "# TYPE vllm:gpu_prefix_cache_hits_total counter\n"
        'vllm:gpu_prefix_cache_hits_total{engine="0",model_name="m"} 40.0\n',
        job="inference",
        instance="10.0.8.2:8000",
        timestamp_ns=T,
    )
    normalize_metrics(older)
    got = metrics(older)
    assert data_points(got["factorylens.inference.prefix_cache.queries"][0])[0].as_double == 100
    [hits] = data_points(got["factorylens.inference.prefix_cache.hits"][0])
    assert hits.as_double == 40 and string_attributes(hits.attributes)["gen_ai.request.model"] == "m"
    sglang = normalized("serving/sglang.prom")
    assert data_points(sglang["factorylens.inference.prefix_cache.hit_ratio"][0])[0].as_double == 0.3
    assert data_points(sglang["factorylens.inference.requests.retracted"][0])[0].as_double == 2


@pytest.mark.parametrize(
    ("instance", "want"),
    [
        ("vllm-0.serving.svc:8000", {"server.address": "vllm-0.serving.svc", "server.port": 8000}),
        ("localhost:8000", {}),  # not discernible: the receiver sets no server.address, so no port either
        ("10.0.8.2", {"server.address": "10.0.8.2"}),  # no port in the instance: "" on the resource
    ],
)
def test_genai_metrics_carry_the_scrape_targets_address(instance: str, want: dict[str, object]) -> None:
    request = scrape_fixture("serving/vllm-v1.prom", job="inference", instance=instance, timestamp_ns=T)
    normalize_metrics(request)
    for name in ("gen_ai.server.time_to_first_token", "gen_ai.server.request.duration", "gen_ai.client.token.usage"):
        for metric in metrics(request)[name]:
            for point in data_points(metric):
                got = {
                    kv.key: getattr(kv.value, kv.value.WhichOneof("value"))
                    for kv in point.attributes
                    if kv.key.startswith("server.")
                }
                assert got == want, (name, got)


def test_a_failing_label_hook_leaves_a_histograms_labels_as_they_were() -> None:
    class Failing:
        def state(self) -> int:
            return 0

        def __call__(self, attributes: Any) -> None:
            raise RuntimeError("hook")

    request = _histogram_request([{"labels": {"model_name": "z-failing", "engine": "9"}}])
    with pytest.raises(RuntimeError):
        normalize_metrics(request, labels=Failing())
    [metric] = metrics(request)["vllm:time_to_first_token_seconds"]
    assert string_attributes(data_points(metric)[0].attributes) == {"model_name": "z-failing", "engine": "9"}
