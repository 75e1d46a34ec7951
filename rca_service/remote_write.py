"""Forward what the RCA service ingests, and its findings, to a Prometheus remote-write endpoint.

Prometheus 2.42 has no OTLP receiver and the embedded collector (rotel) no Prometheus exporter, so
series that arrive only as OTLP (training, serving, cost) reach Prometheus through here: every point
with its own timestamp, pushed to Prometheus (``--web.enable-remote-write-receiver``), Mimir or
VictoriaMetrics, in the shape otelcol-contrib's ``prometheusremotewrite`` exporter gives them in
production (without ``resource_to_telemetry_conversion``), so dashboards read one name whichever
route a series took.

Protocol: remote-write 1.0, a snappy-compressed (block format) ``prometheus.WriteRequest`` from the
vendored prompb protos (``api/proto/prometheus/prompb``), POSTed with the spec's headers.

Degradation, never blocking ingest: samples wait in a bounded queue (the oldest are dropped when it
is full); a request that fails with a 5xx, a 429 or a connection error is retried with capped
exponential back-off for up to ``retry_max_elapsed_s``; a 4xx is not retried (Prometheus answers 400
to out-of-order and duplicate samples, expected after a restart). Every sample ends counted as sent,
dropped or failed (``factorylens.rca.remote_write.samples``), and failures are logged at most once
per 30 s per kind.
"""

from __future__ import annotations

import base64
import bisect
import collections
import http.client
import itertools
import logging
import math
import ssl
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import cramjam
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from factorylens import __version__
from factorylens.rca_service._ratelimit import RateLimitedLog
from factorylens.rca_service.api.prompb import remote_pb2, types_pb2
from factorylens.rca_service.store import MAX_BUCKETS, MAX_QUANTILES, AttributeDecoder
from factorylens.registry import REGISTRY, Attributes, Instrument, Metrics, prometheus_label, prometheus_name

log = logging.getLogger(__name__)
limited_log = RateLimitedLog(log)

Labels = tuple[tuple[str, str], ...]  # sorted by name, __name__ included
Sample = tuple[Labels, int, float]  # labels, timestamp in ms, value
TimedPoints = Iterable[tuple[Mapping[str, Any], float, int]]

CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
NO_RECORDED_VALUE = 1  # DataPointFlags.FLAG_NO_RECORDED_VALUE: the series ended
# Prometheus's staleness marker: a NaN with this bit pattern ends a series at that time
STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
# resource attributes that identify where a series comes from, kept as labels (bounded cardinality:
# one value per host, pod, job, rank); the rest are dropped, as prometheusremotewrite does without
# resource_to_telemetry_conversion (they would be target_info in Prometheus's OTLP model)
IDENTITY_RESOURCE_ATTRIBUTES = frozenset(
    (
        Attributes.HOST_NAME,
        Attributes.HW_ID,
        Attributes.FACTORYLENS_CLUSTER_NAME,
        Attributes.FACTORYLENS_JOB_ID,
        Attributes.FACTORYLENS_TEAM,
        Attributes.FACTORYLENS_RANK,
        Attributes.SLURM_JOB_ID,
    )
)
IDENTITY_RESOURCE_PREFIXES = ("k8s.",)
MAX_CACHED_LABEL_SETS = 200_000  # translation caches are cleared past this (rebuilt on demand)
HTTP_ERROR_BODY_BYTES = 1024
_STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
# reasons a sample is dropped or failed (a closed set: they are label values on /metrics)
QUEUE_FULL = "queue full"
DELTA = "delta temporality"
OUT_OF_ORDER = "out of order or duplicate"
TOO_OLD = "older than max age"
TOO_NEW = "ahead of the clock"
MAX_AHEAD_S = 300.0  # a sample further ahead would move Prometheus's head and make it refuse the present
INVALID = "invalid point"
SHUTDOWN = "unsent at shutdown"
REJECTED = "rejected"
RETRIES_EXHAUSTED = "retries exhausted"
INTERNAL = "internal error"


@dataclass(frozen=True)
class RemoteWriteConfig:
    """
    :param url: the endpoint, e.g. ``http://prometheus:9090/api/v1/write``
    :param bearer_token: sent as ``Authorization: Bearer``; or ``basic_auth`` (user, password)
    :param headers: extra headers (e.g. Mimir's ``X-Scope-OrgID``)
    :param ca_file: CA bundle that signed an https endpoint's certificate (default: the system's)
    :param timeout_s: connect and response timeout of one request
    :param interval_s: a sample waits at most this long for its batch to fill
    :param max_queue_samples: samples held while Prometheus is slow or down; the oldest are dropped beyond
    :param max_samples_per_request: batch size (Prometheus's own default is 2000)
    :param max_sample_age_s: older samples are dropped before sending: Prometheus refuses samples
        more than an hour behind its newest (out of bounds), and the whole request with them
    :param retry_initial_s: first back-off after a retryable failure, doubled each time
    :param retry_max_backoff_s: cap of the back-off
    :param retry_max_elapsed_s: a batch is given up (failed) after retrying this long
    :param max_tracked_series: series whose last sent time is kept to drop out-of-order samples
        before they reach Prometheus (beyond this the table starts over)
    """

    url: str
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    ca_file: str = ""
    timeout_s: float = 10.0
    interval_s: float = 5.0
    max_queue_samples: int = 100_000
    max_samples_per_request: int = 2000
    max_sample_age_s: float = 3600.0
    retry_initial_s: float = 0.5
    retry_max_backoff_s: float = 30.0
    retry_max_elapsed_s: float = 300.0
    max_tracked_series: int = 500_000

    def validate(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"remote-write URL {self.url!r}: expected http(s)://HOST[:PORT]/PATH")
        if parts.username or parts.password:
            raise ValueError("remote-write URL: put credentials in a token or password file, not in the URL")
        if self.bearer_token and self.basic_auth:
            raise ValueError("remote-write: a bearer token or basic auth, not both")
        positive = ("timeout_s", "interval_s", "max_queue_samples", "max_samples_per_request", "max_sample_age_s")
        for name in (*positive, "retry_initial_s", "retry_max_backoff_s", "max_tracked_series"):
            if not getattr(self, name) > 0:
                raise ValueError(f"remote-write {name}={getattr(self, name)!r} must be positive")
        if self.retry_max_elapsed_s < 0:
            raise ValueError("remote-write retry_max_elapsed_s must be >= 0")


class OtlpTranslator:
    """OTLP metrics → Prometheus samples, named as the collector's translator names them.

    Our metrics keep the registry's ``prometheus_name`` (the name ``/metrics`` and the dashboards
    use); any other metric gets the same translation from its OTLP name, unit and type. Delta sums
    and delta histograms are not translated (a Prometheus series is cumulative) and are counted.
    """

    def __init__(self) -> None:
        self._decoder = AttributeDecoder()  # the store's limits, its own truncation count
        self._resources: dict[bytes, dict[str, str]] = {}
        self._names: dict[tuple[str, str, Instrument], str | None] = {}
        # a point's series (one, or a histogram's buckets, sum and count), by its attributes' bytes
        self._series: dict[tuple[Any, ...], tuple[Labels, ...]] = {}
        self._cached = 0  # label sets held in _series
        self._lock = threading.Lock()

    def translate(self, request: ExportMetricsServiceRequest) -> tuple[list[Sample], collections.Counter[str]]:
        """The request's samples, and the points left out by reason (one request at a time: the ingest
        threads share the caches)."""
        with self._lock:
            return self._translate(request)

    def _translate(self, request: ExportMetricsServiceRequest) -> tuple[list[Sample], collections.Counter[str]]:
        samples: list[Sample] = []
        skipped: collections.Counter[str] = collections.Counter()
        for rm in request.resource_metrics:
            raw = rm.resource.SerializeToString()
            resource = self._resources.get(raw)
            if resource is None:
                if len(self._resources) >= MAX_CACHED_LABEL_SETS:
                    self._resources.clear()
                resource = self._resources[raw] = resource_labels(self._decoder.attributes(rm.resource.attributes))
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    self._metric(raw, resource, metric, samples, skipped)
        return samples, skipped

    def _name(self, name: str, unit: str, instrument: Instrument) -> str | None:
        key = (name, unit, instrument)
        if key not in self._names:
            if len(self._names) >= MAX_CACHED_LABEL_SETS:
                self._names.clear()
            try:
                self._names[key] = REGISTRY.metric(name).prometheus_name
            except KeyError:
                self._names[key] = _translate_name(name, unit, instrument)
        return self._names[key]

    def _label_sets(
        self,
        resource_key: bytes,
        resource: dict[str, str],
        point: Any,
        shape: tuple[Any, ...],
        build: Callable[[dict[str, str]], tuple[Labels, ...]],
    ) -> tuple[Labels, ...]:
        """The point's series' labels, built once per attribute set and ``shape`` (the name, plus a
        histogram's bounds or a summary's quantiles)."""
        key = (resource_key, shape, *[kv.SerializeToString() for kv in point.attributes])
        found = self._series.get(key)
        if found is None:
            found = build({**attribute_labels(self._decoder.attributes(point.attributes)), **resource})
            if self._cached + len(found) > MAX_CACHED_LABEL_SETS:
                self._series.clear()
                self._cached = 0
            self._series[key] = found
            self._cached += len(found)
        return found

    def _metric(
        self,
        resource_key: bytes,
        resource: dict[str, str],
        metric: Any,
        out: list[Sample],
        skipped: collections.Counter[str],
    ) -> None:
        data = metric.WhichOneof("data")
        if data == "gauge":
            self._scalars(resource_key, resource, metric, metric.gauge.data_points, Instrument.GAUGE, out, skipped)
        elif data == "sum":
            s = metric.sum
            if s.aggregation_temporality != CUMULATIVE:
                skipped[DELTA] += len(s.data_points)
                return
            instrument = Instrument.COUNTER if s.is_monotonic else Instrument.UPDOWNCOUNTER
            self._scalars(resource_key, resource, metric, s.data_points, instrument, out, skipped)
        elif data in ("histogram", "exponential_histogram"):
            histogram = getattr(metric, data)
            if histogram.aggregation_temporality != CUMULATIVE:
                skipped[DELTA] += len(histogram.data_points)
                return
            self._histograms(resource_key, resource, metric, histogram.data_points, data != "histogram", out, skipped)
        elif data == "summary":
            self._summaries(resource_key, resource, metric, out, skipped)

    def _scalars(
        self,
        resource_key: bytes,
        resource: dict[str, str],
        metric: Any,
        points: Any,
        instrument: Instrument,
        out: list[Sample],
        skipped: collections.Counter[str],
    ) -> None:
        name = self._name(metric.name, metric.unit, instrument)
        if name is None:
            skipped[INVALID] += len(points)
            return
        shape = (name,)

        def build(base: dict[str, str]) -> tuple[Labels, ...]:
            return (_with(base, name),)

        for point in points:
            ts = point.time_unix_nano // 1_000_000
            if not ts:
                skipped[INVALID] += 1
                continue
            (labels,) = self._label_sets(resource_key, resource, point, shape, build)
            out.append((labels, ts, STALE_NAN if point.flags & NO_RECORDED_VALUE else _number(point)))

    def _histograms(
        self,
        resource_key: bytes,
        resource: dict[str, str],
        metric: Any,
        points: Any,
        exponential: bool,
        out: list[Sample],
        skipped: collections.Counter[str],
    ) -> None:
        """``_bucket{le}`` (cumulative counts, ``+Inf`` = the count), ``_sum`` (when recorded), ``_count``."""
        name = self._name(metric.name, metric.unit, Instrument.HISTOGRAM)
        if name is None:
            skipped[INVALID] += len(points)
            return
        for point in points:
            ts = point.time_unix_nano // 1_000_000
            try:
                buckets = _exponential_buckets(point) if exponential else _explicit_buckets(point)
            except (ValueError, OverflowError):
                buckets = None
            if not ts or buckets is None or len(buckets) > MAX_BUCKETS:  # the store refuses such points too
                skipped[INVALID] += 1
                continue
            uppers = tuple(upper for upper, _ in buckets)
            has_sum = point.HasField("sum")

            def build(
                base: dict[str, str], uppers: tuple[float, ...] = uppers, has_sum: bool = has_sum
            ) -> tuple[Labels, ...]:
                les = [*(_format_float(u) for u in uppers), "+Inf"]
                totals = ("_sum", "_count") if has_sum else ("_count",)
                return (
                    *(_with(base, name + "_bucket", ("le", le)) for le in les),
                    *(_with(base, name + suffix) for suffix in totals),
                )

            label_sets = self._label_sets(resource_key, resource, point, (name, uppers, has_sum), build)
            count = float(point.count)
            values = [*itertools.accumulate(count for _, count in buckets), count]
            values += [point.sum, count] if has_sum else [count]
            if point.flags & NO_RECORDED_VALUE:
                values = [STALE_NAN] * len(values)
            out.extend((labels, ts, value) for labels, value in zip(label_sets, values, strict=True))

    def _summaries(
        self,
        resource_key: bytes,
        resource: dict[str, str],
        metric: Any,
        out: list[Sample],
        skipped: collections.Counter[str],
    ) -> None:
        """A series per quantile (``quantile`` label), ``_sum`` and ``_count``."""
        points = metric.summary.data_points
        name = self._name(metric.name, metric.unit, Instrument.UPDOWNCOUNTER)  # the unit, no suffix
        if name is None:
            skipped[INVALID] += len(points)
            return
        for point in points:
            ts = point.time_unix_nano // 1_000_000
            if not ts or len(point.quantile_values) > MAX_QUANTILES:  # the store refuses such points too
                skipped[INVALID] += 1
                continue
            quantiles = tuple(q.quantile for q in point.quantile_values)

            def build(base: dict[str, str], quantiles: tuple[float, ...] = quantiles) -> tuple[Labels, ...]:
                return (
                    *(_with(base, name, ("quantile", _format_float(q))) for q in quantiles),
                    _with(base, name + "_sum"),
                    _with(base, name + "_count"),
                )

            label_sets = self._label_sets(resource_key, resource, point, (name, quantiles), build)
            values = [*(q.value for q in point.quantile_values), point.sum, float(point.count)]
            if point.flags & NO_RECORDED_VALUE:
                values = [STALE_NAN] * len(values)
            out.extend((labels, ts, value) for labels, value in zip(label_sets, values, strict=True))


def resource_labels(attributes: Mapping[str, Any]) -> dict[str, str]:
    """``job`` (``service.namespace/service.name``), ``instance`` (``service.instance.id``) and the
    identity attributes (host, Kubernetes, job, team, rank, device) as labels."""
    labels = attribute_labels(
        {
            k: v
            for k, v in attributes.items()
            if k in IDENTITY_RESOURCE_ATTRIBUTES or k.startswith(IDENTITY_RESOURCE_PREFIXES)
        }
    )
    service = attributes.get(Attributes.SERVICE_NAME)
    if service not in (None, ""):
        namespace = attributes.get("service.namespace")
        labels["job"] = f"{_text(namespace)}/{_text(service)}" if namespace else _text(service)
    instance = attributes.get("service.instance.id")
    if instance not in (None, ""):
        labels["instance"] = _text(instance)
    return labels


def attribute_labels(attributes: Mapping[str, Any]) -> dict[str, str]:
    """Attributes → labels; keys that collide once sanitized (``a.b``, ``a_b``) join their values
    with ``;`` as the collector does; empty values are left out (Prometheus reads them as absent)."""
    labels: dict[str, str] = {}
    for key in sorted(attributes):
        name, value = label_name(key), _text(attributes[key])
        if not name or not value:
            continue
        labels[name] = f"{labels[name]};{value}" if name in labels else value
    return labels


def label_name(key: str) -> str:
    """The collector's label normalization: invalid characters → ``_``, a leading digit gets
    ``key_``, a single leading underscore ``key``."""
    name = prometheus_label(key)
    if name[:1].isdigit():
        return "key_" + name
    if name.startswith("_") and not name.startswith("__"):
        return "key" + name
    return name


def _translate_name(name: str, unit: str, instrument: Instrument) -> str | None:
    if not any(c.isalnum() for c in name):
        return None
    translated = prometheus_name(name, unit, instrument)
    return "_" + translated if translated[:1].isdigit() else translated


def _with(base: Mapping[str, str], name: str, *extra: tuple[str, str]) -> Labels:
    return tuple(sorted({**base, **dict(extra), "__name__": name}.items()))


def _number(point: Any) -> float:
    return point.as_double if point.WhichOneof("value") == "as_double" else float(point.as_int)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _format_float(value)
    return str(value)


def _format_float(value: float) -> str:
    """As Go's ``strconv.FormatFloat(v, 'f', -1, 64)``, which the collector and Prometheus use for
    ``le`` and ``quantile``: ``1``, ``0.005``, ``+Inf`` (never ``1.0`` or ``5e-03``)."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# the fixed ``le`` grid of exponential histograms (see _exponential_buckets)
POSITIVE_GRID_EDGES: tuple[float, ...] = tuple(2.0 ** (k / 2) for k in range(-40, 61))
GRID_EDGES: tuple[float, ...] = (0.0, *POSITIVE_GRID_EDGES)
MIRRORED_GRID_EDGES: tuple[float, ...] = (*(-e for e in reversed(POSITIVE_GRID_EDGES)), *GRID_EDGES)
GRID_TOLERANCE = 1e-9  # an edge computed as 2^(i/2^scale) lands on its grid edge despite rounding


def _explicit_buckets(point: Any) -> list[tuple[float, float]] | None:
    bounds, counts = list(point.explicit_bounds), list(point.bucket_counts)
    if not counts:
        return []
    if len(counts) != len(bounds) + 1 or not all(map(math.isfinite, bounds)):
        return None
    return list(zip(bounds, map(float, counts), strict=False))  # the last count is the +Inf bucket's


def _exponential_buckets(point: Any) -> list[tuple[float, float]] | None:
    """An exponential histogram as classic buckets on one fixed grid of ``le`` (0 and the powers of √2
    from 2⁻²⁰ to 2³⁰; negative values, when there are any, on its mirror), so that ``histogram_quantile`` works without
    Prometheus's native histograms and ``sum by (le)`` adds series of different scales and ranges
    (each exponential series has its own bucket edges: summed as they are, a replica's top edge
    missing from the others put the fleet's p95 in ``+Inf``). A bucket counts under the first grid
    edge at or above its own upper edge: exact at scales 1 and above, whose edges hold the grid's."""
    if not -10 <= point.scale <= 20:
        return None
    base = 2.0 ** (2.0**-point.scale)
    edges: list[tuple[float, float]] = []  # every bucket's upper edge and count, lowest first
    negative = point.negative
    for i in reversed(range(len(negative.bucket_counts))):  # the most negative first
        edges.append((-(base ** (negative.offset + i)), float(negative.bucket_counts[i])))
    edges.append((0.0, float(point.zero_count)))  # the zero bucket (within its threshold) under le="0"
    positive = point.positive
    for i, count in enumerate(positive.bucket_counts):
        edges.append((base ** (positive.offset + i + 1), float(count)))
    grid = GRID_EDGES if not any(count for edge, count in edges if edge < 0) else MIRRORED_GRID_EDGES
    counts = [0.0] * len(grid)
    for edge, count in edges:
        slot = bisect.bisect_left(grid, edge * (1.0 - GRID_TOLERANCE) if edge > 0 else edge * (1.0 + GRID_TOLERANCE))
        if slot < len(grid):
            counts[slot] += count  # above the grid's top edge: only in +Inf
    return list(zip(grid, counts, strict=True))


def _labels_of(metric: str, attributes: Mapping[str, Any], resource: Mapping[str, str]) -> Labels | None:
    try:
        name = REGISTRY.metric(metric).prometheus_name
    except KeyError:
        return None
    return _with({**attribute_labels(attributes), **resource}, name)


class RemoteWriteExporter:
    """Ingested points and findings → bounded queue → one sender thread → remote-write.

    Lifecycle: :meth:`start`, then :meth:`export_metrics` (an ingest listener, never blocks) and
    :meth:`export_findings`; :meth:`force_flush` sends what is queued now; :meth:`shutdown` flushes
    within a bound and counts what is left as dropped.
    """

    def __init__(self, config: RemoteWriteConfig, *, clock: Callable[[], float] = time.time) -> None:
        config.validate()
        self.config = config
        self.translator = OtlpTranslator()
        # labels of the findings' own series: job/instance of this service (set once it is bound)
        self.findings_resource: dict[str, str] = {"job": "factorylens-rca"}
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: collections.deque[Sample] = collections.deque()
        self._last_sent: dict[Labels, int] = {}  # series → newest timestamp queued (the order guard)
        self._in_flight = 0
        self._flushes = 0
        self._stopping = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._retries = 0
        self._http = _Http(config)

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rca-remote-write", daemon=True)
        self._thread.start()
        log.info("forwarding metrics and findings to Prometheus remote-write at %s", self.config.url)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Send everything queued now; True when all of it was handled (sent, failed or dropped)
        within the timeout."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._cond:
            self._flushes += 1
            self._cond.notify_all()
            try:
                while self._queue or self._in_flight:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._flushes -= 1

    def shutdown(self, timeout_millis: int = 5_000) -> None:
        """Flush for at most ``timeout_millis``, then stop; samples still queued are counted as dropped."""
        began = time.monotonic()
        self.force_flush(timeout_millis)
        with self._cond:
            self._stopping = True
            self._stop.set()
            self._cond.notify_all()
        if self._thread is not None:
            left = max(0.0, timeout_millis / 1000 - (time.monotonic() - began))
            self._thread.join(left + self.config.timeout_s)
        with self._cond:
            self._count("dropped", SHUTDOWN, len(self._queue))
            self._queue.clear()
        self._http.close()

    # ---- input ---------------------------------------------------------------------------------
    def export_metrics(self, request: ExportMetricsServiceRequest) -> None:
        """Queue a stored request's points (the ingest listener): translation, then a bounded append."""
        samples, skipped = self.translator.translate(request)
        with self._cond:
            for reason, n in skipped.items():
                self._count("dropped", reason, n)
        self._enqueue(samples, findings=False)

    def export_findings(self, findings: Mapping[str, TimedPoints]) -> None:
        """Queue the findings (registry metric → ``[(attributes, value, time_unix_nano)]``); a series'
        point already sent (the same latest analysed point) is not sent again."""
        samples: list[Sample] = []
        for metric, points in findings.items():
            for attributes, value, at in points:
                labels = _labels_of(metric, attributes, self.findings_resource)
                if labels is not None:
                    samples.append((labels, at // 1_000_000, float(value)))
        self._enqueue(samples, findings=True)

    def _enqueue(self, samples: list[Sample], *, findings: bool) -> None:
        cfg = self.config
        now = self._clock()
        oldest, newest = int((now - cfg.max_sample_age_s) * 1000), int((now + MAX_AHEAD_S) * 1000)
        with self._cond:
            last = self._last_sent
            if len(last) + len(samples) > cfg.max_tracked_series:
                last.clear()  # the guard starts over; Prometheus itself still refuses what is out of order
            for sample in samples:
                labels, ts, _ = sample
                previous = last.get(labels)
                if previous is not None and ts <= previous:
                    if not findings:
                        self._count("dropped", OUT_OF_ORDER)
                    continue
                if ts < oldest:
                    if not findings:  # a finding for a series that stopped long ago: nothing new
                        self._count("dropped", TOO_OLD)
                    continue
                if ts > newest:
                    self._count("dropped", TOO_NEW)
                    continue
                last[labels] = ts
                self._queue.append(sample)
            overflow = len(self._queue) - cfg.max_queue_samples
            if overflow > 0:
                for _ in range(overflow):
                    self._queue.popleft()
                self._count("dropped", QUEUE_FULL, overflow)
                limited_log.log(
                    logging.WARNING,
                    "queue full",
                    "remote-write queue full (%d samples; Prometheus at %s slow or down?): the oldest are "
                    "dropped (raise --remote-write-queue to ride out longer outages)",
                    cfg.max_queue_samples,
                    cfg.url,
                )
            self._cond.notify_all()

    def _count(self, outcome: str, reason: str, n: int = 1) -> None:
        """Called with ``self._cond`` held."""
        if n:
            self._counts[(outcome, reason)] += n

    # ---- sending -------------------------------------------------------------------------------
    def _run(self) -> None:
        cfg = self.config
        while True:
            with self._cond:
                deadline = None  # a batch that is not full leaves at most interval_s after the sender saw it
                while not self._stopping:
                    if not self._queue:
                        deadline = None
                        self._cond.wait()
                        continue
                    if deadline is None:
                        deadline = time.monotonic() + cfg.interval_s
                    if self._flushes or len(self._queue) >= cfg.max_samples_per_request or time.monotonic() >= deadline:
                        break
                    self._cond.wait(deadline - time.monotonic())
                if self._stopping:
                    return
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), cfg.max_samples_per_request))]
                self._in_flight = len(batch)
            try:
                self._send(batch)
            except Exception:
                with self._cond:
                    self._count("failed", INTERNAL, len(batch))
                log.exception("remote-write: sending a batch failed unexpectedly; its samples are dropped")
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()

    def _send(self, batch: list[Sample]) -> None:
        cfg = self.config
        body = bytes(cramjam.snappy.compress_raw(_write_request(batch).SerializeToString()))
        began = time.monotonic()
        delay = cfg.retry_initial_s
        while True:
            status, detail, retry_after_s = self._http.post(body)
            if 200 <= status < 300:
                with self._cond:
                    self._count("sent", "", len(batch))
                return
            if status and status != 429 and status < 500:
                with self._cond:
                    self._count("failed", REJECTED, len(batch))
                self._log_rejected(status, detail, len(batch))
                return
            wait = min(max(delay, retry_after_s or 0.0), cfg.retry_max_backoff_s)
            if time.monotonic() - began + wait > cfg.retry_max_elapsed_s:
                with self._cond:
                    self._count("failed", RETRIES_EXHAUSTED, len(batch))
                limited_log.log(
                    logging.WARNING,
                    "retries exhausted",
                    "remote-write to %s failed for %.0f s (%s): %d samples given up",
                    cfg.url,
                    time.monotonic() - began,
                    detail,
                    len(batch),
                )
                return
            limited_log.log(
                logging.WARNING,
                "retrying",
                "remote-write to %s failed (%s); retrying with back-off (the queue holds up to %d samples)",
                cfg.url,
                detail,
                cfg.max_queue_samples,
            )
            with self._cond:
                self._retries += 1
            if self._stop.wait(wait):
                with self._cond:
                    self._count("dropped", SHUTDOWN, len(batch))
                return
            delay = min(delay * 2, cfg.retry_max_backoff_s)

    def _log_rejected(self, status: int, detail: str, samples: int) -> None:
        lowered = detail.lower()
        if "out of order" in lowered or "duplicate" in lowered or "out of bounds" in lowered:
            # after a restart the same samples arrive again, or a late point reaches a series that
            # moved on: Prometheus refuses the request; expected, so quietly
            limited_log.log(
                logging.INFO,
                "out of order",
                "Prometheus refused a remote-write request of %d samples (HTTP %d: %s)",
                samples,
                status,
                detail,
            )
        else:
            limited_log.log(
                logging.WARNING,
                "rejected",
                "Prometheus at %s refused a remote-write request of %d samples (HTTP %d: %s); not retried",
                self.config.url,
                samples,
                status,
                detail,
            )

    # ---- own health ----------------------------------------------------------------------------
    def health_series(self) -> dict[str, list[tuple[Mapping[str, Any], float]]]:
        """This exporter's counters for ``/metrics``; names are in the registry."""
        with self._cond:
            counts = sorted(self._counts.items())
            depth = len(self._queue) + self._in_flight
            retries = self._retries
        return {
            Metrics.FACTORYLENS_RCA_REMOTE_WRITE_SAMPLES: [
                ({Attributes.FACTORYLENS_RCA_OUTCOME: outcome, Attributes.FACTORYLENS_RCA_REASON: reason}, n)
                for (outcome, reason), n in counts
            ],
            Metrics.FACTORYLENS_RCA_REMOTE_WRITE_QUEUE_DEPTH: [({}, depth)],
            Metrics.FACTORYLENS_RCA_REMOTE_WRITE_RETRIES: [({}, retries)],
        }

    def counts(self) -> dict[tuple[str, str], int]:
        """Samples by (outcome, reason) so far."""
        with self._cond:
            return dict(self._counts)


def _write_request(batch: list[Sample]) -> remote_pb2.WriteRequest:
    """One ``TimeSeries`` per label set, its samples in time order (the order guard queued them so)."""
    series: dict[Labels, list[tuple[int, float]]] = {}
    for labels, ts, value in batch:
        series.setdefault(labels, []).append((ts, value))
    return remote_pb2.WriteRequest(
        timeseries=[
            types_pb2.TimeSeries(
                labels=[types_pb2.Label(name=n, value=v) for n, v in labels],
                samples=[types_pb2.Sample(value=v, timestamp=t) for t, v in points],
            )
            for labels, points in series.items()
        ]
    )


class _Http:
    """One kept-alive HTTP(S) connection to the endpoint, opened again after any error."""

    def __init__(self, config: RemoteWriteConfig) -> None:
        parts = urllib.parse.urlsplit(config.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout_s = config.timeout_s
        self._context = ssl.create_default_context(cafile=config.ca_file or None) if self._https else None
        self._headers = {
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "User-Agent": f"factorylens/{__version__}",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
            **config.headers,
        }
        if config.bearer_token:
            self._headers["Authorization"] = f"Bearer {config.bearer_token}"
        elif config.basic_auth:
            user, password = config.basic_auth
            self._headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            if self._https:
                self._connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout_s, context=self._context
                )
            else:
                self._connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        return self._connection

    def post(self, body: bytes) -> tuple[int, str, float | None]:
        """``(status, what went wrong, Retry-After seconds)``; status 0 for a connection error. A
        kept-alive connection the server closed meanwhile (its idle timeout) is tried once more on a
        new one before that counts as a failure."""
        reused = self._connection is not None
        try:
            return self._post(body)
        except _STALE_CONNECTION as exc:
            self.close()
            if not reused:
                return 0, f"{type(exc).__name__}: {exc}", None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return 0, f"{type(exc).__name__}: {exc}", None
        try:
            return self._post(body)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return 0, f"{type(exc).__name__}: {exc}", None

    def _post(self, body: bytes) -> tuple[int, str, float | None]:
        connection = self._connect()
        connection.request("POST", self._path, body=body, headers=self._headers)
        response = connection.getresponse()
        text = response.read(HTTP_ERROR_BODY_BYTES)
        if not response.isclosed():  # an unread rest: the connection cannot be reused
            self.close()
        detail = f"HTTP {response.status}: {text.decode(errors='replace').strip()[:200]}"
        return response.status, detail, _retry_after(response.getheader("Retry-After"))

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _retry_after(header: str | None) -> float | None:
    try:
        return float(header) if header else None
    except ValueError:
        return None  # an HTTP date: the back-off decides
