"""Every series through its detector, once per analysis pass: the first stage of the RCA pipeline.

A series with a fitted seasonal baseline is scored by its :class:`SeasonalDetector` (the bank feeds
it every new point); one with a shorter history by the robust-z detector, vectorised over all such
series of the pass. Either way the outcome is the same: a calibrated score per series, its band,
and the :class:`Anomaly` in progress, which the incident tracker reads.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from factorylens.rca_service.baselines import BaselineBank
from factorylens.rca_service.detection import MAX_Z, Anomaly, RobustZConfig, RobustZDetector, RunTracker
from factorylens.rca_service.store import SERVING_LATENCY_METRICS, SeriesInfo, SeriesStore, View

log = logging.getLogger(__name__)

NS = 1_000_000_000
MAX_SKEW_NS = 300 * NS  # a point further in the future than this does not move what counts as seen
BATCH_SERIES = 512  # robust-z series scored per matrix (bounds the pass's memory)


@dataclass(frozen=True)
class DetectionConfig:
    """
    :param window_s: history the robust-z detector compares new points with
    :param robust: the robust-z detector (threshold, points in a row, history points needed)
    :param ratio_floor: a ratio (unit ``1``) moves in steps of at least this (an idle GPU going from
        0 to 1 % busy is not an anomaly)
    :param serving_latency_resolution: a served model's p95 latency (TTFT, TPOT, a phase) moves in
        steps of at least this share of its level
    :param seasonal: series with a fitted seasonal baseline are scored against it
    :param merge_window_s: KPI breaks starting this close to an open incident join it
    :param resolve_after_s: an anomaly (and an incident) ends after this long back inside its band
    :param ignore_domains: domains never scored (our own health, our findings fed back, cost
        bookkeeping, which has its own analysis: waste incidents)
    """

    window_s: float = 3600.0
    robust: RobustZConfig = field(default_factory=lambda: RobustZConfig(composite=False))
    ratio_floor: float = 0.01
    serving_latency_resolution: float = 0.1
    seasonal: bool = True
    merge_window_s: float = 300.0
    resolve_after_s: float = 120.0
    ignore_domains: tuple[str, ...] = ("self", "rca", "cost")

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.resolve_after_s < 0 or self.merge_window_s < 0:
            raise ValueError("window_s must be positive, resolve_after_s and merge_window_s >= 0")

    @property
    def threshold(self) -> float:
        return self.robust.threshold

    @property
    def consecutive(self) -> int:
        return self.robust.consecutive

    @property
    def min_points(self) -> int:
        return self.robust.min_points


@dataclass
class _Pending:
    """A robust-z series waiting for the pass's matrix scoring."""

    info: SeriesInfo
    reference: np.ndarray
    times: np.ndarray
    values: np.ndarray


class SeriesDetection:
    """Per series: what was seen, its detector's latest score and band, its anomaly in progress."""

    def __init__(self, config: DetectionConfig, baselines: BaselineBank) -> None:
        self.config = config
        self.baselines = baselines
        self.robust = RobustZDetector(config.robust)
        self._lock = threading.Lock()
        self.seen_until: dict[str, int] = {}
        self.scores: dict[str, float] = {}
        self.bands: dict[str, tuple[int, float, float]] = {}  # latest point's time, band's lower, upper
        self.intervals: dict[str, int] = {}  # typical sampling interval (ns)
        self.active: dict[str, Anomaly] = {}
        self.skipped: collections.Counter[str] = collections.Counter()
        self._runs: dict[str, RunTracker] = {}

    def run(
        self,
        store: SeriesStore,
        now: int,
        *,
        deadline: float | None = None,
        should_stop: Callable[[], bool] | None = None,
        alert_series: Callable[[SeriesInfo], bool] = lambda info: False,
    ) -> None:
        """Score what arrived since the last pass, longest-waiting series first, until the budget is spent."""
        fresh, live = store.updated_since(self.seen_until, now + MAX_SKEW_NS, self.config.ignore_domains)
        self.forget_missing(live)
        fresh.sort(key=lambda info: self.seen_until.get(info.id, 0))
        pending: list[_Pending] = []
        for n, info in enumerate(fresh):
            if (deadline is not None and time.monotonic() > deadline) or (should_stop and should_stop()):
                self.skipped["budget spent"] += len(fresh) - n
                log.debug(
                    "analysis pass out of time: %d of %d series wait for the next pass", len(fresh) - n, len(fresh)
                )
                break
            try:
                if alert_series(info):
                    self._alert(store, info)
                else:
                    pending.extend(self._read(store, info, now))
            except Exception:
                log.exception("scoring series %s (%s) failed", info.id, info.metric)
        for start in range(0, len(pending), BATCH_SERIES):
            self._score_robust(pending[start : start + BATCH_SERIES])

    def _read(self, store: SeriesStore, info: SeriesInfo, now: int) -> list[_Pending]:
        """A series' new points: to its seasonal detector (every series feeds its baseline), and when
        that is not fitted yet, out for robust-z scoring against its recent window."""
        window = int(self.config.window_s * NS)
        seen = self.seen_until.get(info.id, 0)
        try:
            _, ts, values = store.query(info.id, None, min(now, seen or now) - 2 * window)
        except KeyError:
            return []
        ok = np.isfinite(values) & (ts <= now + MAX_SKEW_NS)  # a clock far ahead is not evidence
        ts, values = ts[ok], values[ok]
        if not len(ts):
            return []
        self.seen_until[info.id] = int(ts[-1])
        self.intervals[info.id] = int(np.median(np.diff(ts[-16:]))) if len(ts) > 1 else 0
        new = ts > seen if seen else ts > ts[-1] - window // 10
        self._feed_baseline(store, info, seen, ts, values, now)
        if not new.any():
            return []
        seasonal = self.baselines.detector(info.id) if self.config.seasonal else None
        if seasonal is not None:
            self._record(info.id, seasonal.anomaly(), seasonal.latest_score, seasonal.band(ts[-1:]), int(ts[-1]))
            return []
        history = ~new & (ts >= ts[-1] - window)
        if history.sum() < self.config.min_points:
            return []
        return [_Pending(info, values[history], ts[new], values[new])]

    def _feed_baseline(
        self, store: SeriesStore, info: SeriesInfo, seen: int, ts: np.ndarray, values: np.ndarray, now: int
    ) -> None:
        """New points to the series' seasonal detector; its first call brings all stored history
        (the warm start after a restart: the store was rebuilt from snapshot and WAL)."""
        if not seen:
            _, ts, values = store.query(info.id, None, 0)
            ok = np.isfinite(values) & (ts <= now + MAX_SKEW_NS)
            if ok.any():
                self.baselines.warm_start(info.id, ts[ok] / NS, values[ok])
            return
        new = ts > seen
        if new.any():
            self.baselines.observe(info.id, ts[new] / NS, values[new])

    def _score_robust(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        rows = max(len(p.reference) for p in batch)
        fresh = max(len(p.values) for p in batch)
        reference = np.full((rows, len(batch)), np.nan)
        scored = np.full((fresh, len(batch)), np.nan)
        for column, pending in enumerate(batch):
            reference[rows - len(pending.reference) :, column] = pending.reference
            scored[: len(pending.values), column] = pending.values
        resolution = np.array([self._resolution(p) for p in batch])
        result = self.robust.scores(reference, scored, resolution=resolution)
        threshold = self.config.threshold
        for column, pending in enumerate(batch):
            n = len(pending.values)
            z = np.clip(np.nan_to_num(result.z[:n, column], nan=0.0), -MAX_Z, MAX_Z)
            center, spread = float(result.center[column]), float(result.spread[column])
            half = threshold * spread if np.isfinite(spread) else 0.0
            runs = self._runs.setdefault(pending.info.id, RunTracker())
            score = runs.feed(pending.times, pending.values, z, center, half, threshold)
            anomaly = runs.anomaly(self.config.consecutive, self.robust.method)
            band = (np.array([center]), np.array([center - half]), np.array([center + half]))
            self._record(pending.info.id, anomaly, score, band, int(pending.times[-1]))

    def _resolution(self, pending: _Pending) -> float:
        """The smallest change of a series that means anything: a percentage point of a ratio; a tenth
        of a served model's p95 latency (five minutes of one replica's requests estimate it no
        closer: the quantile's sampling error and the interpolation inside the engines' coarse
        buckets; and overlapping windows make the series smoother than that error)."""
        if pending.info.unit == "1":
            return self.config.ratio_floor
        if pending.info.metric in SERVING_LATENCY_METRICS:
            level = np.nanmedian(pending.reference) if len(pending.reference) else np.nan
            return self.config.serving_latency_resolution * abs(float(level)) if np.isfinite(level) else 0.0
        return 0.0

    def _record(
        self,
        sid: str,
        anomaly: Anomaly | None,
        score: float,
        band: tuple[np.ndarray, np.ndarray, np.ndarray],
        at: int,
    ) -> None:
        self.scores[sid] = score
        _, lower, upper = band
        if len(lower) and np.isfinite(lower[-1]):
            self.bands[sid] = (at, float(lower[-1]), float(upper[-1]))
        if anomaly is None:
            return
        with self._lock:
            previous = self.active.get(sid)
            if previous is not None:  # the same trouble, back after a calm point: it began back then
                anomaly = replace(anomaly, onset_unix_nano=min(previous.onset_unix_nano, anomaly.onset_unix_nano))
            self.active[sid] = anomaly

    def _alert(self, store: SeriesStore, info: SeriesInfo) -> None:
        """An external alert is a broken KPI from its first record until it stops firing."""
        _, ts, values = store.query(info.id, View.RAW)
        firing = ts[np.isfinite(values) & (values > 0)]
        if not len(ts):
            return
        self.seen_until[info.id] = int(ts[-1])
        if not len(firing):
            return
        with self._lock:
            previous = self.active.get(info.id)
            onset = previous.onset_unix_nano if previous else int(firing[-1])
            self.active[info.id] = Anomaly(
                onset, int(firing[-1]), MAX_Z, 1.0, float(values[-1]), 0.0, 0.0, 0.0, "alert"
            )

    def expire(self, now: int) -> None:
        """Forget anomalies whose series has been back in its band for ``resolve_after_s``."""
        quiet = self.config.resolve_after_s * NS
        with self._lock:
            for sid, anomaly in list(self.active.items()):
                if now - anomaly.last_unix_nano > quiet and self.seen_until.get(sid, 0) > anomaly.last_unix_nano:
                    del self.active[sid]

    def end(self, series_ids: Iterable[str]) -> None:
        """These series' anomalies are over (their incident resolved): a later break is a new one."""
        with self._lock:
            for sid in series_ids:
                self.active.pop(sid, None)
                self._runs.pop(sid, None)
                seasonal = self.baselines.detector(sid)
                if seasonal is not None:
                    seasonal.end()

    def forget_missing(self, live: set[str]) -> None:
        """Drop the state of series the store no longer has (retention): their anomalies end."""
        self.baselines.forget(live)
        for table in (self.seen_until, self.scores, self.intervals, self.bands, self._runs):
            for sid in [sid for sid in table if sid not in live]:
                del table[sid]
        with self._lock:
            for sid in [sid for sid in self.active if sid not in live]:
                del self.active[sid]

    def anomalies(self) -> dict[str, Anomaly]:
        with self._lock:
            return dict(self.active)

    def skipped_counts(self) -> dict[str, int]:
        return {
            **self.skipped,
            "baseline too costly": self.baselines.unmodelled_count,
            "baselines full": self.baselines.waiting,
        }
