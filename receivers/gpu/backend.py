"""The interface every GPU data source implements, and the values it hands to the scraper."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field

AttributeValue = str | int | float | bool
AttributeMap = Mapping[str, AttributeValue]


@dataclass(frozen=True)
class Point:
    """One value of one registry metric for one attribute set."""

    metric: str
    value: float
    attributes: AttributeMap


@dataclass(frozen=True)
class ScrapeError:
    """A failed call: the NVML function and the error class (``NotSupported``, ``GpuIsLost``...)."""

    function: str
    error: str


@dataclass(frozen=True)
class GpuEvent:
    """A driver event (an XID) with the identity attributes of the GPU it happened on."""

    name: str
    timestamp_ns: int
    xid_code: int
    attributes: AttributeMap
    message: str


@dataclass
class ScrapeResult:
    points: list[Point] = field(default_factory=list)
    errors: list[ScrapeError] = field(default_factory=list)
    devices: int = 0
    nvml_calls: int = 0


class GpuBackend(abc.ABC):
    """A source of GPU readings with an explicit lifecycle.

    ``start`` must not raise when the GPU or driver is missing: the backend reports that as scrape
    errors and keeps retrying, so an agent on a node whose driver is being upgraded stays up.
    """

    @abc.abstractmethod
    def start(self) -> None:
        """Initialise the library and discover devices (failures are retried by ``scrape``)."""

    @abc.abstractmethod
    def scrape(self) -> ScrapeResult:
        """Read every supported field of every device once."""

    @abc.abstractmethod
    def wait_events(self, timeout_ms: int) -> list[GpuEvent]:
        """Block up to ``timeout_ms`` for driver events; return those that arrived."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Release the library; the backend cannot be used afterwards."""
