"""KPI-driven incidents with topology-aware ranked causes: the service's default analyzer.

Every series is scored as the robust z-score analyzer does (and feeds its seasonal baseline), but
only a **KPI** opens an incident: a training job's step time, throughput or goodput, a service's
server-side latency or errors, or an external alert arriving as a log record. A GPU running hot
while its job trains at full speed is not an incident; it is a candidate cause once one opens.

An incident's onset is the KPI's change point (the split of its recent values that best separates
two levels, the CUSUM estimate of Page, Biometrika 1954), not the first point past a threshold.
KPIs that break within ``merge_window_s`` of an open incident join it; the incident resolves once
none of its KPIs has been anomalous for ``resolve_after_s``. While it is young, each pass re-ranks
its causes with :class:`~factorylens.rca_service.ranking.RankingEngine` over the stored series
of the entities related to its KPIs, aligned on the KPIs' scrape grid.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import hashlib
import logging
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pandas as pd

from factorylens.rca_service.analysis._base import Cause, Evidence, Incident, IncidentChange, IncidentState
from factorylens.rca_service.analysis._zscore import (
    NS,
    RobustZScoreAnalyzer,
    RobustZScoreConfig,
    _Anomaly,
    _when,
)
from factorylens.rca_service.baselines import BaselineBank
from factorylens.rca_service.ranking import (
    RankedCause,
    RankingConfig,
    RankingEngine,
    SignalInfo,
    Topology,
    describe_signal,
    topology_from_series,
)
from factorylens.rca_service.store import SeriesInfo, SeriesStore, View

log = logging.getLogger(__name__)

# goodput is cumulative since the job started: its breaks lag and linger, so it explains, not detects
DEFAULT_KPI_METRICS = (
    "factorylens.train.step.duration",
    "factorylens.train.samples.rate",
    "factorylens.train.tokens.rate",
)
SERVER_SPAN_KPIS = ("factorylens.span.duration", "factorylens.span.errors")
ALERT_EVENT_METRIC = "factorylens.events"
STALE_FACTOR = 15  # a KPI silent this many resolve periods no longer holds its incident open
PHASE_METRIC = "factorylens.train.phase.duration"
PHASE_ATTRIBUTE = "factorylens.train.phase"
PLANNED_PHASES = ("checkpoint", "eval")
PLANNED_PAUSE_METRICS = (PHASE_METRIC, "factorylens.checkpoint.duration")
CHECKPOINT_PREFIX = "factorylens.checkpoint."
OPERATION_TIME, OPERATIONS, OPERATION_LATENCY = ".operation.time", ".operations", ".operation.latency"
RATIO_RESOLUTION = 0.01
CHECKPOINT_DUE_TOLERANCE = 0.15  # a job's checkpoints recur within this share of their period


@dataclass(frozen=True)
class KpiRankingConfig:
    """
    :param detection: how every series is scored (robust z, history window, points in a row)
    :param ranking: the ranking engine's parameters
    :param kpi_metrics: metric names (glob patterns allowed) whose series are KPIs
    :param server_spans_are_kpis: a service's server-side span latency and errors are KPIs
    :param alert_events: log-record event names that are external alerts (each opens an incident)
    :param lookback_s: history given to the ranking engine before the change point
    :param max_series: at most this many series are ranked per incident (related entities first)
    :param rerank_for_s: an incident's causes are refined for this long after its onset
    :param rerank_interval_s: and at most this often (ranking 10,000 series takes about a second)
    :param change_point_points: points before the detected onset searched for the change point
    :param kpi_points: points in a row a KPI must stay broken (a checkpoint is a short planned pause)
    :param planned_pause_factor: a break during a checkpoint that took at most this many times the
        longest earlier one is planned work, not an incident
    :param lead_s: how long before the KPI's change point a cause may have begun (a GPU heats up
        for minutes before it throttles): the ranking's normal reference ends this much earlier
    """

    detection: RobustZScoreConfig = field(default_factory=RobustZScoreConfig)
    # live training telemetry has periodic checkpoint and evaluation spikes: only leaving the range
    # visited in the last hour counts (on Nezha's 6-hour references this costs 2 of 56 top-1 hits)
    ranking: RankingConfig = field(default_factory=lambda: RankingConfig(seen_range_points=30))
    kpi_metrics: tuple[str, ...] = DEFAULT_KPI_METRICS
    server_spans_are_kpis: bool = True
    alert_events: tuple[str, ...] = ("alert", "alertmanager.alert", "factorylens.alert")
    lookback_s: float = 3600.0
    max_series: int = 10_000
    rerank_for_s: float = 600.0
    rerank_interval_s: float = 30.0
    change_point_points: int = 12
    lead_s: float = 120.0
    kpi_points: int = 3
    planned_pause_factor: float = 1.5

    def __post_init__(self) -> None:
        if (
            self.lookback_s <= 0
            or self.max_series < 1
            or self.rerank_for_s < 0
            or self.change_point_points < 2
            or self.lead_s < 0
        ):
            raise ValueError(
                "lookback_s must be positive, max_series >= 1, rerank_for_s >= 0, change_point_points >= 2, lead_s >= 0"
            )


def config_for_interval(
    interval_s: float, kpi_metrics: tuple[str, ...] = (), base: KpiRankingConfig | None = None
) -> KpiRankingConfig:
    """The analyzer's settings restated in scrapes, for data sampled every ``interval_s``.

    The defaults assume 10-second scrapes. Scaled here: the robust z history to 60 scrapes (the
    default's hour is 360 scrapes, more than a Nezha fault-free stretch holds at 60 s), the ranking's
    lookback likewise; an incident resolves after 3 quiet scrapes (at least the default 120 s),
    KPIs merge within 5 scrapes (at least the default 300 s), a cause may lead its KPI by 2 scrapes,
    causes are re-ranked every scrape for 10 scrapes. Thresholds and counts of points (``min_points``,
    ``consecutive``, ``kpi_points``, ``change_point_points``) are already in scrapes and stay."""
    base = base or KpiRankingConfig()
    detection = dataclasses.replace(
        base.detection,
        window_s=60 * interval_s,
        resolve_after_s=max(RobustZScoreConfig.resolve_after_s, 3 * interval_s),
        merge_window_s=max(RobustZScoreConfig.merge_window_s, 5 * interval_s),
    )
    return dataclasses.replace(
        base,
        detection=detection,
        kpi_metrics=tuple(kpi_metrics) or base.kpi_metrics,
        lookback_s=60 * interval_s,
        lead_s=2 * interval_s,
        rerank_for_s=10 * interval_s,
        rerank_interval_s=interval_s,
    )


def change_point(values: np.ndarray) -> int:
    """Index of the first point after the most likely single shift in level (CUSUM; Page 1954)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return 0
    k = np.arange(1, n)
    cumulative = np.cumsum(values)[:-1]
    before = cumulative / k
    after = (values.sum() - cumulative) / (n - k)
    statistic = np.abs(after - before) * np.sqrt(k * (n - k) / n)
    return int(np.argmax(statistic)) + 1


class KpiRankingAnalyzer(RobustZScoreAnalyzer):
    name = "kpi-ranking"

    def __init__(
        self,
        config: KpiRankingConfig | None = None,
        baselines: BaselineBank | None = None,
        *,
        topology: Topology | None = None,
    ) -> None:
        """``topology``: edges known from elsewhere (a CMDB export, a replay's topology file), added to
        those found in the telemetry."""
        self.settings = config or KpiRankingConfig()
        super().__init__(self.settings.detection, baselines)
        self.engine = RankingEngine(self.settings.ranking)
        self.known_topology = topology
        self._kpis: dict[str, set[str]] = {}  # incident id -> its KPI series
        self._t0: dict[str, int] = {}  # incident id -> the last normal moment before the change point
        self._quiet_until: dict[str, int] = {}  # KPI -> when its last incident resolved
        self._ranked_at: dict[str, int] = {}  # incident id -> when its causes were last ranked

    def is_kpi(self, info: SeriesInfo) -> bool:
        if any(fnmatch.fnmatchcase(info.metric, pattern) for pattern in self.settings.kpi_metrics):
            return True
        if self.settings.server_spans_are_kpis and info.metric in SERVER_SPAN_KPIS:
            return info.attributes.get("span.kind") == "server"
        return info.metric == ALERT_EVENT_METRIC and info.attributes.get("event.name") in self.settings.alert_events

    # ---- incidents -----------------------------------------------------------------------------
    def _update_incidents(self, store: SeriesStore, now: int) -> list[tuple[IncidentChange, Incident]]:
        cfg = self.settings
        changed: dict[str, IncidentChange] = {}
        open_incidents = [i for i in self._incidents.values() if i.state is IncidentState.OPEN]
        grown: set[str] = set()  # incidents that gained a KPI this pass: rank them again now
        for info, onset in self._broken_kpis(store):
            home = next((i for i in open_incidents if info.id in self._kpis.get(i.id, ())), None)
            if home is None:
                home = next(
                    (
                        i
                        for i in open_incidents
                        if abs(onset - i.onset_unix_nano) <= cfg.detection.merge_window_s * NS
                        and self._related(store, info, i)
                    ),
                    None,
                )
            if home is None:
                t0 = self._change_point(store, info, onset)
                key = f"{info.id}:{t0}".encode()
                home = Incident(
                    id="inc-" + hashlib.blake2b(key, digest_size=6).hexdigest(),
                    state=IncidentState.OPEN,
                    title=f"{info.label} on {info.entity} broke",
                    opened_unix_nano=now,
                    onset_unix_nano=onset,
                    updated_unix_nano=now,
                    kpi_series_id=info.id,
                )
                self._incidents[home.id] = home
                self._kpis[home.id] = set()
                self._t0[home.id] = t0
                open_incidents.append(home)
                changed[home.id] = IncidentChange.OPENED
            if info.id not in self._kpis.setdefault(home.id, set()):
                self._kpis[home.id].add(info.id)
                grown.add(home.id)
                home.onset_unix_nano = min(home.onset_unix_nano, onset)
                changed.setdefault(home.id, IncidentChange.UPDATED)
        for incident in open_incidents:
            kpis = self._kpis.get(incident.id, set())
            kpis_added = incident.id in grown
            if self._recovered(store, incident, now):
                incident.state = IncidentState.RESOLVED
                incident.resolved_unix_nano = now
                changed[incident.id] = IncidentChange.RESOLVED
                for sid in kpis:  # a later break of the same KPI is a new incident
                    self._active.pop(sid, None)
                    self._quiet_until[sid] = now
                continue
            incident.updated_unix_nano = now
            young = now - incident.onset_unix_nano <= cfg.rerank_for_s * NS
            due = now - self._ranked_at.get(incident.id, 0) >= cfg.rerank_interval_s * NS or kpis_added
            if (young and due) or not incident.causes:
                before = [(c.entity, c.signal) for c in incident.causes]
                self._ranked_at[incident.id] = now
                self._rank(store, incident)
                if [(c.entity, c.signal) for c in incident.causes] != before:
                    changed.setdefault(incident.id, IncidentChange.UPDATED)
        for sid, anomaly in list(self._active.items()):
            if now - anomaly.last > cfg.detection.resolve_after_s * NS and self._seen_until.get(sid, 0) > anomaly.last:
                del self._active[sid]
        self._expire_resolved()
        for incident_id in [i for i in self._kpis if i not in self._incidents]:
            self._kpis.pop(incident_id)
            self._t0.pop(incident_id, None)
            self._ranked_at.pop(incident_id, None)
        return [(change, copy.deepcopy(self._incidents[i])) for i, change in changed.items()]

    def _related(self, store: SeriesStore, info: SeriesInfo, incident: Incident) -> bool:
        """Same workload (job, else service), or one KPI's entity depends on the other's."""
        others = [store.series[sid].info for sid in self._kpis.get(incident.id, ()) if sid in store.series]
        if any(_workload(o) == _workload(info) for o in others):
            return True
        topology = self._topology(store)
        near = topology.related({info.entity})
        return any(o.entity in near or info.entity in topology.related({o.entity}) for o in others)

    def _broken_kpis(self, store: SeriesStore) -> list[tuple[SeriesInfo, int]]:
        out = []
        for sid, anomaly in sorted(self._active.items(), key=lambda item: item[1].onset):
            series = store.series.get(sid)
            if series is None or not self.is_kpi(series.info) or anomaly.onset <= self._quiet_until.get(sid, 0):
                continue
            info = series.info
            if info.metric == ALERT_EVENT_METRIC:
                out.append((info, anomaly.onset))
                continue
            if (
                not _harmful(info, anomaly.z)
                or self._points_since(store, sid, anomaly.onset) < self.settings.kpi_points
            ):
                continue
            if self._held_back(store, info, anomaly):
                continue
            out.append((info, anomaly.onset))
        return out

    @staticmethod
    def _points_since(store: SeriesStore, sid: str, since: int) -> int:
        _, _ts, values = store.query(sid, None, since)
        return int(np.isfinite(values).sum())

    def _planned_pauses(self, store: SeriesStore, info: SeriesInfo) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(end times, durations)`` of the checkpoints (and evaluations) the KPI's job reported."""
        job = info.resource.get("factorylens.job.id")
        if not job:
            return []
        out = []
        for series in list(store.series.values()):
            other = series.info
            if other.metric not in PLANNED_PAUSE_METRICS or other.resource.get("factorylens.job.id") != job:
                continue
            if other.metric == PHASE_METRIC and not str(other.attributes.get(PHASE_ATTRIBUTE, "")).startswith(
                PLANNED_PHASES
            ):
                continue
            _, ts, values = store.query(other.id)
            ok = np.isfinite(values)
            out.append((ts[ok], values[ok]))
        return out

    def _held_back(self, store: SeriesStore, info: SeriesInfo, anomaly: _Anomaly) -> bool:
        """A training job's break that is, or may still turn out to be, one of its checkpoints.

        Every N steps a job stops to write a checkpoint; its throughput drops for as long as that
        takes, and the ranks report each checkpoint's duration once it is done. So a break is held
        back while it is no longer than the longest checkpoint so far (plus the two scrapes it
        straddles), and dropped while it holds a finished checkpoint no slower than
        ``planned_pause_factor`` times the ones before it and lasts no longer than that checkpoint.
        Anything longer or slower is an incident.
        """
        pauses = self._planned_pauses(store, info)
        interval = self._intervals.get(info.id, 0)
        since, until = anomaly.onset - interval, anomaly.last + interval
        longest = max((float(values.max()) for ts, values in pauses if len(values) and ts[0] < since), default=0.0)
        for ts, values in pauses:
            during = values[(ts >= since) & (ts <= until)]
            earlier = values[ts < since]
            if len(during) and (not len(earlier) or during.max() <= self.settings.planned_pause_factor * earlier.max()):
                # the checkpoint explains a break as long as itself (plus the two scrapes it straddles); a
                # longer one is a fault that began during or right after it, merged into the same break
                if anomaly.last - anomaly.onset <= float(during.max()) * NS + 2 * interval:
                    return True
        if not (interval and longest) or not self._checkpoint_due(pauses, since, longest):
            return False
        return self._points_since(store, info.id, anomaly.onset) < longest * NS / interval + 2

    @staticmethod
    def _checkpoint_due(pauses: list[tuple[np.ndarray, np.ndarray]], since: int, longest_s: float) -> bool:
        """Whether a break starting at ``since`` can be the job's next checkpoint: always when the
        job's rhythm is unknown (one earlier one or none), else when it is near the time due."""
        ends = np.unique(np.concatenate([ts[ts < since] for ts, _ in pauses]))
        ends = ends[np.r_[True, np.diff(ends) > longest_s * NS]] if len(ends) else ends  # one per checkpoint
        if len(ends) < 2:
            return True
        period = float(np.median(np.diff(ends)))
        due = ends[-1] + period - longest_s * NS  # when the next one should start
        return abs(since - due) <= CHECKPOINT_DUE_TOLERANCE * period

    def _score(self, store: SeriesStore, info: SeriesInfo, now_unix_nano: int) -> _Anomaly | None:
        if info.metric == ALERT_EVENT_METRIC and self.is_kpi(info):
            return self._alert(store, info)
        return super()._score(store, info, now_unix_nano)

    def _recovered(self, store: SeriesStore, incident: Incident, now: int) -> bool:
        """Every KPI back inside its pre-incident band for ``resolve_after_s`` (or silent for much longer)."""
        detection = self.settings.detection
        t0 = self._t0.get(incident.id, incident.onset_unix_nano - 1)
        quiet_ns = int(detection.resolve_after_s * NS)
        for sid in self._kpis.get(incident.id, ()):
            series = store.series.get(sid)
            if series is None:
                continue
            info = series.info
            view = View.RAW if info.metric == ALERT_EVENT_METRIC else None
            _, ts, values = store.query(sid, view, t0 - int(detection.window_s * NS))
            ok = np.isfinite(values)
            ts, values = ts[ok], values[ok]
            recent = values[ts > now - quiet_ns]
            if info.metric == ALERT_EVENT_METRIC:
                if (recent > 0).any() or not len(ts) or ts[-1] <= t0:
                    return False
                continue
            if not len(recent):
                if ts.size and now - ts[-1] > STALE_FACTOR * quiet_ns:
                    continue  # gone quiet for good: nothing left to recover
                return False
            reference = values[ts <= t0]
            if len(reference) < 3 or len(recent) < detection.consecutive:
                return False
            median, scale = self._stats(reference, info.unit)
            direction = describe_signal(info.label).kind.bad_direction
            z = (recent - median) / scale
            harm = np.abs(z) if direction == 0 else np.clip(direction * z, 0, None)
            if (harm > detection.threshold).any():
                return False
        return True

    def _alert(self, store: SeriesStore, info: SeriesInfo) -> _Anomaly | None:
        """An external alert is a broken KPI from its first record until it stops firing."""
        _, ts, values = store.query(info.id, View.RAW)
        firing = ts[np.isfinite(values) & (values > 0)]
        if not len(firing):
            return None
        self._seen_until[info.id] = int(ts[-1])
        previous = self._active.get(info.id)
        onset = previous.onset if previous else int(firing[-1])
        return _Anomaly(info.id, onset, int(firing[-1]), float("inf"), float(values[-1]), 0.0, 1.0)

    def _change_point(self, store: SeriesStore, info: SeriesInfo, onset: int) -> int:
        """The last normal moment: the point before the KPI's change point, at or before ``onset``."""
        _, ts, values = store.query(info.id, None, onset - int(self.settings.lookback_s * NS))
        ok = np.isfinite(values)
        ts, values = ts[ok], values[ok]
        at_onset = int(np.searchsorted(ts, onset))
        if at_onset < 2:
            return onset - 1
        first = max(0, at_onset - self.settings.change_point_points)
        window = values[first : min(len(values), at_onset + self.config.consecutive)]
        split = first + change_point(window)
        split = min(max(split, first + 1), at_onset)
        return int(ts[split - 1])

    # ---- ranking -------------------------------------------------------------------------------
    def _rank(self, store: SeriesStore, incident: Incident) -> None:
        cfg = self.settings
        kpis = sorted(self._kpis.get(incident.id, ()))
        t0 = self._t0.get(incident.id, incident.onset_unix_nano - 1)
        with store.lock:
            infos = {
                sid: s.info for sid, s in store.series.items() if s.info.domain not in cfg.detection.ignore_domains
            }
        kpis = [k for k in kpis if k in infos]
        if not kpis:
            return
        topology = self._topology(store)
        chosen = self._candidate_series(infos, kpis, topology)
        frame, columns = self._frame(store, chosen, infos, kpis, t0 - int(cfg.lead_s * NS))
        # the KPIs of the workload that broke first; another service's KPI that joined is evidence
        primary = _workload(infos.get(incident.kpi_series_id) or infos[kpis[0]])
        kpi_columns = [columns[k] for k in kpis if k in columns and _workload(infos[k]) == primary]
        if frame.empty or not kpi_columns:
            return
        # the grid bin holding the last normal point is the last reference row
        t0_row = frame.index[
            min(int(frame.index.searchsorted(pd.Timestamp(t0, unit="ns", tz="UTC"))), len(frame.index) - 1)
        ]
        if not (frame.index > t0_row).any():
            return
        try:
            result = self.engine.rank(
                frame,
                topology,
                kpi_columns,
                t0_row,
                lead=pd.Timedelta(cfg.lead_s, unit="s"),
                describe=_describer(infos, columns),
            )
        except ValueError as exc:
            log.warning("ranking incident %s failed: %s", incident.id, exc)
            return
        by_column = {column: sid for sid, column in columns.items()}
        incident.causes = [self._cause(c, by_column) for c in result.causes]
        if incident.causes:
            top = incident.causes[0]
            kpi_info = infos[kpis[0]]
            incident.score = top.score
            incident.title = f"{kpi_info.label} on {kpi_info.entity} broke: likely {top.signal} on {top.entity}"
            incident.summary = (
                f"{len(kpis)} KPI(s) broke since {_when(incident.onset_unix_nano)}; "
                f"{len(incident.causes)} candidate cause(s) ranked. {top.explanation}"
            )

    def _topology(self, store: SeriesStore) -> Topology:
        """The graph from every series' join keys plus the service calls seen in traces."""
        ignored = self.settings.detection.ignore_domains
        with store.lock:
            keys = [
                (s.info.entity, s.info.resource, s.info.attributes)
                for s in store.series.values()
                if s.info.domain not in ignored
            ]
            calls = list(store.call_graph.edges)
        topology = topology_from_series(keys)
        if self.known_topology is not None:
            topology.merge(self.known_topology)
        for caller, callee in calls:
            topology.add_edge(f"service:{caller}", f"service:{callee}", "calls")
        return topology

    def _candidate_series(self, infos: dict[str, SeriesInfo], kpis: list[str], topology: Topology) -> list[str]:
        """Series of the entities related to the KPIs first, then the rest, up to ``max_series``."""
        related = topology.related({infos[k].entity for k in kpis})
        ordered = sorted(infos, key=lambda sid: (related.get(infos[sid].entity, 1 << 30), sid))
        return ordered[: self.settings.max_series]

    def _frame(
        self, store: SeriesStore, chosen: list[str], infos: dict[str, SeriesInfo], kpis: list[str], t0: int
    ) -> tuple[pd.DataFrame, dict[str, tuple[str, str]]]:
        """Chosen series on one time grid (the KPIs' scrape interval), columns ``(entity, signal)``."""
        start = t0 - int(self.settings.lookback_s * NS)
        alerts = [sid for sid in chosen if infos[sid].metric == ALERT_EVENT_METRIC]
        raw = store.frame([sid for sid in chosen if sid not in alerts], start)
        for sid in alerts:  # an alert counts records: none is 0, not missing
            alert = store.frame([sid], start, view=View.RAW)
            raw = raw.join(alert, how="outer") if not raw.empty else alert
            raw[sid] = raw[sid].fillna(0.0)
        if raw.empty:
            return raw, {}
        step_ns = max(int(np.median([self._intervals.get(k, 0) or 10 * NS for k in kpis])), NS)
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

    def _cause(self, ranked: RankedCause, by_column: dict[tuple[str, str], str]) -> Cause:
        evidence = []
        for item in ranked.evidence:
            sid = by_column.get((item.entity, item.signal), "")
            spread = abs(item.observed - item.expected) / item.z if item.z > 0 else 0.0
            band = spread * self.settings.ranking.threshold
            when = int(item.onset.value) if item.onset is not None else 0
            evidence.append(
                Evidence(
                    sid,
                    f"{item.signal} on {item.entity}",
                    when,
                    item.observed,
                    item.expected,
                    item.expected - band,
                    item.expected + band,
                )
            )
        series_id = evidence[0].series_id if evidence else ""
        onset = int(ranked.onset.value) if ranked.onset is not None else 0
        return Cause(
            ranked.rank,
            ranked.entity,
            ranked.domain,
            ranked.signal,
            series_id,
            onset,
            ranked.score,
            ranked.explanation,
            evidence,
        )

    def load_incidents(self, incidents: list[Incident]) -> None:
        super().load_incidents(incidents)
        with self._lock:
            self._kpis = {i.id: {i.kpi_series_id} for i in incidents if i.kpi_series_id}
            self._t0 = {i.id: i.onset_unix_nano - 1 for i in incidents}


def _describer(infos: dict[str, SeriesInfo], columns: dict[str, tuple[str, str]]) -> dict[str, SignalInfo]:
    """What the registry knows beyond the name: a ratio (unit ``1``) moves in steps of a percentage
    point at least, so an idle GPU going from 2 % to 8 % busy is a small change, not 60 sigmas."""
    described = {}
    for sid, (_, signal) in columns.items():
        info = describe_signal(signal)
        if infos[sid].unit == "1":
            info = dataclasses.replace(info, resolution=RATIO_RESOLUTION)
        described[signal] = info
    return described


def _column(info: SeriesInfo) -> tuple[str, str]:
    """``(entity, signal)``; a rank's measurement of the file system it checkpoints to belongs to that
    file system, as the caller's view of it (a slow checkpoint is the file system's trouble)."""
    mount = info.attributes.get("system.filesystem.mountpoint")
    host = info.resource.get("host.name")
    if info.metric.startswith(CHECKPOINT_PREFIX) and mount and host:
        return f"fs:{host}/{mount}", f"{info.label} seen by {info.entity}"
    return info.entity, info.label


def _with_operation_latency(frame: pd.DataFrame) -> pd.DataFrame:
    """Add each device's time per operation (busy time / operations), the latency its counters imply."""
    derived = {}
    # (entity, signal) pairs: the stubs type every frame's columns as Index[str], not as this MultiIndex
    for entity, signal in cast(pd.MultiIndex, frame.columns):
        metric, _, rest = signal.partition("{")
        if not metric.endswith(OPERATION_TIME):
            continue
        operations = (entity, metric[: -len(OPERATION_TIME)] + OPERATIONS + ("{" + rest if rest else ""))
        if operations in frame.columns:
            with np.errstate(divide="ignore", invalid="ignore"):
                per_operation = frame[(entity, signal)] / frame[operations].where(frame[operations] > 0)
            derived[(entity, metric[: -len(OPERATION_TIME)] + OPERATION_LATENCY + ("{" + rest if rest else ""))] = (
                per_operation
            )
    if not derived:
        return frame
    extra = pd.DataFrame(derived, index=frame.index)
    extra.columns = pd.MultiIndex.from_tuples(list(derived), names=frame.columns.names)
    return pd.concat([frame, extra], axis=1)


def _workload(info: SeriesInfo) -> str:
    """The job (its ranks break together), else the service, else the entity itself."""
    if info.resource.get("factorylens.job.id"):
        return f"job:{info.resource['factorylens.job.id']}"
    if info.entity.startswith("rank:"):
        return "job:" + info.entity[len("rank:") :].rsplit("/", 1)[0]
    return str(info.resource.get("service.name") or info.entity)


def _harmful(info: SeriesInfo, z: float) -> bool:
    """A KPI breaks only in its bad direction: a faster step or more throughput is not an incident."""
    direction = describe_signal(info.label).kind.bad_direction
    return direction == 0 or np.sign(z) == direction
