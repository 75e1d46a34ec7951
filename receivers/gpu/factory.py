"""Builds a :class:`GpuReceiver` from a validated :class:`GpuReceiverConfig`."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.metrics.export import MetricReader

from factorylens import telemetry
from factorylens.processors import JobSharding
from factorylens.receivers.gpu.backend import GpuBackend
from factorylens.receivers.gpu.config import GpuReceiverConfig
from factorylens.receivers.gpu.jobs import ProcJobResolver, StaticJobResolver
from factorylens.receivers.gpu.nvml import NvmlBackend
from factorylens.receivers.gpu.receiver import GpuReceiver, HostPipeline, metrics_server_for
from factorylens.receivers.gpu.scraper import GpuScraper, Snapshot
from factorylens.receivers.gpu.sim.node import SimulatedNode
from factorylens.receivers.gpu.usage import UsageMeter
from factorylens.receivers.node import (
    FabricSource,
    NodeSource,
    SimFabricSource,
    SimHostSource,
    SimStorageSource,
    StorageSource,
    attach_system_metrics,
)
from factorylens.registry import Attributes

if TYPE_CHECKING:
    from factorylens.receivers.gpu.sim.cluster import SimulatedCluster

SERVICE_NAME = "factorylens-gpu-receiver"
ReadersFactory = Callable[[str], list[MetricReader]]
LogExportersFactory = Callable[[str], list[LogRecordExporter]]


_log = logging.getLogger(__name__)


def _cluster_of(resource: Mapping[str, Any]) -> dict[str, str]:
    """The cluster the usage counters are grouped by (``factorylens.cluster.name``, else the Kubernetes one)."""
    cluster = resource.get(Attributes.FACTORYLENS_CLUSTER_NAME) or resource.get(Attributes.K8S_CLUSTER_NAME)
    return {Attributes.FACTORYLENS_CLUSTER_NAME: str(cluster)} if cluster else {}


def create_default_config() -> GpuReceiverConfig:
    return GpuReceiverConfig()


def create_backends(
    config: GpuReceiverConfig, *, clock: Callable[[], float] | None = None
) -> tuple[list[tuple[str, dict[str, Any], GpuBackend]], SimulatedCluster | None]:
    """``[(host name, resource attributes, backend)]`` and the simulated cluster, if any."""
    kwargs: dict[str, Any] = {
        "process_metrics": config.process_metrics,
        "max_processes_per_gpu": config.max_processes_per_gpu,
        "discovery_retry_interval_s": config.discovery_retry_interval_s,
    }
    if config.backend == "nvml":
        host = socket.gethostname()
        backend = NvmlBackend(None, ProcJobResolver(config.proc_root), **kwargs)
        return [(host, {Attributes.HOST_NAME: host}, backend)], None
    from factorylens.receivers.gpu.sim import SimulatedCluster, SimulatedNvml  # the sim extra (numpy)

    sim_kwargs: dict[str, Any] = {"clock": clock} if clock else {}
    cluster = SimulatedCluster(
        config.sim_hosts,
        config.sim_gpus_per_host,
        config.sim_model,
        config.fault_scenario,
        mig=config.sim_mig,
        seed=config.sim_seed,
        speed=config.sim_speed,
        **sim_kwargs,
    )
    if clock:
        kwargs["clock"] = clock
    backends: list[tuple[str, dict[str, Any], GpuBackend]] = []
    for sim_host in cluster.hosts:
        backend = NvmlBackend(SimulatedNvml(sim_host), StaticJobResolver(cluster.jobs_by_pid(sim_host)), **kwargs)
        backends.append(
            (sim_host.name, {Attributes.HOST_NAME: sim_host.name, Attributes.FACTORYLENS_SIMULATED: True}, backend)
        )
    return backends, cluster


def node_sources(
    config: GpuReceiverConfig, node: SimulatedNode | None, advance: Callable[[], None] | None
) -> list[NodeSource]:
    """The node's other layers as configured: simulated for a simulated host, else from /proc and /sys
    (the real host layer is the system-metrics instrumentation, registered on the meter provider)."""
    sources: list[NodeSource] = []
    if node is not None and advance is not None:
        if config.host_metrics:
            sources.append(SimHostSource(node, advance))
        if config.storage_metrics:
            sources.append(SimStorageSource(node, advance))
        if config.fabric_metrics:
            sources.append(SimFabricSource(node, advance))
        return sources
    if config.storage_metrics:
        sources.append(StorageSource(config.proc_root))
    if config.fabric_metrics:
        sources.append(FabricSource(config.sys_root))
    return sources


def create_receiver(
    config: GpuReceiverConfig,
    *,
    metric_readers: ReadersFactory | None = None,
    log_exporters: LogExportersFactory | None = None,
    on_scrape: Callable[[list[tuple[HostPipeline, Snapshot]]], None] | None = None,
    clock: Callable[[], float] | None = None,
    strict: bool = False,
) -> tuple[GpuReceiver, SimulatedCluster | None]:
    """Wire backends, scrapers, OTel providers and ``/metrics`` servers; nothing runs until ``start()``.

    ``metric_readers`` / ``log_exporters`` add readers and exporters per host (tests pass in-memory
    ones); OTLP ones are added when ``config.otlp`` says so.
    """
    config.validate()
    if not config.process_metrics:
        _log.warning(
            "per-process metrics are off: GPUs are not attributed to jobs, so no GPU cost is counted (docs/cost.md)"
        )
    backends, cluster = create_backends(config, clock=clock)
    use_otlp = config.otlp == "on" or (config.otlp == "auto" and telemetry.otlp_endpoint_configured())
    token = (
        Path(config.prometheus_bearer_token_file).read_text().strip() if config.prometheus_bearer_token_file else None
    )
    # a simulated cluster lives in its own time (speed x real time): its GPU-hours are simulated hours,
    # like its energy counters
    usage_kwargs: dict[str, Any] = {"clock": clock} if clock else {}
    if cluster is not None:
        gap_s = max(300.0, 10 * config.collection_interval_s * config.sim_speed)
        usage_kwargs = {"clock": cluster.sim_elapsed, "max_gap_s": gap_s, "forget_after_s": max(3600.0, 2 * gap_s)}
    pipelines = []
    for i, (name, attributes, backend) in enumerate(backends):
        resource = telemetry.make_resource(attributes, SERVICE_NAME)
        readers = list(metric_readers(name)) if metric_readers else []
        exporters = list(log_exporters(name)) if log_exporters else []
        if use_otlp:
            transform = JobSharding().process if config.shard_by_job else None
            readers.append(
                telemetry.periodic_reader(telemetry.otlp_metric_exporter(transform), config.collection_interval_s)
            )
            exporters.append(telemetry.otlp_log_exporter())
        pipeline = HostPipeline(
            name=name,
            resource_attributes=dict(resource.attributes),
            scraper=GpuScraper(
                backend, strict=strict, usage=UsageMeter(_cluster_of(resource.attributes), **usage_kwargs)
            ),
            meter_provider=telemetry.make_meter_provider(resource, readers),
            logger_provider=telemetry.make_logger_provider(resource, exporters) if exporters else None,
        )
        pipeline.sources = node_sources(
            config, cluster.hosts[i].node if cluster else None, cluster.advance if cluster else None
        )
        if config.host_metrics and cluster is None:
            try:
                pipeline.host_instrumentor = attach_system_metrics(pipeline.meter_provider, config.proc_root)
                pipeline.source_up["host"] = 1
            except Exception as exc:
                _log.warning("%s: host layer unavailable (%s); the other layers carry on", name, exc)
                pipeline.source_up["host"] = 0
        if config.prometheus_port is not None:
            port = config.prometheus_port + i if config.prometheus_port else 0
            pipeline.metrics_server = metrics_server_for(
                pipeline,
                config.prometheus_host,
                port,
                bearer_token=token,
                tls_cert=config.prometheus_tls_cert,
                tls_key=config.prometheus_tls_key,
            )
        pipelines.append(pipeline)
    receiver = GpuReceiver(
        pipelines, config.collection_interval_s, event_wait_ms=config.event_wait_ms, on_scrape=on_scrape
    )
    return receiver, cluster
