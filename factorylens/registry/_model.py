"""The shapes of registry entries: metrics, attributes, events, and their Prometheus names."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field


class Instrument(str, enum.Enum):
    """OTel instrument kinds, as the semantic conventions name them."""

    GAUGE = "gauge"
    COUNTER = "counter"
    UPDOWNCOUNTER = "updowncounter"
    HISTOGRAM = "histogram"


class Domain(str, enum.Enum):
    """Where a signal lives in the factory; the RCA service ranks causes across these."""

    GPU = "gpu"
    HOST = "host"  # CPU, memory, paging of the node
    DATA = "data"
    STORAGE = "storage"
    NETWORK = "network"
    APP = "app"
    COST = "cost"
    RCA = "rca"  # the RCA service's findings: anomaly scores, incidents, causes
    SELF = "self"  # the agents' and services' own health


class Source(str, enum.Enum):
    """Who defined a name: the OTel spec, OpenLIT's GPU collector (reused for interop), or us."""

    SEMCONV = "semconv"
    OPENLIT = "openlit"
    FACTORYLENS = "factorylens"


@dataclass(frozen=True)
class AttributeSpec:
    name: str
    type: str  # "string" | "int" | "bool" | "string[]"
    description: str
    source: Source
    values: tuple[str, ...] | None = None  # closed set of allowed values, when there is one


@dataclass(frozen=True)
class MetricSpec:
    name: str
    instrument: Instrument
    unit: str
    description: str
    domain: Domain
    source: Source
    attributes: tuple[str, ...] = ()
    identity: str | None = None  # an attribute group every point also carries ("gpu")
    value_type: type = float
    component: str = ""  # which factorylens component emits it (see COMPONENTS in the catalog)

    @property
    def monotonic(self) -> bool:
        return self.instrument is Instrument.COUNTER

    @property
    def prometheus_name(self) -> str:
        return prometheus_name(self.name, self.unit, self.instrument)


@dataclass(frozen=True)
class EventSpec:
    """A log record we emit as an event (``event_name`` plus attributes)."""

    name: str
    description: str
    domain: Domain
    attributes: tuple[str, ...]
    identity: str | None = None


@dataclass(frozen=True)
class Registry:
    metrics: tuple[MetricSpec, ...]
    attributes: tuple[AttributeSpec, ...]
    attribute_groups: dict[str, tuple[str, ...]]
    resource_attributes: tuple[str, ...]
    events: tuple[EventSpec, ...] = ()
    _by_name: dict[str, MetricSpec] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_name.update({m.name: m for m in self.metrics})
        known = {a.name for a in self.attributes}
        for metric in self.metrics:
            missing = set(self.allowed_attributes(metric)) - known
            if missing:
                raise ValueError(f"metric {metric.name} uses undeclared attributes {sorted(missing)}")
        for name in self.resource_attributes:
            if name not in known:
                raise ValueError(f"resource attribute {name} is not declared")

    def metric(self, name: str) -> MetricSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"metric {name!r} is not in the factorylens registry") from None

    def attribute(self, name: str) -> AttributeSpec:
        for spec in self.attributes:
            if spec.name == name:
                return spec
        raise KeyError(f"attribute {name!r} is not in the factorylens registry")

    def allowed_attributes(self, metric: MetricSpec) -> tuple[str, ...]:
        group = self.attribute_groups.get(metric.identity, ()) if metric.identity else ()
        return group + metric.attributes

    def in_domain(self, domain: Domain) -> tuple[MetricSpec, ...]:
        return tuple(m for m in self.metrics if m.domain is domain)

    def emitted_by(self, component: str) -> tuple[MetricSpec, ...]:
        return tuple(m for m in self.metrics if m.component == component)


_PROMETHEUS_UNITS = {
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "J": "joules",
    "W": "watts",
    "V": "volts",
    "A": "amperes",
    "Cel": "celsius",
    "Hz": "hertz",
    "%": "percent",
    "h": "hours",
    "kWh": "kilowatt_hours",
}
_PROMETHEUS_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "kWh": "kilowatt_hour"}
_INVALID_PROMETHEUS_CHARS = re.compile(r"[^a-zA-Z0-9:]+")


def prometheus_name(name: str, unit: str, instrument: Instrument) -> str:
    """OTel → Prometheus name, as the collector's translator builds it.

    Dots become underscores, the unit becomes a suffix (``{…}`` annotations are dropped, ``/s`` becomes
    ``_per_second``), gauges
    with unit ``1`` get ``_ratio`` and monotonic counters get ``_total``:
    ``hw.gpu.utilization`` → ``hw_gpu_utilization_ratio``, ``hw.energy`` → ``hw_energy_joules_total``.
    """
    tokens = [t for t in _INVALID_PROMETHEUS_CHARS.split(name) if t]
    unit = re.sub(r"\{.*?\}", "", unit)
    unit, _, per = unit.partition("/")
    suffix = _PROMETHEUS_UNITS.get(unit)
    if suffix and suffix not in tokens:
        tokens.append(suffix)
    if per in _PROMETHEUS_PER_UNITS:
        tokens += ["per", _PROMETHEUS_PER_UNITS[per]]
    if unit == "1" and instrument is Instrument.GAUGE and "ratio" not in tokens:
        tokens.append("ratio")
    if instrument is Instrument.COUNTER and tokens[-1] != "total":
        tokens.append("total")
    return "_".join(tokens)


def prometheus_label(attribute: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "_", attribute)
