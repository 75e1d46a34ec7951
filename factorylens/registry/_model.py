"""The shapes of registry entries: metrics, attributes, events, and their Prometheus names."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType


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


class SignalKind(str, enum.Enum):
    """What a signal measures."""

    UTILIZATION = "utilization"  # how busy a resource is (GPU/CPU/link busy share)
    SATURATION = "saturation"  # queueing, pressure, temperature, fullness: bad when it rises
    ERROR = "error"  # errors, faults, retries, drops: bad when they rise
    LATENCY = "latency"  # durations, wait times: bad when they rise
    THROUGHPUT = "throughput"  # useful work per second (samples, tokens, steps): bad when it falls
    TRAFFIC = "traffic"  # volume moved (bytes, packets, operations, requests): a consequence
    CAPACITY = "capacity"  # what is available (limits, clocks, free memory, link width/speed): bad when it falls
    STATE = "state"  # a status or flag (hw.status, a throttle reason active)
    INFO = "info"  # bookkeeping, never a cause (cost, identity, our own findings)


class Direction(int, enum.Enum):
    """Which change of a signal is trouble."""

    UP = 1
    DOWN = -1
    EITHER = 0


class Side(str, enum.Enum):
    """Whose behaviour a signal measures."""

    OWN = "own"  # the entity's own behaviour
    OUTBOUND = "outbound"  # time the entity waits on others: a client span, a collective, a checkpoint write
    OUTCOME = "outcome"  # how well the whole works (MFU, goodput): kin of a KPI, not a cause
    # how the entity's callers see it (a callee's latency as they waited, the wire included): its
    # trouble, though the path to it may share it, so it cannot clear what depends on it
    CALLER_VIEW = "caller_view"


@dataclass(frozen=True)
class Meaning:
    """What a signal means to someone ranking causes.

    ``can_slow``: can a change in the bad direction slow or fail a workload by itself (a throttle
    reason active: yes; corrected ECC errors, clocks falling, a throughput: no, they are consequences
    or harmless). ``domain``: where the trouble lives when it differs from the metric's domain (the
    collective phase of a step lives in the network); :meth:`Registry.meaning` fills it in.
    """

    kind: SignalKind
    bad: Direction
    can_slow: bool
    name: str  # plain words, e.g. "GPU temperature", "corrected ECC errors"
    side: Side = Side.OWN
    domain: Domain | None = None


ANY_VALUE = "*"
_NO_ATTRIBUTES: Mapping[str, object] = MappingProxyType({})


@dataclass(frozen=True)
class ValueMeaning:
    """What changes in a metric's :class:`Meaning` for one value of one attribute; ``None`` inherits.

    ``value`` ``"*"`` matches any value of the attribute, and ``{value}`` in ``name`` is replaced by
    it ("XID {value} error"). The matching overrides apply in the order they are declared, so the
    broader come first (``error.type=xid``, then ``hw.gpu.xid.code=*``, then ``hw.gpu.xid.code=79``).
    """

    attribute: str
    value: str
    kind: SignalKind | None = None
    bad: Direction | None = None
    can_slow: bool | None = None
    name: str | None = None
    side: Side | None = None
    domain: Domain | None = None

    def matches(self, attributes: Mapping[str, object]) -> bool:
        value = attributes.get(self.attribute)
        if value is None:
            return False
        return self.value == ANY_VALUE or _text(value) == self.value

    def apply(self, meaning: Meaning, value: object) -> Meaning:
        changes = {
            k: getattr(self, k) for k in ("kind", "bad", "can_slow", "side", "domain") if getattr(self, k) is not None
        }
        if self.name is not None:
            changes["name"] = self.name.replace("{value}", _text(value))
        return replace(meaning, **changes)


def _text(value: object) -> str:
    """An attribute value as the registry writes it: ``79`` and ``"79"`` are the same XID code."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


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
    meaning: Meaning | None = None  # what it means for ranking causes (see Registry.meaning)
    value_meanings: tuple[ValueMeaning, ...] = ()  # where one attribute value means something else

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
    _meanings: dict[tuple[str, tuple[tuple[str, str], ...]], Meaning | None] = field(
        default_factory=dict, repr=False, compare=False
    )
    _meaning_keys: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_name.update({m.name: m for m in self.metrics})
        known = {a.name for a in self.attributes}
        for metric in self.metrics:
            missing = set(self.allowed_attributes(metric)) - known
            if missing:
                raise ValueError(f"metric {metric.name} uses undeclared attributes {sorted(missing)}")
            self._check_value_meanings(metric)
            self._meaning_keys[metric.name] = tuple(dict.fromkeys(v.attribute for v in metric.value_meanings))
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

    def meaning(self, metric: str, attributes: Mapping[str, object] = _NO_ATTRIBUTES) -> Meaning | None:
        """What a series of ``metric`` with ``attributes`` means: the metric's :class:`Meaning` with
        every matching :class:`ValueMeaning` applied in order, and ``domain`` filled in (the metric's
        own when the meaning names none). ``None`` for a metric the registry does not know or has no
        meaning for. Cached: the ranking asks once per series.
        """
        keys = self._meaning_keys.get(metric)
        if keys is None:
            return None
        key = (metric, tuple((k, _text(attributes[k])) for k in keys if attributes.get(k) is not None))
        try:
            return self._meanings[key]
        except KeyError:
            pass
        spec = self._by_name[metric]
        meaning = spec.meaning
        if meaning is not None:
            values = dict(key[1])
            for override in spec.value_meanings:
                if override.matches(values):
                    meaning = override.apply(meaning, values[override.attribute])
            if meaning.domain is None:
                meaning = replace(meaning, domain=spec.domain)
        if len(self._meanings) >= _MEANING_CACHE_SIZE:
            self._meanings.clear()
        self._meanings[key] = meaning
        return meaning

    def _check_value_meanings(self, metric: MetricSpec) -> None:
        allowed = set(self.allowed_attributes(metric))
        exact: set[str] = set()
        seen: set[tuple[str, str]] = set()
        if metric.value_meanings and metric.meaning is None:
            raise ValueError(f"metric {metric.name} has value meanings but no meaning")
        for v in metric.value_meanings:
            where = f"metric {metric.name}: value meaning {v.attribute}={v.value}"
            if v.attribute not in allowed:
                raise ValueError(f"{where} names an attribute the metric does not allow")
            spec = next(a for a in self.attributes if a.name == v.attribute)
            if v.value != ANY_VALUE and spec.values is not None and v.value not in spec.values:
                raise ValueError(f"{where} is not one of the attribute's values {list(spec.values)}")
            if (v.attribute, v.value) in seen:
                raise ValueError(f"{where} is declared twice")
            if v.value == ANY_VALUE and v.attribute in exact:
                raise ValueError(f"{where} must come before the attribute's exact values")
            seen.add((v.attribute, v.value))
            if v.value != ANY_VALUE:
                exact.add(v.attribute)

    def in_domain(self, domain: Domain) -> tuple[MetricSpec, ...]:
        return tuple(m for m in self.metrics if m.domain is domain)

    def emitted_by(self, component: str) -> tuple[MetricSpec, ...]:
        return tuple(m for m in self.metrics if m.component == component)


_MEANING_CACHE_SIZE = 65_536

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
