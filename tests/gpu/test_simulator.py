"""The simulator and every fault kind, observed through the OTel SDK's in-memory reader."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from factorylens.receivers.gpu import GpuReceiverConfig, create_receiver
from factorylens.receivers.gpu.sim import Job, SimulatedCluster
from factorylens.registry import GPU_RECEIVER, REGISTRY
from tests.conftest import ManualClock

SCENARIOS = Path(__file__).resolve().parents[2] / "receivers" / "gpu" / "scenarios"


class Sim:
    """A simulated cluster behind the real receiver pipeline, read through InMemoryMetricReader."""

    def __init__(self, faults=None, hosts=1, gpus=8, model="H100", scenario_file=None, **config):
        self.clock = ManualClock()
        self.readers: dict[str, InMemoryMetricReader] = {}
        self.logs: dict[str, InMemoryLogRecordExporter] = {}
        if faults is not None:
            import json
            import tempfile

            f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
            json.dump({"faults": faults}, f)
            f.close()
            scenario_file = f.name
        cfg = GpuReceiverConfig(
            backend="sim",
            sim_hosts=hosts,
            sim_gpus_per_host=gpus,
            sim_model=model,
            scenario=scenario_file,
            otlp="off",
            **config,
        )
        self.receiver, self.cluster = create_receiver(
            cfg,
            metric_readers=lambda name: [self.readers.setdefault(name, InMemoryMetricReader())],
            log_exporters=lambda name: [self.logs.setdefault(name, InMemoryLogRecordExporter())],
            clock=self.clock,
            strict=True,
        )
        for p in self.receiver.pipelines:
            p.scraper.start()

    def step(self, seconds=10.0):
        self.clock.advance(seconds)
        self.receiver.scrape_once()

    def run(self, seconds, every=10.0):
        for _ in range(int(seconds / every)):
            self.step(every)

    def collect(self, host="sim-node-0"):
        data = self.readers[host].get_metrics_data()
        out = {}
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out[m.name] = (m, [(dict(p.attributes), p.value) for p in m.data.data_points], rm.resource)
        return out

    def get(self, metric, host="sim-node-0", **match):
        return [
            v
            for a, v in self.collect(host).get(metric, (None, []))[1]
            if all(a.get(k) == val for k, val in match.items())
        ]

    def one(self, metric, host="sim-node-0", **match):
        found = self.get(metric, host, **match)
        assert len(found) == 1, (metric, match, found)
        return found[0]

    def close(self):
        self.receiver.shutdown()


@pytest.fixture
def sim_factory():
    sims = []

    def make(*args, **kwargs):
        s = Sim(*args, **kwargs)
        sims.append(s)
        return s

    yield make
    for s in sims:
        s.close()


def test_everything_emitted_is_declared_in_the_registry(sim_factory):
    sim = sim_factory(scenario_file=str(SCENARIOS / "all-faults.yaml"), hosts=2)
    sim.run(180)
    for host in ("sim-node-0", "sim-node-1"):
        for name, (metric, points, resource) in sim.collect(host).items():
            spec = REGISTRY.metric(name)
            assert metric.unit == spec.unit, name
            allowed = set(REGISTRY.allowed_attributes(spec))
            for attributes, _ in points:
                assert set(attributes) <= allowed, (name, set(attributes) - allowed)
            assert set(resource.attributes) - {
                "telemetry.sdk.language",
                "telemetry.sdk.name",
                "telemetry.sdk.version",
                "service.instance.id",
            } <= set(REGISTRY.resource_attributes)
    emitted = set(sim.collect("sim-node-0")) | set(sim.collect("sim-node-1"))
    gpu_metrics = {m.name for m in REGISTRY.emitted_by(GPU_RECEIVER)}
    # H100 boards have no fan of their own; the simulated fabric is InfiniBand, not RoCE
    assert gpu_metrics - emitted == {"hw.fan.speed_ratio", "factorylens.network.roce.events"}


def test_resource_identifies_the_host_and_marks_simulation(sim_factory):
    sim = sim_factory(hosts=2, gpus=2)
    sim.step()
    _, _, resource = sim.collect("sim-node-1")["hw.power"]
    assert resource.attributes["host.name"] == "sim-node-1"
    assert resource.attributes["factorylens.simulated"] is True
    assert resource.attributes["service.name"] == "factorylens-gpu-receiver"


def test_utilization_power_temperature_and_clocks_move_together(sim_factory):
    sim = sim_factory()
    sim.run(300)
    busy = {"gpu.index": 0}
    idle = {"gpu.index": 7}  # unallocated
    assert sim.one("hw.gpu.utilization", "sim-node-0", **busy, **{"hw.gpu.task": "general"}) > 0.8
    assert sim.one("hw.power", **busy) > 3 * sim.one("hw.power", **idle)
    assert (
        sim.one("hw.temperature", **busy, **{"hw.sensor_location": "die"})
        > sim.one("hw.temperature", **idle, **{"hw.sensor_location": "die"}) + 20
    )
    assert sim.one("hw.gpu.speed", **busy, **{"hw.gpu.clock_domain": "sm"}) == 1980e6
    assert sim.one("hw.gpu.speed", **idle, **{"hw.gpu.clock_domain": "sm"}) == 345e6
    assert sim.one("hw.gpu.clock_event.active", **idle, **{"hw.gpu.clock_event.reason": "gpu_idle"}) == 1


def test_training_dips_at_every_checkpoint():
    job = Job("j", "t", "training", 0.8, checkpoint_every_s=600, checkpoint_s=40)
    loads = [job.load(1e9, t) for t in range(0, 1800, 10)]
    dips = [t for t, load in zip(range(0, 1800, 10), loads, strict=False) if load < 0.1]
    assert dips and all(t % 600 >= 560 for t in dips)
    assert len({t // 600 for t in dips}) == 3


def test_inference_follows_the_time_of_day():
    job = Job("j", "t", "inference", 0.6)
    afternoon = job.load(14 * 3600.0, 0.0)
    night = job.load(2 * 3600.0, 0.0)
    assert job.load(14 * 3600.0, 0.0) == job.load(14 * 3600.0, 999.0)
    assert afternoon > 0.75 and night < 0.2


def test_idle_but_allocated_and_free_gpus(sim_factory):
    sim = sim_factory()
    sim.run(30)
    assert sim.one("hw.gpu.allocated", **{"gpu.index": 6}) == 1
    assert sim.one("hw.gpu.utilization", **{"gpu.index": 6, "hw.gpu.task": "general"}) < 0.05
    assert sim.one("hw.gpu.memory.usage", **{"gpu.index": 6}) > 20 * 2**30
    assert sim.one("hw.gpu.allocated", **{"gpu.index": 7}) == 0


def test_models_carry_their_real_limits(sim_factory):
    for model, limit_w, memory_gib in (("H200", 700, 140.4), ("A100", 400, 80.0), ("L40S", 350, 45.0)):
        sim = sim_factory(model=model, gpus=1)
        sim.step()
        assert sim.one("hw.power.limit") == limit_w
        assert round(sim.one("hw.gpu.memory.limit") / 2**30, 1) == memory_gib


def fault(kind, gpu=0, start=60, duration=None, **params):
    f = {"kind": kind, "target": {"host": 0, "gpu": gpu}, "start": start, "params": params}
    if duration:
        f["duration"] = duration
    return f


def test_thermal_throttle_heats_slows_and_drags_the_job(sim_factory):
    sim = sim_factory([fault("thermal_throttle", gpu=3, duration=900, extra_celsius=32)])
    sim.run(50)
    peer_util_before = sim.one("hw.gpu.utilization", **{"gpu.index": 0, "hw.gpu.task": "general"})
    sim.run(300)
    assert sim.one("hw.temperature", **{"gpu.index": 3, "hw.sensor_location": "die"}) >= 87
    assert sim.one("hw.gpu.clock_event.active", **{"gpu.index": 3, "hw.gpu.clock_event.reason": "sw_thermal"}) == 1
    assert sim.one("hw.gpu.speed", **{"gpu.index": 3, "hw.gpu.clock_domain": "sm"}) < 1980e6 * 0.9
    assert sim.one("hw.status", **{"gpu.index": 3, "hw.state": "degraded"}) == 1
    peer_util = sim.one("hw.gpu.utilization", **{"gpu.index": 0, "hw.gpu.task": "general"})
    assert peer_util < peer_util_before - 0.1  # the straggler slows the synchronous job
    assert sim.one("hw.gpu.utilization", **{"gpu.index": 5, "hw.gpu.task": "general"}) > 0  # other job unaffected


def test_power_cap_lowers_the_limit_and_throttles(sim_factory):
    sim = sim_factory([fault("power_cap", gpu=1, limit_fraction=0.4)])
    sim.run(120)
    assert sim.one("hw.power.limit", **{"gpu.index": 1}) == 280
    assert sim.one("hw.power", **{"gpu.index": 1}) <= 280
    assert sim.one("hw.gpu.clock_event.active", **{"gpu.index": 1, "hw.gpu.clock_event.reason": "power_cap"}) == 1


def test_ecc_burst_counts_and_flags_the_gpu(sim_factory):
    sim = sim_factory([fault("ecc_burst", gpu=2, duration=60, corrected_per_s=5, uncorrected=3)])
    sim.run(200)
    assert sim.one("hw.errors", **{"gpu.index": 2, "error.type": "corrected"}) == pytest.approx(300, abs=10)
    assert sim.one("hw.errors", **{"gpu.index": 2, "error.type": "uncorrected"}) == 3
    assert sim.one("hw.errors", **{"gpu.index": 1, "error.type": "uncorrected"}) == 0


def test_xid_becomes_a_counter_and_a_log_record(sim_factory):
    sim = sim_factory([fault("xid", gpu=4, start=20, code=94)])
    sim.run(30)
    pipeline = sim.receiver.pipelines[0]
    for event in pipeline.scraper.wait_events(0):
        pipeline.emit_event(event)
    sim.step()
    assert sim.one("hw.errors", **{"gpu.index": 4, "error.type": "xid", "hw.gpu.xid.code": 94}) == 1
    pipeline.logger_provider.force_flush()
    records = sim.logs["sim-node-0"].get_finished_logs()
    assert len(records) == 1
    record = records[0].log_record
    assert record.event_name == "hw.gpu.xid" and record.attributes["hw.gpu.xid.code"] == 94
    assert record.attributes["hw.id"] == sim.cluster.hosts[0].gpus[4].uuid
    assert "contained uncorrectable ECC error" in record.body


def test_nvlink_and_pcie_degradation(sim_factory):
    sim = sim_factory(
        [
            fault("nvlink_degradation", gpu=0, throughput_fraction=0.2, crc_errors_per_s=10),
            fault("pcie_degradation", gpu=1, throughput_fraction=0.1, replays_per_s=4),
        ]
    )
    sim.run(50)
    nv0 = sim.one("hw.gpu.interconnect.io", **{"gpu.index": 0, "network.io.direction": "transmit"})
    nv2 = sim.one("hw.gpu.interconnect.io", **{"gpu.index": 2, "network.io.direction": "transmit"})
    sim.run(100)
    grow0 = sim.one("hw.gpu.interconnect.io", **{"gpu.index": 0, "network.io.direction": "transmit"}) - nv0
    grow2 = sim.one("hw.gpu.interconnect.io", **{"gpu.index": 2, "network.io.direction": "transmit"}) - nv2
    assert grow0 < 0.5 * grow2
    assert sim.one("hw.errors", **{"gpu.index": 0, "error.type": "nvlink_crc_data"}) >= 800
    assert sim.one("hw.errors", **{"gpu.index": 1, "error.type": "pcie_replay"}) >= 300
    assert sim.one("hw.errors", **{"gpu.index": 2, "error.type": "pcie_replay"}) == 0


def test_gpu_lost_then_back(sim_factory):
    sim = sim_factory([fault("gpu_lost", gpu=2, duration=60)])
    sim.run(80)
    assert sim.one("hw.status", **{"gpu.index": 2, "hw.state": "failed"}) == 1
    assert sim.one("factorylens.receiver.devices") == 7
    errors = sim.collect()["factorylens.receiver.scrape.errors"][1]
    assert any(a["factorylens.receiver.error"] == "GpuIsLost" for a, _ in errors)
    assert sim.one("hw.gpu.utilization", **{"gpu.index": 0, "hw.gpu.task": "general"}) < 0.1  # job stalled
    sim.run(100)
    assert sim.one("hw.status", **{"gpu.index": 2, "hw.state": "ok"}) == 1
    assert sim.one("factorylens.receiver.devices") == 8


def test_not_supported_per_function(sim_factory):
    sim = sim_factory(
        [fault("nvml_error", gpu=5, start=0, function="nvmlDeviceGetTotalEnergyConsumption", error="NotSupported")]
    )
    sim.run(30)
    assert sim.get("hw.energy", **{"gpu.index": 5}) == []
    assert sim.get("hw.energy", **{"gpu.index": 4})
    errors = sim.collect()["factorylens.receiver.scrape.errors"][1]
    assert (
        {"nvml.function": "nvmlDeviceGetTotalEnergyConsumption", "factorylens.receiver.error": "NotSupported"},
        1,
    ) in errors


def test_stuck_utilization_reads_zero_while_power_stays_high(sim_factory):
    sim = sim_factory([fault("stuck_utilization", gpu=1, start=0)])
    sim.run(120)
    assert sim.one("hw.gpu.utilization", **{"gpu.index": 1, "hw.gpu.task": "general"}) == 0
    assert sim.one("hw.power", **{"gpu.index": 1}) > 400


def test_memory_leak_grows_until_the_board_is_full(sim_factory):
    sim = sim_factory([fault("memory_leak", gpu=6, start=10, bytes_per_s=2**30)])
    sim.run(20)
    first = sim.one("hw.gpu.memory.usage", **{"gpu.index": 6})
    sim.run(20)
    assert sim.one("hw.gpu.memory.usage", **{"gpu.index": 6}) - first == pytest.approx(20 * 2**30, rel=0.01)
    sim.run(200)
    limit = sim.one("hw.gpu.memory.limit", **{"gpu.index": 6})
    assert sim.one("hw.gpu.memory.usage", **{"gpu.index": 6}) <= limit
    assert sim.one("hw.gpu.memory.utilization", **{"gpu.index": 6}) > 0.98


def test_driver_missing_then_present(sim_factory):
    sim = sim_factory(
        [{"kind": "driver_missing", "target": {"host": 0}, "start": 0, "duration": 40}], discovery_retry_interval_s=30
    )
    sim.step(1)
    assert sim.one("factorylens.receiver.devices") == 0
    sim.run(80)
    assert sim.one("factorylens.receiver.devices") == 8


def test_mig_preset(sim_factory):
    sim = sim_factory(gpus=2, sim_mig=True)
    sim.step()
    assert sim.one("factorylens.receiver.devices") == 16
    profiles = {a.get("gpu.mig.profile") for a, _ in sim.collect()["hw.gpu.memory.limit"][1]}
    assert profiles == {None, "1g.10gb"}


def test_cluster_rejects_nonsense():
    with pytest.raises(ValueError, match="unknown GPU model"):
        SimulatedCluster(1, 1, "K80")
    with pytest.raises(ValueError, match="MIG"):
        SimulatedCluster(1, 1, "L40S", mig=True)
    with pytest.raises(ValueError):
        SimulatedCluster(0, 1)
