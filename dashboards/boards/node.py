"""Node: the layers around the GPUs that slow a job without a GPU fault (host, storage, fabric)."""

from factorylens.registry import Attributes, Metrics

from .._panels import NODE, NODE_SCOPE, Board, Query, Row, eq, label, match, rate, sel, ts

UID = "factorylens-node"
_STATE = label(Attributes.STATE)
_MOUNT = label(Attributes.SYSTEM_FILESYSTEM_MOUNTPOINT)
_DISK_DIRECTION = label(Attributes.DISK_IO_DIRECTION)
_PORT = label(Attributes.NETWORK_INTERFACE_NAME)
_PORT_DIRECTION = label(Attributes.NETWORK_IO_DIRECTION)
_ROCE_EVENT = label(Attributes.FACTORYLENS_NETWORK_ROCE_EVENT)
_PER_MOUNT = f"{NODE}, {_MOUNT}, {_DISK_DIRECTION}"
_NETWORK_PORTS = eq(Attributes.HW_TYPE, "network")
_MEMORY_USED = sel(Metrics.SYSTEM_MEMORY_UTILIZATION, *NODE_SCOPE, eq(Attributes.STATE, "used"))
_ECN_CNP = match(Attributes.FACTORYLENS_NETWORK_ROCE_EVENT, "ecn_marked|cnp_.*")
_NOT_IDLE = f'{_STATE}!="idle"'

BOARD = Board(
    uid=UID,
    title="factorylens / Node",
    description="Host CPU and memory, per-mount storage latency and throughput, fabric port throughput, "
    "congestion (xmit_wait, ECN, CNP) and port errors.",
    rows=(
        Row(
            "Host",
            (
                ts(
                    "CPU busy",
                    "CPU time share by state (idle left out), averaged over the node's CPUs: data loaders starve here.",
                    "percentunit",
                    Query(
                        f"avg by ({NODE}, {_STATE}) ({sel(Metrics.SYSTEM_CPU_UTILIZATION, *NODE_SCOPE, _NOT_IDLE)})",
                        legend="{{host_name}} {{state}}",
                    ),
                    stack=True,
                    thresholds=((None, "green"), (0.9, "red")),
                ),
                ts(
                    "Memory used",
                    "Share of host memory in use; swapping starts near the top.",
                    "percentunit",
                    Query(
                        f"sum by ({NODE}) ({_MEMORY_USED})",
                        legend="{{host_name}}",
                    ),
                    min=0,
                    max=1,
                    thresholds=((None, "green"), (0.9, "orange"), (0.97, "red")),
                ),
            ),
        ),
        Row(
            "Storage, per mount",
            (
                ts(
                    "Storage latency",
                    "Mean time per operation (operation time over operations) per mount and direction: a slow NFS "
                    "or Lustre mount shows here first.",
                    "s",
                    Query(
                        f"sum by ({_PER_MOUNT}) ({rate(sel(Metrics.FACTORYLENS_STORAGE_OPERATION_TIME, *NODE_SCOPE))}) "
                        f"/ sum by ({_PER_MOUNT}) ({rate(sel(Metrics.FACTORYLENS_STORAGE_OPERATIONS, *NODE_SCOPE))})",
                        legend="{{host_name}} {{system_filesystem_mountpoint}} {{disk_io_direction}}",
                    ),
                    thresholds=((None, "green"), (0.01, "orange"), (0.1, "red")),
                ),
                ts(
                    "Storage throughput",
                    "Bytes per second per mount and direction.",
                    "Bps",
                    Query(
                        f"sum by ({_PER_MOUNT}) ({rate(sel(Metrics.FACTORYLENS_STORAGE_IO, *NODE_SCOPE))})",
                        legend="{{host_name}} {{system_filesystem_mountpoint}} {{disk_io_direction}}",
                    ),
                ),
                ts(
                    "Storage operations",
                    "Operations per second per mount and direction.",
                    "iops",
                    Query(
                        f"sum by ({_PER_MOUNT}) ({rate(sel(Metrics.FACTORYLENS_STORAGE_OPERATIONS, *NODE_SCOPE))})",
                        legend="{{host_name}} {{system_filesystem_mountpoint}} {{disk_io_direction}}",
                    ),
                ),
            ),
        ),
        Row(
            "Fabric (InfiniBand / RoCE)",
            (
                ts(
                    "Port throughput",
                    "Bytes per second per port and direction.",
                    "Bps",
                    Query(
                        f"sum by ({NODE}, {_PORT}, {_PORT_DIRECTION}) "
                        f"({rate(sel(Metrics.HW_NETWORK_IO, *NODE_SCOPE))})",
                        legend="{{host_name}} {{network_interface_name}} {{network_io_direction}}",
                    ),
                ),
                ts(
                    "Congestion: xmit_wait",
                    "Ticks per second a port had data but no credits: fabric congestion slowing collectives.",
                    "short",
                    Query(
                        f"sum by ({NODE}, {_PORT}) ({rate(sel(Metrics.FACTORYLENS_NETWORK_XMIT_WAIT, *NODE_SCOPE))})",
                        legend="{{host_name}} {{network_interface_name}}",
                    ),
                ),
                ts(
                    "Congestion: ECN and CNP",
                    "RoCE packets marked ECN, and congestion notification packets sent and handled, per second.",
                    "pps",
                    Query(
                        f"sum by ({NODE}, {_ROCE_EVENT}) "
                        f"({rate(sel(Metrics.FACTORYLENS_NETWORK_ROCE_EVENTS, *NODE_SCOPE, _ECN_CNP))})",
                        legend="{{host_name}} {{factorylens_network_roce_event}}",
                    ),
                ),
                ts(
                    "Port errors",
                    "Port errors per second by kind (symbol errors, link downed, receive errors, discards).",
                    "ops",
                    Query(
                        f"sum by ({NODE}, {_PORT}, {label(Attributes.ERROR_TYPE)}) "
                        f"({rate(sel(Metrics.HW_ERRORS, *NODE_SCOPE, _NETWORK_PORTS))})",
                        legend="{{host_name}} {{network_interface_name}} {{error_type}}",
                    ),
                ),
                ts(
                    "Ports down",
                    "Ports not ACTIVE (hw.network.up = 0).",
                    "none",
                    Query(
                        f"count by ({NODE}) ({sel(Metrics.HW_NETWORK_UP, *NODE_SCOPE)} == 0) or on ({NODE}) "
                        f"(0 * count by ({NODE}) ({sel(Metrics.HW_NETWORK_UP, *NODE_SCOPE)}))",
                        legend="{{host_name}}",
                    ),
                    thresholds=((None, "green"), (1, "red")),
                ),
            ),
        ),
    ),
)
