"""The non-GPU layers of a simulated node: CPUs and memory, local NVMe and a shared checkpoint file
system, and InfiniBand ports, driven by the jobs on the node and by node faults.

Coupling (what makes cross-domain root cause testable): a training job checkpoints to
``/mnt/ckpt`` and exchanges gradients over the InfiniBand ports; a slow mount stretches its
checkpoints, fabric congestion or a down port slows its collectives (and so the whole synchronous
job), and a saturated CPU or memory pressure starves its input pipeline. ``SimulatedCluster`` reads
these effects back through :meth:`SimulatedNode.collective_factor` and friends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CPUS = 16
MEMORY_BYTES = 2 * 2**40
SWAP_PAGES = 8 * 2**30 // 4096
PORTS = ("mlx5_0/1", "mlx5_1/1", "mlx5_2/1", "mlx5_3/1")
PORT_GBPS = 400.0
CHECKPOINT_MOUNT = "/mnt/ckpt"
ROOT_MOUNT = "/"


@dataclass
class MountState:
    mountpoint: str
    fstype: str
    size_bytes: float
    used_bytes: float
    base_latency_s: float
    max_bytes_per_s: float
    read_bytes: float = 0.0
    write_bytes: float = 0.0
    read_ops: float = 0.0
    write_ops: float = 0.0
    read_time_s: float = 0.0
    write_time_s: float = 0.0
    latency_factor: float = 1.0  # what faults do to it now
    fault_used_bytes: float = 0.0  # a filesystem_full fault's floor, while it lasts

    @property
    def reported_used_bytes(self) -> float:
        return max(self.used_bytes, self.fault_used_bytes)


@dataclass
class PortState:
    name: str
    guid: str
    up: bool = True
    tx_bytes: float = 0.0
    rx_bytes: float = 0.0
    tx_packets: float = 0.0
    rx_packets: float = 0.0
    xmit_wait: float = 0.0
    symbol_errors: float = 0.0
    link_downed: float = 0.0
    link_recovery: float = 0.0
    throughput_fraction: float = 1.0


@dataclass
class SimulatedNode:
    host_index: int
    name: str
    cpu_utilization: float = 0.2
    cpu_time_s: list = field(
        default_factory=lambda: [[0.0, 0.0, 0.0, 0.0] for _ in range(CPUS)]
    )  # user sys idle iowait
    memory_used_fraction: float = 0.35
    swap_used_pages: float = 0.0
    disk_read_bytes: float = 0.0
    disk_write_bytes: float = 0.0
    eth_tx_bytes: float = 0.0
    eth_rx_bytes: float = 0.0
    mounts: dict[str, MountState] = field(default_factory=dict)
    ports: dict[str, PortState] = field(default_factory=dict)
    data_factor: float = 1.0  # > 1 when the host starves the input pipeline
    memory_bytes: int = MEMORY_BYTES
    swap_pages: int = SWAP_PAGES
    port_gbps: float = PORT_GBPS
    # background noise (a numpy Generator): CPU and memory jitter, storage latency and throughput
    # wobble, fabric throughput jitter and a trickle of congestion ticks; None keeps the node noiseless
    noise: Any = None
    # bytes per second workloads read from a mount besides the node's own traffic (a server loading
    # its model's weights from the shared file system)
    read_demand: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mounts = {
            ROOT_MOUNT: MountState(ROOT_MOUNT, "ext4", 7.68e12, 1.9e12, 0.0002, 6e9),
            CHECKPOINT_MOUNT: MountState(CHECKPOINT_MOUNT, "nfs4", 500e12, 210e12, 0.002, 2.5e9),
        }
        self.ports = {
            p: PortState(p, f"0x{0xB8CEF60300000000 + self.host_index * 16 + i:016x}") for i, p in enumerate(PORTS)
        }

    def step(self, dt: float, elapsed: float, training_util: float, checkpointing: bool, faults: dict) -> None:
        """Advance by ``dt`` simulated seconds; ``faults`` maps kind → active faults on this host."""
        # host: CPU feeds the input pipeline of training; faults saturate it or exhaust memory
        cpu = 0.12 + 0.35 * training_util
        for f in faults.get("cpu_saturation", ()):
            cpu = max(cpu, float(f.params["utilization"]))
        rng = self.noise
        if rng is not None:
            cpu += float(rng.normal(0.0, 0.015))
        self.cpu_utilization = min(1.0, max(0.0, cpu))
        memory = 0.35 + 0.1 * training_util + (float(rng.normal(0.0, 0.002)) if rng is not None else 0.0)
        swapping = 0.0
        for f in faults.get("memory_pressure", ()):
            memory = max(memory, float(f.params["used_fraction"]))
            swapping = float(f.params["swap_pages_per_s"])
        self.memory_used_fraction = min(0.999, memory)
        self.swap_used_pages = min(SWAP_PAGES, self.swap_used_pages + swapping * dt)
        self.data_factor = 1.0 + 4.0 * max(0.0, self.cpu_utilization - 0.9) / 0.1 + (2.0 if swapping else 0.0)
        for times in self.cpu_time_s:
            busy = self.cpu_utilization * dt
            times[0] += busy * 0.8
            times[1] += busy * 0.2
            times[2] += dt - busy
        wobble = (lambda sigma: float(rng.lognormal(0.0, sigma))) if rng is not None else (lambda sigma: 1.0)
        self.eth_tx_bytes += 2e6 * dt * wobble(0.1)
        self.eth_rx_bytes += 5e6 * dt * wobble(0.1)
        self.disk_read_bytes += 50e6 * training_util * dt

        # storage: the dataset streams from local NVMe; checkpoints go to the shared file system
        for mount in self.mounts.values():
            mount.latency_factor, mount.fault_used_bytes = 1.0, 0.0
        throughput_cap = {m: 1.0 for m in self.mounts}
        for f in faults.get("slow_storage", ()):
            mount_name = str(f.params["mount"])
            if mount_name in self.mounts:
                self.mounts[mount_name].latency_factor = float(f.params["latency_factor"])
                throughput_cap[mount_name] = float(f.params["throughput_fraction"])
        for f in faults.get("filesystem_full", ()):
            full = self.mounts.get(str(f.params["mount"]))
            if full is not None:
                full.fault_used_bytes = full.size_bytes * float(f.params["used_fraction"])
        local = self.mounts[ROOT_MOUNT]
        self._io(
            local,
            "read",
            200e6 * training_util * throughput_cap[ROOT_MOUNT] * dt * wobble(0.05),
            128 * 1024,
            wobble(0.1),
        )
        ckpt = self.mounts[CHECKPOINT_MOUNT]
        if checkpointing:
            written = ckpt.max_bytes_per_s * 0.8 * throughput_cap[CHECKPOINT_MOUNT] * dt * wobble(0.05)
            self._io(ckpt, "write", written, 1 << 20, wobble(0.1))
            ckpt.used_bytes = min(ckpt.size_bytes, ckpt.used_bytes + written * 0.01)
        self._io(ckpt, "read", 1e6 * dt * wobble(0.2), 64 * 1024, wobble(0.15))
        for mount_name, bytes_per_s in self.read_demand.items():
            reading = self.mounts.get(mount_name)
            if reading is not None and bytes_per_s > 0:
                read = min(bytes_per_s, reading.max_bytes_per_s * throughput_cap[mount_name]) * dt * wobble(0.05)
                self._io(reading, "read", read, 1 << 20, wobble(0.1))

        # fabric: gradients flow while the job computes, not while it checkpoints
        was_up = {name: port.up for name, port in self.ports.items()}
        for port in self.ports.values():
            port.up, port.throughput_fraction = True, 1.0
        for f in faults.get("nic_down", ()):
            for port in self._ports(f.params["port"]):
                port.up = False
        for f in faults.get("ib_link_flap", ()):
            period = max(float(f.params["period"]), 1e-3)
            for port in self._ports(f.params["port"]):
                if ((elapsed - f.start_s) % period) < period / 2:  # down for the first half of each period
                    port.up = False
        for name, port in self.ports.items():
            if was_up[name] and not port.up:
                port.link_downed += 1
            elif port.up and not was_up[name]:
                port.link_recovery += 1
        for f in faults.get("ib_congestion", ()):
            for port in self._ports(f.params["port"]):
                port.throughput_fraction = min(port.throughput_fraction, float(f.params["throughput_fraction"]))
                port.xmit_wait += float(f.params["xmit_wait_per_s"]) * dt
        for f in faults.get("ib_symbol_errors", ()):
            for port in self._ports(f.params["port"]):
                port.symbol_errors += float(f.params["per_s"]) * dt
        demand = 0.0 if checkpointing else 0.45 * training_util
        for port in self.ports.values():
            if not port.up:
                continue
            if rng is not None and demand:  # a busy healthy fabric still waits a little now and then
                port.xmit_wait += 2e4 * demand * dt * wobble(0.5)
            rate = PORT_GBPS * 1e9 / 8 * demand * port.throughput_fraction * wobble(0.03)
            port.tx_bytes += rate * dt
            port.rx_bytes += rate * dt
            port.tx_packets += rate * dt / 4096
            port.rx_packets += rate * dt / 4096

    def _ports(self, selector: object) -> list[PortState]:
        return (
            list(self.ports.values())
            if selector in ("*", None)
            else [p for name, p in self.ports.items() if name == selector]
        )

    @staticmethod
    def _io(mount: MountState, direction: str, size: float, op_bytes: float, latency_noise: float = 1.0) -> None:
        ops = size / op_bytes
        seconds = ops * mount.base_latency_s * mount.latency_factor * latency_noise
        if direction == "read":
            mount.read_bytes += size
            mount.read_ops += ops
            mount.read_time_s += seconds
        else:
            mount.write_bytes += size
            mount.write_ops += ops
            mount.write_time_s += seconds

    # effects on the jobs ---------------------------------------------------------------------
    def collective_factor(self) -> float:
        """How fast collectives run through this node's ports (1 = healthy; a down port stalls)."""
        if not any(p.up for p in self.ports.values()):
            return 0.05
        worst = min((p.throughput_fraction if p.up else 0.25) for p in self.ports.values())
        return max(0.05, worst)

    def checkpoint_factor(self) -> float:
        """How much longer a checkpoint write takes here (1 = healthy)."""
        mount = self.mounts[CHECKPOINT_MOUNT]
        return max(1.0, mount.latency_factor)


def fabric_speed(nodes: list[SimulatedNode]) -> float:
    """A synchronous job's collectives run at the pace of its slowest node's fabric."""
    return min((n.collective_factor() for n in nodes), default=1.0)
