"""The scenario suite's generator: deterministic per seed, named like the store names things, and each
fault moves the signals it should on its true root cause and slows the training job; a fault-free run
stays normal. (Whether the RCA service then *finds* the cause is scored by bench/scenarios.py.)"""

from __future__ import annotations

import functools
import re
import subprocess
import sys

import numpy as np
import pytest

from factorylens.rca_service.store import SeriesStore, View
from factorylens.simulation import CATALOG, FAULT_TYPES, TRAINING_JOB, ScenarioRun, ingest

pytestmark = pytest.mark.slow  # `make check` leaves these out; `make test` runs them

SEED = 3
ONSET_S = 240.0
POST_S = 200.0
WINDOW = (30.0, POST_S)  # seconds after the onset compared with the same time of the fault-free run
NS = 1_000_000_000


def _onset(fault: str | None) -> float:
    # checkpoints start at 90, 450, 810 s...: a checkpoint-storage fault starts just before the second (the
    # store shows a histogram series from its second point on, and the first checkpoint creates the series)
    return 440.0 if fault == "slow_checkpoint_storage" else ONSET_S


@functools.cache
def simulate(fault: str | None, onset_s: float, seed: int = SEED) -> tuple[ScenarioRun, SeriesStore]:
    # a slow checkpoint (8x its 20 s) must finish inside the run
    post = POST_S + (60.0 if fault == "slow_checkpoint_storage" else 0.0)
    run = ScenarioRun(fault, seed=seed, hosts=2, gpus_per_host=4, onset_s=onset_s, duration_s=onset_s + post, logs=True)
    now = [0.0]
    store = SeriesStore(clock=lambda: now[0])
    for ts, requests in run:
        now[0] = ts / NS
        ingest(store, requests)
    return run, store


def _comparable(requests: list) -> list[bytes]:
    """Requests as bytes, without the receiver's measured scrape duration (real CPU time)."""
    out = []
    for request in requests:
        copy = type(request)()
        copy.CopyFrom(request)
        for rm in getattr(copy, "resource_metrics", ()):
            for sm in rm.scope_metrics:
                kept = [m for m in sm.metrics if m.name != "factorylens.receiver.scrape.duration"]
                del sm.metrics[:]
                sm.metrics.extend(kept)
        out.append(copy.SerializeToString(deterministic=True))
    return out


def _ticks(fault: str | None, seed: int, **kwargs) -> list[tuple[int, list[bytes]]]:
    run = ScenarioRun(fault, seed=seed, hosts=2, gpus_per_host=4, onset_s=100.0, duration_s=160.0, logs=True, **kwargs)
    return [(ts, _comparable(requests)) for ts, requests in run]


def test_catalog_covers_the_eleven_fault_types():
    assert len(FAULT_TYPES) == 11 and len(CATALOG) == 13
    assert {
        "gpu_throttling",
        "gpu_xid_ecc",
        "gpu_lost",
        "nvlink_degradation",
        "pcie_degradation",
        "slow_checkpoint_storage",
        "dataloader_starvation",
        "collective_network_congestion",
        "straggler_rank",
        "noisy_neighbour_job",
        "host_pressure",
    } == set(FAULT_TYPES)
    assert {spec.domain for spec in CATALOG.values()} == {"gpu", "storage", "data", "network", "app", "host"}


def test_deterministic_per_seed_and_the_same_history_whatever_the_fault():
    first = _ticks("gpu_power_cap", 5)
    again = _ticks("gpu_power_cap", 5, reuse_encoding=False)  # and the encoder's own output every time
    assert first == again
    assert first != _ticks("gpu_power_cap", 6)
    fault_free = _ticks(None, 5)
    assert [ts for ts, _ in first] == [ts for ts, _ in fault_free]
    differs = [ts for (ts, a), (_, b) in zip(first, fault_free, strict=False) if a != b]
    assert differs and (differs[0] - first[0][0]) / NS == pytest.approx(90.0)  # the tick at the onset (100 s)


_FIRST_TICK = """
from factorylens.simulation import ScenarioRun
run = ScenarioRun(None, seed=5, hosts=1, gpus_per_host=4, onset_s=100.0, duration_s=20.0)
_, requests = next(iter(run))
print(sorted(str(sorted((kv.key, str(kv.value)) for kv in rm.resource.attributes))
             for r in requests for rm in r.resource_metrics))
"""


def test_the_same_seed_gives_the_same_resources_in_another_process():
    """The SDK draws ``service.instance.id`` per process; a seed's run must not (series ids follow it)."""
    runs = [
        subprocess.run([sys.executable, "-c", _FIRST_TICK], capture_output=True, text=True, check=True, timeout=120)
        for _ in range(2)
    ]
    assert "service.instance.id" in runs[0].stdout
    assert runs[0].stdout == runs[1].stdout


def test_timestamps_are_simulated_and_every_interval_exports():
    run = ScenarioRun("gpu_power_cap", seed=1, hosts=2, gpus_per_host=4, onset_s=50.0, duration_s=60.0)
    ticks = list(run)
    assert [ts for ts, _ in ticks] == [run.epoch_ns + k * 10 * NS for k in range(1, 7)]
    for ts, requests in ticks:
        assert len(requests) == 2 + len(run.ranks) + 1  # two node agents, the ranks, the neighbour
        for request in requests:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        data = getattr(metric, metric.WhichOneof("data"))
                        for point in data.data_points:
                            assert point.time_unix_nano == ts
                            assert point.start_time_unix_nano in (0, run.epoch_ns)
    with pytest.raises(RuntimeError):
        list(run)


def test_entities_follow_the_store_naming_and_carry_the_join_keys():
    run, store = simulate(None, ONSET_S)
    entities = {s.info.entity for s in store.series.values()}
    hosts = [h.name for h in run.cluster.hosts]
    expected = (
        {f"gpu:{g.uuid}" for h in run.cluster.hosts for g in h.gpus}
        | {f"host:{h}" for h in hosts}
        | {f"nic:{h}/mlx5_{i}/1" for h in hosts for i in range(4)}
        | {f"fs:{h}//" for h in hosts}
        | {f"fs:{h}//mnt/ckpt" for h in hosts}
        | {f"rank:{TRAINING_JOB}/{r.rank}" for r in run.ranks}
        | {f"rank:{run.neighbour_job}/0"}
    )
    assert entities == expected
    assert [r.rank for r in run.ranks] == list(range(4))
    for info in run.ranks:  # each rank's resource joins it to its job, host and GPU
        series = store.list_series("factorylens.train.step.duration", entity=f"rank:{TRAINING_JOB}/{info.rank}")
        assert len(series) == 1
        resource = series[0].resource
        assert resource["factorylens.job.id"] == TRAINING_JOB and resource["factorylens.rank"] == info.rank
        assert resource["host.name"] == info.host and resource["hw.id"] == info.gpu_id
        assert info.gpu_id in resource["factorylens.gpu.ids"]
        assert resource["factorylens.world_size"] == len(run.ranks)
    # the GPU receiver maps each GPU's process to its job (the neighbour's too)
    jobs = {
        s.info.attributes.get("factorylens.job.id")
        for s in store.series.values()
        if s.info.metric == "process.gpu.utilization"
    }
    assert {TRAINING_JOB, run.neighbour_job, "chat-serve-0", "chat-serve-1"} <= jobs
    for fault, spec in CATALOG.items():  # every true root cause is an entity the store has (or its job's ranks)
        scenario = ScenarioRun(fault, seed=SEED, hosts=2, gpus_per_host=4, onset_s=ONSET_S)
        assert scenario.truth is not None and scenario.truth.domain == spec.domain
        assert re.fullmatch(r"(gpu|host|nic|fs|rank|job):.+", scenario.truth.entity)
        assert any(scenario.truth.matches(e) for e in entities), fault
        assert scenario.benign is not None and scenario.benign.entity in entities
        assert not scenario.truth.matches(scenario.benign.entity)


# ---- each fault moves its signals ---------------------------------------------------------------------


def _series(store: SeriesStore, metric: str, entity: str, view: View | None = None, **match: str) -> list:
    found = store.list_series(metric, entity=entity, match=match or None)
    assert found, f"no {metric} {match} on {entity}"
    return found


def window(
    store: SeriesStore,
    run: ScenarioRun,
    metric: str,
    entity: str,
    view: View | None = None,
    reduce=np.nanmedian,
    span: tuple[float, float] = WINDOW,
    **match: str,
) -> float:
    """``reduce`` over the window after the onset, of the series' values (all matching series pooled)."""
    values = []
    for info in _series(store, metric, entity, view, **match):
        _, ts, v = store.query(info.id, view)
        rel = (ts - run.onset_unix_nano) / NS
        values.extend(v[(rel >= span[0]) & (rel <= span[1])])
    assert values
    return float(reduce(np.asarray(values, dtype=float)))


def compare(
    fault: str,
    metric: str,
    entity: str,
    view: View | None = None,
    reduce=np.nanmedian,
    span: tuple[float, float] = WINDOW,
    **match: str,
) -> tuple[float, float]:
    """(faulted, fault-free) values of the same series over the same window of the same seed."""
    run, store = simulate(fault, _onset(fault))
    ref_run, ref_store = simulate(None, _onset(fault))
    return (
        window(store, run, metric, entity, view, reduce, span, **match),
        window(ref_store, ref_run, metric, entity, view, reduce, span, **match),
    )


def _latency(fault: str, entity: str, direction: str) -> tuple[float, float]:
    time_, ref_time = compare(
        fault, "factorylens.storage.operation.time", entity, reduce=np.nansum, **{"disk.io.direction": direction}
    )
    ops, ref_ops = compare(
        fault, "factorylens.storage.operations", entity, reduce=np.nansum, **{"disk.io.direction": direction}
    )
    return time_ / ops, ref_time / ref_ops


def _check_thermal(run, t):
    gpu = t.entity
    hot, cool = compare("gpu_thermal_throttle", "hw.temperature", gpu, **{"hw.sensor_location": "die"})
    assert hot > cool + 10
    assert (
        compare(
            "gpu_thermal_throttle", "hw.gpu.clock_event.active", gpu, **{"hw.gpu.clock_event.reason": "sw_thermal"}
        )[0]
        == 1
    )
    slow, fast = compare("gpu_thermal_throttle", "hw.gpu.speed", gpu, **{"hw.gpu.clock_domain": "sm"})
    assert slow < 0.8 * fast
    assert compare("gpu_thermal_throttle", "hw.status", gpu, **{"hw.state": "degraded"}) == (1, 0)


def _check_power(run, t):
    gpu = t.entity
    assert compare("gpu_power_cap", "hw.power.limit", gpu) == (pytest.approx(315.0), 700.0)
    assert compare("gpu_power_cap", "hw.gpu.clock_event.active", gpu, **{"hw.gpu.clock_event.reason": "power_cap"}) == (
        1,
        0,
    )
    slow, fast = compare("gpu_power_cap", "hw.gpu.speed", gpu, **{"hw.gpu.clock_domain": "sm"})
    assert slow < 0.6 * fast
    busy, healthy = compare(
        "gpu_power_cap",
        "factorylens.train.phase.duration",
        f"rank:{TRAINING_JOB}/{run.targets.rank}",
        View.MEAN,
        **{"factorylens.train.phase": "backward"},
    )
    assert busy > 1.5 * healthy


def _check_xid(run, t):
    _, store = simulate("gpu_xid_ecc", ONSET_S)
    xid = _series(store, "hw.errors", t.entity, **{"error.type": "xid", "hw.gpu.xid.code": "94"})
    assert store.query(xid[0].id, View.RAW)[2][-1] == 1
    assert [e["attributes"]["hw.gpu.xid.code"] for e in store.events] == [94]
    assert compare("gpu_xid_ecc", "hw.errors", t.entity, View.RATE, np.nanmax, **{"error.type": "corrected"})[0] > 10
    # the job is down, then restarts from its checkpoint
    restored = store.list_series(
        "factorylens.checkpoint.duration",
        entity=f"rank:{TRAINING_JOB}/*",
        match={"factorylens.checkpoint.operation": "load"},
    )
    assert len(restored) == len(run.ranks)


def _check_lost(run, t):
    assert compare("gpu_lost", "hw.status", t.entity, **{"hw.state": "failed"}) == (1, 0)
    _, store = simulate("gpu_lost", ONSET_S)
    assert [e["attributes"]["hw.gpu.xid.code"] for e in store.events] == [79]
    assert (
        compare("gpu_lost", "hw.gpu.utilization", t.entity, span=(-POST_S, -1), **{"hw.gpu.task": "general"})[0] > 0.8
    )  # it was busy, then its series stop
    with pytest.raises(AssertionError):
        compare("gpu_lost", "hw.gpu.utilization", t.entity, span=(20, POST_S), **{"hw.gpu.task": "general"})


def _check_nvlink(run, t):
    slow, fast = compare(
        "nvlink_degradation", "hw.gpu.interconnect.io", t.entity, View.RATE, **{"network.io.direction": "transmit"}
    )
    assert slow < 0.3 * fast
    assert compare("nvlink_degradation", "hw.errors", t.entity, View.RATE, **{"error.type": "nvlink_crc_data"}) == (
        pytest.approx(40.0, rel=0.05),
        0,
    )
    waits, healthy = compare(
        "nvlink_degradation", "factorylens.collective.duration", f"rank:{TRAINING_JOB}/*", View.MEAN
    )
    assert waits > 2 * healthy


def _check_pcie(run, t):
    slow, fast = compare("pcie_degradation", "hw.gpu.io", t.entity, View.RATE, **{"network.io.direction": "receive"})
    assert slow < 0.3 * fast
    assert compare("pcie_degradation", "hw.errors", t.entity, View.RATE, **{"error.type": "pcie_replay"}) == (
        pytest.approx(20.0, rel=0.05),
        0,
    )
    copy, healthy = compare(
        "pcie_degradation",
        "factorylens.train.phase.duration",
        f"rank:{TRAINING_JOB}/{run.targets.rank}",
        View.MEAN,
        **{"factorylens.train.phase": "h2d"},
    )
    assert copy > 4 * healthy


def _check_storage(run, t):
    slow, fast = _latency("slow_checkpoint_storage", t.entity, "read")
    assert slow > 4 * fast
    span = (0, POST_S + 60)
    saves = [
        compare(
            "slow_checkpoint_storage",
            "factorylens.checkpoint.duration",
            f"rank:{TRAINING_JOB}/{r.rank}",
            View.MEAN,
            np.nanmax,
            span,
            **{"factorylens.checkpoint.operation": "save"},
        )
        for r in run.ranks
    ]
    on_host = [s for s, r in zip(saves, run.ranks, strict=False) if r.host == run.targets.host]
    assert all(slow > 4 * fast for slow, fast in on_host)
    written, healthy = compare(
        "slow_checkpoint_storage",
        "factorylens.storage.io",
        t.entity,
        View.RATE,
        np.nanmax,
        span,
        **{"disk.io.direction": "write"},
    )
    assert written < 0.3 * healthy


def _check_starvation(run, t):
    starved, fed = compare("dataloader_starvation", "factorylens.data.wait.ratio", t.entity)
    assert starved > 0.3 and fed < 0.05
    others = [r for r in run.ranks if r.rank != run.targets.rank]
    other = f"rank:{TRAINING_JOB}/{others[0].rank}"
    assert compare("dataloader_starvation", "factorylens.data.wait.ratio", other)[0] < 0.05
    busy, idle = compare(
        "dataloader_starvation", "system.cpu.utilization", f"host:{run.targets.host}", **{"state": "user"}
    )
    memory, ref = compare(
        "dataloader_starvation", "system.memory.utilization", f"host:{run.targets.host}", **{"state": "used"}
    )
    assert memory < ref + 0.01
    assert busy < idle + 0.02 and busy < 0.5  # the host is not the problem (it is less busy: the job slowed)


def _check_congestion(run, t):
    waits, healthy = compare("collective_network_congestion", "factorylens.network.xmit_wait", t.entity, View.RATE)
    assert waits > 100 * healthy
    slow, fast = compare(
        "collective_network_congestion", "hw.network.io", t.entity, View.RATE, **{"network.io.direction": "transmit"}
    )
    assert slow < 0.5 * fast
    coll, ref = compare(
        "collective_network_congestion", "factorylens.collective.duration", f"rank:{TRAINING_JOB}/*", View.MEAN
    )
    assert coll > 1.5 * ref


def _check_straggler(run, t):
    slow, fast = compare(
        "straggler_rank",
        "factorylens.train.phase.duration",
        t.entity,
        View.MEAN,
        **{"factorylens.train.phase": "forward"},
    )
    assert slow > 1.4 * fast
    clocks, ref = compare(
        "straggler_rank", "hw.gpu.speed", f"gpu:{run.targets.gpu_id}", **{"hw.gpu.clock_domain": "sm"}
    )
    assert clocks == ref  # its GPU is healthy
    other = next(r for r in run.ranks if r.rank != run.targets.rank)
    waits, healthy = compare(
        "straggler_rank", "factorylens.collective.duration", f"rank:{TRAINING_JOB}/{other.rank}", View.MEAN
    )
    assert waits > 2 * healthy


def _check_neighbour(run, t):
    busy, light = compare("noisy_neighbour_job", "factorylens.train.samples.rate", f"rank:{run.neighbour_job}/0")
    assert busy > 4 * light
    gpu = f"gpu:{run.neighbour_gpu.uuid}"
    assert compare("noisy_neighbour_job", "hw.gpu.utilization", gpu, **{"hw.gpu.task": "general"})[0] > 0.8
    cpu, ref = compare(
        "noisy_neighbour_job",
        "system.cpu.utilization",
        f"host:{run.targets.host}",
        reduce=np.nansum,
        **{"state": "idle"},
    )
    assert cpu < 0.5 * ref
    waits, healthy = compare(
        "noisy_neighbour_job", "factorylens.network.xmit_wait", f"nic:{run.targets.host}/{run.targets.port}", View.RATE
    )
    assert waits > 10 * healthy


def _check_cpu(run, t):
    idle, ref = compare("host_cpu_pressure", "system.cpu.utilization", t.entity, **{"state": "idle"})
    assert idle < 0.05 < 0.3 < ref
    on_host = next(r for r in run.ranks if r.host == run.targets.host)
    assert compare("host_cpu_pressure", "factorylens.data.wait.ratio", f"rank:{TRAINING_JOB}/{on_host.rank}")[0] > 0.3


def _check_memory(run, t):
    used, ref = compare("host_memory_pressure", "system.memory.utilization", t.entity, **{"state": "used"})
    assert used > 0.95 > 0.6 > ref
    assert compare("host_memory_pressure", "system.swap.usage", t.entity, reduce=np.nanmax, **{"state": "used"})[0] > 0
    on_host = next(r for r in run.ranks if r.host == run.targets.host)
    waits = compare("host_memory_pressure", "factorylens.data.wait.ratio", f"rank:{TRAINING_JOB}/{on_host.rank}")
    assert waits[0] > 0.2


CHECKS = {
    "gpu_thermal_throttle": (_check_thermal, "step"),
    "gpu_power_cap": (_check_power, "step"),
    "gpu_xid_ecc": (_check_xid, "stall"),
    "gpu_lost": (_check_lost, "stall"),
    "nvlink_degradation": (_check_nvlink, "step"),
    "pcie_degradation": (_check_pcie, "step"),
    "slow_checkpoint_storage": (_check_storage, "checkpoint"),
    "dataloader_starvation": (_check_starvation, "step"),
    "collective_network_congestion": (_check_congestion, "step"),
    "straggler_rank": (_check_straggler, "step"),
    "noisy_neighbour_job": (_check_neighbour, "step"),
    "host_cpu_pressure": (_check_cpu, "step"),
    "host_memory_pressure": (_check_memory, "step"),
}


def test_every_fault_has_checks():
    assert set(CHECKS) == set(CATALOG)


@pytest.mark.parametrize("fault", list(CATALOG))
def test_fault_moves_its_signals_and_the_jobs_kpi(fault):
    run, _ = simulate(fault, _onset(fault))
    assert run.truth is not None
    check, kpi = CHECKS[fault]
    check(run, run.truth)
    ranks = f"rank:{TRAINING_JOB}/*"
    if kpi == "step":  # every rank of the synchronous job steps slower
        slow, healthy = compare(fault, "factorylens.train.step.duration", ranks, View.MEAN)
        assert slow > 1.2 * healthy
    elif kpi == "stall":  # no step finishes
        stalled, healthy = compare(fault, "factorylens.train.samples.rate", ranks, span=(20, 100))
        assert stalled == 0.0 and healthy == pytest.approx(16, rel=0.25)
    else:  # the checkpoint's step takes far longer
        slow, healthy = compare(fault, "factorylens.train.step.duration", ranks, View.MEAN, np.nanmax, (0, POST_S + 60))
        assert slow > 3 * healthy


def test_fault_free_run_keeps_the_kpi_in_its_normal_range():
    run, store = simulate(None, ONSET_S)
    assert run.truth is None
    for info in store.list_series("factorylens.train.step.duration", entity=f"rank:{TRAINING_JOB}/*"):
        _, ts, steps = store.query(info.id, View.MEAN)
        t = (ts - run.epoch_ns) / NS
        checkpoint = (t - 90.0) % 360.0 <= 40.0  # the job's periodic checkpoints: long steps, by design
        normal = steps[(t > 20) & ~checkpoint]
        assert np.nanmax(steps[checkpoint & (t > 20)]) > 5  # a checkpoint step is ~22 s
        median = np.median(normal)
        assert median == pytest.approx(2.08, rel=0.03)
        assert np.all(np.abs(normal / median - 1) < 0.1)
        first, second = normal[: len(normal) // 2], normal[len(normal) // 2 :]
        assert np.median(second) == pytest.approx(np.median(first), rel=0.02)
    for info in store.list_series("factorylens.data.wait.ratio", entity=f"rank:{TRAINING_JOB}/*"):
        assert np.nanmax(store.query(info.id)[2]) < 0.05


# ---- the small hooks this suite added to the simulator and the instrumentation ----------------------


def test_cluster_job_pace_drives_the_training_gpus_and_a_stalled_job_is_not_checkpointing():
    from factorylens.receivers.gpu.sim import SimulatedCluster

    now = [0.0]
    cluster = SimulatedCluster(1, 4, "H100", clock=lambda: now[0], start_time=1_700_000_000.0, seed=1)
    training = [g for g in cluster.hosts[0].gpus if g.process and g.process.job.kind == "training"]
    for pace, expected in ((None, 0.93), (0.5, 0.465), (0.0, 0.0)):
        if pace is not None:
            cluster.job_pace[TRAINING_JOB] = pace
        now[0] += 10.0
        cluster.advance()
        assert cluster.job_speed(TRAINING_JOB) == (1.0 if pace is None else pace)
        for gpu in training:
            assert gpu.utilization == pytest.approx(expected, abs=0.07)
    # a job stalled by its pace is idle, not writing a checkpoint: no checkpoint-sized PCIe transmit
    assert all(gpu.pcie_tx_kbps < 1e5 for gpu in training)  # a checkpoint writes ~2e7 kB/s


def test_node_noise_is_opt_in():
    from factorylens.receivers.gpu.sim.node import SimulatedNode

    quiet, noisy = SimulatedNode(0, "a"), SimulatedNode(0, "a", noise=np.random.default_rng(0))
    cpu = {"quiet": [], "noisy": []}
    for step in range(5):
        for name, node in (("quiet", quiet), ("noisy", noisy)):
            node.step(10.0, 10.0 * step, 0.9, False, {})
            cpu[name].append(node.cpu_utilization)
    assert len(set(cpu["quiet"])) == 1 and len(set(cpu["noisy"])) == 5
    assert noisy.ports["mlx5_0/1"].xmit_wait > 0 == quiet.ports["mlx5_0/1"].xmit_wait
    assert noisy.mounts["/mnt/ckpt"].read_time_s != quiet.mounts["/mnt/ckpt"].read_time_s


def test_training_telemetry_runs_on_injected_clocks_and_mounts():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.trace import NoOpTracer

    from factorylens.instrumentation import TrainingConfig
    from factorylens.instrumentation._recorder import StepRecord, StepRecorder
    from factorylens.instrumentation._telemetry import TrainingTelemetry

    now = [0.0]
    reader = InMemoryMetricReader()
    config = TrainingConfig(
        job_id="j", team="t", rank=0, world_size=1, host="h", gpu_ids=("GPU-1",), export_interval_s=10.0, state_dir=""
    )
    stepped = TrainingTelemetry(
        config,
        StepRecorder(100),
        MeterProvider(metric_readers=[reader]).get_meter("x"),
        NoOpTracer(),
        {},
        clock=lambda: now[0],
        wall_clock_ns=lambda: 1_700_000_000 * NS + int(now[0] * NS),
        mountpoint_of=lambda path: "/mnt/ckpt",
    )
    for n in range(5):  # five 2 s steps, the last one saving a checkpoint
        start, end = int(2 * n * NS), int(2 * (n + 1) * NS)
        phases = [("data", start, start + NS // 2, None)]
        if n == 4:
            phases.append(("checkpoint.save", start + NS, end, {"path": "/mnt/ckpt/x/rank-0", "bytes": 10**9}))
        stepped.recorder.deliver(StepRecord(n + 1, start, end, 1_700_000_000 * NS + start, 8, 0, phases, None))
    now[0] = 10.0
    stepped.drain()
    points = {
        m.name: m.data.data_points
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert points["factorylens.train.samples.rate"][0].value == pytest.approx(4.0)  # 40 samples in 10 s
    assert points["factorylens.data.wait.ratio"][0].value == pytest.approx(0.25)
    assert points["factorylens.train.goodput"][0].value == pytest.approx(0.65)  # 6.5 s productive of 10 s
    saved = points["factorylens.checkpoint.duration"][0]
    assert dict(saved.attributes)["system.filesystem.mountpoint"] == "/mnt/ckpt" and saved.sum == pytest.approx(1.0)
