"""Processors: functions over OTLP messages that the RCA service runs on ingest and rotel can run
in-collector (ARCHITECTURE.md section 4): ``normalize_metrics`` renames dcgm-exporter,
node-exporter, hostmetrics and OpenLIT series to ours; ``enrich_metrics`` adds job and team to GPU
series; ``JobSharding`` (``HostFanOut`` + enrich) prepares a node agent's export for a gateway that
shards the RCA service by job."""

from factorylens.processors._chain import MetricsProcessors
from factorylens.processors._enrich import (
    Assignment,
    EnrichConfig,
    EnrichStats,
    GpuJobIndex,
    enrich_metrics,
)
from factorylens.processors._normalize import NormalizeStats, normalize_metrics, producer_of_scope
from factorylens.processors._routing import FanOutStats, HostFanOut, JobSharding

__all__ = [
    "Assignment",
    "EnrichConfig",
    "EnrichStats",
    "FanOutStats",
    "GpuJobIndex",
    "HostFanOut",
    "JobSharding",
    "MetricsProcessors",
    "NormalizeStats",
    "enrich_metrics",
    "normalize_metrics",
    "producer_of_scope",
]
