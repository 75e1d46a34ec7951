"""Storage and fabric of a simulated node, through the same metric names as the real readers."""

from __future__ import annotations

from factorylens.receivers.node._fabric import ERROR_COUNTERS
from factorylens.receivers.node._source import Points, SimulatedSource, add
from factorylens.registry import Attributes, Metrics

_ERRORS = {"symbol_error": "symbol_errors", "link_downed": "link_downed", "link_error_recovery": "link_recovery"}


class SimStorageSource(SimulatedSource):
    name = "storage"

    def points(self) -> Points:
        points: Points = {}
        for mount in self._node.mounts.values():
            base = {
                Attributes.SYSTEM_FILESYSTEM_MOUNTPOINT: mount.mountpoint,
                Attributes.SYSTEM_FILESYSTEM_TYPE: mount.fstype,
            }
            for direction, size, ops, seconds in (
                ("read", mount.read_bytes, mount.read_ops, mount.read_time_s),
                ("write", mount.write_bytes, mount.write_ops, mount.write_time_s),
            ):
                labels = {**base, Attributes.DISK_IO_DIRECTION: direction}
                add(points, Metrics.FACTORYLENS_STORAGE_IO, labels, int(size))
                add(points, Metrics.FACTORYLENS_STORAGE_OPERATIONS, labels, int(ops))
                add(points, Metrics.FACTORYLENS_STORAGE_OPERATION_TIME, labels, seconds)
            used = mount.reported_used_bytes
            add(
                points, Metrics.SYSTEM_FILESYSTEM_USAGE, {**base, Attributes.SYSTEM_FILESYSTEM_STATE: "used"}, int(used)
            )
            add(
                points,
                Metrics.SYSTEM_FILESYSTEM_USAGE,
                {**base, Attributes.SYSTEM_FILESYSTEM_STATE: "free"},
                int(mount.size_bytes - used),
            )
            add(points, Metrics.SYSTEM_FILESYSTEM_UTILIZATION, base, used / mount.size_bytes)
        return points


class SimFabricSource(SimulatedSource):
    name = "fabric"

    def points(self) -> Points:
        points: Points = {}
        for port in self._node.ports.values():
            device, number = port.name.split("/")
            ident = {
                Attributes.HW_ID: f"{port.guid}/{number}",
                Attributes.HW_TYPE: "network",
                Attributes.HW_NAME: device,
                Attributes.NETWORK_INTERFACE_NAME: port.name,
            }
            add(points, Metrics.HW_NETWORK_UP, ident, 1 if port.up else 0)
            add(points, Metrics.HW_NETWORK_BANDWIDTH_LIMIT, ident, int(self._node.port_gbps * 1e9 / 8))
            for direction, size, packets in (
                ("transmit", port.tx_bytes, port.tx_packets),
                ("receive", port.rx_bytes, port.rx_packets),
            ):
                add(points, Metrics.HW_NETWORK_IO, {**ident, Attributes.NETWORK_IO_DIRECTION: direction}, int(size))
                add(
                    points,
                    Metrics.HW_NETWORK_PACKETS,
                    {**ident, Attributes.NETWORK_IO_DIRECTION: direction},
                    int(packets),
                )
            add(points, Metrics.FACTORYLENS_NETWORK_XMIT_WAIT, ident, int(port.xmit_wait))
            for counter, error_type in ERROR_COUNTERS.items():
                value = getattr(port, _ERRORS[counter]) if counter in _ERRORS else 0
                add(points, Metrics.HW_ERRORS, {**ident, Attributes.ERROR_TYPE: error_type}, int(value))
        return points
