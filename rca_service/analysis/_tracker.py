"""Incidents from KPI breaks: the second stage of the RCA pipeline.

Only a **KPI** opens an incident (a job's step time or throughput, a service's server-side latency
or errors, an external alert). A KPI's anomaly, from the detectors, opens one once it has lasted
``kpi_points`` points in its bad direction and is not a planned pause (:mod:`._pauses`). Its
onset is the KPI's change point (the split of its recent values that best separates two levels,
the CUSUM estimate of Page, Biometrika 1954), not the first point past a threshold. KPIs that break
within ``merge_window_s`` of an open incident of the same workload (or a related entity) join it;
the incident resolves once every KPI has been back inside its pre-incident band for
``resolve_after_s``; a later break of the same KPI is a new incident. While an incident is young,
its causes are re-ranked by the :class:`~._causes.IncidentRanker` it holds.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from factorylens.rca_service.analysis._base import Incident, IncidentChange, IncidentState
from factorylens.rca_service.analysis._detecting import DetectionConfig, SeriesDetection
from factorylens.rca_service.analysis._kpis import bad_direction, harmful, is_alert, workload
from factorylens.rca_service.analysis._pauses import job_pauses, judge, save_windows
from factorylens.rca_service.detection import Anomaly, RobustZDetector
from factorylens.rca_service.ranking import Topology, describe_signal
from factorylens.rca_service.store import SeriesInfo, SeriesStore, View
from factorylens.registry import Attributes

NS = 1_000_000_000
MAX_RESOLVED_INCIDENTS = 1000
STALE_FACTOR = 15  # a KPI silent this many resolve periods no longer holds its incident open


@dataclass(frozen=True)
class TrackerConfig:
    """
    :param kpi_points: points in a row a KPI must stay broken (a checkpoint is a short planned pause)
    :param planned_pause_factor: a break during a checkpoint that took at most this many times the
        longest earlier one is planned work, not an incident
    :param change_point_points: points before the detected onset searched for the change point
    :param lookback_s: history searched for the change point
    :param rerank_for_s: an incident's causes are refined for this long after its onset
    :param rerank_interval_s: and at most this often (ranking 10,000 series takes about a second)
    """

    kpi_points: int = 2
    planned_pause_factor: float = 1.5
    change_point_points: int = 12
    lookback_s: float = 3600.0
    rerank_for_s: float = 600.0
    rerank_interval_s: float = 30.0

    def __post_init__(self) -> None:
        if self.change_point_points < 2 or self.rerank_for_s < 0 or self.lookback_s <= 0 or self.kpi_points < 1:
            raise ValueError("change_point_points >= 2, rerank_for_s >= 0, lookback_s > 0, kpi_points >= 1")


@dataclass
class _Open:
    """What the tracker keeps about an open incident beside the incident itself."""

    kpis: set[str] = field(default_factory=set)
    t0: int = 0  # the last normal moment before the change point
    ranked_at: int = 0


Rank = Callable[[SeriesStore, Incident, list[str], int], None]
Related = Callable[[SeriesStore], Topology]


def change_point(values: np.ndarray, broken_at: int | None = None, direction: int = 0) -> int:
    """Index of the first point after the most likely single shift in level (CUSUM; Page 1954).

    With ``broken_at`` (where a KPI was found broken) and its bad ``direction``, points further out than
    the level it broke to (the median from there on) count at that level: a checkpoint's slow steps a
    few scrapes before a fault are not where the KPI shifted, and cannot pull the split back to them."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return 0
    if broken_at is not None and direction and broken_at < n:
        level = float(np.median(values[broken_at:]))
        values = np.minimum(values, level) if direction > 0 else np.maximum(values, level)
    k = np.arange(1, n)
    cumulative = np.cumsum(values)[:-1]
    before = cumulative / k
    after = (values.sum() - cumulative) / (n - k)
    statistic = np.abs(after - before) * np.sqrt(k * (n - k) / n)
    return int(np.argmax(statistic)) + 1


class IncidentTracker:
    """Opens, merges, re-ranks, resolves and reopens incidents from the detectors' KPI anomalies."""

    def __init__(
        self,
        config: TrackerConfig,
        detection: SeriesDetection,
        is_kpi: Callable[[SeriesInfo], bool],
        rank: Rank,
        topology: Related,
    ) -> None:
        self.config = config
        self.detection = detection
        self.is_kpi = is_kpi
        self.rank = rank
        self.topology = topology
        self.lock = threading.Lock()
        self.incidents: dict[str, Incident] = {}
        self._open: dict[str, _Open] = {}
        self._quiet_until: dict[str, int] = {}  # KPI -> when its last incident resolved

    @property
    def detecting(self) -> DetectionConfig:
        return self.detection.config

    def update(self, store: SeriesStore, now: int) -> list[tuple[IncidentChange, Incident]]:
        changed: dict[str, IncidentChange] = {}
        grown = self._attach_breaks(store, now, changed)
        for incident in [i for i in self.incidents.values() if i.state is IncidentState.OPEN]:
            if self._recovered(store, incident, now):
                self._resolve(incident, now)
                changed[incident.id] = IncidentChange.RESOLVED
            elif self._refresh(store, incident, now, incident.id in grown):
                changed.setdefault(incident.id, IncidentChange.UPDATED)
        self.detection.expire(now)
        self._expire_resolved()
        return [(change, copy.deepcopy(self.incidents[i])) for i, change in changed.items()]

    # ---- opening and merging -----------------------------------------------------------------------
    def _attach_breaks(self, store: SeriesStore, now: int, changed: dict[str, IncidentChange]) -> set[str]:
        """Each broken KPI into its incident (existing, related or new); the incidents that grew."""
        grown: set[str] = set()
        for info, onset, after_pause in self.broken_kpis(store):
            home = self._home(store, info, onset)
            if home is None:
                home = self._open_incident(store, info, onset, now, after_pause)
                changed[home.id] = IncidentChange.OPENED
            state = self._open[home.id]
            if info.id not in state.kpis:
                state.kpis.add(info.id)
                grown.add(home.id)
                home.onset_unix_nano = min(home.onset_unix_nano, onset)
                changed.setdefault(home.id, IncidentChange.UPDATED)
        return grown

    def broken_kpis(self, store: SeriesStore) -> list[tuple[SeriesInfo, int, bool]]:
        """KPIs whose anomaly counts as a break now, with the break's onset and whether it began
        where a planned pause ended (a fault that started during the pause)."""
        out = []
        for sid, anomaly in sorted(self.detection.anomalies().items(), key=lambda item: item[1].onset_unix_nano):
            info = store.info(sid)
            if info is None or not self.is_kpi(info):
                continue
            onset = self._unplanned_onset(store, info, anomaly)
            if onset is not None and onset > self._quiet_until.get(sid, 0):
                out.append((info, onset, onset > anomaly.onset_unix_nano))
        return out

    def _unplanned_onset(self, store: SeriesStore, info: SeriesInfo, anomaly: Anomaly) -> int | None:
        """The onset of the part of the anomaly that is a break (None: no break, or planned work)."""
        if is_alert(info):
            return anomaly.onset_unix_nano
        if not harmful(info, anomaly.z):
            return None
        if _points_since(store, info.id, anomaly.onset_unix_nano) < self.config.kpi_points:
            return None
        job = info.resource.get(Attributes.FACTORYLENS_JOB_ID)
        if not job:
            return anomaly.onset_unix_nano
        interval = self.detection.intervals.get(info.id, 0)
        pauses = job_pauses(store, str(job))
        verdict = judge(
            pauses,
            anomaly.onset_unix_nano,
            anomaly.last_unix_nano,
            interval,
            _points_since(store, info.id, anomaly.onset_unix_nano),
            self.config.planned_pause_factor,
        )
        if verdict.held and not (verdict.unreported and self._unlike_earlier_saves(store, info, anomaly, pauses)):
            return None
        if (
            verdict.onset != anomaly.onset_unix_nano
            and _points_since(store, info.id, verdict.onset) < self.config.kpi_points
        ):
            return None
        return verdict.onset

    def _unlike_earlier_saves(
        self, store: SeriesStore, info: SeriesInfo, kpi: Anomaly, pauses: list[tuple[np.ndarray, np.ndarray]]
    ) -> bool:
        """Whether a signal the KPI depends on, that can slow it, went anomalous in its bad direction
        before the KPI broke and is further out than it ever was during the job's earlier saves: then
        a break when a save is due is that fault's effect (the checkpoint's mount got slow), not a
        save like the others. (Trouble that began during the save waits for the save to end: the
        break is measured from there.)"""
        interval = self.detection.intervals.get(info.id, 0)
        windows = save_windows(pauses, kpi.onset_unix_nano - interval, interval)
        others = {
            sid: a
            for sid, a in self.detection.anomalies().items()
            if sid != info.id and a.onset_unix_nano < kpi.onset_unix_nano
        }
        if not windows or not others:
            return False
        related = self.topology(store).related({info.entity})
        for sid, anomaly in others.items():
            other = store.info(sid)
            if other is None or other.entity not in related or self.is_kpi(other):
                continue
            meaning = describe_signal(other.label)
            if meaning.can_slow and meaning.kind.bad_direction in (0, anomaly.direction):
                if _beyond_saves(store, sid, windows, anomaly, self.config.planned_pause_factor):
                    return True
        return False

    def _home(self, store: SeriesStore, info: SeriesInfo, onset: int) -> Incident | None:
        open_incidents = [i for i in self.incidents.values() if i.state is IncidentState.OPEN]
        home = next((i for i in open_incidents if info.id in self._open[i.id].kpis), None)
        if home is not None:
            return home
        merge_ns = self.detecting.merge_window_s * NS
        return next(
            (i for i in open_incidents if abs(onset - i.onset_unix_nano) <= merge_ns and self._related(store, info, i)),
            None,
        )

    def _open_incident(
        self, store: SeriesStore, info: SeriesInfo, onset: int, now: int, after_pause: bool = False
    ) -> Incident:
        # after a planned pause the break is measured from where the pause ended, not from its start
        t0 = self._change_point(store, info, onset, search=not after_pause)
        key = f"{info.id}:{t0}".encode()
        incident = Incident(
            id="inc-" + hashlib.blake2b(key, digest_size=6).hexdigest(),
            state=IncidentState.OPEN,
            title=f"{info.label} on {info.entity} broke",
            opened_unix_nano=now,
            onset_unix_nano=onset,
            updated_unix_nano=now,
            kpi_series_id=info.id,
        )
        self.incidents[incident.id] = incident
        self._open[incident.id] = _Open(t0=t0)
        return incident

    def _related(self, store: SeriesStore, info: SeriesInfo, incident: Incident) -> bool:
        """Same workload (job, else service), or one KPI's entity depends on the other's."""
        others = [o for o in (store.info(sid) for sid in self._open[incident.id].kpis) if o is not None]
        if any(workload(o) == workload(info) for o in others):
            return True
        topology = self.topology(store)
        near = topology.related({info.entity})
        return any(o.entity in near or info.entity in topology.related({o.entity}) for o in others)

    def _change_point(self, store: SeriesStore, info: SeriesInfo, onset: int, *, search: bool = True) -> int:
        """The last normal moment: the point before the KPI's change point, at or before ``onset``
        (``search=False``: the point right before ``onset``)."""
        _, ts, values = store.query(info.id, None, onset - int(self.config.lookback_s * NS))
        ok = np.isfinite(values)
        ts, values = ts[ok], values[ok]
        at_onset = int(np.searchsorted(ts, onset))
        if at_onset < 2 or not search:
            return int(ts[at_onset - 1]) if at_onset else onset - 1
        first = max(0, at_onset - self.config.change_point_points)
        window = values[first : min(len(values), at_onset + self.detecting.consecutive)]
        split = first + change_point(window, at_onset - first, bad_direction(info))
        split = min(max(split, first + 1), at_onset)
        return int(ts[split - 1])

    # ---- while open --------------------------------------------------------------------------------
    def _refresh(self, store: SeriesStore, incident: Incident, now: int, grown: bool) -> bool:
        """Re-rank a young incident when due; whether its causes changed."""
        state = self._open[incident.id]
        incident.updated_unix_nano = now
        young = now - incident.onset_unix_nano <= self.config.rerank_for_s * NS
        due = now - state.ranked_at >= self.config.rerank_interval_s * NS or grown
        if not ((young and due) or not incident.causes):
            return False
        before = [(c.entity, c.signal) for c in incident.causes]
        state.ranked_at = now
        self.rank(store, incident, sorted(state.kpis), state.t0)
        return [(c.entity, c.signal) for c in incident.causes] != before

    def _recovered(self, store: SeriesStore, incident: Incident, now: int) -> bool:
        """Every KPI back inside its pre-incident band for ``resolve_after_s`` (or silent for much longer)."""
        state = self._open[incident.id]
        return all(self._kpi_recovered(store, sid, state.t0, now) for sid in state.kpis)

    def _kpi_recovered(self, store: SeriesStore, sid: str, t0: int, now: int) -> bool:
        info = store.info(sid)
        if info is None:
            return True
        detecting = self.detecting
        quiet_ns = int(detecting.resolve_after_s * NS)
        view = View.RAW if is_alert(info) else None
        _, ts, values = store.query(sid, view, t0 - int(detecting.window_s * NS))
        ok = np.isfinite(values)
        ts, values = ts[ok], values[ok]
        recent = values[ts > now - quiet_ns]
        if is_alert(info):
            return not (recent > 0).any() and bool(len(ts)) and ts[-1] > t0
        if not len(recent):
            return bool(ts.size) and now - ts[-1] > STALE_FACTOR * quiet_ns  # gone quiet for good
        reference = values[ts <= t0]
        if len(reference) < 3 or len(recent) < detecting.consecutive:
            return False
        detector = RobustZDetector(detecting.robust)
        z = detector.scores(reference[:, None], recent[:, None]).z[:, 0]
        direction = bad_direction(info)
        harm = np.abs(z) if direction == 0 else np.clip(direction * z, 0, None)
        return not (np.nan_to_num(harm, nan=0.0) > detecting.threshold).any()

    def _resolve(self, incident: Incident, now: int) -> None:
        incident.state = IncidentState.RESOLVED
        incident.resolved_unix_nano = now
        kpis = self._open[incident.id].kpis
        self.detection.end(kpis)  # a later break of the same KPI is a new incident
        for sid in kpis:
            self._quiet_until[sid] = now

    def _expire_resolved(self) -> None:
        resolved = sorted(
            (i for i in self.incidents.values() if i.state is IncidentState.RESOLVED),
            key=lambda i: i.resolved_unix_nano,
        )
        for incident in resolved[: max(0, len(resolved) - MAX_RESOLVED_INCIDENTS)]:
            del self.incidents[incident.id]
        for incident_id in [i for i in self._open if i not in self.incidents]:
            del self._open[incident_id]

    def kpis_of(self, incident_id: str) -> set[str]:
        """The KPI series an incident holds (empty once it is forgotten)."""
        state = self._open.get(incident_id)
        return set(state.kpis) if state else set()

    def load(self, incidents: list[Incident]) -> None:
        """Incidents persisted by the service (after a restart); open ones keep their KPI."""
        self.incidents = {i.id: i for i in incidents}
        self._open = {
            i.id: _Open(kpis={i.kpi_series_id} if i.kpi_series_id else set(), t0=i.onset_unix_nano - 1)
            for i in incidents
        }


def _beyond_saves(
    store: SeriesStore, sid: str, windows: list[tuple[int, int]], anomaly: Anomaly, factor: float
) -> bool:
    """Whether the anomaly's peak is more than ``factor`` times as far from normal (and past its
    band) as the series ever was during the earlier saves: a save does not explain it."""
    _, ts, values = store.query(sid, None, min(start for start, _ in windows))
    during = np.zeros(len(ts), dtype=bool)
    for start, end in windows:
        during |= (ts >= start) & (ts <= end)
    seen = values[during & np.isfinite(values)]
    if not len(seen):
        return False
    direction = anomaly.direction
    worst = float(seen.max() if direction > 0 else seen.min())
    excess = direction * (anomaly.observed - anomaly.expected)
    routine = max(direction * (worst - anomaly.expected), 0.0)
    return excess > factor * routine and direction * (anomaly.observed - worst) > abs(anomaly.upper - anomaly.expected)


def _points_since(store: SeriesStore, sid: str, since: int) -> int:
    _, _ts, values = store.query(sid, None, since)
    return int(np.isfinite(values).sum())
