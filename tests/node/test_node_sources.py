"""The node's host, storage and fabric layers: readers on fixture trees, the simulator with every node
fault, and the agent surviving missing sources."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from factorylens.receivers.gpu import GpuReceiverConfig, create_receiver
from factorylens.receivers.node import FabricSource, SourceUnavailable, StorageSource
from factorylens.registry import REGISTRY
from tests.gpu.test_simulator import Sim

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "node"


def by(points, metric, **match):
    return [v for a, v in points.get(metric, []) if all(a.get(k) == val for k, val in match.items())]


def one(points, metric, **match):
    found = by(points, metric, **match)
    assert len(found) == 1, (metric, match, points.get(metric))
    return found[0]


def assert_declared(points) -> None:
    for metric, values in points.items():
        allowed = set(REGISTRY.allowed_attributes(REGISTRY.metric(metric)))
        for attributes, _ in values:
            assert set(attributes) <= allowed, (metric, set(attributes) - allowed)


def test_fabric_counters_from_sysfs():
    points = FabricSource(str(FIXTURES / "sys")).read()
    assert_declared(points)
    port = {"network.interface.name": "mlx5_0/1"}
    assert one(points, "hw.network.io", **port, **{"network.io.direction": "transmit"}) == 81234567890 * 4
    assert one(points, "hw.network.io", **port, **{"network.io.direction": "receive"}) == 79123456789 * 4
    assert one(points, "hw.network.packets", **port, **{"network.io.direction": "receive"}) == 309876543
    assert one(points, "factorylens.network.xmit_wait", **port) == 1234567
    assert one(points, "hw.errors", **port, **{"error.type": "symbol"}) == 3
    assert one(points, "hw.errors", **port, **{"error.type": "link_downed"}) == 1
    assert one(points, "hw.network.up", **port) == 1
    assert one(points, "hw.network.bandwidth.limit", **port) == 50_000_000_000
    assert (
        one(points, "factorylens.network.roce.events", **port, **{"factorylens.network.roce.event": "out_of_sequence"})
        == 0
    )
    assert (
        one(points, "factorylens.network.roce.events", **port, **{"factorylens.network.roce.event": "ecn_marked"}) == 2
    )
    assert len(by(points, "factorylens.network.roce.events", **port)) == 2  # the two hw_counters present
    attributes = points["hw.network.up"][0][0]
    assert attributes["hw.id"] == "b8ce:f603:00a1:2c3e/1" and attributes["hw.type"] == "network"
    # a port without a counters folder still reports its state and rate
    down = {"network.interface.name": "mlx5_1/1"}
    assert one(points, "hw.network.up", **down) == 0
    assert by(points, "hw.network.io", **down) == []


def test_fabric_counter_resets_are_stitched_and_unreadable_files_skipped(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="factorylens.receivers")
    root = tmp_path / "sys"
    shutil.copytree(FIXTURES / "sys", root)
    counters = root / "class" / "infiniband" / "mlx5_0" / "ports" / "1" / "counters"
    source = FabricSource(str(root))
    first = one(source.read(), "hw.errors", **{"error.type": "symbol", "network.interface.name": "mlx5_0/1"})
    (counters / "symbol_error").write_text("2\n")  # the port was reset: the counter starts over
    again = one(source.read(), "hw.errors", **{"error.type": "symbol", "network.interface.name": "mlx5_0/1"})
    assert (first, again) == (3, 5)
    (counters / "port_xmit_wait").unlink()
    (counters / "port_xmit_wait").mkdir()  # unreadable (a directory where a file should be)
    points = source.read()
    assert by(points, "factorylens.network.xmit_wait") == [] and by(points, "hw.network.io")
    assert "cannot read" in caplog.text
    with pytest.raises(SourceUnavailable, match="no InfiniBand"):
        FabricSource(str(tmp_path / "no-such-sys")).read()


def fake_statvfs(path: str) -> SimpleNamespace:
    if path == "/lustre/scratch":
        raise OSError(5, "Input/output error")  # a hung parallel file system
    return SimpleNamespace(f_blocks=1000, f_frsize=4096, f_bfree=400, f_bavail=350)


def test_storage_per_mount_from_diskstats_nfs_and_lustre():
    points = StorageSource(str(FIXTURES / "proc"), statvfs=fake_statvfs).read()
    assert_declared(points)
    mounts = {a["system.filesystem.mountpoint"] for a, _ in points["factorylens.storage.io"]}
    assert mounts == {"/", "/mnt/local scratch", "/mnt/ckpt", "/lustre/scratch"}  # not /proc, not tmpfs
    root = {"system.filesystem.mountpoint": "/"}
    assert one(points, "factorylens.storage.operations", **root, **{"disk.io.direction": "read"}) == 120000
    assert one(points, "factorylens.storage.io", **root, **{"disk.io.direction": "write"}) == 19870000 * 512
    assert one(points, "factorylens.storage.operation.time", **root, **{"disk.io.direction": "read"}) == 45.6
    nfs = {"system.filesystem.mountpoint": "/mnt/ckpt", "system.filesystem.type": "nfs4"}
    assert one(points, "factorylens.storage.io", **nfs, **{"disk.io.direction": "write"}) == 2147745792
    assert one(points, "factorylens.storage.operations", **nfs, **{"disk.io.direction": "read"}) == 1024
    assert one(points, "factorylens.storage.operation.time", **nfs, **{"disk.io.direction": "write"}) == 24.576
    lustre = {"system.filesystem.mountpoint": "/lustre/scratch"}
    assert one(points, "factorylens.storage.io", **lustre, **{"disk.io.direction": "read"}) == 4294967296
    assert by(points, "factorylens.storage.operation.time", **lustre) == []  # Lustre's client stats: no latency
    assert one(points, "system.filesystem.usage", **root, **{"system.filesystem.state": "used"}) == 600 * 4096
    assert one(points, "system.filesystem.utilization", **root) == pytest.approx(600 / 950)
    assert by(points, "system.filesystem.usage", **lustre) == []
    with pytest.raises(SourceUnavailable):
        StorageSource("/no/such/proc").read()


def host_proc_with_fixture_storage(tmp_path: Path) -> Path:
    """This machine's /proc (for the host layer) with the fixture's mounts and storage statistics."""
    proc = tmp_path / "proc"
    shutil.copytree(FIXTURES / "proc", proc)
    for name in os.listdir("/proc"):
        if (not name.isdigit() or name == str(os.getpid())) and not (proc / name).exists():
            (proc / name).symlink_to(Path("/proc") / name)
    return proc


def test_the_agent_keeps_going_without_gpus_or_fabric_and_reads_the_real_host(tmp_path):
    import psutil

    reader = InMemoryMetricReader()
    config = GpuReceiverConfig(
        backend="nvml",
        otlp="off",
        proc_root=str(host_proc_with_fixture_storage(tmp_path)),
        sys_root=str(tmp_path / "no-sys"),
        collection_interval_s=1,
    )
    receiver, _ = create_receiver(config, metric_readers=lambda host: [reader])
    try:
        receiver.start()
        names = {}
        for rm in reader.get_metrics_data().resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    names[m.name] = [(dict(p.attributes), p.value) for p in m.data.data_points]
        up = {a["factorylens.receiver.source"]: v for a, v in names["factorylens.receiver.source.up"]}
        assert up == {"host": 1, "storage": 1, "fabric": 0}
        assert "system.cpu.utilization" in names and "system.memory.usage" in names  # psutil, this machine
        assert "factorylens.storage.io" in names and "hw.network.io" not in names
        assert psutil.PROCFS_PATH == config.proc_root
    finally:
        receiver.shutdown()
    assert psutil.PROCFS_PATH == "/proc"


@pytest.fixture
def node_sim():
    sims = []

    def make(faults):
        sim = Sim(faults=faults, hosts=2, gpus=8)
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        sim.close()


def rate(sim: Sim, metric: str, seconds: float, host: str = "sim-node-0", **match) -> float:
    before = sum(sim.get(metric, host, **match))
    sim.run(seconds)
    return (sum(sim.get(metric, host, **match)) - before) / seconds


def test_healthy_node_layers_follow_the_training_job(node_sim):
    sim = node_sim([])
    sim.run(60)
    collected = sim.collect()
    for name in (
        "system.cpu.utilization",
        "system.memory.usage",
        "factorylens.storage.io",
        "hw.network.io",
        "system.filesystem.utilization",
        "hw.network.up",
    ):
        assert name in collected, name
    assert rate(sim, "hw.network.io", 60, **{"network.io.direction": "transmit"}) > 1e10  # gradients flow
    ckpt = {"system.filesystem.mountpoint": "/mnt/ckpt", "disk.io.direction": "write"}
    sim.run(600 - 120 - 60)  # to the checkpoint at 10 simulated minutes
    assert rate(sim, "factorylens.storage.io", 40, **ckpt) > 1e9  # the checkpoint goes to /mnt/ckpt


def latency(sim: Sim, mount: str, seconds: float) -> float:
    """Mean seconds per read operation over the next ``seconds``."""
    labels = {"system.filesystem.mountpoint": mount, "disk.io.direction": "read"}
    t0, n0 = (
        sum(sim.get("factorylens.storage.operation.time", **labels)),
        sum(sim.get("factorylens.storage.operations", **labels)),
    )
    sim.run(seconds)
    t1, n1 = (
        sum(sim.get("factorylens.storage.operation.time", **labels)),
        sum(sim.get("factorylens.storage.operations", **labels)),
    )
    return (t1 - t0) / max(n1 - n0, 1)


@pytest.mark.parametrize(
    "fault, check",
    [
        (
            {"kind": "slow_storage", "params": {"latency_factor": 20}},
            lambda sim: latency(sim, "/mnt/ckpt", 40) > 0.03,
        ),  # healthy: 2 ms an operation
        (
            {"kind": "filesystem_full", "params": {"used_fraction": 0.99}},
            lambda sim: (
                sim.one("system.filesystem.utilization", **{"system.filesystem.mountpoint": "/mnt/ckpt"}) >= 0.99
            ),
        ),
        (
            {"kind": "ib_congestion", "params": {"throughput_fraction": 0.2}},
            lambda sim: (
                rate(sim, "factorylens.network.xmit_wait", 30) > 1e6
                and sim.cluster.job_collective_slowdown("llm-pretrain-7b") >= 4.9
            ),
        ),
        (
            {"kind": "ib_symbol_errors", "params": {"port": "mlx5_2/1", "per_s": 10}},
            lambda sim: sim.one("hw.errors", **{"error.type": "symbol", "network.interface.name": "mlx5_2/1"}) > 100,
        ),
        (
            {"kind": "nic_down", "params": {"port": "mlx5_0/1"}},
            lambda sim: (
                sim.one("hw.network.up", **{"network.interface.name": "mlx5_0/1"}) == 0
                and sim.cluster.job_speed("llm-pretrain-7b") < 0.5
            ),
        ),
        (
            {"kind": "ib_link_flap", "params": {"period": 40}},
            lambda sim: (
                sim.one("hw.errors", **{"error.type": "link_downed", "network.interface.name": "mlx5_0/1"}) >= 2
            ),
        ),
        (
            {"kind": "cpu_saturation", "params": {}},
            lambda sim: (
                min(sim.get("system.cpu.utilization", state="user")) > 0.7
                and sim.cluster.job_data_slowdown("llm-pretrain-7b") > 2
            ),
        ),
        (
            {"kind": "memory_pressure", "params": {}},
            lambda sim: (
                sim.one("system.swap.usage", state="used") > 0
                and sim.one("system.memory.utilization", state="used") >= 0.97
            ),
        ),
    ],
)
def test_every_node_fault_shows_up_in_its_layer(node_sim, fault, check):
    sim = node_sim([{**fault, "target": {"host": 0}, "start": "2m"}])
    sim.run(180)
    assert check(sim), fault["kind"]


def test_node_faults_change_nothing_before_they_start(node_sim):
    sim = node_sim([{"kind": "nic_down", "target": {"host": 0}, "start": "30m", "params": {"port": "*"}}])
    sim.run(120)
    assert set(sim.get("hw.network.up")) == {1}
    assert sim.cluster.job_collective_slowdown("llm-pretrain-7b") == 1.0
    assert os.environ.get("FACTORYLENS_SIM_NODE_FAULTS") is None


def test_the_agent_survives_every_node_source_missing(tmp_path):
    empty = tmp_path / "proc"
    empty.mkdir()
    reader = InMemoryMetricReader()
    config = GpuReceiverConfig(backend="nvml", otlp="off", proc_root=str(empty), sys_root=str(tmp_path / "sys"))
    receiver, _ = create_receiver(config, metric_readers=lambda host: [reader])
    try:
        receiver.start()
        receiver.scrape_once()
        points = receiver.pipelines[0].points("factorylens.receiver.source.up")
        assert {a["factorylens.receiver.source"]: v for a, v in points} == {"host": 0, "storage": 0, "fabric": 0}
        assert reader.get_metrics_data() is not None  # the agent still collects and exports
    finally:
        receiver.shutdown()
    import psutil

    assert psutil.PROCFS_PATH == "/proc"


def test_ports_without_a_unique_guid_are_told_apart_by_device(tmp_path):
    root = tmp_path / "sys"
    shutil.copytree(FIXTURES / "sys", root)
    base = root / "class" / "infiniband"
    for vf in ("mlx5_2", "mlx5_3"):  # SR-IOV functions that both read a zero GUID
        shutil.copytree(base / "mlx5_0", base / vf)
        (base / vf / "node_guid").write_text("0000:0000:0000:0000\n")
    (base / "mlx5_3" / "ports" / "1" / "counters" / "port_xmit_data").write_text("10\n")
    source = FabricSource(str(root))
    for _ in range(3):
        points = source.read()
    io = {a["hw.id"]: v for a, v in points["hw.network.io"] if a["network.io.direction"] == "transmit"}
    assert io["mlx5_3/1"] == 40 and io["mlx5_2/1"] == 81234567890 * 4  # steady: no phantom resets
    assert len(io) == len(set(io)) == 3


def test_in_a_container_the_nodes_mounts_are_read_through_pid_1(tmp_path):
    proc = tmp_path / "proc"
    shutil.copytree(FIXTURES / "proc", proc)
    (proc / "1").mkdir()
    (proc / "1" / "mounts").write_text("10.0.0.5:/export/ckpt /mnt/my\\040ckpt nfs4 rw 0 0\n")
    (proc / "1" / "mountstats").write_text(
        (FIXTURES / "proc" / "self" / "mountstats").read_text().replace("on /mnt/ckpt", "on /mnt/my\\040ckpt")
    )
    seen = []
    source = StorageSource(str(proc), statvfs=lambda path: seen.append(path) or fake_statvfs("/"))
    points = source.read()
    assert {a["system.filesystem.mountpoint"] for a, _ in points["factorylens.storage.io"]} == {"/mnt/my ckpt"}
    assert one(points, "factorylens.storage.operations", **{"disk.io.direction": "write"}) == 2048
    assert seen == [str(proc / "1" / "root" / "mnt/my ckpt")]  # statvfs through the node's root
    source.shutdown()


def test_a_hung_statvfs_does_not_hold_the_scrape(tmp_path):
    import threading

    release = threading.Event()

    def hung(path: str):
        release.wait(30)
        return fake_statvfs("/")

    source = StorageSource(str(FIXTURES / "proc"), statvfs=hung, statvfs_timeout_s=0.05)
    try:
        points = source.read()  # returns although every statvfs hangs
        assert "factorylens.storage.io" in points and "system.filesystem.usage" not in points
        points = source.read()  # the hung calls are not started again
    finally:
        release.set()
        source.shutdown()


@pytest.mark.parametrize(
    "params, message",
    [
        ({"throughput_fraction": "low"}, "must be a number"),
        ({"throughput_fraction": 1.5}, "in \\[0, 1\\]"),
        ({"xmit_wait_per_s": -5}, "≥ 0"),
        ({"port": "mlx5_9/1"}, "is not one of"),
    ],
)
def test_node_fault_parameters_are_checked_when_the_scenario_loads(params, message):
    from factorylens.receivers.gpu.sim import Scenario, ScenarioError

    with pytest.raises(ScenarioError, match=message):
        Scenario.from_dict({"faults": [{"kind": "ib_congestion", "target": {"host": 0}, "start": 0, "params": params}]})


def test_one_real_host_layer_per_process(tmp_path):
    from opentelemetry.sdk.metrics import MeterProvider

    from factorylens.receivers.node import attach_system_metrics

    first_reader = InMemoryMetricReader()
    layer = attach_system_metrics(MeterProvider(metric_readers=[first_reader]))
    try:
        with pytest.raises(RuntimeError, match="already registered"):
            attach_system_metrics(MeterProvider(metric_readers=[InMemoryMetricReader()]))
        names = {
            m.name
            for rm in first_reader.get_metrics_data().resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }
        assert "system.network.dropped_packets" in names
    finally:
        layer.uninstrument()
