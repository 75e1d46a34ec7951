"""The host layer: CPU, memory, swap, disks and network interfaces.

On a real node it is opentelemetry-instrumentation-system-metrics (psutil), registered on the node
agent's meter provider, with the ``system.*`` names it emits (declared in the registry). The
simulated one emits the same names and attributes from the simulated node.
"""

from __future__ import annotations

from typing import Any

from factorylens.receivers.node._source import Points, SimulatedSource, add
from factorylens.registry import GPU_RECEIVER, REGISTRY, Attributes, Metrics

CPU_STATES = ("user", "system", "idle", "iowait")


# registry name → the instrumentor's configuration key, where they differ
_INSTRUMENTOR_KEYS = {Metrics.SYSTEM_NETWORK_DROPPED_PACKETS: "system.network.dropped.packets"}


def host_metric_names() -> list[str]:
    """The host-layer metrics the registry declares (what the system-metrics instrumentor is asked for)."""
    return [
        m.name
        for m in REGISTRY.emitted_by(GPU_RECEIVER)
        if m.name.startswith("system.") and not m.name.startswith("system.filesystem.")
    ]


class HostLayer:
    """The real host layer on one meter provider; ``uninstrument()`` takes it off again."""

    def __init__(self, meter_provider: Any, proc_root: str = "/proc") -> None:
        import psutil
        from opentelemetry.instrumentation.system_metrics import _DEFAULT_CONFIG, SystemMetricsInstrumentor

        # in a container, proc_root is the host's /proc (mounted at /host/proc): psutil reads the node there
        self._psutil = psutil
        self._previous_procfs = psutil.PROCFS_PATH
        psutil.PROCFS_PATH = proc_root
        keys = [_INSTRUMENTOR_KEYS.get(name, name) for name in host_metric_names()]
        config = {key: _DEFAULT_CONFIG[key] for key in keys if key in _DEFAULT_CONFIG}
        existing = getattr(SystemMetricsInstrumentor, "_instance", None)
        if existing is not None and existing.is_instrumented_by_opentelemetry:  # a process-wide singleton
            psutil.PROCFS_PATH = self._previous_procfs
            raise RuntimeError("the host layer is already registered in this process (one per process)")
        try:
            self._instrumentor = SystemMetricsInstrumentor(config=config)
            self._instrumentor.instrument(meter_provider=meter_provider)
        except Exception:
            psutil.PROCFS_PATH = self._previous_procfs
            raise

    def uninstrument(self) -> None:
        self._instrumentor.uninstrument()
        self._psutil.PROCFS_PATH = self._previous_procfs


def attach_system_metrics(meter_provider: Any, proc_root: str = "/proc") -> HostLayer:
    """Register the host layer (opentelemetry-instrumentation-system-metrics) on ``meter_provider``."""
    return HostLayer(meter_provider, proc_root)


class SimHostSource(SimulatedSource):
    name = "host"

    def points(self) -> Points:
        n = self._node
        points: Points = {}
        for cpu, times in enumerate(n.cpu_time_s, start=1):  # numbered from 1, as the real host layer does
            user, system, idle, iowait = times
            busy = n.cpu_utilization
            for state, seconds, share in (
                ("user", user, busy * 0.8),
                ("system", system, busy * 0.2),
                ("idle", idle, 1 - busy),
                ("iowait", iowait, 0.0),
            ):
                add(points, Metrics.SYSTEM_CPU_TIME, {Attributes.CPU: cpu, Attributes.STATE: state}, seconds)
                add(points, Metrics.SYSTEM_CPU_UTILIZATION, {Attributes.CPU: cpu, Attributes.STATE: state}, share)
        used = n.memory_used_fraction * n.memory_bytes
        for state, value in (("used", used), ("free", n.memory_bytes - used)):
            add(points, Metrics.SYSTEM_MEMORY_USAGE, {Attributes.STATE: state}, value)
            add(points, Metrics.SYSTEM_MEMORY_UTILIZATION, {Attributes.STATE: state}, value / n.memory_bytes)
        # in bytes, as psutil (and so the real host layer) reports swap, whatever its declared unit says
        for state, pages in (("used", n.swap_used_pages), ("free", n.swap_pages - n.swap_used_pages)):
            add(points, Metrics.SYSTEM_SWAP_USAGE, {Attributes.STATE: state}, pages * 4096)
            add(points, Metrics.SYSTEM_SWAP_UTILIZATION, {Attributes.STATE: state}, pages / n.swap_pages)
        for direction, value in (("read", n.disk_read_bytes), ("write", n.mounts["/"].write_bytes)):
            add(points, Metrics.SYSTEM_DISK_IO, {Attributes.DEVICE: "nvme0n1", Attributes.DIRECTION: direction}, value)
            add(
                points,
                Metrics.SYSTEM_DISK_OPERATIONS,
                {Attributes.DEVICE: "nvme0n1", Attributes.DIRECTION: direction},
                value / 131072,
            )
            add(
                points,
                Metrics.SYSTEM_DISK_TIME,
                {Attributes.DEVICE: "nvme0n1", Attributes.DIRECTION: direction},
                value / 131072 * 0.0002,
            )
        for direction, value in (("transmit", n.eth_tx_bytes), ("receive", n.eth_rx_bytes)):
            labels = {Attributes.DEVICE: "eth0", Attributes.DIRECTION: direction}
            add(points, Metrics.SYSTEM_NETWORK_IO, labels, value)
            add(points, Metrics.SYSTEM_NETWORK_PACKETS, labels, value / 1500)
            add(points, Metrics.SYSTEM_NETWORK_ERRORS, labels, 0)
            add(points, Metrics.SYSTEM_NETWORK_DROPPED_PACKETS, labels, 0)
        return points
