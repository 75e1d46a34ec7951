"""Post-mortems: run the live analyzer over historical telemetry, as if it were arriving now.

Input is either a long-format table (CSV or Parquet: a time column, ``entity``, ``signal`` or
``metric``, ``value``) or OTLP JSON (one ``ExportMetricsServiceRequest``, traces or logs request per
line, as the collector's file exporter writes). The data are fed to an in-memory store in time
order, one scrape interval at a time, and the same :class:`KpiRankingAnalyzer` as the service runs
after each interval, so a replay finds the incidents the service would have found, at the moments
it would have found them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from factorylens.rca_service.analysis import Incident, KpiRankingAnalyzer, KpiRankingConfig, config_for_interval
from factorylens.rca_service.baselines._history import TIME_COLUMNS, _seconds
from factorylens.rca_service.ranking import Topology
from factorylens.rca_service.store import ScalarSeries, SeriesKind, SeriesStore, StoreLimits
from factorylens.registry import Attributes

NS = 1_000_000_000
ENTITY_ATTRIBUTE = Attributes.FACTORYLENS_ENTITY  # a long table's entity, taken verbatim as the series' entity
OTLP_JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
DEFAULT_INTERVAL_S = 10.0


@dataclass
class _Batch:
    time_unix_nano: int
    apply: Callable[[SeriesStore], None]


_Request = TypeVar("_Request")


def _applying(ingest: Callable[[SeriesStore, _Request], object], request: _Request) -> Callable[[SeriesStore], None]:
    """``store -> ingest(store, request)``, bound to this request now (not to the loop variable)."""

    def apply(store: SeriesStore) -> None:
        ingest(store, request)

    return apply


def read_long_table(path: str | Path) -> pd.DataFrame:
    """``time_unix_nano, entity, signal, value`` rows, sorted by time, from a CSV or Parquet file."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        table = pd.read_parquet(path)
    else:
        table = pd.read_csv(path)
    time_column = next((c for c in TIME_COLUMNS if c in table.columns), None)
    signal_column = "signal" if "signal" in table.columns else "metric" if "metric" in table.columns else None
    missing = [
        name
        for name, found in (
            ("a time column (" + ", ".join(TIME_COLUMNS) + ")", time_column),
            ("entity", "entity" in table.columns),
            ("signal or metric", signal_column),
            ("value", "value" in table.columns),
        )
        if not found
    ]
    if missing:
        raise ValueError(
            f"{path}: a long-format table needs {', '.join(missing)}; it has {', '.join(map(str, table.columns))}"
        )
    out = pd.DataFrame(
        {
            "time_unix_nano": (_seconds(table[time_column]) * NS).round().astype("int64"),
            "entity": table["entity"].astype(str),
            "signal": table[signal_column].astype(str),
            "value": pd.to_numeric(table["value"], errors="coerce"),
        }
    )
    return out.sort_values("time_unix_nano", kind="stable").reset_index(drop=True)


def _table_batches(table: pd.DataFrame, interval_ns: int) -> Iterator[_Batch]:
    series: dict[tuple[str, str], ScalarSeries] = {}

    def appender(rows: pd.DataFrame) -> Callable[[SeriesStore], None]:
        def apply(store: SeriesStore) -> None:
            for entity, signal, ts, value in zip(
                rows["entity"], rows["signal"], rows["time_unix_nano"], rows["value"], strict=False
            ):
                target = series.get((entity, signal))
                if target is None:
                    made = store.get_or_create(signal, SeriesKind.GAUGE, "", {ENTITY_ATTRIBUTE: entity}, {})
                    if made is None:
                        continue
                    assert isinstance(made, ScalarSeries)  # a gauge's series
                    target = series[(entity, signal)] = made
                target.append(int(ts), float(value))

        return apply

    bins = table["time_unix_nano"] // interval_ns
    for _, rows in table.groupby(bins, sort=True):
        yield _Batch(int(rows["time_unix_nano"].max()), appender(rows))


def _otlp_batches(path: Path) -> Iterator[_Batch]:
    with path.open() as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON: {exc}") from exc
            if "resourceMetrics" in data:
                request = json_format.ParseDict(data, ExportMetricsServiceRequest())
                times = [
                    p.time_unix_nano
                    for rm in request.resource_metrics
                    for sm in rm.scope_metrics
                    for m in sm.metrics
                    for p in _points(m)
                ]
                yield _Batch(max(times, default=0), _applying(SeriesStore.ingest_metrics, request))
            elif "resourceSpans" in data:
                traces = json_format.ParseDict(data, ExportTraceServiceRequest())
                times = [
                    s.end_time_unix_nano for rs in traces.resource_spans for ss in rs.scope_spans for s in ss.spans
                ]
                yield _Batch(max(times, default=0), _applying(SeriesStore.ingest_spans, traces))
            elif "resourceLogs" in data:
                logs = json_format.ParseDict(data, ExportLogsServiceRequest())
                times = [
                    r.time_unix_nano or r.observed_time_unix_nano
                    for rl in logs.resource_logs
                    for sl in rl.scope_logs
                    for r in sl.log_records
                ]
                yield _Batch(max(times, default=0), _applying(SeriesStore.ingest_logs, logs))
            else:
                raise ValueError(
                    f"{path}:{number}: expected an OTLP JSON request (resourceMetrics, resourceSpans or resourceLogs)"
                )


def _points(metric) -> list:
    data = metric.WhichOneof("data")
    return list(getattr(metric, data).data_points) if data else []


def replay(
    path: str | Path,
    *,
    topology: Topology | None = None,
    kpi_metrics: tuple[str, ...] = (),
    interval_s: float = 10.0,
    config: KpiRankingConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Incident]:
    """Incidents (oldest first) the analyzer finds in the file, with their ranked causes."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    # the defaults assume 10-s scrapes; coarser data gets its time constants restated in scrapes
    config = config or (config_for_interval(interval_s) if interval_s > DEFAULT_INTERVAL_S else KpiRankingConfig())
    if kpi_metrics:
        config = dataclasses.replace(config, kpi_metrics=tuple(kpi_metrics))
    interval_ns = int(interval_s * NS)
    if path.suffix.lower() in OTLP_JSON_SUFFIXES:
        batches = sorted(_otlp_batches(path), key=lambda b: b.time_unix_nano)
    else:
        batches = list(_table_batches(read_long_table(path), interval_ns))
    if not batches:
        raise ValueError(f"{path}: no data points")
    now = [batches[0].time_unix_nano]
    store = SeriesStore(StoreLimits(retention_s=10 * 365 * 86400.0), clock=lambda: now[0] / NS)
    analyzer = KpiRankingAnalyzer(config, topology=topology)
    next_pass = batches[0].time_unix_nano + interval_ns
    for done, batch in enumerate(batches, start=1):
        while batch.time_unix_nano > next_pass:
            now[0] = next_pass
            analyzer.analyze(store, next_pass)
            next_pass += interval_ns
        now[0] = batch.time_unix_nano
        batch.apply(store)
        if progress is not None:
            progress(done, len(batches))
    for _ in range(2):  # the last interval, and one more so that a trailing recovery is seen
        now[0] = next_pass
        analyzer.analyze(store, next_pass)
        next_pass += interval_ns
    return sorted(analyzer.incidents(), key=lambda i: i.onset_unix_nano)


def incidents_as_json(incidents: list[Incident]) -> str:
    return json.dumps([i.to_dict() for i in incidents], indent=2, default=_json_default)


def _json_default(value: object) -> object:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"cannot serialize {type(value).__name__}")
