"""What leaves the RCA service: ``/metrics`` (its health and findings) and incidents as OTLP log
records, plus the incidents file that keeps them across restarts."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader

from factorylens import __version__
from factorylens.rca_service.analysis import Analyzer, Incident, IncidentChange, IncidentState
from factorylens.rca_service.baselines import workload_predictability
from factorylens.rca_service.ingest import IngestStats
from factorylens.rca_service.store import SeriesInfo, SeriesStore
from factorylens.rca_service.wal import WriteAheadLog
from factorylens.registry import RCA_SERVICE, REGISTRY, Attributes, Domain, Events, Instrument, Metrics
from factorylens.telemetry import make_logger_provider, make_meter_provider, make_resource

log = logging.getLogger(__name__)

Points = list[tuple[Mapping[str, Any], float]]
TimedPoints = list[tuple[Mapping[str, Any], float, int]]
MAX_SCORED_SERIES = 200
MAX_KPIS_EXPORTED = 1000
MAX_CAUSES_EXPORTED = 5
INCIDENT_EVENT = Events.FACTORYLENS_INCIDENT


def health_series(
    stats: IngestStats,
    store: SeriesStore,
    wal: WriteAheadLog,
    analyzer: Analyzer,
    snapshot_age_s: Callable[[], float],
    store_stats: dict[str, int] | None = None,
) -> dict[str, Points]:
    """``{metric: [(attributes, value)]}`` for the Prometheus collector; names are in the registry.
    ``store_stats``: the store's counts when the caller keeps them (counting walks every series)."""
    store_stats = store_stats or store.stats()
    accepted, rejected, refused = stats.copy()
    findings = {
        metric: [(attributes, value) for attributes, value, _ in points]
        for metric, points in finding_points(store, analyzer, time.time_ns()).items()
    }
    return {
        Metrics.FACTORYLENS_RCA_INGEST_ACCEPTED: [
            ({Attributes.OTLP_SIGNAL: s}, n) for s, n in sorted(accepted.items())
        ],
        Metrics.FACTORYLENS_RCA_INGEST_REJECTED: [
            ({Attributes.OTLP_SIGNAL: s, Attributes.FACTORYLENS_RCA_REASON: r}, n)
            for (s, r), n in sorted(rejected.items())
        ],
        Metrics.FACTORYLENS_RCA_REQUESTS_REFUSED: [
            ({Attributes.OTLP_SIGNAL: s, Attributes.FACTORYLENS_RCA_REASON: r}, n)
            for (s, r), n in sorted(refused.items())
        ],
        Metrics.FACTORYLENS_RCA_QUEUE_DEPTH: [({}, stats.pending_requests)],
        Metrics.FACTORYLENS_RCA_WAL_SIZE: [({}, wal.size_bytes())],
        Metrics.FACTORYLENS_RCA_WAL_LAG: [({}, wal.unsynced_bytes)],
        Metrics.FACTORYLENS_RCA_SNAPSHOT_AGE: [({}, snapshot_age_s())],
        Metrics.FACTORYLENS_RCA_STORE_SERIES: [({}, store_stats["series"])],
        Metrics.FACTORYLENS_RCA_STORE_POINTS: [({}, store_stats["points"])],
        Metrics.FACTORYLENS_RCA_STORE_MEMORY: [({}, store_stats["bytes"])],
        **findings,
    }


def finding_points(store: SeriesStore, analyzer: Analyzer, now_unix_nano: int) -> dict[str, TimedPoints]:
    """The findings as ``{metric: [(attributes, value, time_unix_nano)]}``: what ``/metrics`` shows
    (without the times) and what remote-write pushes, so both routes carry the same names and labels.

    Anomaly scores and baseline bands are those of the KPIs (at most ``MAX_KPIS_EXPORTED``, the most
    anomalous first) and of the ``MAX_SCORED_SERIES`` most anomalous series, timed at the series'
    latest analysed point (so they line up with the series in a graph); the rest are timed ``now``.
    """
    open_incidents = [i for i in analyzer.incidents() if i.state is IncidentState.OPEN]
    scores = analyzer.anomaly_scores()
    top = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:MAX_SCORED_SERIES]
    kpis = sorted(analyzer.kpi_series(), key=lambda sid: scores.get(sid, 0.0), reverse=True)[:MAX_KPIS_EXPORTED]
    watched = list(dict.fromkeys([*kpis, *(sid for sid, _ in top)]))
    bands = analyzer.latest_bands(watched)
    scored: TimedPoints = []
    lower: TimedPoints = []
    upper: TimedPoints = []
    for sid in watched:
        info = store.info(sid)
        if info is None:
            continue
        attributes = {
            Attributes.FACTORYLENS_SERIES_ID: sid,
            Attributes.FACTORYLENS_METRIC: info.metric,
            Attributes.FACTORYLENS_ENTITY: info.entity,
            Attributes.FACTORYLENS_DOMAIN: info.domain,
        }
        band = bands.get(sid)
        at = band.time_unix_nano if band is not None else now_unix_nano
        if sid in scores:
            scored.append((attributes, scores[sid], at))
        if band is not None:
            lower.append((attributes, band.lower, at))
            upper.append((attributes, band.upper, at))
    causes: TimedPoints = [
        (
            {
                Attributes.FACTORYLENS_INCIDENT_ID: i.id,
                Attributes.FACTORYLENS_CAUSE_RANK: c.rank,
                Attributes.FACTORYLENS_ENTITY: c.entity,
                Attributes.FACTORYLENS_DOMAIN: c.domain,
                Attributes.FACTORYLENS_METRIC: c.signal,
            },
            c.score,
            now_unix_nano,
        )
        for i in open_incidents
        for c in i.causes[:MAX_CAUSES_EXPORTED]
    ]
    predictable = workload_predictability_points(store, analyzer.predictability())
    return {
        Metrics.FACTORYLENS_ANOMALY_SCORE: scored,
        Metrics.FACTORYLENS_BASELINE_LOWER: lower,
        Metrics.FACTORYLENS_BASELINE_UPPER: upper,
        Metrics.FACTORYLENS_BASELINE_PREDICTABILITY: [(a, v, now_unix_nano) for a, v in predictable],
        Metrics.FACTORYLENS_INCIDENTS_OPEN: [({}, len(open_incidents), now_unix_nano)],
        Metrics.FACTORYLENS_INCIDENT_CAUSE_SCORE: causes,
    }


def workload_of(info: SeriesInfo) -> str:
    """The job a series belongs to where it has one, else its service, else its entity."""
    for key in (Attributes.FACTORYLENS_JOB_ID, Attributes.SERVICE_NAME):
        value = info.resource.get(key) or info.attributes.get(key)
        if value and not str(value).startswith("unknown_service"):
            return str(value)
    return info.entity


def workload_predictability_points(store: SeriesStore, per_series: dict[str, float]) -> Points:
    """Each workload's predictability (the median over its series), by workload name."""
    infos = store.infos()
    workloads = {sid: workload_of(infos[sid]) for sid in per_series if sid in infos}
    table = workload_predictability(per_series, workloads)
    ranked = sorted(table.items())[:MAX_SCORED_SERIES]
    return [({Attributes.FACTORYLENS_WORKLOAD: w}, value) for w, value in ranked]


class IncidentLog:
    """Incidents on disk (one JSON file, replaced atomically), so they survive restarts."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def load(self) -> list[Incident]:
        if not self.path.exists():
            return []
        try:
            return [Incident.from_dict(d) for d in json.loads(self.path.read_text())]
        except (ValueError, KeyError, TypeError) as exc:
            log.error("incidents file %s is unreadable (%s); starting without past incidents", self.path, exc)
            return []

    def save(self, incidents: list[Incident]) -> None:
        data = json.dumps([i.to_dict() for i in incidents], indent=1)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".incidents-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("could not save incidents to %s: %s", self.path, exc)
            Path(tmp).unlink(missing_ok=True)


class IncidentPublisher:
    """One OTLP log record per incident change (event ``factorylens.incident``)."""

    def __init__(self, exporters: list[LogRecordExporter]) -> None:
        self._provider: LoggerProvider = make_logger_provider(make_resource({}, "factorylens-rca"), exporters)
        self._logger = self._provider.get_logger("factorylens.rca_service")

    def publish(self, change: IncidentChange, incident: Incident) -> None:
        top = incident.causes[0] if incident.causes else None
        attributes: dict[str, Any] = {
            Attributes.FACTORYLENS_INCIDENT_ID: incident.id,
            Attributes.FACTORYLENS_INCIDENT_STATE: incident.state.value,
            Attributes.FACTORYLENS_INCIDENT_CHANGE: change.value,
        }
        if top is not None:
            attributes.update(
                {
                    Attributes.FACTORYLENS_ENTITY: top.entity,
                    Attributes.FACTORYLENS_DOMAIN: top.domain,
                    Attributes.FACTORYLENS_METRIC: top.signal,
                    Attributes.FACTORYLENS_SERIES_ID: top.series_id,
                }
            )
        quiet = change is IncidentChange.RESOLVED or incident.severity == "low"
        severity = SeverityNumber.INFO if quiet else SeverityNumber.WARN
        self._logger.emit(
            timestamp=incident.updated_unix_nano,
            body=f"{incident.title}: {incident.summary}",
            severity_number=severity,
            severity_text=severity.name,
            attributes=attributes,
            event_name=INCIDENT_EVENT,
        )

    def shutdown(self) -> None:
        self._provider.force_flush(5_000)
        self._provider.shutdown()


class FindingsMeter:
    """Findings as OTLP metrics: one observable instrument per registry metric the source returns
    (the cost figures and prices), read on each export of a periodic reader."""

    def __init__(self, readers: list[MetricReader], source: Callable[[], Mapping[str, Points]]) -> None:
        self._source = source
        self._cached: tuple[float, Mapping[str, Points]] = (0.0, {})
        self._provider = make_meter_provider(make_resource({}, "factorylens-rca"), readers)
        meter = self._provider.get_meter("factorylens.rca_service", __version__)
        self._instruments = [
            meter.create_observable_gauge(
                spec.name, callbacks=[self._callback(spec.name)], unit=spec.unit, description=spec.description
            )
            for spec in REGISTRY.emitted_by(RCA_SERVICE)
            if spec.domain is Domain.COST and spec.instrument is Instrument.GAUGE
        ]

    @classmethod
    def otlp(
        cls, endpoint: str, insecure: bool, source: Callable[[], Mapping[str, Points]], interval_s: float = 60.0
    ) -> FindingsMeter:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(endpoint=endpoint, insecure=insecure)
        return cls([PeriodicExportingMetricReader(exporter, export_interval_millis=interval_s * 1000)], source)

    def _callback(self, metric: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(value, dict(attributes)) for attributes, value in self._points().get(metric, [])]

        return observe

    def _points(self) -> Mapping[str, Points]:
        """The source's figures, computed once per collection (every instrument reads them)."""
        at, points = self._cached
        if time.monotonic() - at > 1.0:
            points = self._source()
            self._cached = (time.monotonic(), points)
        return points

    def force_flush(self, timeout_ms: int = 5_000) -> bool:
        return self._provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        self._provider.force_flush(5_000)
        self._provider.shutdown()
