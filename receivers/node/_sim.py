"""Storage and fabric of a simulated node, through the same metric names as the real readers."""

from __future__ import annotations

from factorylens.receivers.node._fabric import ERROR_COUNTERS
from factorylens.receivers.node._source import Points, SimulatedSource, add

_ERRORS = {"symbol_error": "symbol_errors", "link_downed": "link_downed", "link_error_recovery": "link_recovery"}


class SimStorageSource(SimulatedSource):
    name = "storage"

    def points(self) -> Points:
        points: Points = {}
        for mount in self._node.mounts.values():
            base = {"system.filesystem.mountpoint": mount.mountpoint, "system.filesystem.type": mount.fstype}
            for direction, size, ops, seconds in (
                ("read", mount.read_bytes, mount.read_ops, mount.read_time_s),
                ("write", mount.write_bytes, mount.write_ops, mount.write_time_s),
            ):
                labels = {**base, "disk.io.direction": direction}
                add(points, "factorylens.storage.io", labels, int(size))
                add(points, "factorylens.storage.operations", labels, int(ops))
                add(points, "factorylens.storage.operation.time", labels, seconds)
            used = mount.reported_used_bytes
            add(points, "system.filesystem.usage", {**base, "system.filesystem.state": "used"}, int(used))
            add(
                points,
                "system.filesystem.usage",
                {**base, "system.filesystem.state": "free"},
                int(mount.size_bytes - used),
            )
            add(points, "system.filesystem.utilization", base, used / mount.size_bytes)
        return points


class SimFabricSource(SimulatedSource):
    name = "fabric"

    def points(self) -> Points:
        points: Points = {}
        for port in self._node.ports.values():
            device, number = port.name.split("/")
            ident = {
                "hw.id": f"{port.guid}/{number}",
                "hw.type": "network",
                "hw.name": device,
                "network.interface.name": port.name,
            }
            add(points, "hw.network.up", ident, 1 if port.up else 0)
            add(points, "hw.network.bandwidth.limit", ident, int(self._node.port_gbps * 1e9 / 8))
            for direction, size, packets in (
                ("transmit", port.tx_bytes, port.tx_packets),
                ("receive", port.rx_bytes, port.rx_packets),
            ):
                add(points, "hw.network.io", {**ident, "network.io.direction": direction}, int(size))
                add(points, "hw.network.packets", {**ident, "network.io.direction": direction}, int(packets))
            add(points, "factorylens.network.xmit_wait", ident, int(port.xmit_wait))
            for counter, error_type in ERROR_COUNTERS.items():
                value = getattr(port, _ERRORS[counter]) if counter in _ERRORS else 0
                add(points, "hw.errors", {**ident, "error.type": error_type}, int(value))
        return points
