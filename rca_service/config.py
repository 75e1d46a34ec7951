"""Configuration of ``factorylens rca serve``: a validated dataclass, defaults from the environment.

Every field has a ``FACTORYLENS_RCA_<FIELD>`` environment variable (upper case), read when the field
is not given; secrets (the bearer token) are read from a file or the environment, never the command
line, and never logged.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from factorylens.rca_service.wal import FsyncPolicy

if TYPE_CHECKING:
    from factorylens.processors import EnrichConfig
    from factorylens.processors.cost import PriceCatalog
    from factorylens.rca_service.cost import WasteConfig
    from factorylens.rca_service.remote_write import RemoteWriteConfig

ENV_PREFIX = "FACTORYLENS_RCA_"


ANALYZERS = ("kpi-ranking", "every-series")


class ConfigError(ValueError):
    """A configuration value is wrong; the message says which and why."""


def _env(name: str, default: object) -> object:
    raw = os.environ.get(ENV_PREFIX + name.upper())
    if raw is None:
        return default
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def _default(name: str, value: object) -> object:
    return field(default_factory=lambda: _env(name, value))


@dataclass
class RcaServiceConfig:
    # listening
    listen: str = _default("listen", "127.0.0.1:4317")  # type: ignore[assignment]
    metrics_listen: str = _default("metrics_listen", "127.0.0.1:9464")  # type: ignore[assignment]
    data_dir: str = _default("data_dir", "./factorylens-rca-data")  # type: ignore[assignment]
    # durability
    fsync: str = _default("fsync", FsyncPolicy.ALWAYS.value)  # type: ignore[assignment]
    fsync_interval_s: float = _default("fsync_interval_s", 0.2)  # type: ignore[assignment]
    wal_segment_mb: int = _default("wal_segment_mb", 64)  # type: ignore[assignment]
    snapshot_interval_s: float = _default("snapshot_interval_s", 300.0)  # type: ignore[assignment]
    snapshot_wal_mb: int = _default("snapshot_wal_mb", 256)  # type: ignore[assignment]
    # limits and backpressure
    max_message_mb: int = _default("max_message_mb", 64)  # type: ignore[assignment]
    max_pending_requests: int = _default("max_pending_requests", 64)  # type: ignore[assignment]
    max_pending_mb: int = _default("max_pending_mb", 256)  # type: ignore[assignment]
    retry_after_s: float = _default("retry_after_s", 2.0)  # type: ignore[assignment]
    workers: int = _default("workers", 8)  # type: ignore[assignment]
    # resident memory (MB) above which exports are refused with RESOURCE_EXHAUSTED + RetryInfo;
    # 0: 80% of the machine's or the cgroup's memory, whichever is smaller; -1: no bound
    max_memory_mb: int = _default("max_memory_mb", 0)  # type: ignore[assignment]
    # store
    retention_s: float = _default("retention_s", 24 * 3600.0)  # type: ignore[assignment]
    max_series: int = _default("max_series", 200_000)  # type: ignore[assignment]
    max_events: int = _default("max_events", 100_000)  # type: ignore[assignment]
    # a span waits this long for the rest of its trace before its exclusive time, error origin and
    # call edge are derived (export delays of the services' batch processors must fit in it)
    span_settle_s: float = _default("span_settle_s", 10.0)  # type: ignore[assignment]
    # live points further ahead of this machine's clock are refused (older than the retention too)
    max_future_s: float = _default("max_future_s", 3600.0)  # type: ignore[assignment]
    # the service's clock (retention, the future bound, analysis): the wall clock, or for a simulation that
    # runs faster than it (the demo) one that reads SIM at wall time WALL ("SIM@WALL", unix seconds) and
    # runs clock_speed times faster from there
    clock_anchor: str = _default("clock_anchor", "")  # type: ignore[assignment]
    clock_speed: float = _default("clock_speed", 1.0)  # type: ignore[assignment]
    # analysis
    analysis_interval_s: float = _default("analysis_interval_s", 10.0)  # type: ignore[assignment]
    # wall-clock budget of one analysis pass; series not reached are analysed in the next pass
    analysis_budget_s: float = _default("analysis_budget_s", 5.0)  # type: ignore[assignment]
    # "kpi-ranking": incidents open when a KPI breaks, causes ranked over the topology (the default);
    # "every-series": every series is a KPI: any break opens or joins an incident
    analyzer: str = _default("analyzer", "kpi-ranking")  # type: ignore[assignment]
    # comma-separated metric names or globs whose series are KPIs (empty: the training KPIs)
    kpi_metrics: str = _default("kpi_metrics", "")  # type: ignore[assignment]
    # series with a seasonal baseline at most (about 58 KiB each); the rest are scored without one
    max_baselines: int = _default("max_baselines", 5000)  # type: ignore[assignment]
    # processors: a YAML mapping of GPUs, pods, jobs and namespaces to jobs and teams (enrich)
    enrich_file: str = _default("enrich_file", "")  # type: ignore[assignment]
    # stamp each GPU's series with the job of the process on it (needed to shard by job)
    gpu_jobs_from_processes: bool = _default("gpu_jobs_from_processes", False)  # type: ignore[assignment]
    # cost: a price catalog (YAML, `factorylens cost catalog` prints an example); without one every GPU-hour is
    # reported as unpriced, never as free
    price_catalog: str = _default("price_catalog", "")  # type: ignore[assignment]
    # live cost figures and waste incidents are recomputed at most this often
    cost_interval_s: float = _default("cost_interval_s", 60.0)  # type: ignore[assignment]
    # waste incidents: a job whose held GPUs are idle for at least this share of the time over the
    # trailing duration (0: no waste incidents)
    waste_idle_threshold: float = _default("waste_idle_threshold", 0.8)  # type: ignore[assignment]
    waste_duration_s: float = _default("waste_duration_s", 1800.0)  # type: ignore[assignment]
    # security
    tls_cert: str = _default("tls_cert", "")  # type: ignore[assignment]
    tls_key: str = _default("tls_key", "")  # type: ignore[assignment]
    tls_client_ca: str = _default("tls_client_ca", "")  # type: ignore[assignment]
    bearer_token_file: str = _default("bearer_token_file", "")  # type: ignore[assignment]
    # outputs
    incidents_otlp_endpoint: str = _default("incidents_otlp_endpoint", "")  # type: ignore[assignment]
    incidents_otlp_insecure: bool = _default("incidents_otlp_insecure", True)  # type: ignore[assignment]
    # Prometheus remote-write of every ingested point and the findings (empty: off); secrets come
    # from files or FACTORYLENS_RCA_REMOTE_WRITE_TOKEN / _PASSWORD, never the command line
    remote_write_url: str = _default("remote_write_url", "")  # type: ignore[assignment]
    remote_write_token_file: str = _default("remote_write_token_file", "")  # type: ignore[assignment]
    remote_write_username: str = _default("remote_write_username", "")  # type: ignore[assignment]
    remote_write_password_file: str = _default("remote_write_password_file", "")  # type: ignore[assignment]
    # comma-separated NAME=VALUE headers, e.g. X-Scope-OrgID=team-a (Mimir's tenant)
    remote_write_headers: str = _default("remote_write_headers", "")  # type: ignore[assignment]
    remote_write_ca_file: str = _default("remote_write_ca_file", "")  # type: ignore[assignment]
    remote_write_interval_s: float = _default("remote_write_interval_s", 5.0)  # type: ignore[assignment]
    remote_write_timeout_s: float = _default("remote_write_timeout_s", 10.0)  # type: ignore[assignment]
    remote_write_queue: int = _default("remote_write_queue", 100_000)  # type: ignore[assignment]
    remote_write_batch: int = _default("remote_write_batch", 2000)  # type: ignore[assignment]
    remote_write_max_age_s: float = _default("remote_write_max_age_s", 3600.0)  # type: ignore[assignment]

    @classmethod
    def option_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    def clock(self) -> Callable[[], float]:
        """The service's clock in unix seconds (see ``clock_anchor``)."""
        if not self.clock_anchor:
            return time.time
        sim, wall = self._anchor()
        speed = self.clock_speed
        return lambda: sim + speed * (time.time() - wall)

    def _anchor(self) -> tuple[float, float]:
        sim, _, wall = self.clock_anchor.partition("@")
        try:
            return float(sim), float(wall)
        except ValueError:
            raise ConfigError(f"clock_anchor={self.clock_anchor!r}: expected SIM@WALL in unix seconds") from None

    def bearer_token(self) -> str | None:
        """The token from ``bearer_token_file``, else ``FACTORYLENS_RCA_BEARER_TOKEN``, else None."""
        if self.bearer_token_file:
            token = Path(self.bearer_token_file).read_text().strip()
            return token or None
        return os.environ.get(ENV_PREFIX + "BEARER_TOKEN") or None

    def remote_write_config(self) -> RemoteWriteConfig | None:
        """The remote-write exporter's settings (secrets read from their files), None when off."""
        if not self.remote_write_url:
            return None
        from factorylens.rca_service.remote_write import RemoteWriteConfig

        def secret(file_field: str, env: str) -> str:
            path = getattr(self, file_field)
            if not path:
                return os.environ.get(ENV_PREFIX + env, "")
            try:
                return Path(path).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{file_field}={path!r}: {exc.strerror or exc}") from None

        headers = {}
        for item in filter(None, (h.strip() for h in self.remote_write_headers.split(","))):
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                raise ConfigError(f"remote_write_headers: {item!r} is not NAME=VALUE")
            headers[name.strip()] = value.strip()
        if self.remote_write_password_file and not self.remote_write_username:
            raise ConfigError("remote_write_password_file needs remote_write_username (basic auth)")
        token = secret("remote_write_token_file", "REMOTE_WRITE_TOKEN")
        password = secret("remote_write_password_file", "REMOTE_WRITE_PASSWORD")
        if self.remote_write_ca_file and not Path(self.remote_write_ca_file).is_file():
            raise ConfigError(f"remote_write_ca_file={self.remote_write_ca_file!r}: no such file")
        config = RemoteWriteConfig(
            self.remote_write_url,
            bearer_token=token or None,
            basic_auth=(self.remote_write_username, password) if self.remote_write_username else None,
            headers=headers,
            ca_file=self.remote_write_ca_file,
            timeout_s=self.remote_write_timeout_s,
            interval_s=self.remote_write_interval_s,
            max_queue_samples=self.remote_write_queue,
            max_samples_per_request=self.remote_write_batch,
            max_sample_age_s=self.remote_write_max_age_s,
        )
        try:
            config.validate()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return config

    def price_catalog_config(self) -> PriceCatalog | None:
        """The price catalog read and checked, None without one."""
        if not self.price_catalog:
            return None
        from factorylens.processors.cost import CatalogError, PriceCatalog

        try:
            return PriceCatalog.from_file(self.price_catalog)
        except CatalogError as exc:
            raise ConfigError(f"price_catalog: {exc}") from None

    def waste_config(self) -> WasteConfig:
        from factorylens.rca_service.cost import WasteConfig

        waste = WasteConfig(
            idle_threshold=self.waste_idle_threshold or 1.0,
            duration_s=self.waste_duration_s,
            enabled=self.waste_idle_threshold > 0,
        )
        try:
            waste.validate()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return waste

    def enrich_config(self) -> EnrichConfig:
        """The enrichment the processors apply on ingest (the mapping file read and checked)."""
        from factorylens.processors import EnrichConfig

        overrides = {"gpu_jobs_from_processes": bool(self.gpu_jobs_from_processes)}
        if not self.enrich_file:
            return EnrichConfig(**overrides)  # type: ignore[arg-type]
        try:
            return EnrichConfig.from_file(self.enrich_file, **overrides)
        except ValueError as exc:
            raise ConfigError(f"enrich_file: {exc}") from None

    def validate(self) -> None:
        self._validate_numbers()
        self._validate_security()
        self.enrich_config()
        self.price_catalog_config()
        self.waste_config()
        self.remote_write_config()
        data_dir = Path(self.data_dir)
        if data_dir.exists() and not data_dir.is_dir():
            raise ConfigError(f"data_dir={self.data_dir!r} exists and is not a directory")

    def _validate_numbers(self) -> None:
        for name in ("listen", "metrics_listen"):
            value = getattr(self, name)
            if name == "metrics_listen" and value in ("", "off", "none"):
                continue
            host, _, port = value.rpartition(":")
            if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ConfigError(f"{name}={value!r}: expected HOST:PORT, e.g. 127.0.0.1:4317")
        try:
            FsyncPolicy(self.fsync)
        except ValueError:
            raise ConfigError(f"fsync={self.fsync!r}: expected one of {[p.value for p in FsyncPolicy]}") from None
        positive = (
            "fsync_interval_s",
            "wal_segment_mb",
            "snapshot_interval_s",
            "snapshot_wal_mb",
            "max_message_mb",
            "max_pending_requests",
            "max_pending_mb",
            "retry_after_s",
            "workers",
            "retention_s",
            "max_series",
            "max_events",
            "analysis_interval_s",
            "analysis_budget_s",
            "max_baselines",
            "cost_interval_s",
            "waste_duration_s",
            "clock_speed",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be positive")
        if self.max_memory_mb < -1:
            raise ConfigError(f"max_memory_mb={self.max_memory_mb!r}: expected MB, 0 (automatic) or -1 (no bound)")
        if self.clock_anchor:
            self._anchor()
        if self.max_future_s < 0:
            raise ConfigError(f"max_future_s={self.max_future_s!r} must be >= 0")
        if self.span_settle_s < 0:
            raise ConfigError(f"span_settle_s={self.span_settle_s!r} must be >= 0")
        if self.analyzer not in ANALYZERS:
            raise ConfigError(f"analyzer={self.analyzer!r}: expected one of {', '.join(ANALYZERS)}")
        if self.max_message_mb > 2047:
            raise ConfigError("max_message_mb must be below 2048 (gRPC's limit)")
        if not 0 <= self.waste_idle_threshold <= 1:
            raise ConfigError(f"waste_idle_threshold={self.waste_idle_threshold!r}: expected a share in [0, 1]")

    def _validate_security(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("tls_client_ca (mTLS) needs tls_cert and tls_key")
        for name in ("tls_cert", "tls_key", "tls_client_ca", "bearer_token_file", "enrich_file", "price_catalog"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ConfigError(f"{name}={path!r}: no such file")
        if self.bearer_token_file and not self.bearer_token():
            raise ConfigError(f"bearer_token_file={self.bearer_token_file!r} is empty")


def memory_limit_bytes(max_memory_mb: int) -> int:
    """The memory bound in bytes (0: none) for a ``max_memory_mb`` setting."""
    from factorylens.rca_service._memory import default_memory_limit_bytes

    if max_memory_mb < 0:
        return 0
    return max_memory_mb << 20 if max_memory_mb else default_memory_limit_bytes()


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
