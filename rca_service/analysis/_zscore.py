"""Robust z-score detection with onset-ordered causes: the service's first, simple analyzer.

Each series' recent history gives a median and a robust scale (interquartile range / 1.349, the
normal-consistent IQR estimator; Rousseeuw & Croux, JASA 1993, discuss it with the MAD). A point's
score is its distance from the median in those units, mapped to [0, 1]. A series that stays beyond
the threshold for ``consecutive`` points is an anomaly; anomalies whose onsets fall within
``merge_window_s`` of an open incident join it. Causes are ranked by onset (earlier first: causes
lead effects) weighted by strength. Seasonal baselines and topology-aware ranking replace this later
behind the same :class:`Analyzer` interface.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from factorylens.rca_service.analysis._base import (
    Analyzer,
    Band,
    Baseline,
    Cause,
    Evidence,
    Incident,
    IncidentChange,
    IncidentState,
)
from factorylens.rca_service.baselines import BaselineBank
from factorylens.rca_service.store import SeriesInfo, SeriesStore, View

log = logging.getLogger(__name__)

NS = 1_000_000_000
IQR_TO_SIGMA = 1.349
MAX_SKEW_NS = 300 * NS  # a point further in the future than this does not move what counts as seen
MAX_RESOLVED_INCIDENTS = 1000
MAX_Z = 1000.0  # beyond this (a constant history that moved) strength no longer grows
ONSET_DECAY = 0.7  # each distinct earlier onset in the incident scales a cause's score by this


@dataclass(frozen=True)
class RobustZScoreConfig:
    """
    :param window_s: history used for the median and scale
    :param min_points: history points needed before a series is scored
    :param threshold: robust z beyond which a point is anomalous
    :param consecutive: anomalous points in a row that make an anomaly
    :param merge_window_s: anomalies starting this close to an open incident join it
    :param resolve_after_s: an incident resolves when none of its causes was anomalous for this long
    :param max_causes: causes kept per incident
    :param relative_floor: the scale is at least this fraction of |median| (flat series)
    :param ratio_floor: and at least this for ratios (unit ``1``): an idle GPU going from 0 to 1% busy is
        not an anomaly
    :param ignore_domains: domains never scored (own health, our own findings fed back, and cost
        bookkeeping: GPU time by job, prices; cost has its own analysis, waste incidents)
    """

    window_s: float = 3600.0
    min_points: int = 20
    threshold: float = 4.0
    consecutive: int = 2
    merge_window_s: float = 300.0
    resolve_after_s: float = 120.0
    max_causes: int = 10
    relative_floor: float = 0.01
    ratio_floor: float = 0.01
    ignore_domains: tuple[str, ...] = ("self", "rca", "cost")

    def validate(self) -> None:
        if self.window_s <= 0 or self.threshold <= 0 or self.min_points < 3 or self.consecutive < 1:
            raise ValueError("window_s and threshold must be positive, min_points >= 3, consecutive >= 1")


def score_of(z: np.ndarray | float, threshold: float) -> np.ndarray | float:
    """|z| → [0, 1): 0.5 at the threshold, approaching 1 far beyond it."""
    a = np.abs(z)
    return a / (a + threshold)


def _ordinal(n: int) -> str:
    return {1: "first", 2: "second", 3: "third"}.get(n, f"{n}th")


@dataclass
class _Anomaly:
    series_id: str
    onset: int
    last: int
    z: float
    observed: float
    expected: float
    scale: float


class RobustZScoreAnalyzer(Analyzer):
    name = "robust-zscore"

    def __init__(self, config: RobustZScoreConfig | None = None, baselines: BaselineBank | None = None) -> None:
        self.config = config or RobustZScoreConfig()
        self.config.validate()
        self.baselines = baselines or BaselineBank()
        self._lock = threading.Lock()
        self._pass_lock = threading.Lock()  # one analysis pass at a time (the loop, analyze_now())
        self._seen_until: dict[str, int] = {}
        self._scores: dict[str, float] = {}
        # the latest scored point's time, the history's median and robust scale (its band)
        self._latest: dict[str, tuple[int, float, float]] = {}
        self._kpi_ids: set[str] = set()
        self._active: dict[str, _Anomaly] = {}
        self._incidents: dict[str, Incident] = {}
        # every anomaly that joined an incident, also those ranked below max_causes
        self._members: dict[str, set[str]] = {}
        self._intervals: dict[str, int] = {}
        self._skipped: collections.Counter[str] = collections.Counter()

    # ---- detection -----------------------------------------------------------------------------
    def _floor(self, unit: str) -> float:
        return self.config.ratio_floor if unit == "1" else 1e-9

    def _stats(self, history: np.ndarray, unit: str) -> tuple[float, float]:
        q1, median, q3 = np.percentile(history, [25, 50, 75])
        scale = max((q3 - q1) / IQR_TO_SIGMA, abs(median) * self.config.relative_floor, self._floor(unit))
        return float(median), float(scale)

    def analyze(
        self,
        store: SeriesStore,
        now_unix_nano: int,
        *,
        deadline: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[tuple[IncidentChange, Incident]]:
        with self._pass_lock:
            return self._analyze(store, now_unix_nano, deadline, should_stop)

    def skipped(self) -> dict[str, int]:
        return {
            **self._skipped,
            "baseline too costly": self.baselines.unmodelled_count,
            "baselines full": self.baselines.waiting,
        }

    def _analyze(
        self,
        store: SeriesStore,
        now_unix_nano: int,
        deadline: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[tuple[IncidentChange, Incident]]:
        cfg = self.config
        found: list[_Anomaly] = []
        with store.lock:
            live = set(store.series)
            candidates = [
                s.info
                for s in store.series.values()
                if min(s.last_ts, now_unix_nano + MAX_SKEW_NS) > self._seen_until.get(s.info.id, 0)
                and s.info.domain not in cfg.ignore_domains
            ]
        self._forget_missing(live)
        # the longest-waiting first, so a pass cut short by its budget starves no series
        candidates.sort(key=lambda info: self._seen_until.get(info.id, 0))
        for n, info in enumerate(candidates):
            if (deadline is not None and time.monotonic() > deadline) or (should_stop and should_stop()):
                self._skipped["budget spent"] += len(candidates) - n
                log.debug(
                    "analysis pass out of time: %d of %d series wait for the next pass",
                    len(candidates) - n,
                    len(candidates),
                )
                break
            try:
                anomaly = self._score(store, info, now_unix_nano)
            except Exception:
                log.exception("scoring series %s (%s) failed", info.id, info.metric)
                continue
            if anomaly is not None:
                found.append(anomaly)
        with self._lock:
            for anomaly in found:
                self._active[anomaly.series_id] = anomaly
            return self._update_incidents(store, now_unix_nano)

    def _forget_missing(self, live: set[str]) -> None:
        """Drop the state of series the store no longer has (retention): their anomalies end."""
        self.baselines.forget(live)
        for table in (self._seen_until, self._scores, self._intervals, self._latest):
            for sid in [sid for sid in table if sid not in live]:
                del table[sid]
        self._kpi_ids &= live
        with self._lock:
            for sid in [sid for sid in self._active if sid not in live]:
                del self._active[sid]

    def _score(self, store: SeriesStore, info: SeriesInfo, now_unix_nano: int) -> _Anomaly | None:
        cfg = self.config
        window = int(cfg.window_s * NS)
        seen = self._seen_until.get(info.id, 0)
        try:
            # up to the newest point, even one a skewed clock put in the future
            _, ts, values = store.query(info.id, None, min(now_unix_nano, seen or now_unix_nano) - 2 * window)
        except KeyError:
            return None
        ok = np.isfinite(values) & (ts <= now_unix_nano + MAX_SKEW_NS)  # a clock far ahead is not evidence
        ts, values = ts[ok], values[ok]
        if not len(ts):
            return None
        self._seen_until[info.id] = int(ts[-1])
        self._feed_baseline(store, info, seen, ts, values, now_unix_nano)
        fresh = int(np.count_nonzero(ts > seen if seen else ts > ts[-1] - window // 10))
        if not fresh:
            return None
        # the new points plus enough before them to see a run of `consecutive`; history is older
        split = max(0, len(ts) - fresh - cfg.consecutive + 1)
        history = values[:split][ts[:split] >= ts[-1] - window]
        if len(history) < cfg.min_points:
            return None
        median, scale = self._stats(history, info.unit)
        recent_ts, recent = ts[split:], values[split:]
        if info.id not in self._latest and self.is_kpi(info):  # asked once per series: globs cost
            self._kpi_ids.add(info.id)
        self._latest[info.id] = (int(recent_ts[-1]), median, scale)
        self._intervals[info.id] = int(np.median(np.diff(ts[-16:]))) if len(ts) > 1 else 0
        z = np.clip((recent - median) / scale, -MAX_Z, MAX_Z)
        self._scores[info.id] = float(score_of(z[-1], cfg.threshold))
        run = _trailing_run(np.abs(z) > cfg.threshold)
        if run < cfg.consecutive:
            return None
        previous = self._active.get(info.id)
        onset = previous.onset if previous else int(recent_ts[-run])
        peak = int(np.argmax(np.abs(z[-run:]))) - run
        return _Anomaly(info.id, onset, int(recent_ts[-1]), float(z[peak]), float(recent[peak]), median, scale)

    def _feed_baseline(
        self, store: SeriesStore, info: SeriesInfo, seen: int, ts: np.ndarray, values: np.ndarray, now_unix_nano: int
    ) -> None:
        """New points to the series' seasonal baseline; its first call brings all stored history (the
        warm start after a restart: the store was rebuilt from snapshot and WAL)."""
        if not seen:
            _, ts, values = store.query(info.id, None, 0)
            ok = np.isfinite(values) & (ts <= now_unix_nano + MAX_SKEW_NS)
            if ok.any():
                self.baselines.warm_start(info.id, ts[ok] / NS, values[ok])
            return
        new = ts > seen
        if new.any():
            self.baselines.observe(info.id, ts[new] / NS, values[new])

    def _update_incidents(self, store: SeriesStore, now: int) -> list[tuple[IncidentChange, Incident]]:
        cfg = self.config
        changes: list[tuple[IncidentChange, Incident]] = []
        open_incidents = [i for i in self._incidents.values() if i.state is IncidentState.OPEN]
        changed: dict[str, IncidentChange] = {}
        for anomaly in sorted(self._active.values(), key=lambda a: a.onset):
            home = next((i for i in open_incidents if anomaly.series_id in self._members.get(i.id, ())), None)
            if home is None:
                home = next(
                    (
                        i
                        for i in open_incidents
                        if abs(anomaly.onset - i.onset_unix_nano) <= cfg.merge_window_s * NS
                        or i.onset_unix_nano <= anomaly.onset <= i.updated_unix_nano
                    ),
                    None,
                )
            if home is None:
                key = f"{anomaly.series_id}:{anomaly.onset}".encode()
                home = Incident(
                    id="inc-" + hashlib.blake2b(key, digest_size=6).hexdigest(),
                    state=IncidentState.OPEN,
                    title="",
                    opened_unix_nano=now,
                    onset_unix_nano=anomaly.onset,
                    updated_unix_nano=anomaly.last,
                )
                self._incidents[home.id] = home
                self._members[home.id] = set()
                open_incidents.append(home)
                changed[home.id] = IncidentChange.OPENED
            before = [(c.series_id, c.rank) for c in home.causes]
            self._members[home.id].add(anomaly.series_id)
            self._add_cause(store, home, anomaly)
            if [(c.series_id, c.rank) for c in home.causes] != before:
                changed.setdefault(home.id, IncidentChange.UPDATED)
        # forget anomalies that ended; resolve incidents whose causes all recovered
        for sid, anomaly in list(self._active.items()):
            if now - anomaly.last > cfg.resolve_after_s * NS and self._seen_until.get(sid, 0) > anomaly.last:
                del self._active[sid]
        for incident in open_incidents:
            if not any(sid in self._active for sid in self._members.get(incident.id, ())):
                incident.state = IncidentState.RESOLVED
                incident.resolved_unix_nano = now
                changed[incident.id] = IncidentChange.RESOLVED
        for incident_id, change in changed.items():
            changes.append((change, copy.deepcopy(self._incidents[incident_id])))
        self._expire_resolved()
        return changes

    def _expire_resolved(self) -> None:
        resolved = sorted(
            (i for i in self._incidents.values() if i.state is IncidentState.RESOLVED),
            key=lambda i: i.resolved_unix_nano,
        )
        for incident in resolved[: max(0, len(resolved) - MAX_RESOLVED_INCIDENTS)]:
            del self._incidents[incident.id]
            self._members.pop(incident.id, None)

    def _add_cause(self, store: SeriesStore, incident: Incident, anomaly: _Anomaly) -> None:
        cfg = self.config
        try:
            info = store.series[anomaly.series_id].info
        except KeyError:
            return
        incident.onset_unix_nano = min(incident.onset_unix_nano, anomaly.onset)
        incident.updated_unix_nano = max(incident.updated_unix_nano, anomaly.last)
        band = cfg.threshold * anomaly.scale
        evidence = Evidence(
            anomaly.series_id,
            f"{info.label} on {info.entity}",
            anomaly.last,
            anomaly.observed,
            anomaly.expected,
            anomaly.expected - band,
            anomaly.expected + band,
            _example_traces(store, info),
        )
        # one cause per signal of an entity (all 64 CPUs' time of a host, both directions of a port):
        # its strongest series is the evidence, its earliest onset the onset
        cause = next((c for c in incident.causes if c.entity == info.entity and c.signal == info.metric), None)
        if cause is None:
            cause = Cause(0, info.entity, info.domain, info.metric, info.id, anomaly.onset, 0.0, "", [evidence])
            incident.causes.append(cause)
        elif cause.series_id == info.id or _z(evidence, cfg.threshold) >= _z(cause.evidence[0], cfg.threshold):
            cause.series_id, cause.evidence = info.id, [evidence]
        cause.onset_unix_nano = min(cause.onset_unix_nano, anomaly.onset)
        self._rank(store, incident)

    def _rank(self, store: SeriesStore, incident: Incident) -> None:
        cfg = self.config
        # stronger and earlier is more likely the cause: causes lead effects, so every earlier onset
        # group in the incident scales the score down (onsets closer than the sampling interval tie:
        # exporters on different hosts are not synchronized)
        group = self._onset_groups(incident.causes)
        for c in incident.causes:
            c.score = float(
                score_of(_z(c.evidence[0], cfg.threshold), cfg.threshold) * ONSET_DECAY ** group[c.onset_unix_nano]
            )
        incident.causes.sort(key=lambda c: (-c.score, c.onset_unix_nano))
        del incident.causes[cfg.max_causes :]
        by_onset = sorted(incident.causes, key=lambda c: c.onset_unix_nano)
        for rank, c in enumerate(incident.causes, start=1):
            c.rank = rank
            earlier = sum(o.onset_unix_nano < c.onset_unix_nano for o in incident.causes)
            c.explanation = self._explain(store, c, earlier + 1, len(incident.causes))
        top = incident.causes[0]
        incident.score = top.score
        incident.kpi_series_id = incident.kpi_series_id or by_onset[-1].series_id
        incident.title = f"{top.signal} anomaly on {top.entity}"
        incident.summary = (
            f"{len(incident.causes)} signal(s) broke their baselines since "
            f"{_when(incident.onset_unix_nano)}; most likely cause: {top.explanation}"
        )

    def _onset_groups(self, causes: list[Cause]) -> dict[int, int]:
        tolerance = max((self._intervals.get(c.series_id, 0) for c in causes), default=0)
        groups: dict[int, int] = {}
        start, index = None, -1
        for onset in sorted({c.onset_unix_nano for c in causes}):
            if start is None or onset - start > tolerance:
                start, index = onset, index + 1
            groups[onset] = index
        return groups

    def _explain(self, store: SeriesStore, cause: Cause, order: int, total: int) -> str:
        e = cause.evidence[0]
        series = store.series.get(cause.series_id)
        label = series.info.label if series is not None else cause.signal
        unit = f" {series.info.display_unit}" if series is not None and series.info.display_unit else ""
        direction = "rose" if e.observed > e.expected else "fell"
        z = _z(e, self.config.threshold)
        if z >= MAX_Z:
            how = f"away from its recent, practically constant value of {e.expected:.4g}{unit}"
        else:
            how = (
                f"{z:.1f} robust standard deviations from its recent median of {e.expected:.4g}{unit} "
                f"(normal band {e.lower:.4g} to {e.upper:.4g})"
            )
        return (
            f"{label} on {cause.entity} ({cause.domain}) {direction} to {e.observed:.4g}{unit}, {how}; "
            f"it was the {_ordinal(order)} of {total} signal(s) to break its baseline, at "
            f"{_when(cause.onset_unix_nano)}."
        )

    # ---- queries -------------------------------------------------------------------------------
    def incidents(self) -> list[Incident]:
        """Copies, newest first (the live ones change under the next pass)."""
        with self._lock:
            return copy.deepcopy(sorted(self._incidents.values(), key=lambda i: i.opened_unix_nano, reverse=True))

    def load_incidents(self, incidents: list[Incident]) -> None:
        with self._lock:
            self._incidents = {i.id: i for i in incidents}
            self._members = {i.id: {c.series_id for c in i.causes} for i in incidents}

    def anomaly_scores(self) -> dict[str, float]:
        return dict(self._scores)

    def predictability(self) -> dict[str, float]:
        return self.baselines.predictability()

    def kpi_series(self) -> set[str]:
        return set(self._kpi_ids)

    def latest_bands(self, series_ids: Iterable[str]) -> dict[str, Band]:
        """The seasonal baseline's band where the series has one, else the robust z threshold around
        the recent median: the same band :meth:`baseline` (the API's GetBaseline) returns."""
        out = {}
        for sid in series_ids:
            latest = self._latest.get(sid)
            if latest is None:
                continue
            ts, median, scale = latest
            seasonal = self.baselines.baseline(sid)
            if seasonal is not None:
                lower, upper = seasonal.band(np.array([ts / NS]))
                out[sid] = Band(ts, float(lower[0]), float(upper[0]))
            else:
                half = self.config.threshold * scale
                out[sid] = Band(ts, median - half, median + half)
        return out

    def baseline(
        self, store: SeriesStore, series_id: str, start_unix_nano: int, end_unix_nano: int, view: View | None = None
    ) -> Baseline:
        cfg = self.config
        seasonal = self.baselines.baseline(series_id)
        if seasonal is not None and (view is None or view is store.series[series_id].info.default_view):
            info, ts, observed = store.query(series_id, view, start_unix_nano, end_unix_nano)
            expected = seasonal.expected(ts / NS)
            lower, upper = seasonal.band(ts / NS)
            with np.errstate(invalid="ignore", divide="ignore"):
                score = score_of((observed - expected) / max(seasonal.scale, self._floor(info.unit)), cfg.threshold)
            return Baseline(
                series_id,
                f"seasonal-{seasonal.method}",
                info.default_view,
                ts,
                observed,
                expected,
                lower,
                upper,
                np.asarray(score, dtype=float),
                self.baselines.predictability().get(series_id, float("nan")),
                seasonal.periods_s,
            )
        info, ts, values = store.query(series_id, view, start_unix_nano - int(cfg.window_s * NS), end_unix_nano)
        index = pd.to_datetime(ts, unit="ns")
        s = pd.Series(values, index=index)
        rolling = s.rolling(f"{int(cfg.window_s)}s", min_periods=cfg.min_points)
        median = rolling.median().shift(1)
        q1, q3 = rolling.quantile(0.25).shift(1), rolling.quantile(0.75).shift(1)
        scale = np.maximum((q3 - q1) / IQR_TO_SIGMA, np.abs(median) * cfg.relative_floor).clip(
            lower=self._floor(info.unit)
        )
        keep = ts >= start_unix_nano
        expected = median.to_numpy()[keep]
        band = cfg.threshold * scale.to_numpy()[keep]
        observed = values[keep]
        with np.errstate(invalid="ignore"):
            score = score_of((observed - expected) / (band / cfg.threshold), cfg.threshold)
        return Baseline(
            series_id,
            "robust-zscore",
            view or info.default_view,
            ts[keep],
            observed,
            expected,
            expected - band,
            expected + band,
            np.asarray(score, dtype=float),
        )


MAX_EXAMPLE_TRACES = 5


def _example_traces(store: SeriesStore, info: SeriesInfo) -> list[str]:
    """For a span-derived series: the sampled traces of that operation, slowest and failed first."""
    if not info.metric.startswith("factorylens.span."):
        return []
    with store.lock:
        spans = store.span_sample.spans(
            str(info.resource.get("service.name", "")), str(info.attributes.get("span.name", ""))
        )
    return list(dict.fromkeys(s["trace_id"] for s in spans))[:MAX_EXAMPLE_TRACES]


def _z(evidence: Evidence, threshold: float) -> float:
    """The robust z of the evidence's observation (the band is ``threshold`` scales wide)."""
    scale = max((evidence.upper - evidence.expected) / threshold, 1e-300)
    return min(abs(evidence.observed - evidence.expected) / scale, MAX_Z)


def _trailing_run(flags: np.ndarray) -> int:
    if not len(flags) or not flags[-1]:
        return 0
    falses = np.flatnonzero(~flags)
    return len(flags) - (int(falses[-1]) + 1 if len(falses) else 0)


def _when(unix_nano: int) -> str:
    return datetime.fromtimestamp(unix_nano / NS, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
