"""Serving requests → OTel GenAI and factorylens.inference metrics, asserted through the SDK's in-memory
reader: exact values for known requests, the engine's state as gauges, the bounded queue, no-op before
init, the registry's names, units and attributes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, ExponentialBucketHistogramAggregation
from opentelemetry.sdk.resources import Resource

import factorylens.instrumentation._serving_instrumentor as serving_instrumentor
import factorylens.instrumentation.serving as fls
from factorylens import telemetry
from factorylens.instrumentation.serving import (
    DURATION_BUCKETS,
    TOKEN_BUCKETS,
    TPOT_BUCKETS,
    TTFT_BUCKETS,
    ConfigError,
    RequestRecord,
    ServingConfig,
    ServingInstrumentor,
    ServingTelemetry,
)
from factorylens.rca_service.store import entity_of
from factorylens.registry import REGISTRY, Attributes, Metrics

from ..conftest import wait_until

S = 1_000_000_000  # ns per second
IDENTITY = {"model": "llama-3.1-8b", "provider": "my-server", "server_address": "10.0.0.7", "server_port": 8000}
BASE = {
    Attributes.GEN_AI_OPERATION_NAME: "chat",
    Attributes.GEN_AI_PROVIDER_NAME: "my-server",
    Attributes.GEN_AI_REQUEST_MODEL: "llama-3.1-8b",
    Attributes.SERVER_ADDRESS: "10.0.0.7",
    Attributes.SERVER_PORT: 8000,
}


def config(**overrides: Any) -> ServingConfig:
    return ServingConfig(**{**IDENTITY, "flush_interval_s": 3600.0, **overrides})


class Read:
    def __init__(self, reader: InMemoryMetricReader) -> None:
        self.reader = reader
        self.data: dict[str, Any] = {}

    def collect(self) -> Read:
        self.data = {}
        collected = self.reader.get_metrics_data()
        for rm in collected.resource_metrics if collected else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    self.data[m.name] = m
        return self

    def points(self, metric: str) -> list[tuple[dict, Any]]:
        found = self.data.get(metric)
        return [(dict(p.attributes), p) for p in found.data.data_points] if found else []

    def point(self, metric: str, **extra: Any) -> Any:
        """The one point of ``metric`` with exactly the base attributes plus ``extra``."""
        wanted = {**BASE, **{k.replace("__", "."): v for k, v in extra.items()}}
        matches = [p for a, p in self.points(metric) if a == wanted]
        assert len(matches) == 1, (metric, wanted, [a for a, _ in self.points(metric)])
        return matches[0]


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    yield InMemoryMetricReader()


@pytest.fixture
def instrumented(reader: InMemoryMetricReader) -> Iterator[tuple[ServingInstrumentor, Read]]:
    inst = ServingInstrumentor(config(), meter_provider=MeterProvider(metric_readers=[reader])).instrument()
    try:
        yield inst, Read(reader)
    finally:
        inst.uninstrument()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The handles' clock, set by the test: ``clock[0] = t`` (ns)."""
    now = [0]
    monkeypatch.setattr(serving_instrumentor, "perf_counter_ns", lambda: now[0])
    return now


def test_a_known_request_gives_exact_ttft_tpot_phases_and_tokens(reader):
    served = ServingTelemetry(config(), MeterProvider(metric_readers=[reader]).get_meter("t"))
    # queued 0.5 s, prefill 0.3 s (TTFT 0.8 s), 10 more tokens in 2 s: TPOT = (2.8 − 0.8) / (11 − 1) = 0.2 s
    served.record(RequestRecord(0, S // 2, 8 * S // 10, 28 * S // 10, 100, 11, preemptions=2))
    read = Read(reader).collect()
    ttft = read.point(Metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)
    assert (ttft.count, ttft.sum) == (1, pytest.approx(0.8))
    assert tuple(ttft.explicit_bounds) == TTFT_BUCKETS and ttft.bucket_counts[TTFT_BUCKETS.index(1.0)] == 1
    tpot = read.point(Metrics.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN)
    assert tpot.sum == pytest.approx(0.2) and tuple(tpot.explicit_bounds) == TPOT_BUCKETS
    duration = read.point(Metrics.GEN_AI_SERVER_REQUEST_DURATION)  # no error.type on success
    assert duration.sum == pytest.approx(2.8) and tuple(duration.explicit_bounds) == DURATION_BUCKETS
    for metric, seconds in (
        (Metrics.FACTORYLENS_INFERENCE_REQUEST_QUEUE_TIME, 0.5),
        (Metrics.FACTORYLENS_INFERENCE_REQUEST_PREFILL_TIME, 0.3),
        (Metrics.FACTORYLENS_INFERENCE_REQUEST_DECODE_TIME, 2.0),
        (Metrics.FACTORYLENS_INFERENCE_REQUEST_INFERENCE_TIME, 2.3),
    ):
        assert read.point(metric).sum == pytest.approx(seconds), metric
    usage_in = read.point(Metrics.GEN_AI_CLIENT_TOKEN_USAGE, gen_ai__token__type="input")
    usage_out = read.point(Metrics.GEN_AI_CLIENT_TOKEN_USAGE, gen_ai__token__type="output")
    assert (usage_in.sum, usage_out.sum) == (100, 11) and tuple(usage_in.explicit_bounds) == TOKEN_BUCKETS
    assert read.point(Metrics.FACTORYLENS_INFERENCE_TOKENS, gen_ai__token__type="input").value == 100
    assert read.point(Metrics.FACTORYLENS_INFERENCE_TOKENS, gen_ai__token__type="output").value == 11
    assert read.point(Metrics.FACTORYLENS_INFERENCE_PREEMPTIONS).value == 2
    finished = read.point(Metrics.FACTORYLENS_INFERENCE_REQUESTS_FINISHED, factorylens__inference__finish_reason="stop")
    assert finished.value == 1


def test_a_failed_request_has_error_type_on_its_duration_and_no_ttft(reader):
    served = ServingTelemetry(config(), MeterProvider(metric_readers=[reader]).get_meter("t"))
    served.record(RequestRecord(0, S, None, 3 * S, 50, 0, finish_reason="error", error_type="TimeoutError"))
    served.record(RequestRecord(0, None, None, S, 20, 0, finish_reason="abort"))  # cancelled while queued
    read = Read(reader).collect()
    failed = read.point(Metrics.GEN_AI_SERVER_REQUEST_DURATION, error__type="TimeoutError")
    assert (failed.count, failed.sum) == (1, pytest.approx(3.0))
    assert read.point(Metrics.GEN_AI_SERVER_REQUEST_DURATION).sum == pytest.approx(1.0)  # the abort: no error
    assert read.points(Metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN) == []
    assert read.points(Metrics.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN) == []
    assert read.point(Metrics.FACTORYLENS_INFERENCE_REQUEST_QUEUE_TIME).count == 1  # only the scheduled one
    reasons = {
        a[Attributes.FACTORYLENS_INFERENCE_FINISH_REASON]: p.value
        for a, p in read.points(Metrics.FACTORYLENS_INFERENCE_REQUESTS_FINISHED)
    }
    assert reasons == {"error": 1, "abort": 1}
    assert read.point(Metrics.GEN_AI_CLIENT_TOKEN_USAGE, gen_ai__token__type="input").sum == 70
    # no output usage of 0 for requests cut short (it would drag the output-token distribution down)
    assert [a[Attributes.GEN_AI_TOKEN_TYPE] for a, _ in read.points(Metrics.GEN_AI_CLIENT_TOKEN_USAGE)] == ["input"]


def test_the_request_api_times_a_streamed_request(instrumented, clock):
    inst, read = instrumented
    clock[0] = 10 * S
    with inst.request(prompt_tokens=12) as r:
        clock[0] = 10 * S + S // 4
        r.scheduled()
        clock[0] = 11 * S
        r.token()  # the first token: TTFT 1 s
        for step in range(1, 5):
            clock[0] = 11 * S + step * S // 10
            r.token()
        r.preempted()
        r.finish(finish_reason="length")
    inst.force_flush()
    read.collect()
    assert read.point(Metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN).sum == pytest.approx(1.0)
    assert read.point(Metrics.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN).sum == pytest.approx(0.1)  # 0.4 s / 4
    assert read.point(Metrics.FACTORYLENS_INFERENCE_REQUEST_QUEUE_TIME).sum == pytest.approx(0.25)
    assert read.point(Metrics.FACTORYLENS_INFERENCE_TOKENS, gen_ai__token__type="output").value == 5
    assert read.point(Metrics.FACTORYLENS_INFERENCE_PREEMPTIONS).value == 1
    assert (
        read.point(
            Metrics.FACTORYLENS_INFERENCE_REQUESTS_FINISHED, factorylens__inference__finish_reason="length"
        ).value
        == 1
    )


def test_an_exception_in_the_request_block_is_an_error_and_propagates(instrumented, clock):
    inst, read = instrumented
    with pytest.raises(ConnectionResetError):
        with inst.request(prompt_tokens=3) as r:
            r.scheduled()
            clock[0] = 2 * S
            raise ConnectionResetError("client went away")
    with inst.request(prompt_tokens=1) as r:  # leaving the block without finish(): stop, tokens so far
        r.token(2)
    inst.force_flush()
    read.collect()
    assert read.point(Metrics.GEN_AI_SERVER_REQUEST_DURATION, error__type="ConnectionResetError").sum == 2.0
    reasons = {
        a[Attributes.FACTORYLENS_INFERENCE_FINISH_REASON]: p.value
        for a, p in read.points(Metrics.FACTORYLENS_INFERENCE_REQUESTS_FINISHED)
    }
    assert reasons == {"error": 1, "stop": 1}


def test_a_request_ends_once_and_rejects_an_unknown_finish_reason(instrumented):
    inst, read = instrumented
    r = inst.request(prompt_tokens=1)
    with pytest.raises(ValueError, match="finish_reason"):
        r.finish(finish_reason="done")
    r.finish(output_tokens=1)
    r.finish(output_tokens=9)
    r.fail("RuntimeError")
    inst.force_flush()
    read.collect()
    assert read.point(Metrics.GEN_AI_SERVER_REQUEST_DURATION).count == 1
    assert read.point(Metrics.FACTORYLENS_INFERENCE_TOKENS, gen_ai__token__type="output").value == 1


def test_the_engine_state_is_exported_as_gauges_of_the_last_values_set(instrumented):
    inst, read = instrumented
    read.collect()
    assert read.points(Metrics.FACTORYLENS_INFERENCE_REQUESTS_RUNNING) == []  # nothing set yet
    inst.set_state(running=8, waiting=3, kv_cache_usage=0.5, batch_size=8)
    inst.set_state(running=12, waiting=40, kv_cache_usage=0.93)
    read.collect()
    assert read.point(Metrics.FACTORYLENS_INFERENCE_REQUESTS_RUNNING).value == 12
    assert read.point(Metrics.FACTORYLENS_INFERENCE_REQUESTS_WAITING).value == 40
    assert read.point(Metrics.FACTORYLENS_INFERENCE_KV_CACHE_USAGE).value == 0.93
    assert read.points(Metrics.FACTORYLENS_INFERENCE_BATCH_SIZE) == []  # not given the second time


def test_a_full_queue_drops_and_counts_and_never_blocks(reader, caplog):
    inst = ServingInstrumentor(
        config(max_pending_requests=3), meter_provider=MeterProvider(metric_readers=[reader])
    ).instrument()
    for _ in range(5):
        with inst.request(prompt_tokens=1):
            pass
    assert inst.dropped == 2 and len(inst.telemetry.pending) == 3
    read = Read(reader).collect()  # the drop counter is exported before anything is drained
    assert read.points(Metrics.FACTORYLENS_INFERENCE_TELEMETRY_DROPPED)[0][1].value == 2
    with caplog.at_level(logging.WARNING):
        inst.uninstrument()  # flushes the 3 queued ones, and says what was dropped
    assert "2 finished requests were dropped" in caplog.text
    read.collect()
    assert (
        read.point(Metrics.FACTORYLENS_INFERENCE_REQUESTS_FINISHED, factorylens__inference__finish_reason="stop").value
        == 3
    )


def test_uninstrument_records_what_is_queued_and_the_thread_drains_on_its_own(reader):
    inst = ServingInstrumentor(config(), meter_provider=MeterProvider(metric_readers=[reader])).instrument()
    inst.record(RequestRecord(0, 0, S, 2 * S, 4, 2))
    assert Read(reader).collect().points(Metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN) == []  # queued, not drained
    inst.uninstrument()
    assert Read(reader).collect().point(Metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN).sum == 1.0
    assert inst.request(prompt_tokens=1) is serving_instrumentor.NOOP_REQUEST  # after uninstrument: no-op


def test_the_background_thread_drains_on_its_own(reader):
    inst = ServingInstrumentor(config(flush_interval_s=0.01), meter_provider=MeterProvider(metric_readers=[reader]))
    inst.instrument()
    try:
        served = inst.telemetry
        inst.record(RequestRecord(0, 0, S, 2 * S, 4, 2))
        wait_until(lambda: not served.pending and served.recorded == 1, timeout_s=5, what="a drain")
    finally:
        inst.uninstrument()


def test_the_module_api_is_a_noop_before_init_and_after_shutdown(reader):
    assert fls.active() is None
    with fls.request(prompt_tokens=5) as r:
        r.scheduled()
        r.token()
        r.preempted()
    fls.set_state(1, 2, 0.3)
    fls.record(RequestRecord(0, 0, 1, 2, 1, 1))
    assert fls.force_flush() is True
    fls.shutdown()
    inst = fls.init(
        model="m", provider="p", meter_provider=MeterProvider(metric_readers=[reader]), flush_interval_s=3600.0
    )
    try:
        assert fls.init(model="other") is inst and fls.active() is inst
        with fls.request(prompt_tokens=5) as r:
            r.token()
        fls.set_state(1, 2)
        fls.force_flush()
        read = Read(reader).collect()
        finished = {
            a[Attributes.FACTORYLENS_INFERENCE_FINISH_REASON]: p.value
            for a, p in read.points(Metrics.FACTORYLENS_INFERENCE_REQUESTS_FINISHED)
        }
        assert finished == {"stop": 1, "error": 0}  # failures counted from zero, before the first one
        assert read.points(Metrics.FACTORYLENS_INFERENCE_REQUESTS_WAITING)[0][1].value == 2
    finally:
        fls.shutdown()
    assert fls.active() is None and isinstance(fls.request(), fls.NoopRequest)


def test_every_metric_is_declared_in_the_registry_with_its_unit_and_attributes(instrumented):
    inst, read = instrumented
    inst.record(RequestRecord(0, 1, 2, 5, 3, 4, preemptions=1))
    inst.record(RequestRecord(0, 1, None, 5, 3, 0, finish_reason="error", error_type="OSError"))
    inst.set_state(1, 1, 0.1, 1)
    inst.force_flush()
    read.collect()
    expected = {
        Metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
        Metrics.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN,
        Metrics.GEN_AI_SERVER_REQUEST_DURATION,
        Metrics.GEN_AI_CLIENT_TOKEN_USAGE,
        Metrics.FACTORYLENS_INFERENCE_REQUESTS_RUNNING,
        Metrics.FACTORYLENS_INFERENCE_REQUESTS_WAITING,
        Metrics.FACTORYLENS_INFERENCE_KV_CACHE_USAGE,
        Metrics.FACTORYLENS_INFERENCE_BATCH_SIZE,
        Metrics.FACTORYLENS_INFERENCE_PREEMPTIONS,
        Metrics.FACTORYLENS_INFERENCE_REQUESTS_FINISHED,
        Metrics.FACTORYLENS_INFERENCE_TOKENS,
        Metrics.FACTORYLENS_INFERENCE_REQUEST_QUEUE_TIME,
        Metrics.FACTORYLENS_INFERENCE_REQUEST_PREFILL_TIME,
        Metrics.FACTORYLENS_INFERENCE_REQUEST_DECODE_TIME,
        Metrics.FACTORYLENS_INFERENCE_REQUEST_INFERENCE_TIME,
        Metrics.FACTORYLENS_INFERENCE_TELEMETRY_DROPPED,
    }
    assert set(read.data) == expected
    for name, metric in read.data.items():
        spec = REGISTRY.metric(name)
        assert metric.unit == spec.unit and metric.description == spec.description, name
        for attributes, _ in read.points(name):
            assert set(attributes) <= set(REGISTRY.allowed_attributes(spec)), name


def test_our_own_provider_keeps_the_advisory_buckets(reader):
    provider = telemetry.make_meter_provider(Resource.create({}), [reader])  # the cardinality view
    inst = ServingInstrumentor(config(), meter_provider=provider).instrument()
    try:
        inst.record(RequestRecord(0, 0, 30_000_000, S, 1, 1))  # TTFT 30 ms: resolvable at p95
        inst.force_flush()
        ttft = Read(reader).collect().point(Metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)
        assert tuple(ttft.explicit_bounds) == TTFT_BUCKETS and ttft.bucket_counts[TTFT_BUCKETS.index(0.04)] == 1
    finally:
        inst.uninstrument()


def test_error_types_are_bounded(reader):
    served = ServingTelemetry(config(max_error_types=2), MeterProvider(metric_readers=[reader]).get_meter("t"))
    for error in ("A", "B", "C", "D", "A"):
        served.record(RequestRecord(0, None, None, S, 1, 0, finish_reason="error", error_type=error))
    counts = {
        a.get(Attributes.ERROR_TYPE): p.count
        for a, p in Read(reader).collect().points(Metrics.GEN_AI_SERVER_REQUEST_DURATION)
    }
    assert counts == {"A": 2, "B": 1, "_OTHER": 2}


def test_a_record_checks_itself():
    with pytest.raises(ValueError, match="finish_reason"):
        RequestRecord(0, 1, 2, 3, 1, 1, finish_reason="done")
    with pytest.raises(ValueError, match="must not decrease"):
        RequestRecord(0, 5, 2, 9, 1, 1)
    with pytest.raises(ValueError, match="negative"):
        RequestRecord(0, 1, 2, 3, -1, 1)
    record = RequestRecord(0, None, None, S, 1, 0, finish_reason="error", error_type="X")
    assert (record.ttft_s, record.tpot_s, record.queue_s, record.duration_s) == (None, None, None, 1.0)
    with pytest.raises(AttributeError):
        record.end_ns = 0  # type: ignore[misc]


def test_config_defaults_from_the_environment_and_clear_errors(monkeypatch):
    monkeypatch.setenv("FACTORYLENS_SERVING_MODEL", "qwen")
    monkeypatch.setenv("FACTORYLENS_SERVING_PROVIDER", "vllm")
    monkeypatch.setenv("FACTORYLENS_SERVING_PORT", "9000")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "chat-api")
    c = ServingConfig()
    assert (c.model, c.provider, c.server_port, c.service_name, c.operation) == (
        "qwen",
        "vllm",
        9000,
        "chat-api",
        "chat",
    )
    monkeypatch.setenv("FACTORYLENS_SERVING_PORT", "http")
    with pytest.raises(ConfigError, match="FACTORYLENS_SERVING_PORT"):
        ServingConfig()
    for bad, match in (
        ({"server_port": 70_000}, "server_port"),
        ({"provider": ""}, "provider"),
        ({"export_interval_s": 0}, "export_interval_s"),
        ({"max_pending_requests": 0}, "max_pending_requests"),
    ):
        with pytest.raises(ConfigError, match=match):
            config(**bad).validate()
    with pytest.raises(ConfigError, match="otlp"):
        ServingInstrumentor(config(), otlp="maybe")


def test_the_servers_resource_carries_the_join_keys_of_a_replica(monkeypatch):
    """The deployment, the replica and its GPUs: what makes the RCA service's ``replica:<job>/<n>``
    entity and ties it to its GPUs and host."""
    monkeypatch.setenv("FACTORYLENS_GPU_IDS", "GPU-aaa, GPU-bbb")
    monkeypatch.setenv("FACTORYLENS_JOB_ID", "chat-serve")
    identity = ServingInstrumentor(ServingConfig(service_name="chat", server_port=8000, host="node-3")).identity()
    assert identity[Attributes.FACTORYLENS_JOB_ID] == "chat-serve"
    assert identity[Attributes.FACTORYLENS_INFERENCE_REPLICA] == "node-3:8000"
    assert identity[Attributes.FACTORYLENS_GPU_IDS] == ["GPU-aaa", "GPU-bbb"]
    assert identity[Attributes.HOST_NAME] == "node-3"
    monkeypatch.delenv("FACTORYLENS_JOB_ID")
    named = ServingInstrumentor(ServingConfig(service_name="chat", replica="r7", host="n")).identity()
    assert named[Attributes.FACTORYLENS_JOB_ID] == "chat" and named[Attributes.FACTORYLENS_INFERENCE_REPLICA] == "r7"
    assert entity_of(named, {}) == "replica:chat/r7"


def test_the_servers_own_exporter_sends_exponential_histograms_unless_told_otherwise(monkeypatch):
    """A p95 read from base-2 exponential buckets is good to a few per cent; from the engines' explicit
    ones it jumps across 0.1-0.25 s. OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION still wins."""
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", raising=False)
    exporter = telemetry.otlp_metric_exporter(exponential_histograms=True)
    assert isinstance(exporter._preferred_aggregation[Histogram], ExponentialBucketHistogramAggregation)
    assert not isinstance(
        telemetry.otlp_metric_exporter()._preferred_aggregation[Histogram], ExponentialBucketHistogramAggregation
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "explicit_bucket_histogram")
    told = telemetry.otlp_metric_exporter(exponential_histograms=True)
    assert isinstance(told._preferred_aggregation[Histogram], ExplicitBucketHistogramAggregation)
