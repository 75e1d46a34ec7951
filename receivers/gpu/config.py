"""GPU receiver configuration: one validated dataclass, defaults that suit a GPU node."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from factorylens.receivers.gpu.sim.faults import Scenario, ScenarioError
from factorylens.receivers.gpu.sim.models import MODELS

BACKENDS = ("nvml", "sim")
OTLP_MODES = ("auto", "on", "off")


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the option and the fix."""


@dataclass
class GpuReceiverConfig:
    """Options of ``factorylens gpu`` (the CLI flags map one-to-one onto these fields).

    Attributes:
        backend: ``nvml`` reads the GPUs of this node; ``sim`` simulates a cluster.
        collection_interval_s: seconds between scrapes.
        otlp: ``auto`` exports over OTLP when ``OTEL_EXPORTER_OTLP_(METRICS_)ENDPOINT`` is set,
            ``on`` always (SDK default endpoint), ``off`` never.
        prometheus_port: serve ``/metrics`` on this port (dcgm-exporter uses 9400); None disables it.
            A simulated cluster serves host *i* on ``prometheus_port + i``.
        prometheus_host: bind address for ``/metrics`` (localhost unless told otherwise).
        prometheus_bearer_token_file: require ``Authorization: Bearer <token>`` on ``/metrics``.
        prometheus_tls_cert / prometheus_tls_key: serve ``/metrics`` over HTTPS.
        console: print a live table of the GPUs after each scrape.
        duration_s: stop after this long (None: until interrupted).
        process_metrics: per-process GPU memory and utilization with job attribution.
        max_processes_per_gpu: cardinality bound on per-process series.
        proc_root: where to read process environments and cgroups, mounts, diskstats and NFS/Lustre
            client statistics (``/host/proc`` in a container).
        sys_root: where to read InfiniBand/RoCE port counters (``/host/sys`` in a container).
        host_metrics / storage_metrics / fabric_metrics: the node's other layers, each on or off.
        discovery_retry_interval_s: retry period when the driver or a GPU is missing.
        event_wait_ms: how long one XID event wait blocks.
        sim_hosts / sim_gpus_per_host / sim_model / sim_mig / sim_seed / sim_speed: the simulated
            cluster (``backend=sim``).
        scenario: a fault scenario file (YAML or JSON) for the simulator.
        shard_by_job: prepare the OTLP export for a gateway that shards the RCA service by job:
            GPU series carry their job, the host's own series go once per job on the host
            (``factorylens.processors.JobSharding``; docs/scaling.md).
    """

    backend: str = "nvml"
    collection_interval_s: float = 10.0
    otlp: str = "auto"
    prometheus_port: int | None = None
    prometheus_host: str = "127.0.0.1"
    prometheus_bearer_token_file: str | None = None
    prometheus_tls_cert: str | None = None
    prometheus_tls_key: str | None = None
    console: bool = False
    duration_s: float | None = None
    process_metrics: bool = True
    max_processes_per_gpu: int = 32
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    host_metrics: bool = True
    storage_metrics: bool = True
    fabric_metrics: bool = True
    discovery_retry_interval_s: float = 30.0
    event_wait_ms: int = 1000
    sim_hosts: int = 1
    sim_gpus_per_host: int = 8
    sim_model: str = "H100"
    sim_mig: bool = False
    sim_seed: int = 0
    sim_speed: float = 1.0
    scenario: str | None = None
    shard_by_job: bool = False
    _scenario: Scenario | None = field(default=None, repr=False)

    def validate(self) -> GpuReceiverConfig:
        """Check every option; raise :class:`ConfigError` naming the first bad one."""
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)} (got {self.backend!r})")
        if not self.collection_interval_s > 0:
            raise ConfigError("collection interval must be a positive number of seconds")
        if self.otlp not in OTLP_MODES:
            raise ConfigError(f"otlp must be one of {', '.join(OTLP_MODES)}")
        if self.prometheus_port is not None:
            last = self.prometheus_port + (self.sim_hosts - 1 if self.backend == "sim" else 0)
            if not 0 <= self.prometheus_port <= 65535 or last > 65535:
                raise ConfigError(f"prometheus port {self.prometheus_port} is out of range")
        if bool(self.prometheus_tls_cert) != bool(self.prometheus_tls_key):
            raise ConfigError("TLS needs both --prometheus-tls-cert and --prometheus-tls-key")
        for option in ("prometheus_bearer_token_file", "prometheus_tls_cert", "prometheus_tls_key"):
            path = getattr(self, option)
            if path and not os.access(path, os.R_OK):
                raise ConfigError(f"{option.replace('_', '-')}: cannot read {path}")
        if self.shard_by_job and self.otlp != "off":
            from factorylens.telemetry import otlp_protocol

            if otlp_protocol("metrics") != "grpc":
                raise ConfigError("--shard-by-job rewrites the OTLP/gRPC export: set OTEL_EXPORTER_OTLP_PROTOCOL=grpc")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ConfigError("duration must be positive (omit it to run until interrupted)")
        if self.max_processes_per_gpu < 0:
            raise ConfigError("max processes per GPU must be zero or more")
        if not Path(self.proc_root).is_dir():
            raise ConfigError(f"proc root {self.proc_root} is not a directory")
        if self.discovery_retry_interval_s <= 0 or self.event_wait_ms <= 0:
            raise ConfigError("retry interval and event wait must be positive")
        if self.backend == "sim":
            if not 1 <= self.sim_hosts <= 1024 or not 1 <= self.sim_gpus_per_host <= 64:
                raise ConfigError("a simulated cluster has 1-1024 hosts and 1-64 GPUs per host")
            if self.sim_model.upper() not in MODELS:
                raise ConfigError(f"sim model must be one of {', '.join(MODELS)} (got {self.sim_model!r})")
            if self.sim_mig and MODELS[self.sim_model.upper()].mig is None:
                raise ConfigError(f"{self.sim_model} has no MIG support")
            if self.sim_speed <= 0:
                raise ConfigError("sim speed must be positive")
        elif self.scenario:
            raise ConfigError("a fault scenario needs the simulated backend (--backend sim)")
        if self.scenario:
            try:
                self._scenario = Scenario.load(self.scenario)
            except ScenarioError as exc:
                raise ConfigError(str(exc)) from None
        return self

    @property
    def fault_scenario(self) -> Scenario:
        return self._scenario or Scenario()

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if not f.name.startswith("_")]
