"""InfiniBand / RoCE ports from sysfs: ``<sys>/class/infiniband/<device>/ports/<n>/``.

Reads ``hw_counters/`` where present (RoCE: ECN-marked packets, CNPs, out-of-sequence packets) and
``counters/`` (port_xmit_data and port_rcv_data count 4-byte words; packets; port_xmit_wait;
symbol_error; link_downed; link_error_recovery; port_rcv_errors; port_xmit_discards), ``state``
("4: ACTIVE") and ``rate`` ("400 Gb/sec (4X NDR)"), per the kernel's sysfs ABI
(Documentation/ABI/stable/sysfs-class-infiniband). The sysfs root is injectable (tests use a fixture
tree). A missing or unreadable counter is skipped (logged once); resets are stitched.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from factorylens.receivers.node._source import Counters, NodeSource, Points, SourceUnavailable, add
from factorylens.registry import Attributes, Metrics

log = logging.getLogger(__name__)

WORD_BYTES = 4
ERROR_COUNTERS = {
    "symbol_error": "symbol",
    "link_downed": "link_downed",
    "link_error_recovery": "link_recovery",
    "port_rcv_errors": "receive",
    "port_xmit_discards": "transmit_discard",
}
# hw_counters (RoCE, mlx5) → factorylens.network.roce.event
ROCE_COUNTERS = {
    "np_ecn_marked_roce_packets": "ecn_marked",
    "np_cnp_sent": "cnp_sent",
    "rp_cnp_handled": "cnp_handled",
    "out_of_sequence": "out_of_sequence",
    "packet_seq_err": "packet_sequence_error",
}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*Gb/sec")


class FabricSource(NodeSource):
    name = "fabric"

    def __init__(self, sys_root: str = "/sys") -> None:
        self.root = Path(sys_root) / "class" / "infiniband"
        self._counters = Counters()
        self._warned: set[str] = set()

    def _read(self, path: Path) -> str | None:
        try:
            return path.read_text().strip()
        except OSError as exc:
            if str(path) not in self._warned:
                self._warned.add(str(path))
                log.warning("fabric: cannot read %s (%s); skipping it", path, exc.strerror or exc)
            return None

    def read(self) -> Points:
        if not self.root.is_dir():
            raise SourceUnavailable(f"no InfiniBand/RoCE devices ({self.root} is missing)")
        points: Points = {}
        devices = sorted(self.root.iterdir())
        guids = {device.name: self._read(device / "node_guid") or "" for device in devices}
        seen = [g for g in guids.values() if g.strip("0:")]
        for device in devices:
            guid = guids[device.name]
            # hw.id is the port's GUID when the device has a real, unique one (SR-IOV functions may all
            # read zero), else device/port
            unique = guid.strip("0:") and seen.count(guid) == 1
            for port in sorted((device / "ports").glob("*")) if (device / "ports").is_dir() else []:
                self._port(points, device.name, guid if unique else device.name, port)
        return points

    def _port(self, points: Points, device: str, guid: str, port: Path) -> None:
        ident = {
            Attributes.HW_ID: f"{guid}/{port.name}",
            Attributes.HW_TYPE: "network",
            Attributes.HW_NAME: device,
            Attributes.NETWORK_INTERFACE_NAME: f"{device}/{port.name}",
        }
        state = self._read(port / "state")
        if state is not None:
            add(points, Metrics.HW_NETWORK_UP, ident, 1 if "ACTIVE" in state.upper() else 0)
        rate = self._read(port / "rate")
        match = _RATE.match(rate or "")
        if match:
            add(points, Metrics.HW_NETWORK_BANDWIDTH_LIMIT, ident, int(float(match.group(1)) * 1e9 / 8))
        key = (device, port.name)

        def counter(name: str, folder: str = "counters") -> float | None:
            raw = self._read(port / folder / name)
            try:
                return self._counters.total((*key, name), float(raw)) if raw is not None else None
            except ValueError:
                return None

        if (port / "hw_counters").is_dir():
            for name, event in ROCE_COUNTERS.items():
                if (port / "hw_counters" / name).exists():
                    value = counter(name, "hw_counters")
                    if value is not None:
                        add(
                            points,
                            Metrics.FACTORYLENS_NETWORK_ROCE_EVENTS,
                            {**ident, Attributes.FACTORYLENS_NETWORK_ROCE_EVENT: event},
                            int(value),
                        )
        if not (port / "counters").is_dir():
            return
        for name, direction in (("port_xmit_data", "transmit"), ("port_rcv_data", "receive")):
            value = counter(name)
            if value is not None:
                add(
                    points,
                    Metrics.HW_NETWORK_IO,
                    {**ident, Attributes.NETWORK_IO_DIRECTION: direction},
                    int(value) * WORD_BYTES,
                )
        for name, direction in (("port_xmit_packets", "transmit"), ("port_rcv_packets", "receive")):
            value = counter(name)
            if value is not None:
                add(
                    points,
                    Metrics.HW_NETWORK_PACKETS,
                    {**ident, Attributes.NETWORK_IO_DIRECTION: direction},
                    int(value),
                )
        wait = counter("port_xmit_wait")
        if wait is not None:
            add(points, Metrics.FACTORYLENS_NETWORK_XMIT_WAIT, ident, int(wait))
        for name, error_type in ERROR_COUNTERS.items():
            value = counter(name)
            if value is not None:
                add(points, Metrics.HW_ERRORS, {**ident, Attributes.ERROR_TYPE: error_type}, int(value))
