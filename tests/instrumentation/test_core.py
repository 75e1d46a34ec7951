"""Steps and phases → metrics and span trees, asserted through the SDK's in-memory reader/exporter."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import factorylens.instrumentation as fl
from factorylens.instrumentation import ConfigError, TrainingConfig, TrainingInstrumentor
from factorylens.instrumentation._gpus import discover_gpus
from factorylens.receivers.gpu.sim import SimulatedCluster, SimulatedNvml
from factorylens.registry import REGISTRY

from ..conftest import wait_until


def busy(seconds: float) -> None:
    time.sleep(seconds)


def test_phases_and_steps_become_metrics_with_the_measured_times(instrument):
    run = instrument()
    inst = run.instrumentor
    for _ in range(3):
        with inst.data():
            busy(0.01)
        with inst.step(samples=32, tokens=32 * 128):
            with inst.forward():
                busy(0.02)
            with inst.backward():
                busy(0.03)
            with inst.optimizer():
                pass
    run.flush()
    step = run.points("factorylens.train.step.duration")[0][1]
    assert step.count == 3 and 0.06 * 3 <= step.sum < 0.3 * 3  # the data wait belongs to the step
    assert 0.06 <= run.phase("forward").sum < 0.3
    assert 0.09 <= run.phase("backward").sum < 0.4
    assert 0.03 <= run.phase("data").sum < 0.2
    assert run.phase("optimizer").count == 3
    assert run.points("factorylens.train.samples")[0][1].value == 96
    assert run.points("factorylens.train.tokens")[0][1].value == 96 * 128
    ratio = run.points("factorylens.data.wait.ratio")[0][1].value
    assert 0.1 < ratio < 0.3  # 10 of ~60 ms per step
    assert run.points("factorylens.train.samples.rate")[0][1].value > 0


def test_every_metric_is_declared_in_the_registry_with_its_unit(instrument):
    run = instrument(model_flops_per_sample=1e9)
    with run.instrumentor.step(samples=1, tokens=8):
        with run.instrumentor.collective(bytes=1024, op="all_reduce"):
            pass
    run.flush()
    emitted = {}
    for rm in run.reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                emitted[m.name] = m
    expected = {m.name for m in REGISTRY.emitted_by("instrumentation")} - {
        "factorylens.checkpoint.io",
        "factorylens.checkpoint.duration",
        "factorylens.checkpoint.throughput",
        "factorylens.inference.telemetry.dropped",  # the serving instrumentation's (test_serving.py)
    }
    assert expected <= set(emitted)
    for name, metric in emitted.items():
        spec = REGISTRY.metric(name)
        assert metric.unit == spec.unit, name
        for point in metric.data.data_points:
            assert set(point.attributes) <= set(REGISTRY.allowed_attributes(spec)), name


def test_resource_and_spans_carry_the_join_keys(instrument):
    run = instrument(span_every_steps=1)
    with run.instrumentor.step(samples=4):
        with run.instrumentor.forward():
            pass
    run.flush()
    identity = run.instrumentor.identity()
    assert identity == {
        "factorylens.job.id": "job-1",
        "factorylens.team": "fm",
        "factorylens.rank": 1,
        "factorylens.world_size": 4,
        "host.name": "node-9",
        "factorylens.gpu.ids": ["GPU-aaaa"],
        "hw.id": "GPU-aaaa",
    }
    spans = {s.name: s for s in run.spans.get_finished_spans()}
    root, child = spans["train.step"], spans["train.forward"]
    assert child.parent.span_id == root.context.span_id
    assert root.attributes["hw.id"] == "GPU-aaaa" and root.attributes["factorylens.job.id"] == "job-1"
    assert root.attributes["factorylens.train.step"] == 1
    assert root.start_time <= child.start_time <= child.end_time <= root.end_time


def test_span_trees_for_sampled_slow_and_failed_steps_only(instrument):
    run = instrument(span_every_steps=10, slow_step_factor=3.0)
    inst = run.instrumentor
    for n in range(1, 26):
        with inst.step():
            busy(0.05 if n == 15 else 0.002)
    with pytest.raises(ValueError):
        with inst.step():
            raise ValueError("nan loss")
    run.flush()
    steps = [s for s in run.spans.get_finished_spans() if s.name == "train.step"]
    numbers = sorted(s.attributes["factorylens.train.step"] for s in steps)
    assert numbers == [10, 15, 20, 26]
    slow = next(s for s in steps if s.attributes["factorylens.train.step"] == 15)
    assert slow.attributes["factorylens.train.slow"] is True
    failed = next(s for s in steps if s.attributes["factorylens.train.step"] == 26)
    assert failed.status.status_code.name == "ERROR" and "nan loss" in failed.status.description


def test_decorator_form_and_module_api_before_and_after_init():
    calls = []

    @fl.step(samples=2)
    def train_step() -> int:
        calls.append(1)
        return 7

    assert train_step() == 7 and fl.active() is None  # a no-op before init
    with fl.forward(), fl.checkpoint_save("/tmp/x"), fl.collective(bytes=1):
        pass
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    reader = InMemoryMetricReader()
    inst = fl.init(
        job_id="deco",
        meter_provider=MeterProvider(metric_readers=[reader]),
        tracer_provider=TracerProvider(),
        flush_interval_s=3600,
    )
    try:
        assert fl.init(job_id="other") is inst  # once per process

        @fl.step(samples=3)
        def decorated() -> None:
            with fl.forward():
                pass

        decorated()
        decorated()
        inst.force_flush()
        counts = [
            p.value
            for m in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
            if m.name == "factorylens.train.samples"
            for p in m.data.data_points
        ]
        assert counts == [6]
    finally:
        fl.shutdown()
    assert fl.active() is None


def test_checkpoints_report_bytes_filesystem_and_throughput(instrument, tmp_path):
    run = instrument()
    path = tmp_path / "ckpt.bin"
    with run.instrumentor.step():
        with run.instrumentor.checkpoint_save(path):
            path.write_bytes(b"x" * 100_000)
    with run.instrumentor.step():
        with run.instrumentor.checkpoint_load(path, bytes=100_000):
            path.read_bytes()
    run.flush()
    io = {a["factorylens.checkpoint.operation"]: (a, p.value) for a, p in run.points("factorylens.checkpoint.io")}
    assert io["save"][1] == 100_000 and io["load"][1] == 100_000
    mount = io["save"][0]["system.filesystem.mountpoint"]
    assert str(tmp_path).startswith(mount)
    rates = {a["factorylens.checkpoint.operation"]: p.value for a, p in run.points("factorylens.checkpoint.throughput")}
    assert rates["save"] > 0 and rates["load"] > 0
    assert run.points("factorylens.checkpoint.duration")[0][1].count == 1


def test_collectives_count_bytes_by_operation(instrument):
    run = instrument()
    with run.instrumentor.step():
        with run.instrumentor.collective(bytes=4096, op="all_reduce"):
            busy(0.005)
        with run.instrumentor.collective(bytes=1024, op="all_gather"):
            pass
    run.flush()
    io = {a["factorylens.collective.op"]: p.value for a, p in run.points("factorylens.collective.io")}
    assert io == {"all_reduce": 4096, "all_gather": 1024}
    durations = {a["factorylens.collective.op"]: p.sum for a, p in run.points("factorylens.collective.duration")}
    assert durations["all_reduce"] >= 0.005


def test_mfu_uses_the_gpu_peak_table(instrument):
    run = instrument(model_flops_per_sample=989.4e12 * 0.01, export_interval_s=1.0)
    for _ in range(5):
        with run.instrumentor.step(samples=10):
            busy(0.02)
    run.flush()
    assert run.instrumentor.config.peak_flops == pytest.approx(989.4e12)
    mfu = run.points("factorylens.train.mfu")[0][1].value
    # 10 samples × 1% of peak per sample per ~20 ms step = ~5 × peak; the window is the last second
    assert 1.0 < mfu < 10.0


def test_goodput_counts_restarts_and_lost_work(instrument, tmp_path):
    state = str(tmp_path / "state")
    first = instrument(state_dir=state)
    for n in range(4):
        with first.instrumentor.step():
            busy(0.02)
            if n == 1:
                with first.instrumentor.checkpoint_save(tmp_path / "c"):
                    (tmp_path / "c").write_bytes(b"1")
    first.flush()
    assert first.points("factorylens.train.goodput")[0][1].value > 0.3
    first_ledger = first.instrumentor.telemetry.ledger
    productive_at_end, job_start = first_ledger.productive_s, first_ledger.job_start_ns
    first.instrumentor.uninstrument()
    time.sleep(0.2)  # the job is down
    ledger = instrument(state_dir=state).instrumentor.telemetry.ledger
    assert ledger.job_start_ns == job_start  # the wall clock runs from the first start
    assert 0.03 < ledger.productive_s < productive_at_end - 0.03  # the two steps after the checkpoint were lost
    assert ledger.goodput() < 0.5


def test_the_training_loop_never_waits_for_telemetry(instrument):
    run = instrument(max_pending_steps=5)  # and the telemetry thread never drains (flush 1 h)
    for _ in range(50):
        with run.instrumentor.step():
            pass
    assert run.instrumentor.recorder.dropped == 45
    run.flush()
    assert run.points("factorylens.train.telemetry.dropped")[0][1].value == 45
    assert run.points("factorylens.train.steps")[0][1].value == 5


def test_gpu_discovery_through_nvml_honours_cuda_visible_devices(monkeypatch):
    cluster = SimulatedCluster(1, 4, "H100", seed=3)
    nvml = SimulatedNvml(cluster.hosts[0])
    gpus = cluster.hosts[0].gpus
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert discover_gpus(2, nvml) == ((gpus[2].uuid,), "NVIDIA H100 80GB HBM3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert discover_gpus(1, nvml)[0] == (gpus[1].uuid,)
    assert discover_gpus(5, nvml) == ((), "")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", gpus[0].uuid)  # per-task binding: the one GPU is this rank's
    assert discover_gpus(0, nvml)[0] == (gpus[0].uuid,)
    assert discover_gpus(5, nvml)[0] == (gpus[0].uuid,)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # set but empty: no GPU at all
    assert discover_gpus(0, nvml) == ((), "")
    import pynvml  # the real module on this machine: no driver, so no GPU and no error

    assert discover_gpus(0, pynvml) == ((), "")


def test_configuration_errors_and_environment_defaults(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    config = TrainingConfig()
    assert (config.job_id, config.rank, config.world_size) == ("4242", 3, 8)
    with pytest.raises(ConfigError, match="rank 9"):
        TrainingConfig(rank=9, world_size=8).validate()
    monkeypatch.setenv("WORLD_SIZE", "many")
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        TrainingConfig()
    with pytest.raises(ConfigError, match="otlp"):
        TrainingInstrumentor(TrainingConfig(rank=0, world_size=1), otlp="sometimes")


def test_importing_the_core_does_not_import_torch():
    code = "import sys, factorylens.instrumentation as fl; fl.step(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_work_between_epochs_is_not_part_of_a_step(instrument):
    """The fetch that ends an epoch and an evaluation between epochs belong to no step."""
    run = instrument()
    fl_inst = run.instrumentor
    from factorylens.instrumentation._instrumentor import _set_active

    _set_active(fl_inst)
    try:
        for _epoch in range(2):
            for _ in fl.timed(range(3)):
                with fl.step(samples=1):
                    busy(0.005)
            with fl.evaluation():  # between epochs, outside any step
                busy(0.3)
    finally:
        _set_active(None)
    run.flush()
    step = run.points("factorylens.train.step.duration")[0][1]
    assert step.count == 6 and step.max < 0.1  # no step swallowed the 0.3 s evaluation
    assert run.phase("eval").count == 2 and run.phase("eval").sum >= 0.6
    assert run.phase("data").count == 6  # the fetches that found the end of an epoch are not counted
    assert fl_inst.telemetry.ledger.productive_s < 0.2


def test_a_function_decorated_before_init_is_measured_after_it():
    @fl.step(samples=2)
    def train_step() -> None:
        pass

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    train_step()  # before init: nothing happens
    reader = InMemoryMetricReader()
    inst = fl.init(
        job_id="late",
        meter_provider=MeterProvider(metric_readers=[reader]),
        tracer_provider=TracerProvider(),
        flush_interval_s=3600,
    )
    try:
        train_step()
        train_step()
        phase = fl.forward()
        phase.start()
        phase.stop()
        inst.force_flush()
        assert inst.telemetry.steps_done == 2
    finally:
        fl.shutdown()
    begin_end = fl.forward()  # after shutdown: a no-op again, begin/end form included
    begin_end.start()
    begin_end.stop()


def test_concurrent_drains_count_every_step_once(instrument):
    import threading

    run = instrument(flush_interval_s=0.0005)
    inst = run.instrumentor
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            inst.telemetry.drain()

    thread = threading.Thread(target=flusher)
    thread.start()
    for _ in range(3000):
        with inst.step(samples=1):
            pass
    stop.set()
    thread.join()
    run.flush()
    assert inst.telemetry.steps_done == 3000
    assert run.points("factorylens.train.steps")[0][1].value == 3000


def test_a_failing_device_query_does_not_stop_the_telemetry_thread(instrument):
    class Broken:
        def query(self) -> bool:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    run = instrument(flush_interval_s=0.01)
    inst = run.instrumentor
    with inst.step():
        inst.recorder.device_phases.append(("forward", 0, 1, Broken(), Broken(), None, (Broken(), 0)))
    for _ in range(3):
        with inst.step():
            pass
    wait_until(lambda: inst.telemetry.steps_done >= 3, what="later steps drained")
    assert inst.telemetry._thread.is_alive()


def test_a_second_init_on_the_same_providers_reports_its_own_numbers():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    reader = InMemoryMetricReader()
    meters, tracers = MeterProvider(metric_readers=[reader]), TracerProvider()

    def rate() -> float:
        return next(
            p.value
            for m in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
            if m.name == "factorylens.train.samples.rate"
            for p in m.data.data_points
        )

    for samples in (1000, 1):  # a notebook re-running its cell
        inst = fl.init(
            job_id="nb", meter_provider=meters, tracer_provider=tracers, flush_interval_s=3600, export_interval_s=60
        )
        for _ in range(5):
            with fl.step(samples=samples):
                busy(0.002)
        inst.force_flush()
        observed = rate()
        fl.shutdown()
    assert observed < 1000  # the second run's own rate, not the first's
