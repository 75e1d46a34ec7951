"""The node agent's non-GPU layers: host (CPU, memory, disks, interfaces), storage (per mount) and
fabric (InfiniBand / RoCE ports), each a :class:`NodeSource`, real or simulated."""

from factorylens.receivers.node._fabric import FabricSource
from factorylens.receivers.node._host import SimHostSource, attach_system_metrics, host_metric_names
from factorylens.receivers.node._sim import SimFabricSource, SimStorageSource
from factorylens.receivers.node._source import NodeSource, Points, SourceUnavailable
from factorylens.receivers.node._storage import StorageSource

__all__ = [
    "FabricSource",
    "NodeSource",
    "Points",
    "SimFabricSource",
    "SimHostSource",
    "SimStorageSource",
    "SourceUnavailable",
    "StorageSource",
    "attach_system_metrics",
    "host_metric_names",
]
