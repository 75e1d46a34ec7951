"""GPU receiver: NVML (or simulated) GPU telemetry as OpenTelemetry signals.

Layout follows collector-contrib receivers: ``config`` (validated dataclass), ``factory``
(``create_default_config`` / ``create_receiver``), ``scraper`` (``start`` / ``scrape`` /
``shutdown``) over a :class:`GpuBackend`, with :class:`NvmlBackend` for real GPUs and the
simulator in :mod:`factorylens.receivers.gpu.sim`.
"""

from factorylens.receivers.gpu.backend import GpuBackend, GpuEvent, Point, ScrapeError, ScrapeResult
from factorylens.receivers.gpu.config import ConfigError, GpuReceiverConfig
from factorylens.receivers.gpu.factory import create_backends, create_default_config, create_receiver
from factorylens.receivers.gpu.jobs import JobResolver, ProcJobResolver, StaticJobResolver
from factorylens.receivers.gpu.nvml import NvmlBackend
from factorylens.receivers.gpu.receiver import GpuReceiver, HostPipeline
from factorylens.receivers.gpu.scraper import GpuScraper, RegistryViolation, Snapshot

__all__ = [
    "ConfigError",
    "GpuBackend",
    "GpuEvent",
    "GpuReceiver",
    "GpuReceiverConfig",
    "GpuScraper",
    "HostPipeline",
    "JobResolver",
    "NvmlBackend",
    "Point",
    "ProcJobResolver",
    "RegistryViolation",
    "ScrapeError",
    "ScrapeResult",
    "Snapshot",
    "StaticJobResolver",
    "create_backends",
    "create_default_config",
    "create_receiver",
]
