"""Test-only emulation of the OpenTelemetry Collector (otelcol-contrib) ``prometheus`` receiver: one scrape of a
Prometheus text exposition (format 0.0.4) becomes the ``ExportMetricsServiceRequest`` the receiver would hand to the
next pipeline stage. Our processors are tested on this output, so it follows the receiver's rules, not our taste.

Upstream read for these rules (open-telemetry/opentelemetry-collector-contrib, ``receiver/prometheusreceiver``):

- ``internal/prom_to_otlp.go`` @ 3513e3e5c223fc681f4b60b5980657dad2c830b9 (``CreateResource``): resource attributes
  ``service.name`` = job, ``server.address`` = host of the instance (only when "discernible": not ``localhost``,
  not a loopback or unspecified IP), ``service.instance.id`` = instance, ``server.port`` = port (``""`` when the
  instance has none), ``url.scheme`` = the target's ``__scheme__``; plus ``k8s.*`` attributes from Kubernetes service
  discovery labels (``addKubernetesResource``). The legacy ``net.host.name``/``net.host.port``/``http.scheme`` are
  behind ``receiver.prometheusreceiver.RemoveLegacyResourceAttributes`` (beta, i.e. on, since v0.101.0; the newest
  ``prom_to_otlp.go`` seen no longer has them at all), so they are not emitted.
- ``internal/transaction.go`` (the ``getMetrics``/``getOrCreateMetric`` code that uses ``mdata.ScopeName``): one
  ScopeMetrics whose scope name is ``internal/metadata.ScopeName`` =
  ``github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver`` and whose scope version is
  the collector's build version (``BuildInfo.Version``; :data:`RECEIVER_VERSION` stands in for it). Series carrying
  ``otel_scope_name``/``otel_scope_version`` labels would get scopes of their own; that is not emulated (our exporters
  never send those labels).
- ``internal/metricfamily.go`` (``appendMetric``, ``toNumberDataPoint``, ``toDistributionPoint``, ``toSummaryPoint``,
  ``populateAttributes``): counter -> Sum (cumulative, ``is_monotonic``), gauge and untyped/unknown -> Gauge,
  histogram -> Histogram (cumulative; bucket counts de-cumulated, the ``+Inf`` bound dropped from
  ``explicit_bounds``, the last bucket = ``_count`` minus the last finite bucket), summary -> Summary (quantiles sorted,
  ``_sum``, ``_count``). Every value is ``as_double``. Description = HELP; unit = ``UnitWordToUCUM(# UNIT)``, which is
  empty for the text format (it has no ``# UNIT`` line). Each metric gets the metadata entry ``prometheus.type`` =
  the Prometheus type (``counter``, ``gauge``, ``unknown``, ``histogram``, ``summary``). Data point attributes are the
  sample's labels in label-name order, without ``__name__``, ``job``, ``instance`` (and ``le``/``quantile`` for
  histograms/summaries), and without labels whose value is empty.
- ``internal/util.go`` (``convToMetricType``, ``normalizeMetricName``) and ``internal/metadata.go``
  (``metadataForMetric``, ``internalMetricMetadata``): a counter keeps the name it was exposed under, ``_total``
  included, because the metadata lookup by that exact name succeeds; suffixes are trimmed only when the receiver's
  ``trim_metric_suffixes`` option (experimental, default ``false``) is set. So by default ``_total`` is **kept**
  (``node_cpu_seconds_total`` stays ``node_cpu_seconds_total``; ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION``, a counter
  without the suffix, stays as it is). The five series the Prometheus scrape loop adds (``up``,
  ``scrape_duration_seconds`` [unit ``s``], ``scrape_samples_scraped``, ``scrape_samples_post_metric_relabeling``,
  ``scrape_series_added``) come out as gauges with the help texts of ``internalMetricMetadata``.
- ``internal/metadata/generated_feature_gates.go`` @ 9d8c8595115162b754771b107ee7c63e21d377c5:
  ``receiver.prometheusreceiver.RemoveStartTimeAdjustment`` is stable (v0.121.0 -> v0.142.0), so the receiver leaves
  ``start_time_unix_nano`` unset (0) on cumulative points unless the scrape carries created timestamps; the
  ``metricstarttime`` processor is the documented way to fill it. ``start_time_ns`` below emulates that processor.
  ``EnableReportExtraScrapeMetrics`` (alpha, off) is not emulated.

What Prometheus' scrape loop does before the receiver sees a sample is emulated too: timestamps are milliseconds
(a sample's own timestamp wins, ``honor_timestamps: true``), and exposed ``job``/``instance`` labels are renamed
``exported_job``/``exported_instance`` (``honor_labels: false``).

Not reproduced: the order of metrics inside the ScopeMetrics (older receivers iterate a Go map, so it is random;
here it is the order of first appearance in the exposition), OpenMetrics-only features (``_created``, exemplars,
``info``/``stateset``), native histograms, and staleness markers. Parsing is ``prometheus_client``'s text parser;
the only thing added on top is undoing its rename of counter samples (it appends ``_total`` to a counter whose
``# TYPE`` name lacks it, which neither Prometheus nor the receiver does).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

SCOPE_NAME = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver"
# the collector build version the scope carries; any recent otelcol-contrib release, the receiver takes it from
# BuildInfo.Version
RECEIVER_VERSION = "0.155.0"
METRIC_METADATA_TYPE_KEY = "prometheus.type"
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"

# internal/metadata.go internalMetricMetadata, in the order Prometheus' scrape loop appends them (scrape.go report())
SCRAPE_METRICS: tuple[tuple[str, str, str], ...] = (
    ("up", "The scraping was successful", ""),
    ("scrape_duration_seconds", "Duration of the scrape", "s"),
    ("scrape_samples_scraped", "The number of samples the target exposed", ""),
    (
        "scrape_samples_post_metric_relabeling",
        "The number of samples remaining after metric relabeling was applied",
        "",
    ),
    ("scrape_series_added", "The approximate number of new series in this scrape", ""),
)
SCRAPE_METRIC_NAMES = frozenset(name for name, _, _ in SCRAPE_METRICS)

# prom_to_otlp.go kubernetesDiscoveryToResourceAttributes (order fixed here; Go iterates a map)
_K8S_DISCOVERY_TO_RESOURCE: tuple[tuple[str, str], ...] = (
    ("__meta_kubernetes_pod_name", "k8s.pod.name"),
    ("__meta_kubernetes_pod_uid", "k8s.pod.uid"),
    ("__meta_kubernetes_pod_container_name", "k8s.container.name"),
    ("__meta_kubernetes_namespace", "k8s.namespace.name"),
    ("__meta_kubernetes_pod_node_name", "k8s.node.name"),
    ("__meta_kubernetes_node_name", "k8s.node.name"),
    ("__meta_kubernetes_endpoint_node_name", "k8s.node.name"),
)
_K8S_CONTROLLER_KIND_TO_RESOURCE = {
    "ReplicaSet": "k8s.replicaset.name",
    "DaemonSet": "k8s.daemonset.name",
    "StatefulSet": "k8s.statefulset.name",
    "Job": "k8s.job.name",
    "CronJob": "k8s.cronjob.name",
}
# pkg/translator/prometheus UnitWordToUCUM, the words a # UNIT line (OpenMetrics only) would commonly carry
_UNIT_WORD_TO_UCUM = {
    "days": "d",
    "hours": "h",
    "minutes": "min",
    "seconds": "s",
    "milliseconds": "ms",
    "microseconds": "us",
    "nanoseconds": "ns",
    "bytes": "By",
    "kibibytes": "KiBy",
    "mebibytes": "MiBy",
    "gibibytes": "GiBy",
    "kilobytes": "KBy",
    "megabytes": "MBy",
    "gigabytes": "GBy",
    "meters": "m",
    "volts": "V",
    "amperes": "A",
    "joules": "J",
    "watts": "W",
    "grams": "g",
    "celsius": "Cel",
    "hertz": "Hz",
    "percent": "%",
    "ratio": "1",
}
# labels the receiver never turns into attributes (util.go notUseful* lists)
_NOT_USEFUL = frozenset({"__name__", "instance", "job", "__scheme__", "__metrics_path__"})


@dataclass
class _NumberSeries:
    attributes: list[tuple[str, str]]
    time_ns: int
    value: float


@dataclass
class _HistogramGroup:
    attributes: list[tuple[str, str]]
    time_ns: int
    buckets: list[tuple[float, float]] = field(default_factory=list)
    total: float | None = None
    count: float | None = None


@dataclass
class _SummaryGroup:
    attributes: list[tuple[str, str]]
    time_ns: int
    quantiles: list[tuple[float, float]] = field(default_factory=list)
    total: float | None = None
    count: float | None = None


@dataclass
class _Metric:
    name: str
    kind: str  # gauge | sum | histogram | summary
    prom_type: str
    description: str
    unit: str
    numbers: list[_NumberSeries] = field(default_factory=list)
    histograms: dict[tuple[tuple[str, str], ...], _HistogramGroup] = field(default_factory=dict)
    summaries: dict[tuple[tuple[str, str], ...], _SummaryGroup] = field(default_factory=dict)


def read_fixture(relative_path: str) -> str:
    """The text of a file under ``tests/fixtures`` (e.g. ``dcgm/dcgm-exporter.prom``)."""
    return (FIXTURES_DIR / relative_path).read_text(encoding="utf-8")


def exposition_to_otlp(
    text: str,
    *,
    job: str,
    instance: str,
    timestamp_ns: int,
    start_time_ns: int | None = None,
    scheme: str = "http",
    discovered_labels: Mapping[str, str] | None = None,
    include_scrape_metrics: bool = True,
    scrape_duration_s: float = 0.05,
    receiver_version: str = RECEIVER_VERSION,
) -> ExportMetricsServiceRequest:
    """One scrape of ``text`` by a ``prometheus`` receiver job ``job`` on target ``instance`` at ``timestamp_ns``.

    ``start_time_ns`` sets ``start_time_unix_nano`` on the cumulative points (Sum, Histogram, Summary), as the
    ``metricstarttime`` processor would; ``None`` leaves it 0, as the receiver itself does. ``discovered_labels`` are
    the target's service-discovery labels (``__scheme__``, ``__meta_kubernetes_*``); ``include_scrape_metrics`` adds
    the five scrape-loop series (``scrape_series_added`` counts every sample, as on a target's first scrape).
    """
    scrape_ms = timestamp_ns // 1_000_000
    sd_labels = dict(discovered_labels or {})
    sd_labels.setdefault("__scheme__", scheme)
    counter_names = _counter_type_names(text)

    metrics: dict[str, _Metric] = {}
    samples_scraped = 0
    for family in text_string_to_metric_families(text):
        samples_scraped += len(family.samples)
        if family.type == "counter":
            for sample in family.samples:
                name = _exposed_counter_name(sample.name, counter_names)
                metric = _metric(metrics, name, "sum", "counter", family.documentation, family.unit)
                metric.numbers.append(_number(sample, scrape_ms))
        elif family.type in ("gauge", "unknown"):
            for sample in family.samples:
                metric = _metric(metrics, sample.name, "gauge", family.type, family.documentation, family.unit)
                metric.numbers.append(_number(sample, scrape_ms))
        elif family.type == "histogram":
            metric = _metric(metrics, family.name, "histogram", "histogram", family.documentation, family.unit)
            for sample in family.samples:
                _add_histogram_sample(metric, family.name, sample, scrape_ms)
        elif family.type == "summary":
            metric = _metric(metrics, family.name, "summary", "summary", family.documentation, family.unit)
            for sample in family.samples:
                _add_summary_sample(metric, family.name, sample, scrape_ms)
        else:
            raise ValueError(f"metric type {family.type!r} ({family.name}) does not exist in the text format 0.0.4")

    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.CopyFrom(create_resource(job, instance, sd_labels))
    scope_metrics = resource_metrics.scope_metrics.add()
    scope_metrics.scope.CopyFrom(InstrumentationScope(name=SCOPE_NAME, version=receiver_version))
    for metric in metrics.values():
        _append_metric(scope_metrics.metrics, metric, start_time_ns)
    if include_scrape_metrics:
        values = (1.0, scrape_duration_s, float(samples_scraped), float(samples_scraped), float(samples_scraped))
        for (name, description, unit), value in zip(SCRAPE_METRICS, values, strict=True):
            out = scope_metrics.metrics.add(name=name, description=description, unit=unit)
            out.metadata.append(_kv(METRIC_METADATA_TYPE_KEY, "gauge"))
            out.gauge.data_points.add(time_unix_nano=scrape_ms * 1_000_000, as_double=value)
    return request


def scrape_fixture(
    relative_path: str, *, job: str, instance: str, timestamp_ns: int, start_time_ns: int | None = None
) -> ExportMetricsServiceRequest:
    """:func:`exposition_to_otlp` of a file under ``tests/fixtures``."""
    return exposition_to_otlp(
        read_fixture(relative_path),
        job=job,
        instance=instance,
        timestamp_ns=timestamp_ns,
        start_time_ns=start_time_ns,
    )


def create_resource(job: str, instance: str, discovered_labels: Mapping[str, str]) -> Resource:
    """prom_to_otlp.go ``CreateResource`` with ``RemoveLegacyResourceAttributes`` in effect."""
    host, port = _split_host_port(instance)
    attributes = [_kv("service.name", job)]
    if _is_discernible_host(host):
        attributes.append(_kv("server.address", host))
    attributes.append(_kv("service.instance.id", instance))
    attributes.append(_kv("server.port", port))
    attributes.append(_kv("url.scheme", discovered_labels.get("__scheme__", "")))
    seen: set[str] = set()
    for sd_key, attribute in _K8S_DISCOVERY_TO_RESOURCE:
        value = discovered_labels.get(sd_key, "")
        if value and attribute not in seen:
            seen.add(attribute)
            attributes.append(_kv(attribute, value))
    controller_kind = discovered_labels.get("__meta_kubernetes_pod_controller_kind", "")
    controller_name = discovered_labels.get("__meta_kubernetes_pod_controller_name", "")
    if controller_kind in _K8S_CONTROLLER_KIND_TO_RESOURCE and controller_name:
        attributes.append(_kv(_K8S_CONTROLLER_KIND_TO_RESOURCE[controller_kind], controller_name))
    return Resource(attributes=attributes)


def _split_host_port(instance: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort``; on its error the receiver keeps the whole instance as host and no port."""
    if instance.startswith("["):
        end = instance.find("]")
        if end < 0 or not instance[end + 1 :].startswith(":"):
            return instance, ""
        return instance[1:end], instance[end + 2 :]
    if instance.count(":") != 1:
        return instance, ""
    host, port = instance.split(":")
    return host, port


def _is_discernible_host(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host != "localhost"
    return not (address.is_loopback or address.is_unspecified)


def _counter_type_names(text: str) -> frozenset[str]:
    """Names on ``# TYPE <name> counter`` lines, to undo prometheus_client's ``_total`` renaming of counter samples."""
    names = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "#" and parts[1] == "TYPE" and parts[3] == "counter":
            names.add(parts[2])
    return frozenset(names)


def _exposed_counter_name(sample_name: str, counter_names: frozenset[str]) -> str:
    if sample_name in counter_names:
        return sample_name
    if sample_name.endswith("_total") and sample_name[: -len("_total")] in counter_names:
        return sample_name[: -len("_total")]
    return sample_name


def _metric(metrics: dict[str, _Metric], name: str, kind: str, prom_type: str, help_text: str, unit: str) -> _Metric:
    metric = metrics.get(name)
    if metric is None:
        metric = _Metric(name, kind, prom_type, help_text, _UNIT_WORD_TO_UCUM.get(unit, unit))
        metrics[name] = metric
    elif metric.kind != kind:
        raise ValueError(f"{name} is exposed both as {metric.prom_type} and {prom_type}")
    return metric


def _attributes(labels: Mapping[str, str], drop: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """Labels after Prometheus' target-label merge (honor_labels: false) and the receiver's populateAttributes."""
    merged: dict[str, str] = {}
    for name, value in labels.items():
        while name in ("job", "instance") or name in merged:
            name = "exported_" + name
        merged[name] = value
    return sorted((k, v) for k, v in merged.items() if v != "" and k not in _NOT_USEFUL and k not in drop)


def _time_ns(sample: Sample, scrape_ms: int) -> int:
    if sample.timestamp is None:
        return scrape_ms * 1_000_000
    return round(float(sample.timestamp) * 1000) * 1_000_000


def _number(sample: Sample, scrape_ms: int) -> _NumberSeries:
    return _NumberSeries(_attributes(sample.labels), _time_ns(sample, scrape_ms), float(sample.value))


def _add_histogram_sample(metric: _Metric, base: str, sample: Sample, scrape_ms: int) -> None:
    attributes = _attributes(sample.labels, frozenset({"le"}))
    group = metric.histograms.setdefault(tuple(attributes), _HistogramGroup(attributes, _time_ns(sample, scrape_ms)))
    if sample.name == base + "_bucket":
        group.buckets.append((float(sample.labels["le"]), float(sample.value)))
    elif sample.name == base + "_sum":
        group.total = float(sample.value)
    elif sample.name == base + "_count":
        group.count = float(sample.value)
        group.time_ns = _time_ns(sample, scrape_ms)  # the receiver takes a histogram's timestamp from _count


def _add_summary_sample(metric: _Metric, base: str, sample: Sample, scrape_ms: int) -> None:
    attributes = _attributes(sample.labels, frozenset({"quantile"}))
    group = metric.summaries.setdefault(tuple(attributes), _SummaryGroup(attributes, _time_ns(sample, scrape_ms)))
    if sample.name == base + "_sum":
        group.total = float(sample.value)
    elif sample.name == base + "_count":
        group.count = float(sample.value)
        group.time_ns = _time_ns(sample, scrape_ms)
    else:
        group.quantiles.append((float(sample.labels["quantile"]), float(sample.value)))


def _append_metric(
    out: RepeatedCompositeFieldContainer[metrics_pb2.Metric], metric: _Metric, start_time_ns: int | None
) -> None:
    start = start_time_ns or 0
    message = out.add(name=metric.name, description=metric.description, unit=metric.unit)
    message.metadata.append(_kv(METRIC_METADATA_TYPE_KEY, metric.prom_type))
    if metric.kind == "gauge":
        for series in metric.numbers:
            message.gauge.data_points.add(
                attributes=_kvs(series.attributes), time_unix_nano=series.time_ns, as_double=series.value
            )
    elif metric.kind == "sum":
        message.sum.aggregation_temporality = CUMULATIVE
        message.sum.is_monotonic = True
        for series in metric.numbers:
            message.sum.data_points.add(
                attributes=_kvs(series.attributes),
                start_time_unix_nano=start,
                time_unix_nano=series.time_ns,
                as_double=series.value,
            )
    elif metric.kind == "histogram":
        message.histogram.aggregation_temporality = CUMULATIVE
        for group in metric.histograms.values():
            if group.count is None:
                continue  # toDistributionPoint: no _count, no point
            _histogram_point(message.histogram.data_points.add(), group, start)
    else:
        for summary in metric.summaries.values():
            if summary.count is None:
                continue
            point = message.summary.data_points.add(
                attributes=_kvs(summary.attributes),
                start_time_unix_nano=start,
                time_unix_nano=summary.time_ns,
                count=int(summary.count),
            )
            if summary.total is not None:
                point.sum = summary.total
            for quantile, value in sorted(summary.quantiles):
                point.quantile_values.add(quantile=quantile, value=value)


def _histogram_point(point: metrics_pb2.HistogramDataPoint, group: _HistogramGroup, start: int) -> None:
    assert group.count is not None
    buckets = sorted(group.buckets)
    bucket_count = len(buckets) + 1
    if bucket_count > 1 and math.isinf(buckets[bucket_count - 2][0]):
        bucket_count -= 1
    bounds = [buckets[i][0] for i in range(bucket_count - 1)]
    counts = [int(buckets[i][1] - (buckets[i - 1][1] if i else 0.0)) for i in range(bucket_count - 1)]
    counts.append(int(group.count - (buckets[bucket_count - 2][1] if bucket_count > 1 else 0.0)))
    point.attributes.extend(_kvs(group.attributes))
    point.start_time_unix_nano = start
    point.time_unix_nano = group.time_ns
    point.count = int(group.count)
    if group.total is not None:
        point.sum = group.total
    point.explicit_bounds.extend(bounds)
    point.bucket_counts.extend(counts)


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _kvs(pairs: Iterable[tuple[str, str]]) -> list[KeyValue]:
    return [_kv(k, v) for k, v in pairs]
