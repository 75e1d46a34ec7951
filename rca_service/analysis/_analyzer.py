"""The RCA service's analyzer: detectors → incident tracker → ranker, composed.

Every series goes through its detector once per pass (:mod:`._detecting`: the seasonal detector
where a baseline is fitted, robust-z otherwise); the :class:`~._tracker.IncidentTracker` opens an
incident when a KPI breaks and resolves it on recovery; the :class:`~._causes.IncidentRanker` ranks
its causes with a :class:`~factorylens.rca_service.ranking.Ranker` (the engine by default).
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from factorylens.rca_service.analysis._base import Analyzer, Band, Baseline, Incident, IncidentChange
from factorylens.rca_service.analysis._causes import CauseConfig, IncidentRanker
from factorylens.rca_service.analysis._detecting import DetectionConfig, SeriesDetection
from factorylens.rca_service.analysis._kpis import DEFAULT_ALERT_EVENTS, DEFAULT_KPI_METRICS, is_kpi
from factorylens.rca_service.analysis._tracker import IncidentTracker, TrackerConfig
from factorylens.rca_service.baselines import BaselineBank
from factorylens.rca_service.detection import RobustZDetector, calibrated
from factorylens.rca_service.ranking import Ranker, RankingConfig, RankingEngine, Topology
from factorylens.rca_service.store import SeriesInfo, SeriesStore, View
from factorylens.registry import Metrics

NS = 1_000_000_000


@dataclass(frozen=True)
class KpiRankingConfig:
    """
    :param detection: how every series is scored
    :param incidents: when KPI breaks open, merge and resolve incidents
    :param causes: which series the ranker sees, and how far before the break a cause may begin
    :param ranking: the ranking engine's parameters
    :param kpi_metrics: metric names (glob patterns allowed) whose series are KPIs
    :param server_spans_are_kpis: a service's server-side span latency and errors are KPIs
    :param alert_events: log-record event names that are external alerts (each opens an incident)
    """

    detection: DetectionConfig = field(default_factory=DetectionConfig)
    incidents: TrackerConfig = field(default_factory=TrackerConfig)
    causes: CauseConfig = field(default_factory=CauseConfig)
    # live training telemetry has periodic checkpoint and evaluation spikes: only leaving the range
    # visited in the last hour counts (on Nezha's 6-hour references this costs 2 of 56 top-1 hits)
    ranking: RankingConfig = field(default_factory=lambda: RankingConfig(seen_range_points=30))
    kpi_metrics: tuple[str, ...] = DEFAULT_KPI_METRICS
    server_spans_are_kpis: bool = True
    alert_events: tuple[str, ...] = DEFAULT_ALERT_EVENTS


def config_for_interval(
    interval_s: float, kpi_metrics: tuple[str, ...] = (), base: KpiRankingConfig | None = None
) -> KpiRankingConfig:
    """The analyzer's settings restated in scrapes, for data sampled every ``interval_s``.

    The defaults assume 10-second scrapes. Scaled here: the robust-z history to 60 scrapes (the
    default's hour is 360 scrapes, more than a Nezha fault-free stretch holds at 60 s), the ranking's
    lookback likewise; an incident resolves after 3 quiet scrapes (at least the default 120 s),
    KPIs merge within 5 scrapes (at least the default 300 s), a cause may lead its KPI by 2 scrapes,
    causes are re-ranked every scrape for 10 scrapes. Counts of points stay."""
    base = base or KpiRankingConfig()
    defaults = DetectionConfig()
    return dataclasses.replace(
        base,
        detection=dataclasses.replace(
            base.detection,
            window_s=60 * interval_s,
            resolve_after_s=max(defaults.resolve_after_s, 3 * interval_s),
            merge_window_s=max(defaults.merge_window_s, 5 * interval_s),
        ),
        incidents=dataclasses.replace(
            base.incidents, lookback_s=60 * interval_s, rerank_for_s=10 * interval_s, rerank_interval_s=interval_s
        ),
        causes=dataclasses.replace(base.causes, lookback_s=60 * interval_s, lead_s=2 * interval_s),
        kpi_metrics=tuple(kpi_metrics) or base.kpi_metrics,
    )


def scaled_config(speed: float, interval_s: float, base: KpiRankingConfig | None = None) -> KpiRankingConfig:
    """Every window shrunk ``speed`` times, for telemetry that lives faster than its timestamps'
    clock (a simulated cluster): an hour of history is 6 minutes at speed 10; an incident still
    resolves after at least three scrapes."""
    base = base or KpiRankingConfig()
    d, i, c = base.detection, base.incidents, base.causes
    return dataclasses.replace(
        base,
        detection=dataclasses.replace(
            d,
            window_s=d.window_s / speed,
            merge_window_s=d.merge_window_s / speed,
            resolve_after_s=max(d.resolve_after_s / speed, 3 * interval_s),
        ),
        incidents=dataclasses.replace(
            i,
            lookback_s=i.lookback_s / speed,
            rerank_for_s=i.rerank_for_s / speed,
            rerank_interval_s=i.rerank_interval_s / speed,
        ),
        causes=dataclasses.replace(c, lookback_s=c.lookback_s / speed, lead_s=c.lead_s / speed),
    )


class KpiRankingAnalyzer(Analyzer):
    """Detectors, incident tracker and ranker in one :class:`Analyzer`. ``topology``: edges known
    from elsewhere (a CMDB export, a replay's topology file), added to those in the telemetry;
    ``ranker``: the ranking method (the engine by default)."""

    name = "kpi-ranking"

    def __init__(
        self,
        config: KpiRankingConfig | None = None,
        baselines: BaselineBank | None = None,
        *,
        topology: Topology | None = None,
        ranker: Ranker | None = None,
    ) -> None:
        self.config = config or KpiRankingConfig()
        self.baselines = baselines if baselines is not None else BaselineBank()  # an empty bank is falsy
        self.detection = SeriesDetection(self.config.detection, self.baselines)
        self.ranker = IncidentRanker(
            dataclasses.replace(self.config.causes, ignore_domains=self.config.detection.ignore_domains),
            ranker or RankingEngine(self.config.ranking),
            intervals=self.detection.intervals,
            known_topology=topology,
            anomalies=self.detection.anomalies,
        )
        self.tracker = IncidentTracker(
            self.config.incidents, self.detection, self.is_kpi, self.ranker, self.ranker.topology
        )
        self._pass_lock = threading.Lock()  # one analysis pass at a time (the loop, analyze_now())
        self._kpi_cache: dict[str, bool] = {}

    def is_kpi(self, info: SeriesInfo) -> bool:
        known = self._kpi_cache.get(info.id)
        if known is None:  # asked once per series: globs cost
            cfg = self.config
            known = is_kpi(info, cfg.kpi_metrics, cfg.server_spans_are_kpis, cfg.alert_events)
            self._kpi_cache[info.id] = known
        return known

    def analyze(
        self,
        store: SeriesStore,
        now_unix_nano: int,
        *,
        deadline: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[tuple[IncidentChange, Incident]]:
        with self._pass_lock:
            store.settle_spans(now_unix_nano)
            self.detection.run(
                store,
                now_unix_nano,
                deadline=deadline,
                should_stop=should_stop,
                alert_series=lambda info: info.metric == Metrics.FACTORYLENS_EVENTS and self.is_kpi(info),
            )
            live = self.detection.seen_until.keys()
            for sid in [s for s in self._kpi_cache if s not in live]:
                del self._kpi_cache[sid]
            with self.tracker.lock:
                return self.tracker.update(store, now_unix_nano)

    def skipped(self) -> dict[str, int]:
        return self.detection.skipped_counts()

    # ---- queries -------------------------------------------------------------------------------
    def incidents(self) -> list[Incident]:
        """Copies, newest first (the live ones change under the next pass)."""
        with self.tracker.lock:
            ordered = sorted(self.tracker.incidents.values(), key=lambda i: i.opened_unix_nano, reverse=True)
            return copy.deepcopy(ordered)

    def load_incidents(self, incidents: list[Incident]) -> None:
        with self.tracker.lock:
            self.tracker.load(incidents)

    def anomaly_scores(self) -> dict[str, float]:
        return dict(self.detection.scores)

    def predictability(self) -> dict[str, float]:
        return self.baselines.predictability()

    def kpi_series(self) -> set[str]:
        return {sid for sid, kpi in self._kpi_cache.items() if kpi and sid in self.detection.scores}

    def latest_bands(self, series_ids: Iterable[str]) -> dict[str, Band]:
        """The band of the detector that scored each series' latest point (what GetBaseline returns)."""
        bands = self.detection.bands
        return {sid: Band(*bands[sid]) for sid in series_ids if sid in bands}

    def baseline(
        self, store: SeriesStore, series_id: str, start_unix_nano: int, end_unix_nano: int, view: View | None = None
    ) -> Baseline:
        seasonal = self.baselines.detector(series_id) if self.config.detection.seasonal else None
        info = store.info(series_id)
        if info is None:
            raise KeyError(series_id)
        if seasonal is not None and (view is None or view is info.default_view):
            _, ts, observed = store.query(series_id, view, start_unix_nano, end_unix_nano)
            expected, lower, upper = seasonal.band(ts)
            baseline = seasonal.baseline
            assert baseline is not None
            return Baseline(
                series_id,
                f"seasonal-{baseline.method}",
                info.default_view,
                ts,
                observed,
                expected,
                lower,
                upper,
                _scores(observed, expected, upper, self.config.detection.threshold),
                self.baselines.predictability().get(series_id, float("nan")),
                baseline.periods_s,
            )
        return self._robust_baseline(store, info, start_unix_nano, end_unix_nano, view)

    def _robust_baseline(
        self, store: SeriesStore, info: SeriesInfo, start: int, end: int, view: View | None
    ) -> Baseline:
        cfg = self.config.detection
        _, ts, values = store.query(info.id, view, start - int(cfg.window_s * NS), end)
        first = int(np.searchsorted(ts, start))
        window_points = max(int(np.sum(ts[:first] >= ts[first] - cfg.window_s * NS)) if first < len(ts) else 0, 1)
        resolution = cfg.ratio_floor if info.unit == "1" else 0.0
        detector = RobustZDetector(cfg.robust, resolution=resolution)
        expected, lower, upper = detector.rolling_band(values, first, window_points)
        observed = values[first:]
        return Baseline(
            info.id,
            detector.method,
            view or info.default_view,
            ts[first:],
            observed,
            expected,
            lower,
            upper,
            _scores(observed, expected, upper, cfg.threshold),
        )


def _scores(observed: np.ndarray, expected: np.ndarray, upper: np.ndarray, threshold: float) -> np.ndarray:
    """Calibrated scores of observed points against a band ``threshold`` robust deviations wide."""
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = (upper - expected) / threshold
        z = (observed - expected) / np.where(spread > 0, spread, np.nan)
    return np.asarray(calibrated(np.nan_to_num(z, nan=0.0)), dtype=float)
