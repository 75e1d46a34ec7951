"""Planned pauses: a training job's checkpoints (and evaluations) slow its steps on purpose.

Every N steps a job stops to write a checkpoint; its throughput drops for as long as that takes,
and the ranks report each checkpoint's duration once it is done. A KPI break that starts when a
checkpoint is due is held back while it is no longer than the longest checkpoint so far (plus the
two scrapes it straddles) — unless a signal that can slow the job is further out than it ever was
during the job's earlier saves (:func:`save_windows`; the tracker's judgement: the checkpoint mount's
latency up): then the break is that fault's effect, not a save like the others. A break is dropped
while it holds a finished checkpoint no slower than ``factor`` times the ones before it and ends by
the scrape after that checkpoint was reported. Anything longer or slower is an incident — and when a fault begins
*during* a checkpoint, the part of the break after the checkpoint ended is the fault: it opens its
incident with its onset at the checkpoint's end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from factorylens.rca_service.store import SeriesStore
from factorylens.registry import Attributes, Metrics

NS = 1_000_000_000
PHASE_METRIC = Metrics.FACTORYLENS_TRAIN_PHASE_DURATION
PHASE_ATTRIBUTE = Attributes.FACTORYLENS_TRAIN_PHASE
PLANNED_PHASES = ("checkpoint", "eval")
PLANNED_PAUSE_METRICS = (PHASE_METRIC, Metrics.FACTORYLENS_CHECKPOINT_DURATION)
CHECKPOINT_DUE_TOLERANCE = 0.15  # a job's checkpoints recur within this share of their period


@dataclass(frozen=True)
class PauseVerdict:
    """``held``: the break is (or may still be) planned work. ``onset``: when the unplanned part of
    the break began (the end of the planned pause it started in), when it is not held.
    ``unreported``: held only because a checkpoint may be in progress (none reported yet)."""

    held: bool
    onset: int
    unreported: bool = False


def job_pauses(store: SeriesStore, job: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(end times, durations)`` of the checkpoints (and evaluations) a job reported."""
    out = []
    for info in (info for metric in PLANNED_PAUSE_METRICS for info in store.of_metric(metric)):
        if info.resource.get(Attributes.FACTORYLENS_JOB_ID) != job:
            continue
        if info.metric == PHASE_METRIC and not str(info.attributes.get(PHASE_ATTRIBUTE, "")).startswith(PLANNED_PHASES):
            continue
        _, ts, values = store.query(info.id)
        ok = np.isfinite(values)
        out.append((ts[ok], values[ok]))
    return out


def judge(
    pauses: list[tuple[np.ndarray, np.ndarray]],
    onset: int,
    last: int,
    interval: int,
    points_since_onset: int,
    factor: float,
) -> PauseVerdict:
    """Whether the KPI break ``[onset, last]`` is planned work (see the module docstring)."""
    since, until = onset - interval, last + interval
    longest = max((float(values.max()) for ts, values in pauses if len(values) and ts[0] < since), default=0.0)
    for ts, values in pauses:
        inside = (ts >= since) & (ts <= until)
        during, earlier = values[inside], values[ts < since]
        if not len(during) or (len(earlier) and during.max() > factor * earlier.max()):
            continue
        # the checkpoint explains a break as long as itself (plus the two scrapes it straddles)
        # that ends by the scrape after the checkpoint was reported
        if last - onset <= float(during.max()) * NS + 2 * interval and last <= int(ts[inside][-1]) + interval:
            return PauseVerdict(True, onset)
        # longer: a fault began during or right after it; its own onset is where the pause ended
        return PauseVerdict(False, max(onset, int(ts[inside][0])))
    if not (interval and longest) or not _checkpoint_due(pauses, since, longest):
        return PauseVerdict(False, onset)
    return PauseVerdict(points_since_onset < longest * NS / interval + 2, onset, unreported=True)


def save_windows(pauses: list[tuple[np.ndarray, np.ndarray]], before: int, interval: int) -> list[tuple[int, int]]:
    """The spans of the job's pauses that ended before ``before``, each with the scrapes around it."""
    longest: dict[int, float] = {}
    for ts, values in pauses:
        for end, seconds in zip(ts[ts < before].tolist(), values[ts < before].tolist(), strict=True):
            longest[end] = max(longest.get(end, 0.0), seconds)
    return [(end - int(seconds * NS) - interval, end + interval) for end, seconds in longest.items()]


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
