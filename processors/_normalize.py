"""Other producers' series under our names: dcgm-exporter, node-exporter, hostmetrics, OpenLIT, and the LLM
serving engines (vLLM, SGLang, TGI, Triton, whose histograms are renamed whole).

The tables are the registry's (``factorylens.registry.METRIC_TRANSLATIONS`` and friends), so this
code, the collector's ``transform`` statements and the docs cannot disagree. A metric is looked up
once by name and skipped when it is already ours, so traffic from our own agents costs one dict
lookup per metric. Requests are rewritten in place, as collector processors do.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from factorylens.registry import (
    ATTRIBUTE_TRANSLATIONS,
    DCGM_PREFIXES,
    DERIVED_TRANSLATIONS,
    METRIC_TRANSLATIONS,
    PRODUCER_ATTRIBUTES,
    PRODUCER_SCOPES,
    REGISTRY,
    Attributes,
    AttributeTranslation,
    DerivedTranslation,
    Instrument,
    MetricTranslation,
    Producer,
)

CUMULATIVE = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_UNMAPPED_PREFIXES = DCGM_PREFIXES + tuple(p.lower() for p in DCGM_PREFIXES)
MAX_UNMAPPED_NAMES = 100  # distinct unknown field names reported by name; the rest count as "other"
MAX_CACHED_LABEL_SETS = 20_000  # translated label sets kept per source metric (a fleet's GPUs)
MAX_HOOK_STATES = 2  # label hook states with translation caches (the service's hook, and none: rotel's)
MAX_CACHED_RESOURCES = 20_000  # resources (scrape targets) whose server.address and port are kept
MAX_CACHED_IDENTITY_BYTES = 2048  # a GPU's labels encode to ~300 bytes; bigger ones are not cached
# NumberDataPoint's fixed64 fields before its attributes: start_time (2), time (3), as_double (4), as_int (6)
_FIXED64_TAGS = frozenset({0x11, 0x19, 0x21, 0x31})
_VALUE_TAGS = (b"\x21", b"\x31")
GEN_AI_PREFIX = "gen_ai."
_KINDS = {Instrument.GAUGE: "gauge", Instrument.COUNTER: "sum", Instrument.UPDOWNCOUNTER: "sum"}
_Translated = tuple[bytes, tuple[tuple[str, str], ...]]  # encoded translated labels, those moved to the resource


@dataclass
class NormalizeStats:
    """What one call did: points renamed, and points left under a producer's own name (a DCGM
    field we have no name for), by ``(producer, source name)``."""

    translated: int = 0
    unmapped: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    # the metrics renamed, whose labels went through the ``labels`` hook (the objects themselves: an
    # id() alone could be reused by another message's wrapper once this one is freed)
    renamed: list[Any] = field(default_factory=list, repr=False)

    def merge(self, other: NormalizeStats) -> None:
        """Add ``other``'s counts; past ``MAX_UNMAPPED_NAMES`` distinct names, new ones count as
        ``other`` (the names come from the senders: the totals must stay bounded)."""
        self.translated += other.translated
        for (producer, name), n in other.unmapped.items():
            key = (producer, name)
            if key not in self.unmapped and len(self.unmapped) >= MAX_UNMAPPED_NAMES:
                key = (producer, "other")
            self.unmapped[key] += n


@dataclass(frozen=True)
class _Rule:
    translation: MetricTranslation
    instrument: Instrument
    unit: str
    description: str
    constants: tuple[tuple[str, str], ...]  # the producer's and the translation's fixed attributes
    server: bool = False  # a GenAI metric: the scrape target's server.address and server.port go on its points


class _Tables:
    """The registry's translation tables, indexed for one lookup per metric."""

    def __init__(
        self,
        metrics: Iterable[MetricTranslation],
        derived: Iterable[DerivedTranslation],
        attributes: Iterable[AttributeTranslation],
    ) -> None:
        self.by_name: dict[str, _Rule] = {}
        for translation in metrics:
            spec = REGISTRY.metric(translation.target)
            rule = _Rule(
                translation,
                spec.instrument,
                spec.unit,
                spec.description,
                PRODUCER_ATTRIBUTES.get(translation.producer, ()) + translation.attributes,
                translation.target.startswith(GEN_AI_PREFIX),
            )
            # as scraped; without `_total` (the receiver may trim it); lower case (the OTel SDKs
            # lower-case instrument names, so a bridge built on them sends dcgm_fi_dev_gpu_util)
            for name in (translation.source, translation.source.removesuffix("_total")):
                self.by_name.setdefault(name, rule)
                self.by_name.setdefault(name.lower(), rule)
        self.derived = tuple(derived)
        self.derived_sources = frozenset(n for d in self.derived for n in (d.minuend, d.subtrahend))
        for derivation in self.derived:  # the derived metric is added under a synthetic name, then translated
            spec = REGISTRY.metric(derivation.target)
            synthetic = MetricTranslation(
                derivation.producer, derived_name(derivation), derivation.target, 1.0, derivation.attributes
            )
            self.by_name[synthetic.source] = _Rule(
                synthetic, spec.instrument, spec.unit, spec.description, derivation.attributes
            )
        self.attributes = tuple(attributes)
        # the label hook's state → rule → a point's label identity → its translation (for a histogram rule,
        # the translated labels encoded as a histogram point's); the last MAX_HOOK_STATES states are kept
        self.translated_attributes: dict[Hashable, dict[int, dict[bytes, Any]]] = {}
        self.server_attributes: dict[bytes, tuple[bytes, bytes]] = {}  # see _ResourceWork.server_attributes

    def label_caches(self, hook_state: Hashable) -> dict[int, dict[bytes, Any]]:
        """The rules' translated label sets made under the label hook's ``hook_state`` (when it changes,
        the hook's answers may have: older states' caches go, the last few are kept)."""
        caches = self.translated_attributes.get(hook_state)
        if caches is None:
            while len(self.translated_attributes) >= MAX_HOOK_STATES:
                del self.translated_attributes[next(iter(self.translated_attributes))]
            caches = self.translated_attributes[hook_state] = {}
        return caches

    @cache  # noqa: B019 - one instance per process (DEFAULT_TABLES), keyed by a handful of targets
    def renames(self, producer: Producer, target: str) -> dict[str, AttributeTranslation]:
        return {
            t.source: t
            for t in self.attributes
            if t.producer is producer and (not t.metrics or target.startswith(t.metrics))
        }


def derived_name(rule: DerivedTranslation) -> str:
    return f"{rule.minuend} - {rule.subtrahend}"


DEFAULT_TABLES = _Tables(METRIC_TRANSLATIONS, DERIVED_TRANSLATIONS, ATTRIBUTE_TRANSLATIONS)


@cache
def producer_of_scope(scope_name: str) -> Producer | None:
    """The producer whose names overlap ours, told by its instrumentation scope (hostmetrics emits
    ``system.*``, OpenLIT ``hw.*``); None for everything else."""
    for fragment, producer in PRODUCER_SCOPES:
        if fragment in scope_name:
            return producer
    return None


class LabelHook(Protocol):
    """Adds attributes to a translated label set (enrichment, done once per label set with the
    translation, not again per point); ``state()`` changes when its answers may."""

    def state(self) -> Hashable: ...

    def __call__(self, attributes: Any) -> None: ...


def normalize_metrics(
    request: Any, *, reshape: bool = True, labels: LabelHook | None = None, tables: _Tables = DEFAULT_TABLES
) -> NormalizeStats:
    """Rename foreign series in an ``ExportMetricsServiceRequest`` (or anything with its
    ``resource_metrics``) to ours, in place; ``labels`` then sees each translated label set.

    ``reshape=False`` keeps every metric and point where it is (no bitmask expansion, no derived
    metrics, no change of data type, no resource split): the form the rotel adapter can write back.
    """
    stats = NormalizeStats()
    hook_state = (labels, labels.state()) if labels is not None else None  # the hook itself: never a reused id
    by_name, renamed = tables.by_name, stats.renamed
    caches = tables.label_caches(hook_state)
    for resource_metrics in request.resource_metrics:
        work = _ResourceWork(resource_metrics, tables.server_attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            scope_producer = producer_of_scope(scope_metrics.scope.name)
            # a derived metric's sources are gathered by the loop below, and the derived metric added and
            # translated after it; under a scope whose attributes are renamed, before the renames touch them
            if reshape and scope_producer is not None:
                _derive(scope_metrics, tables, None)
            collect = tables.derived_sources if reshape and scope_producer is None else ()
            sources: dict[str, Any] = {}
            for metric in scope_metrics.metrics:
                name = metric.name
                rule = by_name.get(name)
                if rule is not None:
                    if rule.instrument is Instrument.HISTOGRAM:
                        stats.translated += _translate_histogram(metric, rule, tables, work, labels, caches)
                    else:
                        stats.translated += _translate(metric, rule, tables, work, reshape, labels, caches)
                    renamed.append(metric)
                    if scope_producer is not None:  # what a second pass would do under this scope, done now
                        _rename_attributes_only(metric, scope_producer, tables)
                elif scope_producer is not None:
                    stats.translated += _rename_attributes_only(metric, scope_producer, tables)
                elif name in collect:
                    sources[name] = metric
                elif name.startswith(_UNMAPPED_PREFIXES):
                    name = name if len(stats.unmapped) < MAX_UNMAPPED_NAMES else "other"
                    stats.unmapped[(Producer.DCGM_EXPORTER.value, name)] += _point_count(metric)
            if sources:
                for metric in _derive(scope_metrics, tables, sources):
                    rule = by_name[metric.name]  # a number: a difference of gauges
                    stats.translated += _translate(metric, rule, tables, work, reshape, labels, caches)
                    renamed.append(metric)
        work.finish(resource_metrics)
    return stats


class _ResourceWork:
    """What a resource's translation leaves for when all its points are seen: the attributes that
    belong on the resource (dcgm-exporter's ``Hostname``), then the reshaping (one point per bit,
    gauge → sum) that replaces points."""

    def __init__(self, resource_metrics: Any = None, known: dict[bytes, tuple[bytes, bytes]] | None = None) -> None:
        self.resource_metrics = resource_metrics
        self._known = known if known is not None else {}  # a resource's encoding → its server attributes
        self._server: tuple[bytes, bytes] | None = None
        self.moved_points: list[tuple[Any, tuple[tuple[str, str], ...]]] = []  # (point labels, moved)
        self.moved_values: set[tuple[str, str]] = set()
        self.reshape: list[tuple[Any, str, _Rule]] = []

    def server_attributes(self) -> tuple[bytes, bytes]:
        """The scrape target's ``server.address`` and ``server.port`` (the prometheus receiver puts them on the
        resource; the GenAI conventions want them on the points, the port as an integer and only with the
        address), encoded as a number point's and a histogram point's attributes; read once per resource, and
        kept by the resource's encoding (a scrape target sends the same resource every time)."""
        if self._server is None:
            resource = self.resource_metrics.resource.SerializeToString() if self.resource_metrics is not None else b""
            self._server = self._known.get(resource)
        if self._server is None:
            found = {}
            if self.resource_metrics is not None:
                for kv in self.resource_metrics.resource.attributes:
                    if kv.key in (Attributes.SERVER_ADDRESS, Attributes.SERVER_PORT) and kv.key not in found:
                        kind = kv.value.WhichOneof("value")
                        found[kv.key] = getattr(kv.value, kind) if kind in ("string_value", "int_value") else None
            number, histogram = metrics_pb2.NumberDataPoint(), metrics_pb2.HistogramDataPoint()
            address, port = found.get(Attributes.SERVER_ADDRESS), found.get(Attributes.SERVER_PORT)
            if isinstance(address, str) and address:
                number.attributes.add(key=Attributes.SERVER_ADDRESS).value.string_value = address
                port = port if isinstance(port, int) else _parse_int(port) if isinstance(port, str) and port else None
                if port is not None and 0 <= port < 65536:
                    number.attributes.add(key=Attributes.SERVER_PORT).value.int_value = port
                histogram.attributes.extend(number.attributes)
            self._server = (number.SerializeToString(), histogram.SerializeToString())
            if len(resource) <= MAX_CACHED_IDENTITY_BYTES:
                if len(self._known) >= MAX_CACHED_RESOURCES:
                    self._known.clear()
                self._known[resource] = self._server
        return self._server

    def finish(self, resource_metrics: Any) -> None:
        if not self.moved_values and not self.reshape:
            return
        values: dict[str, set[str]] = {}
        for key, value in self.moved_values:
            values.setdefault(key, set()).add(value)
        attributes = resource_metrics.resource.attributes
        for key, seen in values.items():
            if len(seen) == 1:  # one scrape target, one host: it names the resource
                [value] = seen
                for kv in attributes:  # the GPU's own host wins over a collector's resource detection
                    if kv.key == key:
                        kv.value.string_value = value
                        break
                else:
                    attributes.add(key=key).value.string_value = value
                continue
            for point_attributes, moved in self.moved_points:  # several hosts: each point keeps its own
                for name, value in moved:
                    if name == key:
                        point_attributes.add(key=key).value.string_value = value
        for metric, kind, rule in self.reshape:
            points = getattr(metric, kind).data_points
            if rule.translation.bits:
                _expand_bits(points, rule.translation.bits, rule.translation.bit_attribute)
            _set_data_type(metric, kind, rule.instrument)


def _point_count(metric: Any) -> int:
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind else 0


def _translate(
    metric: Any,
    rule: _Rule,
    tables: _Tables,
    work: _ResourceWork,
    reshape: bool,
    labels: LabelHook | None,
    caches: dict[int, dict[bytes, Any]],
) -> int:
    """A number rule's metric renamed in place, labels translated, values scaled."""
    kind = metric.WhichOneof("data")
    instrument = rule.instrument
    if kind != "gauge" and kind != "sum":
        return 0  # a number rule meets a histogram or summary: leave it alone
    translation = rule.translation
    if not reshape and (translation.bits or translation.source in tables.derived_sources or kind != _KINDS[instrument]):
        # one point per bit, a derived series, another data type: what needs new points or a new
        # message is left whole, under its own name, for a pass that may add them (the service's)
        return 0
    points = (metric.gauge if kind == "gauge" else metric.sum).data_points
    cache = caches.get(id(rule))
    if cache is None:
        cache = caches[id(rule)] = {}
    server = work.server_attributes()[0] if rule.server else b""
    scale = translation.scale
    for point in points:
        # a scrape repeats each GPU's labels in every field: translate each label set once
        encoded = point.SerializeToString()
        start = 9 if encoded[:1] == b"\x11" else 0  # start time, then (usually) time and the value
        if encoded[start : start + 1] == b"\x19" and encoded[start + 9 : start + 10] in _VALUE_TAGS:
            identity = encoded[start + 18 :]
        else:
            identity = _number_identity(encoded)
        entry = cache.get(identity)
        if entry is None:
            renames = tables.renames(translation.producer, translation.target)
            entry = _translated(point.attributes, renames, rule, labels)
            if len(identity) <= MAX_CACHED_IDENTITY_BYTES:  # big label sets are translated, not kept
                if len(cache) >= MAX_CACHED_LABEL_SETS:
                    cache.clear()
                cache[identity] = entry
        point.ClearField("attributes")
        # the translated labels, parsed by protobuf (faster than copying)
        point.MergeFromString(entry[0] + server if server else entry[0])
        if entry[1]:
            work.moved_points.append((point.attributes, entry[1]))
            work.moved_values.update(entry[1])
        if scale != 1.0:
            if point.WhichOneof("value") == "as_int":
                point.as_double = point.as_int * scale
            else:
                point.as_double *= scale
    if reshape and (
        translation.bits
        or (kind == "gauge") != (instrument is Instrument.GAUGE)
        or (kind == "sum" and metric.sum.is_monotonic != (instrument is Instrument.COUNTER))
    ):
        # what stays the data type it is, monotonic as declared, without bits, needs nothing more
        work.reshape.append((metric, kind, rule))
    metric.name = translation.target
    metric.unit = rule.unit
    metric.description = rule.description
    return len(points) * (len(translation.bits) if translation.bits else 1)


def _translate_histogram(
    metric: Any,
    rule: _Rule,
    tables: _Tables,
    work: _ResourceWork,
    labels: LabelHook | None,
    caches: dict[int, dict[bytes, Any]],
) -> int:
    """A serving engine's histogram (assembled by the receiver from ``_bucket``/``_sum``/``_count``): renamed
    in place, labels translated, bounds and sum scaled (Triton's ms → s); bucket counts do not change.

    As for numbers, a label set is translated once and kept encoded (here as a histogram point's attributes),
    so a point's labels are replaced by one parse instead of being copied attribute by attribute."""
    if metric.WhichOneof("data") != "histogram":
        return 0  # a histogram rule meets a number or a summary: leave it alone
    translation = rule.translation
    scale = translation.scale
    points = metric.histogram.data_points
    cache = caches.get(id(rule))
    if cache is None:
        cache = caches[id(rule)] = {}
    server = work.server_attributes()[1] if rule.server else b""
    for point in points:
        encoded = point.SerializeToString()
        point.ClearField("attributes")
        rest = point.SerializeToString()
        # attributes are written after the counts and bounds, before flags, min and max (rarely set): when
        # what is left is the start of the whole, the attributes are the end (the only tag that can begin
        # them is field 9's; the fields after them begin with others)
        identity = encoded[len(rest) :] if encoded.startswith(rest) else histogram_identity(encoded)
        translated = cache.get(identity)
        if translated is None:
            original = metrics_pb2.HistogramDataPoint.FromString(identity).attributes
            renames = tables.renames(translation.producer, translation.target)
            try:
                translated = _as_histogram_attributes(_translated(original, renames, rule, labels)[0])
            except BaseException:
                point.MergeFromString(identity)  # a failing label hook leaves the point's labels as they were
                raise
            if len(identity) <= MAX_CACHED_IDENTITY_BYTES:  # big label sets are translated, not kept
                if len(cache) >= MAX_CACHED_LABEL_SETS:
                    cache.clear()
                cache[identity] = translated
        point.MergeFromString(translated + server if server else translated)
        if scale != 1.0:
            bounds = [bound * scale for bound in point.explicit_bounds]
            del point.explicit_bounds[:]
            point.explicit_bounds.extend(bounds)
            for name in ("sum", "min", "max"):
                if point.HasField(name):
                    setattr(point, name, getattr(point, name) * scale)
    metric.name = translation.target
    metric.unit = rule.unit
    metric.description = rule.description
    return len(points)


def _as_histogram_attributes(number_point: bytes) -> bytes:
    """A NumberDataPoint's encoded attributes (field 7) as a HistogramDataPoint's (field 9)."""
    scratch = metrics_pb2.NumberDataPoint.FromString(number_point)
    out = metrics_pb2.HistogramDataPoint()
    out.attributes.extend(scratch.attributes)
    return out.SerializeToString()


def histogram_identity(encoded: bytes) -> bytes:
    """What tells a histogram point's labels apart: the run of its encoding (``encoded``) that holds its
    attributes (field 9), found by walking the wire format (the counts, sum and bounds before it change every
    scrape). Protobuf runtimes write known fields in field-number order, a repeated field's elements together.
    The run parses as a HistogramDataPoint with those attributes only."""
    size = len(encoded)
    index = 0
    while index < size:
        tag = encoded[index]
        if tag == 0x4A:
            break
        wire = tag & 7
        if tag >= 0x80 or wire > 5:  # a field number of 16 or more (unknown here), or a group: keep it all
            return encoded
        if wire == 1:
            index += 9
        elif wire == 2:
            index = _skip_bytes(encoded, index + 1)
        elif wire == 0:
            index += 1
            while encoded[index] >= 0x80:
                index += 1
            index += 1
        else:
            index += 5
    start = index
    while index < size and encoded[index] == 0x4A:
        index = _skip_bytes(encoded, index + 1)
    return encoded[start:index]


def _skip_bytes(encoded: bytes, index: int) -> int:
    """Past a length-delimited field's value whose varint length starts at ``index``."""
    length = encoded[index]
    if length < 0x80:
        return index + 1 + length
    length &= 0x7F
    shift = 7
    while True:
        index += 1
        byte = encoded[index]
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return index + 1 + length
        shift += 7


def point_identity(point: Any) -> bytes:
    """What tells a point's labels apart: its encoding after the fixed-size time and value fields
    (attributes, exemplars, flags), as a cache key."""
    encoded = point.SerializeToString()
    if encoded[:1] == b"\x19" and encoded[9:10] in _VALUE_TAGS:  # the usual: time, then the value
        return encoded[18:]
    return _number_identity(encoded)


def _number_identity(encoded: bytes) -> bytes:
    start = 0
    while start < len(encoded) and encoded[start] in _FIXED64_TAGS:
        start += 9
    return encoded[start:]


def _translated(
    attributes: Any, renames: dict[str, AttributeTranslation], rule: _Rule, labels: LabelHook | None
) -> _Translated:
    scratch = metrics_pb2.NumberDataPoint()
    scratch.attributes.extend(attributes)
    moved: list[tuple[str, str]] = []
    _rename(scratch.attributes, renames, moved, rule.constants)
    if labels is not None:
        labels(scratch.attributes)
    return scratch.SerializeToString(), tuple(moved)


def _rename_attributes_only(metric: Any, producer: Producer, tables: _Tables) -> int:
    """hostmetrics and OpenLIT already use our metric names; only some attributes differ."""
    renames = tables.renames(producer, metric.name)
    kind = metric.WhichOneof("data")
    if not renames or not kind:
        return 0
    points = getattr(metric, kind).data_points
    for point in points:
        _rename(point.attributes, renames, None, ())
    return len(points)


def _rename(
    attributes: Any,
    renames: dict[str, AttributeTranslation],
    moved: list[tuple[str, str]] | None,
    constants: Sequence[tuple[str, str]],
) -> None:
    drop: list[int] = []
    for index, kv in enumerate(attributes):
        translation = renames.get(kv.key)
        if translation is None:
            continue
        if not translation.target:
            drop.append(index)
        elif translation.to_resource and moved is not None:
            moved.append((translation.target, kv.value.string_value))  # placed when the resource is done
            drop.append(index)
        else:
            kv.key = translation.target
            if translation.integer:
                number = _parse_int(kv.value.string_value)
                if number is not None:
                    kv.value.int_value = number
    for index in reversed(drop):
        del attributes[index]
    for key, value in constants:
        attributes.add(key=key).value.string_value = value


def _parse_int(text: str) -> int | None:
    digits = text.lstrip("abcdefghijklmnopqrstuvwxyz")  # "cpu3" (hostmetrics) → 3
    try:
        number = int(digits)
    except ValueError:
        return None
    return number if -(2**63) <= number < 2**63 else None  # an OTLP int_value holds 64 bits


def _value(point: Any) -> float:
    return float(point.as_int) if point.WhichOneof("value") == "as_int" else point.as_double


def _expand_bits(points: Any, bits: Sequence[str], attribute: str) -> None:
    """One point per bit of a bitmask (the throttle reasons): 1 while set, else 0."""
    expanded = []
    for point in points:
        value = _value(point)
        mask = int(value) if math.isfinite(value) else 0
        for bit, name in enumerate(bits):
            one = metrics_pb2.NumberDataPoint()
            one.CopyFrom(point)
            one.as_int = (mask >> bit) & 1
            one.attributes.add(key=attribute).value.string_value = name
            expanded.append(one)
    del points[:]
    points.extend(expanded)


def _set_data_type(metric: Any, kind: str, instrument: Instrument) -> None:
    """Gauge or sum as the registry declares it: dcgm-exporter exports memory as gauges that we
    declare up-down counters, and some counters as gauges. Gauge and Sum keep their points in the
    same field (1), so a gauge's encoding parses as a sum's points, without copying them one by one."""
    if instrument is Instrument.GAUGE:
        if kind == "sum":  # rare (a counter we declare a gauge): Sum's own fields must not come along
            points = list(metric.sum.data_points)
            metric.gauge.data_points.extend(points)
        return
    if kind == "gauge":
        metric.sum.MergeFromString(metric.gauge.SerializeToString())
        metric.sum.aggregation_temporality = CUMULATIVE
    metric.sum.is_monotonic = instrument is Instrument.COUNTER


def _derive(scope_metrics: Any, tables: _Tables, sources: dict[str, Any] | None) -> list[Any]:
    """``used = total − free`` for node-exporter's memory and file systems, joined per series and
    timestamp, added as new metrics (returned; translated like any other). ``sources``: the scope's
    metrics by name, when the caller has gathered them."""
    if not tables.derived:
        return []
    if sources is None:
        sources = {m.name: m for m in scope_metrics.metrics if m.name in tables.derived_sources}
    added = []
    for rule in tables.derived:
        minuend, subtrahend = sources.get(rule.minuend), sources.get(rule.subtrahend)
        if minuend is None or subtrahend is None:
            continue
        subtract = {(_key(p.attributes), p.time_unix_nano): _value(p) for p in _points(subtrahend)}
        derived = metrics_pb2.Metric(name=derived_name(rule))
        for point in _points(minuend):
            other = subtract.get((_key(point.attributes), point.time_unix_nano))
            if other is None:
                continue
            one = derived.gauge.data_points.add()
            one.CopyFrom(point)
            one.as_double = _value(point) - other
        if derived.gauge.data_points:
            scope_metrics.metrics.append(derived)
            added.append(scope_metrics.metrics[-1])
    return added


def _points(metric: Any) -> Any:
    kind = metric.WhichOneof("data")
    return getattr(metric, kind).data_points if kind in ("gauge", "sum") else ()


def _key(attributes: Any) -> tuple[tuple[str, bytes], ...]:
    return tuple(sorted((kv.key, kv.value.SerializeToString()) for kv in attributes))


def string_attributes(attributes: Iterable[common_pb2.KeyValue]) -> dict[str, str]:
    """An attribute list as plain strings (for tests and the docs' examples)."""
    out: dict[str, str] = {}
    for kv in attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = str(getattr(kv.value, kind)) if kind else ""
    return out
