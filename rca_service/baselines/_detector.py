"""A streaming anomaly detector over seasonal-baseline residuals: one score in [0, 1] per point.

For each arriving point, from what came before it only (no look-ahead):

1. the residual ``r = x - seasonal(t)`` against the series' :class:`SeasonalBaseline` (fitted at
   the end of the probation period, optionally refitted on a schedule);
2. three robust deviations in units of the recent residual spread (median/MAD over
   ``history_points``, refreshed every ``block_points``): of the level, of the step change from the
   previous point, and of the mean of the last ``short_points`` (slow shifts and drifts);
3. whether the raw value leaves the range seen so far (the "spatial anomaly" rule that NAB's HTM
   detector adds, Ahmad et al. 2017);
4. a deviation only counts when it also exceeds ``novelty_ratio`` times the largest deviation of the
   same kind in the last ``history_points`` points, so a series whose normal life is spiky does not
   alarm on every spike (the "is this more surprising than what we have seen" idea behind HTM's
   anomaly likelihood, done with maxima instead of a Gaussian on raw scores);
5. after an alarm, a refractory period, as ARTime does: one anomaly, one alarm.

The score is ``q / (1 + q)`` of the largest ratio ``q`` of a deviation to its bar, so an alarm is
exactly ``score >= 0.5``; points in probation score 0 and points in a refractory period are capped
just below 0.5. The thresholds were tuned once on NAB (``bench/nab.py``) and are frozen here;
``short_points`` is what leave-one-category-out cross-validation on NAB chose in every fold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from factorylens.rca_service.baselines._baseline import (
    MAD_TO_SIGMA,
    BaselineConfig,
    SeasonalBaseline,
    fit_baseline,
)

ALARM_SCORE = 0.5
BELOW_ALARM = 0.4999


@dataclass(frozen=True)
class StreamingDetectorConfig:
    """
    :param probation_points: points learned from before anything is scored (NAB: 15% of a file)
    :param history_points: points behind the level/spread statistics and the novelty bar
        (default: ``probation_points``)
    :param refractory_points: points after an alarm that cannot alarm again
        (default: 0.2 × ``probation_points``)
    :param level_threshold: robust z of the level that can alarm
    :param change_threshold: robust z of a step change (or of the short mean) that can alarm
    :param novelty_ratio: a deviation must also exceed this times the largest recent one of its kind
    :param range_tolerance: leaving the seen range by this fraction of it alarms
    :param range_points: memory of the seen range (default: 8 × ``history_points``)
    :param scale_floor: the spread is at least this fraction of the seen range (flat series)
    :param short_points: points in the short mean
    :param block_points: statistics are refreshed every this many points (cost vs. freshness;
        default: a twentieth of ``history_points``, at least 32)
    :param refit_every_points: refit the baseline this often after probation (0: fit once)
    :param fit_history_points: points kept for refits
    :param baseline: how baselines are fitted
    """

    probation_points: int = 600
    history_points: int | None = None
    refractory_points: int | None = None
    level_threshold: float = 8.0
    change_threshold: float = 10.0
    novelty_ratio: float = 1.1
    range_tolerance: float = 0.05
    range_points: int | None = None
    scale_floor: float = 0.02
    short_points: int = 8
    block_points: int | None = None
    refit_every_points: int = 0
    fit_history_points: int = 20_160
    baseline: BaselineConfig = field(default_factory=BaselineConfig)

    @classmethod
    def for_probation(cls, probation_points: int, **overrides: Any) -> StreamingDetectorConfig:
        """The frozen configuration, scaled to a probation period."""
        return replace(cls(probation_points=probation_points), **overrides)

    @property
    def history(self) -> int:
        return max(self.history_points or self.probation_points, 30)

    @property
    def block(self) -> int:
        return self.block_points or max(32, self.history // 20)

    @property
    def refractory(self) -> int:
        return self.refractory_points if self.refractory_points is not None else int(0.2 * self.probation_points)

    @property
    def range_memory(self) -> int:
        return self.range_points or 8 * self.history

    def validate(self) -> None:
        if self.probation_points < 10:
            raise ValueError("probation_points must be at least 10")
        if min(self.level_threshold, self.change_threshold, self.novelty_ratio, self.range_tolerance) <= 0:
            raise ValueError("thresholds, novelty_ratio and range_tolerance must be positive")
        if self.short_points < 2 or self.block < 1 or self.refit_every_points < 0:
            raise ValueError("short_points >= 2, block_points >= 1, refit_every_points >= 0")
        if self.fit_history_points < self.probation_points:
            raise ValueError("fit_history_points must cover the probation period")
        self.baseline.validate()


class _Ring:
    """A fixed-size float ring buffer with cheap 'last n' access."""

    def __init__(self, size: int) -> None:
        self.data = np.full(size, np.nan)
        self.count = 0

    def extend(self, values: np.ndarray) -> None:
        size = self.data.size
        values = values[-size:]
        start = self.count % size
        first = min(size - start, values.size)
        self.data[start : start + first] = values[:first]
        self.data[: values.size - first] = values[first:]
        self.count += values.size

    def last(self, n: int | None = None) -> np.ndarray:
        size = self.data.size
        n = min(self.count, size if n is None else n)
        end = self.count % size
        if n <= end:
            return self.data[end - n : end]
        return np.concatenate([self.data[size - (n - end) :], self.data[:end]])


class StreamingDetector:
    """Scores one series as it arrives. ``score`` takes any chunk size and gives the same scores
    as point-by-point calls; ``warm_start`` feeds history without scoring it."""

    def __init__(self, config: StreamingDetectorConfig | None = None) -> None:
        self.config = config or StreamingDetectorConfig()
        self.config.validate()
        cfg = self.config
        self.baseline: SeasonalBaseline | None = None
        self.points_seen = 0
        self._times = _Ring(cfg.fit_history_points)
        self._values = _Ring(cfg.fit_history_points)
        self._residuals = _Ring(cfg.history + cfg.short_points)
        blocks = math.ceil(cfg.history / cfg.block) + 1
        self._zmax = [_Ring(blocks) for _ in range(3)]
        range_blocks = math.ceil(cfg.range_memory / cfg.block) + 1
        self._highs = _Ring(range_blocks)
        self._lows = _Ring(range_blocks)
        self._last_alarm = -(1 << 62)
        self._since_fit = 0
        self._stats: tuple[float, float, float, float] | None = None
        self._block_used = False
        self._block_z = [-math.inf] * 3
        self._block_high, self._block_low = -math.inf, math.inf
        self._bars = [-math.inf] * 3
        self._seen_high, self._seen_low = -math.inf, math.inf
        self._deviations: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    # ---- public ------------------------------------------------------------------------------
    @property
    def stats(self) -> tuple[float, float, float, float] | None:
        """The residuals' level, spread, step change and its spread (robust), when known."""
        return self._stats

    @property
    def in_probation(self) -> bool:
        return self.baseline is None

    def warm_start(self, times_s: np.ndarray, values: np.ndarray) -> None:
        """Learn from history (a replayed WAL, a file, a Prometheus range): fit the baseline on it
        when it covers the probation period, and prime the statistics, raising no alarms. The
        baseline is then refitted on all the history kept, not just the probation period."""
        self._run(np.asarray(times_s, dtype=float), np.asarray(values, dtype=float), scoring=False)
        if self.baseline is not None and self.baseline.fitted_points < min(self.points_seen, self._times.data.size):
            self._fit(prime=False)

    def score(self, times_s: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Anomaly scores in [0, 1] for new points (times in seconds, ascending)."""
        self._deviations = []
        return self._run(np.asarray(times_s, dtype=float), np.asarray(values, dtype=float), scoring=True)

    def last_deviations(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the points of the last :meth:`score` call that were scored against a baseline (the
        last ones): the ratio of their largest deviation to its alarm bar (1: alarm, before the
        refractory period), their signed deviation from the baseline in robust standard deviations,
        and the baseline's expected value."""
        if not self._deviations:
            empty = np.zeros(0)
            return empty, empty, empty
        ratio, signed, expected = (np.concatenate(parts) for parts in zip(*self._deviations, strict=True))
        return ratio, signed, expected

    # ---- internals ---------------------------------------------------------------------------
    def _run(self, t: np.ndarray, x: np.ndarray, scoring: bool) -> np.ndarray:
        if t.shape != x.shape or t.ndim != 1:
            raise ValueError("times and values must be 1-D arrays of the same length")
        out = np.zeros(x.size)
        cfg = self.config
        i = 0
        while i < x.size:
            if self.baseline is None:
                take = min(x.size - i, cfg.probation_points - self.points_seen)
                if take > 0:
                    self._times.extend(t[i : i + take])
                    self._values.extend(x[i : i + take])
                    self.points_seen += take
                    i += take
                if self.points_seen >= cfg.probation_points:
                    self._fit(prime=True)
                continue
            block_left = cfg.block - (self.points_seen % cfg.block)
            take = min(x.size - i, block_left)
            if self.points_seen % cfg.block == 0:
                if cfg.refit_every_points and self._since_fit >= cfg.refit_every_points:
                    self._fit(prime=False)
                self._refresh()
            out[i : i + take] = self._score_block(t[i : i + take], x[i : i + take], alarms=scoring)
            self._times.extend(t[i : i + take])
            self._values.extend(x[i : i + take])
            self.points_seen += take
            self._since_fit += take
            i += take
        return out

    def _fit(self, prime: bool) -> None:
        times, values = self._times.last(), self._values.last()
        try:
            self.baseline = fit_baseline(times, values, self.config.baseline)
        except ValueError:  # too few finite points: a flat baseline until a refit can do better
            self.baseline = SeasonalBaseline(
                "level",
                [],
                float(np.nanmedian(values)) if np.isfinite(values).any() else 0.0,
                0.0,
                0.0,
                0.0,
                math.nan,
                0,
                float(times[-1]),
                1.0,
            )
        self._since_fit = 0
        history = self._residuals.data.size
        recent_t, recent_x = times[-history:], values[-history:]
        if prime:
            # replay the probation points through the scorer (no alarms) so statistics and
            # novelty bars start from what probation saw
            n_seen = self.points_seen
            self.points_seen = n_seen - recent_x.size
            self._residuals = _Ring(history)
            start = 0
            block = self.config.block
            while start < recent_x.size:
                take = min(recent_x.size - start, block - (self.points_seen % block))
                if self.points_seen % block == 0:
                    self._refresh()
                self._score_block(recent_t[start : start + take], recent_x[start : start + take], alarms=False)
                self.points_seen += take
                start += take
            self.points_seen = n_seen
        else:
            self._residuals = _Ring(history)
            self._residuals.extend(recent_x - self.baseline.seasonal(recent_t))

    def _refresh(self) -> None:
        """At a block boundary: close the previous block's maxima and recompute the statistics."""
        cfg = self.config
        if self._block_used:
            for ring, value in zip(self._zmax, self._block_z, strict=False):
                ring.extend(np.array([value]))
            self._highs.extend(np.array([self._block_high]))
            self._lows.extend(np.array([self._block_low]))
        self._block_z = [-math.inf] * 3
        self._block_high, self._block_low = -math.inf, math.inf
        self._block_used = False
        self._bars = [_max_or(z.last(), -math.inf) for z in self._zmax]
        self._seen_high = _max_or(self._highs.last(), -math.inf)
        self._seen_low = -_max_or(-self._lows.last(), -math.inf)
        r = self._residuals.last(cfg.history)
        r = r[np.isfinite(r)]
        if r.size < 20:
            self._stats = None
            return
        d = np.diff(r)
        level = float(np.median(r))
        change = float(np.median(d))
        self._stats = (
            level,
            float(np.median(np.abs(r - level))) * MAD_TO_SIGMA,
            change,
            float(np.median(np.abs(d - change))) * MAD_TO_SIGMA,
        )

    def _score_block(self, t: np.ndarray, x: np.ndarray, alarms: bool) -> np.ndarray:
        """Score points that all fall in the current statistics block."""
        cfg = self.config
        assert self.baseline is not None
        finite = np.isfinite(x) & np.isfinite(t)
        residual = np.where(finite, x - self.baseline.seasonal(np.where(finite, t, 0.0)), np.nan)
        previous = self._residuals.last(cfg.short_points - 1)
        self._residuals.extend(residual)
        self._block_used = True
        # the range seen up to the previous point, exact inside the block
        high0 = max(self._seen_high, self._block_high)
        low0 = min(self._seen_low, self._block_low)
        run_high = np.maximum.accumulate(np.concatenate([[high0], np.where(finite, x, -np.inf)]))
        run_low = np.minimum.accumulate(np.concatenate([[low0], np.where(finite, x, np.inf)]))
        self._block_high, self._block_low = max(self._block_high, run_high[-1]), min(self._block_low, run_low[-1])
        run_high, run_low = run_high[:-1], run_low[:-1]
        if self._stats is None:
            if alarms:
                self._deviations.append((np.zeros(x.size), np.zeros(x.size), np.full(x.size, np.nan)))
            return np.zeros(x.size)
        level, spread, change, change_spread = self._stats
        with np.errstate(invalid="ignore"):
            seen_range = np.where(np.isfinite(run_high - run_low), run_high - run_low, 0.0)
        floor = np.maximum(cfg.scale_floor * seen_range, 1e-9)
        window = np.concatenate([previous, residual])
        steps = np.diff(window)[-x.size :] if previous.size else np.concatenate([[np.nan], np.diff(residual)])
        short_mean = (
            np.convolve(window, np.full(cfg.short_points, 1.0 / cfg.short_points), mode="valid")[-x.size :]
            if window.size >= cfg.short_points
            else np.full(x.size, np.nan)
        )
        deviations = (
            np.abs(residual - level) / np.maximum(spread, floor),
            np.abs(steps - change) / np.maximum(change_spread, floor),
            np.abs(short_mean - level) / np.maximum(spread / math.sqrt(cfg.short_points), floor),
        )
        thresholds = (cfg.level_threshold, cfg.change_threshold, cfg.change_threshold)
        ratio = np.zeros(x.size)
        for k, (z, threshold) in enumerate(zip(deviations, thresholds, strict=False)):
            z = np.nan_to_num(z, nan=0.0, posinf=0.0)
            running = np.maximum.accumulate(np.concatenate([[max(self._bars[k], self._block_z[k])], z]))
            self._block_z[k] = max(self._block_z[k], float(z.max()))
            bar = np.maximum(threshold, cfg.novelty_ratio * np.where(np.isfinite(running[:-1]), running[:-1], np.inf))
            ratio = np.maximum(ratio, z / bar)
        with np.errstate(invalid="ignore", divide="ignore"):
            outside = np.fmax(x - run_high, run_low - x) / np.where(seen_range > 0, seen_range, np.nan)
        ratio = np.maximum(ratio, np.nan_to_num(outside, nan=0.0, posinf=0.0) / cfg.range_tolerance)
        ratio[~finite] = 0.0
        if alarms:
            signed = np.nan_to_num((residual - level) / np.maximum(spread, floor), nan=0.0, posinf=0.0, neginf=0.0)
            self._deviations.append((ratio.copy(), signed, self.baseline.seasonal(np.where(finite, t, 0.0))))
        score = ratio / (1.0 + ratio)
        for j in np.flatnonzero(score >= ALARM_SCORE):
            position = self.points_seen + int(j)
            if alarms and position - self._last_alarm > cfg.refractory:
                self._last_alarm = position
            else:
                score[j] = BELOW_ALARM
        return score


def _max_or(values: np.ndarray, default: float) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else default
