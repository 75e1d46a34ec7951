"""One time series in columnar form: timestamps and values, appended as points arrive.

Points are appended to compact ``array`` buffers (16 bytes a point) and sealed into immutable numpy
chunks, so memory stays near 16 bytes a point and a snapshot can share sealed chunks without copying.
Points may arrive out of order or twice: reads sort them and resolve duplicates (last write wins for
gauges and cumulative sums; deltas at the same timestamp add up, because each is a separate increment).
"""

from __future__ import annotations

import bisect
import enum
import re
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from factorylens.rca_service.store._entity import IDENTITY_ATTRIBUTES
from factorylens.registry import Metrics

SEAL_POINTS = 4096
SNAPSHOT_SEAL_POINTS = 256  # chunks stay ≥ this long: their fixed overhead stays under 1 byte a point
MAX_DENSE_BUCKETS = 4096  # exponential histograms are re-bucketed coarser beyond this
NS = 1_000_000_000


class SeriesKind(str, enum.Enum):
    GAUGE = "gauge"
    CUMULATIVE = "cumulative_sum"  # monotonic counter, cumulative temporality
    DELTA = "delta_sum"  # monotonic counter, delta temporality
    UPDOWN = "updown_sum"  # non-monotonic sum: a level, read like a gauge
    HISTOGRAM = "histogram"  # explicit or exponential buckets (cumulative or delta)


class View(str, enum.Enum):
    """How a series is turned into numbers for analysis."""

    RAW = "raw"  # stored values as reported
    RATE = "rate"  # per-second increase (counters, reset-aware)
    INCREASE = "increase"  # increase between consecutive points (counters, reset-aware)
    COUNT = "count"  # histograms: observations per second
    MEAN = "mean"  # histograms: mean observation in each interval
    P50 = "p50"
    P90 = "p90"
    P95 = "p95"
    P99 = "p99"


QUANTILE_VIEWS = {View.P50: 0.5, View.P90: 0.9, View.P95: 0.95, View.P99: 0.99}
DEFAULT_VIEW = {
    SeriesKind.GAUGE: View.RAW,
    SeriesKind.UPDOWN: View.RAW,
    SeriesKind.CUMULATIVE: View.RATE,
    SeriesKind.DELTA: View.RATE,
    SeriesKind.HISTOGRAM: View.MEAN,
}
# what the service derives from spans is read at its 95th percentile: requests' latency objectives are
# on the tail, which a mean hides (a tenth of the calls ten times slower moves the mean by 2x, p95 by 10x)
# a serving SLO's latencies are read at their tail over the last five minutes of requests, as
# ``histogram_quantile(0.95, rate(x[5m]))`` reads them: one replica's ten seconds hold a few dozen
# requests, whose p95 jumps between the engines' coarse buckets
SERVING_LATENCY_METRICS = frozenset(
    (
        Metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
        Metrics.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN,
        Metrics.GEN_AI_SERVER_REQUEST_DURATION,
        Metrics.FACTORYLENS_INFERENCE_REQUEST_QUEUE_TIME,
        Metrics.FACTORYLENS_INFERENCE_REQUEST_PREFILL_TIME,
        Metrics.FACTORYLENS_INFERENCE_REQUEST_DECODE_TIME,
        Metrics.FACTORYLENS_INFERENCE_REQUEST_INFERENCE_TIME,
        Metrics.FACTORYLENS_INFERENCE_INTER_TOKEN_LATENCY,
    )
)
SERVING_QUANTILE_WINDOW_NS = 300 * NS
# ... or over the latest requests that put this many in the quantile's tail, when they came in less
# than five minutes: a busy replica's p95 then follows a throttled GPU within seconds, not after a
# twentieth of five minutes of slow requests, while its estimate stays as steady as a quiet one's
QUANTILE_TAIL_REQUESTS = 20
TAIL_LATENCY_METRICS = (
    frozenset(
        (
            Metrics.FACTORYLENS_SPAN_DURATION,
            Metrics.FACTORYLENS_SPAN_SELF_DURATION,
            Metrics.FACTORYLENS_SPAN_EDGE_DURATION,
        )
    )
    | SERVING_LATENCY_METRICS
)
VIEWS_BY_KIND = {
    SeriesKind.GAUGE: (View.RAW,),
    SeriesKind.UPDOWN: (View.RAW,),
    SeriesKind.CUMULATIVE: (View.RATE, View.INCREASE, View.RAW),
    SeriesKind.DELTA: (View.RATE, View.INCREASE, View.RAW),
    SeriesKind.HISTOGRAM: (View.MEAN, View.COUNT, View.P50, View.P90, View.P95, View.P99),
}


class ViewError(ValueError):
    pass


@dataclass
class SeriesInfo:
    """What a series is: its metric, kind, identity and where it sits in the factory."""

    id: str
    metric: str
    kind: SeriesKind
    unit: str
    domain: str
    entity: str
    resource: Mapping[str, Any]  # shared by the resource's series: read only
    attributes: dict[str, Any]
    description: str = ""

    @property
    def default_view(self) -> View:
        if self.metric in TAIL_LATENCY_METRICS:
            return View.P95
        return DEFAULT_VIEW[self.kind]

    @property
    def label(self) -> str:
        """The metric plus the attributes that tell its series apart on one entity, e.g.
        ``hw.gpu.io{network.io.direction=receive}``."""
        shown = sorted((k, v) for k, v in self.attributes.items() if k not in IDENTITY_ATTRIBUTES)
        return self.metric + ("{" + ",".join(f"{k}={v}" for k, v in shown) + "}" if shown else "")

    @property
    def display_unit(self) -> str:
        """The unit of the default view's values, for people (``By/s`` for a byte counter's rate)."""
        unit = re.sub(r"\{.*?\}", "", self.unit)
        unit = "" if unit == "1" else unit
        if self.default_view is View.RATE:
            return f"{unit}/s" if unit else "per s"
        return unit


class ScalarSeries:
    """Gauges and sums: one float per point."""

    __slots__ = ("_chunks", "_disordered", "_starts", "_ts", "_values", "info", "last_ts")

    def __init__(self, info: SeriesInfo) -> None:
        self.info = info
        self._ts = array("q")
        self._values = array("d")
        self._chunks: list[tuple[np.ndarray, np.ndarray]] = []
        # cumulative counters: every start time seen, so a reset is found even when the new count
        # has already passed the old one
        self._starts: list[int] = []
        self.last_ts = 0
        self._disordered = False  # the open buffer holds a point at or before an earlier one

    def append(self, ts: int, value: float) -> None:
        self._ts.append(ts)
        self._values.append(value)
        if ts > self.last_ts:
            self.last_ts = ts
        elif self.last_ts:  # at or before a point already held (in the buffer or a sealed chunk)
            self._disordered = True
        if len(self._ts) >= SEAL_POINTS:
            self.seal()

    def note_start(self, start_ns: int) -> None:
        starts = self._starts
        if start_ns and (not starts or starts[-1] != start_ns) and start_ns not in starts:
            starts.append(start_ns)
            starts.sort()
            if len(starts) > 1024:
                del starts[0]

    def seal(self) -> None:
        if not self._ts:
            return
        ts = np.frombuffer(self._ts, dtype=np.int64).copy()
        values = np.frombuffer(self._values, dtype=np.float64).copy()
        order = np.argsort(ts, kind="stable")
        self._chunks.append((ts[order], values[order]))
        self._ts = array("q")
        self._values = array("d")
        self._disordered = False

    @property
    def point_count(self) -> int:
        return len(self._ts) + sum(len(t) for t, _ in self._chunks)

    @property
    def nbytes(self) -> int:
        buffered = self._ts.buffer_info()[1] * 8 + self._values.buffer_info()[1] * 8
        return buffered + sum(t.nbytes + v.nbytes for t, v in self._chunks) + 8 * len(self._starts)

    @property
    def first_ts(self) -> int:
        firsts = [int(t[0]) for t, _ in self._chunks if len(t)]
        if self._ts:
            firsts.append(min(self._ts))
        return min(firsts) if firsts else 0

    def drop_before(self, cutoff_ns: int) -> int:
        """Forget sealed chunks that end before ``cutoff_ns``; returns points dropped."""
        kept, dropped = [], 0
        for ts, values in self._chunks:
            if len(ts) and ts[-1] < cutoff_ns:
                dropped += len(ts)
            else:
                kept.append((ts, values))
        self._chunks = kept
        if self._ts and self.last_ts < cutoff_ns:
            dropped += len(self._ts)
            self._ts, self._values = array("q"), array("d")
        return dropped

    def raw(self, start_ns: int = 0, end_ns: int = 2**63 - 1) -> tuple[np.ndarray, np.ndarray]:
        """Sorted, de-duplicated points in [start_ns, end_ns]."""
        parts = [(t, v) for t, v in self._chunks if len(t) and t[-1] >= start_ns and t[0] <= end_ns]
        if self._ts:
            parts.append((np.frombuffer(self._ts, dtype=np.int64), np.frombuffer(self._values, dtype=np.float64)))
        if not parts:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        ts = np.concatenate([t for t, _ in parts])
        values = np.concatenate([v for _, v in parts])
        mask = (ts >= start_ns) & (ts <= end_ns)
        ts, values = ts[mask], values[mask]
        order = np.argsort(ts, kind="stable")
        ts, values = ts[order], values[order]
        if len(ts) > 1 and np.any(ts[1:] == ts[:-1]):
            ts, values = _resolve_duplicates(ts, values, add=self.info.kind is SeriesKind.DELTA)
        return ts, values

    def tail(self, after_ns: int) -> tuple[Sequence[int], Sequence[float], list[int]]:
        """Points after ``after_ns`` in time order, and the counter start times after it: what a reader
        that keeps its own position needs. The common case, a few new points at the end of an ordered
        open buffer, is read without touching the sealed chunks."""
        if self.last_ts <= after_ns:
            return (), (), []
        starts = [s for s in self._starts if s > after_ns] if self._starts and self._starts[-1] > after_ns else []
        buffer = self._ts
        first = len(buffer)
        while first > 0 and buffer[first - 1] > after_ns:
            first -= 1
        if not self._disordered and (first > 0 or not any(len(t) and t[-1] > after_ns for t, _ in self._chunks)):
            return buffer[first:], self._values[first:], starts
        ts, values = self.raw(after_ns + 1)
        return ts.tolist(), values.tolist(), starts

    def query(self, view: View, start_ns: int = 0, end_ns: int = 2**63 - 1) -> tuple[np.ndarray, np.ndarray]:
        if view not in VIEWS_BY_KIND[self.info.kind]:
            raise ViewError(
                f"view {view.value!r} does not apply to a {self.info.kind.value} series "
                f"(use one of {[v.value for v in VIEWS_BY_KIND[self.info.kind]]})"
            )
        # a rate needs the point before the window
        lookback = 0 if view is View.RAW else NS * 3600
        ts, values = self.raw(max(0, start_ns - lookback), end_ns)
        if view is View.RAW:
            return ts, values
        if self.info.kind is SeriesKind.CUMULATIVE:
            increase = _cumulative_increase(ts, values, self._starts)
        else:
            increase = values.copy()  # each delta point is already an increase
        if view is View.RATE:
            dt = np.diff(ts, prepend=ts[:1]) / NS if len(ts) else np.empty(0)
            with np.errstate(divide="ignore", invalid="ignore"):
                out = np.where(dt > 0, increase / dt, np.nan)
        else:
            out = increase
        keep = ts >= start_ns
        return ts[keep], out[keep]

    def state(self) -> dict[str, Any]:
        """Sealed chunks are shared (immutable). A long open buffer is sealed and shared too; a short
        one is copied, so frequent snapshots neither copy much nor fragment a series into tiny chunks."""
        if len(self._ts) >= SNAPSHOT_SEAL_POINTS:
            self.seal()
        return {
            "chunks": list(self._chunks),
            "ts": array("q", self._ts),
            "values": array("d", self._values),
            "starts": list(self._starts),
            "last_ts": self.last_ts,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._chunks = list(state["chunks"])
        self._ts = array("q", state["ts"])
        self._values = array("d", state["values"])
        self._starts = list(state["starts"])
        self.last_ts = state["last_ts"]


def _resolve_duplicates(ts: np.ndarray, values: np.ndarray, *, add: bool) -> tuple[np.ndarray, np.ndarray]:
    unique, first = np.unique(ts, return_index=True)
    if add:
        return unique, np.add.reduceat(values, first)
    last = np.append(first[1:], len(ts)) - 1
    return unique, values[last]


def _cumulative_increase(ts: np.ndarray, values: np.ndarray, starts: list[int]) -> np.ndarray:
    """Increase between consecutive cumulative points, with resets found by start time or by a drop.

    A point that opens a new start-time epoch counts its whole value (it is the count since the
    reset); the very first point has no predecessor and yields NaN, like Prometheus' ``increase``.
    """
    if not len(ts):
        return np.empty(0)
    increase = np.empty(len(ts))
    increase[0] = np.nan
    diff = np.diff(values)
    if starts:
        epoch = np.searchsorted(np.asarray(starts, dtype=np.int64), ts, side="right")
        new_epoch = np.diff(epoch) != 0
    else:
        new_epoch = np.zeros(len(diff), dtype=bool)
    reset = new_epoch | (diff < 0)
    increase[1:] = np.where(reset, values[1:], diff)
    return increase


FIRST_POINT_MAX_SPAN_NS = 600 * NS
MAX_PREVIOUS_GAP_NS = 3600 * NS  # a cumulative point further back is no base for an increase


@dataclass
class HistogramPoint:
    ts: int
    start: int
    count: float
    sum: float
    bounds: tuple[float, ...]  # upper bounds of all but the last (+Inf) bucket
    counts: np.ndarray  # one more than len(bounds)
    exp_scale: int | None = None  # exponential histograms: scale, and the index of counts[1]
    exp_offset: int = 0


@dataclass
class HistogramSeries:
    """Explicit and exponential histograms, reduced to rates, means and quantiles on read.

    Exponential points keep their native buckets; a read re-buckets every point in range to the
    coarsest scale among them (merging ``2**k`` neighbours), then treats them like explicit ones.
    Negative buckets are folded into the zero bucket: the quantiles describe magnitudes
    (durations, sizes), which is what they are used for here.
    """

    info: SeriesInfo
    cumulative: bool
    points: list[HistogramPoint] = field(default_factory=list)
    last_ts: int = 0
    ordered: bool = True  # the points are in time order (as exporters send them): a read bisects

    def append(self, point: HistogramPoint) -> None:
        if self.points and point.ts < self.points[-1].ts:
            self.ordered = False
        self.points.append(point)
        if point.ts > self.last_ts:
            self.last_ts = point.ts

    @property
    def point_count(self) -> int:
        return len(self.points)

    @property
    def nbytes(self) -> int:
        return sum(64 + p.counts.nbytes + 8 * len(p.bounds) for p in self.points)

    @property
    def first_ts(self) -> int:
        return min((p.ts for p in self.points), default=0)

    def drop_before(self, cutoff_ns: int) -> int:
        before = len(self.points)
        self.points = [p for p in self.points if p.ts >= cutoff_ns]
        return before - len(self.points)

    def seal(self) -> None:
        """Histogram points are stored whole; nothing to compact."""

    def _in_range(self, start_ns: int, end_ns: int, before: bool = False) -> list[HistogramPoint]:
        """The points in ``[start_ns, end_ns]`` (with ``before``, also the last one before them, which a
        cumulative series' first increase is taken from), in a read that does not grow with the history."""
        if not self.ordered:
            self.points.sort(key=lambda p: p.ts)  # stable: of points at one time, the last sent stays last
            self.ordered = True
        first = bisect.bisect_left(self.points, start_ns, key=lambda p: p.ts)
        last = bisect.bisect_right(self.points, end_ns, key=lambda p: p.ts)
        if before and first > 0:
            first = bisect.bisect_left(self.points, self.points[first - 1].ts, key=lambda p: p.ts)
        return self.points[first:last]

    def _sorted(self, start_ns: int, end_ns: int, before: bool = False) -> list[HistogramPoint]:
        chosen: dict[int, HistogramPoint] = {}
        for p in self._in_range(start_ns, end_ns, before):
            if not self.cumulative and p.ts in chosen:
                chosen[p.ts] = _add_histograms(chosen[p.ts], p)
            else:
                chosen[p.ts] = p
        return list(chosen.values())

    def raw(self, start_ns: int = 0, end_ns: int = 2**63 - 1) -> tuple[np.ndarray, np.ndarray]:
        points = self._sorted(start_ns, end_ns)
        return (np.array([p.ts for p in points], dtype=np.int64), np.array([p.count for p in points], dtype=float))

    def query(self, view: View, start_ns: int = 0, end_ns: int = 2**63 - 1) -> tuple[np.ndarray, np.ndarray]:
        if view not in VIEWS_BY_KIND[SeriesKind.HISTOGRAM]:
            raise ViewError(
                f"view {view.value!r} does not apply to a histogram series (use one of "
                f"{[v.value for v in VIEWS_BY_KIND[SeriesKind.HISTOGRAM]]})"
            )
        window = (
            SERVING_QUANTILE_WINDOW_NS if view in QUANTILE_VIEWS and self.info.metric in SERVING_LATENCY_METRICS else 0
        )
        # a cumulative point's increase is taken from the one before it (if that is not an hour older)
        points = self._sorted(max(0, start_ns - window), end_ns, before=self.cumulative)
        if len(points) > 1 and self.cumulative and points[1].ts - points[0].ts > MAX_PREVIOUS_GAP_NS:
            points = points[1:]
        if not points:
            return np.empty(0, np.int64), np.empty(0)
        ts = np.array([p.ts for p in points], dtype=np.int64)
        count = np.array([p.count for p in points], dtype=float)
        total = np.array([p.sum for p in points], dtype=float)
        lower, upper, matrix = _bucket_matrix(points)
        if self.cumulative:
            starts = np.array([p.start for p in points], dtype=np.int64)
            reset = np.concatenate([[True], (starts[1:] != starts[:-1]) | (np.diff(count) < 0)])
            prev_count, prev_total, prev_matrix = np.roll(count, 1), np.roll(total, 1), np.roll(matrix, 1, axis=0)
            keep_whole = reset  # the first point, and every point after a reset, count whole
            count = np.where(keep_whole, count, count - prev_count)
            total = np.where(keep_whole, total, total - prev_total)
            matrix = np.where(keep_whole[:, None], matrix, matrix - prev_matrix)
            # the first point counts from its start time; when the series was born shortly before it
            # (a histogram created by its first observation: a job's first checkpoint) that is its
            # increase, otherwise it is unknown
            if not 0 < starts[0] < ts[0] or ts[0] - starts[0] > FIRST_POINT_MAX_SPAN_NS:
                count[0], total[0] = np.nan, np.nan
                matrix[0] = np.nan
        dt = np.diff(ts, prepend=ts[:1]) / NS
        with np.errstate(divide="ignore", invalid="ignore"):
            if view is View.COUNT:
                out = np.where(dt > 0, count / dt, np.nan)
            elif view is View.MEAN:
                out = np.where(count > 0, total / count, np.nan)
            else:
                q = QUANTILE_VIEWS[view]
                if window:
                    matrix = _trailing_sums(ts, matrix, window, QUANTILE_TAIL_REQUESTS / (1.0 - q))
                out = _quantiles(q, lower, upper, matrix)
        keep = ts >= start_ns
        return ts[keep], out[keep]

    def state(self) -> dict[str, Any]:
        return {"points": list(self.points), "last_ts": self.last_ts}

    def restore(self, state: dict[str, Any]) -> None:
        self.points = list(state["points"])
        self.last_ts = state["last_ts"]
        self.ordered = False  # sorted on the first read


def _add_histograms(a: HistogramPoint, b: HistogramPoint) -> HistogramPoint:
    if (
        a.bounds != b.bounds
        or a.exp_scale != b.exp_scale
        or a.exp_offset != b.exp_offset
        or len(a.counts) != len(b.counts)
    ):
        return b
    return HistogramPoint(
        a.ts,
        min(a.start, b.start),
        a.count + b.count,
        a.sum + b.sum,
        a.bounds,
        a.counts + b.counts,
        a.exp_scale,
        a.exp_offset,
    )


def _bucket_matrix(points: list[HistogramPoint]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower and upper bucket edges, and one row of bucket counts per point, on a layout all rows share."""
    if points[0].exp_scale is None:
        bounds = points[-1].bounds
        width = len(bounds) + 1
        rows = [p.counts if p.bounds == bounds and len(p.counts) == width else np.full(width, np.nan) for p in points]
        upper = np.append(np.asarray(bounds, dtype=float), np.inf)
        lower = np.concatenate([[min(0.0, upper[0])], upper[:-1]])
        return lower, upper, np.vstack(rows).astype(float)
    scale = min(p.exp_scale for p in points if p.exp_scale is not None)
    while True:  # coarsen until the buckets in use fit a bounded dense row
        rebucketed = []
        for p in points:
            shift = (p.exp_scale if p.exp_scale is not None else scale) - scale
            indexes = (np.arange(len(p.counts) - 1, dtype=np.int64) + p.exp_offset) >> shift
            rebucketed.append((p.counts[0], indexes, p.counts[1:]))
        low = min((int(i.min()) for _, i, _ in rebucketed if len(i)), default=0)
        high = max((int(i.max()) for _, i, _ in rebucketed if len(i)), default=0)
        if high - low < MAX_DENSE_BUCKETS:
            break
        scale -= 1
    matrix = np.zeros((len(points), high - low + 2))
    for row, (zero, indexes, counts) in enumerate(rebucketed):
        matrix[row, 0] = zero
        np.add.at(matrix[row], indexes - low + 1, counts)
    with np.errstate(over="ignore"):
        base = np.float64(2.0) ** (np.float64(2.0) ** -scale)
        edges = base ** np.arange(low, high + 2, dtype=float)
    # column 0 is the zero bucket; column j ≥ 1 is (base**(low+j-1), base**(low+j)]
    lower = np.concatenate([[0.0], edges[:-1]])
    upper = np.concatenate([[0.0], edges[1:]])
    return lower, upper, matrix


def _trailing_sums(ts: np.ndarray, matrix: np.ndarray, window_ns: int, enough: float = np.inf) -> np.ndarray:
    """Each row summed with the rows before it: those of the ``window_ns`` before it, or fewer, the
    latest that hold ``enough`` observations in all (unknown rows count nothing; a window of nothing
    but unknown rows stays unknown)."""
    known = np.isfinite(matrix).all(axis=1)
    rows = np.where(known[:, None], matrix, 0.0)
    cumulative = np.vstack([np.zeros((1, rows.shape[1])), np.cumsum(rows, axis=0)])
    known_count = np.concatenate([[0], np.cumsum(known)])
    last = np.arange(1, len(ts) + 1)
    first = np.searchsorted(ts, ts - window_ns, side="right")
    if np.isfinite(enough):
        observed = np.maximum.accumulate(cumulative.sum(axis=1))  # non-decreasing for the search
        holding = np.searchsorted(observed, observed[last] - enough, side="right") - 1
        first = np.minimum(np.maximum(first, holding), last - 1)
    summed = cumulative[last] - cumulative[first]
    summed[known_count[last] - known_count[first] == 0] = np.nan
    return summed


def _quantiles(q: float, lower_edges: np.ndarray, upper_edges: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Prometheus ``histogram_quantile`` of each row: linear interpolation inside the bucket holding rank
    q; unknown for a row with an unknown bucket or no observations, the lower edge of the +Inf bucket."""
    known = np.isfinite(matrix).all(axis=1)
    counts = np.where(known[:, None], matrix, 0.0)
    cumulative = np.cumsum(counts, axis=1)
    total = counts.sum(axis=1)
    rank = q * total
    bucket = np.minimum((cumulative < rank[:, None]).sum(axis=1), counts.shape[1] - 1)
    rows = np.arange(len(counts))
    upper, lower = upper_edges[bucket], lower_edges[bucket]
    below = np.where(bucket > 0, cumulative[rows, bucket - 1], 0.0)
    in_bucket = counts[rows, bucket]
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = np.where(in_bucket > 0, lower + (upper - lower) * (rank - below) / in_bucket, upper)
    out = np.where(np.isinf(upper), np.where(bucket > 0, lower, np.nan), inside)
    out[~known | ~(total > 0)] = np.nan
    return out
