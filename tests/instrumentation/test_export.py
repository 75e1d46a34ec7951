"""Instrumented training over real OTLP/gRPC: into the RCA service, and with the collector down."""

from __future__ import annotations

import time

import pytest

import factorylens.instrumentation as fl
from factorylens.instrumentation.examples.train_numpy import flops_per_sample, train
from factorylens.rca_service.store import View

from ..conftest import free_port, wait_until


@pytest.fixture
def otlp_env(monkeypatch):
    def point_at(endpoint: str) -> None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")

    yield point_at
    fl.shutdown()


def test_the_example_loop_exports_steps_and_spans_joined_to_its_gpu(make_service, otlp_env):
    service = make_service()
    otlp_env(f"http://{service.address}")
    fl.init(
        job_id="llm-test",
        team="fm",
        gpu_ids=("GPU-1234",),
        gpu_name="NVIDIA A100-SXM4-80GB",
        model_flops_per_sample=flops_per_sample(16, 64),
        span_every_steps=10,
        flush_interval_s=0.1,
        export_interval_s=0.5,
    )
    result = train(steps=40, checkpoint_every=20)
    assert result["last_loss"] < result["first_loss"]  # it really trains
    fl.shutdown()
    step = service.store.list_series("factorylens.train.step.duration")
    assert len(step) == 1
    info = step[0]
    assert info.entity == "rank:llm-test/0" and info.resource["hw.id"] == "GPU-1234"
    assert info.resource["factorylens.gpu.ids"] == '["GPU-1234"]'
    assert service.store.query(info.id, View.COUNT)[1].size > 0
    phases = {
        i.attributes["factorylens.train.phase"] for i in service.store.list_series("factorylens.train.phase.duration")
    }
    assert {"data", "forward", "backward", "optimizer", "checkpoint.save"} <= phases
    spans = service.store.span_sample.spans(service="factorylens-training", name="train.step")
    assert spans and all(s["attributes"]["factorylens.job.id"] == "llm-test" for s in spans)
    checkpoint = service.store.list_series("factorylens.checkpoint.io")[0]
    assert checkpoint.domain == "storage" and checkpoint.attributes["factorylens.checkpoint.operation"] == "save"


def test_a_dead_collector_never_blocks_or_breaks_the_loop(otlp_env):
    otlp_env(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    inst = fl.init(job_id="offline", span_every_steps=1, flush_interval_s=0.05, export_interval_s=0.2)
    started = time.monotonic()
    for _ in range(200):
        with fl.step(samples=1):
            with fl.forward():
                pass
    loop_s = time.monotonic() - started
    wait_until(lambda: inst.telemetry.steps_done == 200, what="telemetry thread caught up")
    assert loop_s < 2.0  # 200 empty steps; exports keep failing and retrying on their own threads
    assert inst.recorder.dropped == 0
    fl.shutdown()  # bounded: the exporters give up after their timeout
    assert fl.active() is None
