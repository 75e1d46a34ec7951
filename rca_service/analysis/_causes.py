"""An incident's causes: the third stage of the RCA pipeline.

The stored series of the entities related to the incident's KPIs (then the rest, up to
``max_series``) on one time grid, the KPIs' scrape interval, handed to a
:class:`~factorylens.rca_service.ranking.Ranker` with the topology (the series' join keys, the
service calls seen in traces, and edges known from elsewhere); its ranked causes become the
incident's, with evidence and a title that names the KPI the explanation talks about.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import cast

import numpy as np
import pandas as pd

from factorylens.rca_service.analysis._base import Cause, Evidence, Incident
from factorylens.rca_service.analysis._kpis import is_alert, workload
from factorylens.rca_service.detection import Anomaly
from factorylens.rca_service.ranking import (
    RankedCause,
    Ranker,
    SignalInfo,
    SignalSide,
    Topology,
    describe_signal,
    topology_from_series,
)
from factorylens.rca_service.store import SeriesInfo, SeriesStore, View
from factorylens.registry import Attributes, Metrics

log = logging.getLogger(__name__)

NS = 1_000_000_000
CHECKPOINT_PREFIX = "factorylens.checkpoint."
H2D_PHASE = "h2d"
OPERATION_TIME, OPERATIONS, OPERATION_LATENCY = ".operation.time", ".operations", ".operation.latency"
RATIO_RESOLUTION = 0.01
MAX_EXAMPLE_TRACES = 5


@dataclass(frozen=True)
class CauseConfig:
    """
    :param lookback_s: history given to the ranker before the change point
    :param lead_s: how long before the KPI's change point a cause may have begun (a GPU heats up
        for minutes before it throttles): the ranker's normal reference ends this much earlier
    :param max_lead_s: longer, up to this, when the detectors saw a related signal that can slow
        the workload go anomalous earlier and stay so (a fault that crept up before it bit)
    :param max_series: at most this many series are ranked per incident (related entities first)
    :param ignore_domains: domains never ranked
    """

    lookback_s: float = 3600.0
    lead_s: float = 120.0
    max_lead_s: float = 600.0
    max_series: int = 10_000
    ignore_domains: tuple[str, ...] = ("self", "rca", "cost")

    def __post_init__(self) -> None:
        if self.lookback_s <= 0 or self.lead_s < 0 or self.max_series < 1 or self.max_lead_s < self.lead_s:
            raise ValueError("lookback_s must be positive, 0 <= lead_s <= max_lead_s, max_series >= 1")


class IncidentRanker:
    """Ranks one incident's causes with a :class:`Ranker` over the store's series."""

    def __init__(
        self,
        config: CauseConfig,
        ranker: Ranker,
        *,
        intervals: dict[str, int],
        known_topology: Topology | None = None,
        anomalies: Callable[[], Mapping[str, Anomaly]] = dict,
    ) -> None:
        self.config = config
        self.ranker = ranker
        self.intervals = intervals  # the detection stage's sampling intervals, by series
        self.known_topology = known_topology
        self.anomalies = anomalies  # the detection stage's anomalies in progress

    def __call__(self, store: SeriesStore, incident: Incident, kpis: list[str], t0: int) -> None:
        infos = store.infos(self.config.ignore_domains)
        kpis = [k for k in kpis if k in infos]
        if not kpis:
            return
        topology = self.topology(store, infos)
        related = topology.related({infos[k].entity for k in kpis})
        chosen = self._candidate_series(infos, related)
        lead_ns = self._lead_ns(infos, kpis, related, t0)
        frame, columns = self._frame(store, chosen, infos, kpis, t0 - lead_ns)
        # the KPIs of the workload that broke first; another service's KPI that joined is evidence
        primary = workload(infos.get(incident.kpi_series_id) or infos[kpis[0]])
        kpi_columns = [columns[k] for k in kpis if k in columns and workload(infos[k]) == primary]
        if frame.empty or not kpi_columns:
            return
        # the grid bin holding the last normal point is the last reference row
        at = int(frame.index.searchsorted(pd.Timestamp(t0, unit="ns", tz="UTC")))
        t0_row = frame.index[min(at, len(frame.index) - 1)]
        if not (frame.index > t0_row).any():
            return
        try:
            result = self.ranker.find_root_causes(
                frame,
                kpi_columns,
                t0_row,
                topology=topology,
                lead=pd.Timedelta(lead_ns, unit="ns"),
                describe=_describer(infos, columns),
                names=display_names(infos[sid] for sid in chosen),
            )
        except ValueError as exc:
            log.warning("ranking incident %s failed: %s", incident.id, exc)
            return
        by_column = {column: sid for sid, column in columns.items()}
        incident.causes = [_cause(store, c, by_column) for c in result.causes]
        _summarize(incident, infos, kpis, result.kpi)

    def _lead_ns(self, infos: dict[str, SeriesInfo], kpis: list[str], related: dict[str, int], t0: int) -> int:
        """How long before the break a cause may have begun: ``lead_s``, or back to when the
        detectors first saw a signal the KPIs depend on, that can slow them, go anomalous (and it
        still is), up to ``max_lead_s``: a link whose errors crept up for minutes before the job
        slowed is compared with the time before it started to creep."""
        base = int(self.config.lead_s * NS)
        onsets = [
            anomaly.onset_unix_nano
            for sid, anomaly in self.anomalies().items()
            if sid in infos
            and sid not in kpis
            and infos[sid].entity in related
            and anomaly.onset_unix_nano < t0 - base
            and describe_signal(infos[sid].label).can_slow
        ]
        if not onsets:
            return base
        return min(t0 - min(onsets) + self.intervals.get(kpis[0], 0), int(self.config.max_lead_s * NS))

    def topology(self, store: SeriesStore, infos: dict[str, SeriesInfo] | None = None) -> Topology:
        """The graph from every series' join keys plus the service calls seen in traces."""
        infos = infos if infos is not None else store.infos(self.config.ignore_domains)
        topology = topology_from_series([(i.entity, i.resource, i.attributes) for i in infos.values()])
        if self.known_topology is not None:
            topology.merge(self.known_topology)
        for caller, callee in store.call_edges():
            topology.add_edge(f"service:{caller}", f"service:{callee}", "calls")
        return topology

    def _candidate_series(self, infos: dict[str, SeriesInfo], related: dict[str, int]) -> list[str]:
        """Series of the entities related to the KPIs first, then the rest, up to ``max_series``."""
        ordered = sorted(infos, key=lambda sid: (related.get(infos[sid].entity, 1 << 30), sid))
        return ordered[: self.config.max_series]

    def _frame(
        self, store: SeriesStore, chosen: list[str], infos: dict[str, SeriesInfo], kpis: list[str], t0: int
    ) -> tuple[pd.DataFrame, dict[str, tuple[str, str]]]:
        """Chosen series on one time grid (the KPIs' scrape interval), columns ``(entity, signal)``."""
        start = t0 - int(self.config.lookback_s * NS)
        alerts = [sid for sid in chosen if is_alert(infos[sid])]
        raw = store.frame([sid for sid in chosen if sid not in alerts], start)
        for sid in alerts:  # an alert counts records: none is 0, not missing
            alert = store.frame([sid], start, view=View.RAW)
            raw = raw.join(alert, how="outer") if not raw.empty else alert
            raw[sid] = raw[sid].fillna(0.0)
        if raw.empty:
            return raw, {}
        step_ns = max(int(np.median([self.intervals.get(k, 0) or 10 * NS for k in kpis])), NS)
        grid = raw.resample(pd.Timedelta(step_ns, unit="ns"), origin="epoch", label="right", closed="right").mean()
        columns: dict[str, tuple[str, str]] = {}
        taken: set[tuple[str, str]] = set()
        for sid in grid.columns:
            info = infos[sid]
            column = _column(info)
            if column in taken:
                column = (info.entity, f"{info.label}#{sid[:8]}")
            taken.add(column)
            columns[sid] = column
        grid.columns = pd.MultiIndex.from_tuples([columns[sid] for sid in grid.columns], names=["entity", "signal"])
        return _with_operation_latency(grid), columns


def _summarize(
    incident: Incident, infos: dict[str, SeriesInfo], kpis: list[str], kpi_columns: list[tuple[str, str]]
) -> None:
    """Title and summary: the KPI the explanation talks about (the ranker's first), the top cause."""
    if not incident.causes:
        return
    top = incident.causes[0]
    by_column = {_column(infos[k]): infos[k] for k in kpis}
    kpi_info = next((by_column[c] for c in kpi_columns if c in by_column), infos[kpis[0]])
    names = display_names([kpi_info, *(i for i in infos.values() if i.entity == top.entity)])
    incident.score = top.score
    incident.title = (
        f"{kpi_info.label} on {names.get(kpi_info.entity, kpi_info.entity)} broke: "
        f"likely {top.signal} on {names.get(top.entity, top.entity)}"
    )
    incident.summary = (
        f"{len(kpis)} KPI(s) broke since {_when(incident.onset_unix_nano)}; "
        f"{len(incident.causes)} candidate cause(s) ranked. {top.explanation}"
    )


def _cause(store: SeriesStore, ranked: RankedCause, by_column: dict[tuple[str, str], str]) -> Cause:
    evidence = []
    for item in ranked.evidence:
        sid = by_column.get((item.entity, item.signal), "")
        when = int(item.onset.value) if item.onset is not None else 0
        evidence.append(
            Evidence(
                sid,
                f"{item.signal} on {item.entity}",
                when,
                item.observed,
                item.expected,
                item.lower,
                item.upper,
                _example_traces(store, store.info(sid)) if sid else [],
            )
        )
    onset = int(ranked.onset.value) if ranked.onset is not None else 0
    return Cause(
        ranked.rank,
        ranked.entity,
        ranked.domain,
        ranked.signal,
        evidence[0].series_id if evidence else "",
        onset,
        ranked.score,
        ranked.explanation,
        evidence,
    )


def _example_traces(store: SeriesStore, info: SeriesInfo | None) -> list[str]:
    """For a span-derived series: the sampled traces of that operation, slowest and failed first."""
    if info is None or not info.metric.startswith("factorylens.span."):
        return []
    spans = store.example_spans(
        str(info.resource.get(Attributes.SERVICE_NAME, "")), str(info.attributes.get(Attributes.SPAN_NAME, ""))
    )
    return list(dict.fromkeys(s["trace_id"] for s in spans))[:MAX_EXAMPLE_TRACES]


def display_names(infos: Iterable[SeriesInfo]) -> dict[str, str]:
    """Entities as an operator knows them: ``node-1/gpu3 (GPU-91078215…)``, ``node-1/mlx5_1:1``,
    ``node-1:/mnt/ckpt``, ``llm-pretrain rank 3``."""
    names: dict[str, str] = {}
    for info in infos:
        entity = info.entity
        if entity in names:
            continue
        kind, _, rest = entity.partition(":")
        host = info.resource.get(Attributes.HOST_NAME)
        if kind == "gpu":
            index = info.attributes.get(Attributes.GPU_INDEX)
            if host is not None and index is not None:
                names[entity] = f"{host}/gpu{index} ({rest[:12]}…)"
        elif kind == "nic":
            names[entity] = rest
        elif kind == "fs":
            fs_host, _, mount = rest.partition("/")
            names[entity] = f"{fs_host}:{mount}"
        elif kind == "rank":
            job, _, rank = rest.rpartition("/")
            names[entity] = f"{job} rank {rank}"
        elif kind == "replica":
            job, _, replica = rest.rpartition("/")
            names[entity] = f"{job} replica {replica}" + (f" on {host}" if host else "")
        elif kind == "host":
            names[entity] = f"host {rest}"
    return names


def _describer(infos: dict[str, SeriesInfo], columns: dict[str, tuple[str, str]]) -> dict[str, SignalInfo]:
    """What each column means (the registry's meaning of its series) with its unit, and a log
    template's text: a ratio (unit ``1``) moves in steps of a percentage point at least, so an idle
    GPU going from 2 % to 8 % busy is a small change, not 60 sigmas. A rank's view of the file
    system it checkpoints to is that file system's trouble as its caller sees it (it may not clear
    the caller)."""
    described = {}
    for sid, (entity, signal) in columns.items():
        series = infos[sid]
        info = dataclasses.replace(describe_signal(series.label), unit=series.display_unit)
        if series.metric == Metrics.FACTORYLENS_LOG_TEMPLATES and series.description:
            info = dataclasses.replace(info, name=f'{info.name} "{series.description}"')
        if series.unit == "1":
            info = dataclasses.replace(info, resolution=RATIO_RESOLUTION, unit="")
        if entity != series.entity:
            info = dataclasses.replace(info, side=SignalSide.CALLER_VIEW)
        described[signal] = info
    return described


def _column(info: SeriesInfo) -> tuple[str, str]:
    """``(entity, signal)``. A rank's measurement of something it goes through belongs to that thing,
    as the caller's view of it: the file system it checkpoints to (a slow checkpoint is the file
    system's trouble), and the host-to-device link of its one GPU (a slow copy to the GPU is that
    link's, a PCIe link trained down shows nowhere else)."""
    mount = info.attributes.get(Attributes.SYSTEM_FILESYSTEM_MOUNTPOINT)
    host = info.resource.get(Attributes.HOST_NAME)
    if info.metric.startswith(CHECKPOINT_PREFIX) and mount and host:
        return f"fs:{host}/{mount}", f"{info.label} seen by {info.entity}"
    gpu = info.resource.get(Attributes.HW_ID)
    if (
        info.metric == Metrics.FACTORYLENS_TRAIN_PHASE_DURATION
        and info.attributes.get(Attributes.FACTORYLENS_TRAIN_PHASE) == H2D_PHASE
        and gpu
        and info.entity.startswith("rank:")
    ):
        return f"gpu:{gpu}", f"{info.label} seen by {info.entity}"
    return info.entity, info.label


def _with_operation_latency(frame: pd.DataFrame) -> pd.DataFrame:
    """Add each device's time per operation (busy time / operations), the latency its counters imply."""
    derived = {}
    # (entity, signal) pairs: the stubs type every frame's columns as Index[str], not as this MultiIndex
    for entity, signal in cast(pd.MultiIndex, frame.columns):
        metric, _, rest = signal.partition("{")
        if not metric.endswith(OPERATION_TIME):
            continue
        suffix = "{" + rest if rest else ""
        operations = (entity, metric[: -len(OPERATION_TIME)] + OPERATIONS + suffix)
        if operations in frame.columns:
            with np.errstate(divide="ignore", invalid="ignore"):
                per_operation = frame[(entity, signal)] / frame[operations].where(frame[operations] > 0)
            derived[(entity, metric[: -len(OPERATION_TIME)] + OPERATION_LATENCY + suffix)] = per_operation
    if not derived:
        return frame
    extra = pd.DataFrame(derived, index=frame.index)
    extra.columns = pd.MultiIndex.from_tuples(list(derived), names=frame.columns.names)
    return pd.concat([frame, extra], axis=1)


def _when(unix_nano: int) -> str:
    return datetime.fromtimestamp(unix_nano / NS, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
