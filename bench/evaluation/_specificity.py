"""Specificity on real data: how many incidents the KPI analyzer opens when nothing is wrong.

The service opens an incident only when a KPI breaks (:class:`KpiRankingAnalyzer`). Here each
dataset's normal operation is written out as the long table a post-mortem would replay
(``time_unix_nano, entity, signal, value``), fed through :func:`factorylens.rca_service.replay.replay`
one scrape interval at a time at the data's own sampling interval, and every incident's onset is
checked against the labels:

- Nezha (Yu et al., ESEC/FSE 2023; github.com/IntelligentDDS/Nezha, MIT): each day's whole metric
  frame, as the adapter builds it (:func:`nezha_day_frame`), at 60 s. The KPIs are the entry
  service's SLI columns (success rate and latency P50-P99 on entity ``entry``, the same columns
  :class:`RcaCase` names as ``kpi``). An incident is **false** when its onset lies outside every
  fault's window ``[inject_time - 1 scrape, inject_time + 180 s fault + 300 s recovery]``; a fault is
  **detected** when some incident's onset lies in ``[inject_time - 1 scrape, inject_time + 300 s]``.
  Faults are 7-34 minutes apart and occupy the first 4-5 hours of each day; the rest of the day is
  normal operation.
- PetShop (Hardt et al., CLeaR 2024, arXiv:2311.04806; CC-BY-4.0): each scenario's
  ``noissue/metrics.csv`` (normal operation by construction, 5-minute rows), with the adapter's caller
  views, at 300 s; every incident is false. The KPI, by default (``kpi="targets"``), is the node and
  metrics that every issue's label names as the SLO that broke: PetSite's latency (Average, p50-p99)
  and availability. That is the service-level objective the dataset is about, and it matches the
  Nezha choice (the entry service's SLI). ``kpi="all"`` makes every node's latency and availability
  a KPI instead: the stricter, noisier reading (41 components, many of them Lambdas and queues with
  a handful of requests per 5 minutes). Metric names are all the replay's KPI globs can select, so
  the PetSite SLI series are written under their own metric name, ``sli:<metric>`` (as a recording
  rule would publish an SLO), and the node's own series stay as they are, a candidate cause.

Normal hours exclude the analyzer's warm-up (the first ``min_points`` scrapes, before any series can
be scored) and, for Nezha, the fault windows. The analyzer's time constants, whose defaults assume
10-second scrapes, are restated in scrapes and scaled to the data's interval (:func:`config_for_interval`);
unscaled, a 5-minute series holds 12 points in the default hour of history, fewer than
``min_points``, and nothing would ever be scored.

Two readings help judge the Nezha numbers. Most injected faults never move the entry SLI (a slow
e-mail or shipping service, an exception in an asynchronous call), so recall over all faults is
bounded well below 1 for any KPI-driven detector; ``visible`` counts the faults after the warm-up
whose KPI does break, judged against the day's normal scrapes (:func:`kpi_breaks`), and
``detected_visible`` how many of those the analyzer found. And the fault list has gaps that are
whole multiples of the campaign's ~8.5-minute injection cadence; incidents in those gaps count as
false here, so ``quiet_false`` also counts only those outside the whole campaign (first injection to
last injection + fault + recovery), over ``quiet_hours``.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from factorylens.evaluation._datasets import (
    FAULT_DURATION,
    _load_balancer_targets,
    _nezha_days,
    _nezha_faults,
    _petshop_frame,
    _petshop_scenarios,
    _petshop_topology,
    _with_caller_views,
    nezha_day_frame,
)
from factorylens.rca_service.analysis import Incident, KpiRankingConfig, config_for_interval
from factorylens.rca_service.detection import RobustZDetector, harmful
from factorylens.rca_service.ranking import Topology, describe_signal
from factorylens.rca_service.replay import replay

NEZHA_INTERVAL_S = 60.0
PETSHOP_INTERVAL_S = 300.0
NEZHA_RECOVERY = pd.Timedelta(seconds=300)  # after the 3-minute fault, before the data count as normal again
DETECTION_WINDOW = pd.Timedelta(seconds=300)  # an incident this soon after the injection found the fault
SLI_PREFIX = "sli:"
PETSHOP_TARGET = "PetSite"  # every PetShop label's SLO node
PETSHOP_KPI_METRICS = ("latency.*", "availability.*")

Progress = Callable[[str], None]


@dataclass
class Specificity:
    """False alarms on normal operation and, where faults are labelled, how many were detected.

    ``false_per_day`` is ``false_incidents`` per 24 normal hours; ``detected``/``faults`` are None
    for data without faults. ``visible`` counts the faults injected after the analyzer's warm-up that
    visibly break a KPI (see :func:`kpi_breaks`), ``detected_visible`` those of them detected: a
    KPI-driven analyzer should open an incident for exactly these. ``quiet_hours``/``quiet_false``:
    the normal time outside the whole fault campaign (first injection to last injection + fault +
    recovery) and the false incidents in it; for data without faults, all of it. ``false_kpis`` counts
    the false incidents by the KPI that opened them, ``false_onsets`` lists their onsets (ISO, UTC)
    with that KPI."""

    dataset: str
    normal_hours: float
    false_incidents: int
    false_per_day: float
    detected: int | None = None
    faults: int | None = None
    visible: int | None = None
    detected_visible: int | None = None
    quiet_hours: float = 0.0
    quiet_false: int = 0
    incidents: int = 0
    seconds: float = 0.0
    false_kpis: dict[str, int] = field(default_factory=dict)
    false_onsets: list[tuple[str, str]] = field(default_factory=list)
    missed: list[tuple[str, str]] = field(default_factory=list)  # (inject time, fault type) not detected

    @property
    def false_per_hour(self) -> float:
        return self.false_incidents / self.normal_hours if self.normal_hours > 0 else 0.0

    @property
    def recall(self) -> float | None:
        return self.detected / self.faults if self.detected is not None and self.faults else None

    def summary(self) -> dict[str, object]:
        """The JSON-friendly numbers (no per-incident lists)."""
        out: dict[str, object] = {
            "normal_hours": round(self.normal_hours, 2),
            "false_incidents": self.false_incidents,
            "false_per_hour": round(self.false_per_hour, 4),
            "false_per_day": round(self.false_per_day, 3),
            "incidents": self.incidents,
            "seconds": round(self.seconds, 1),
        }
        if self.faults is not None:
            out.update(
                detected=self.detected,
                faults=self.faults,
                recall=round(self.recall or 0.0, 3),
                visible=self.visible,
                detected_visible=self.detected_visible,
                quiet_hours=round(self.quiet_hours, 2),
                quiet_false=self.quiet_false,
            )
        return out


def long_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A wide ``(entity, signal)`` frame with a UTC index as ``time_unix_nano, entity, signal, value``
    rows (missing values dropped), the replay's long format."""
    stacked = frame.stack(level=[0, 1], future_stack=True).dropna()
    times = pd.DatetimeIndex(stacked.index.get_level_values(0))
    return (
        pd.DataFrame(
            {
                "time_unix_nano": (times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "ns"),
                "entity": stacked.index.get_level_values(1).astype(str),
                "signal": stacked.index.get_level_values(2).astype(str),
                "value": stacked.to_numpy(dtype=float),
            }
        )
        .sort_values("time_unix_nano", kind="stable")
        .reset_index(drop=True)
    )


def replay_frame(
    frame: pd.DataFrame,
    *,
    kpi_metrics: tuple[str, ...],
    interval_s: float,
    topology: Topology | None = None,
    config: KpiRankingConfig | None = None,
) -> list[Incident]:
    """Replay a wide frame (written as a long Parquet table) through the KPI analyzer."""
    config = config or config_for_interval(interval_s, kpi_metrics)
    with tempfile.TemporaryDirectory(prefix="specificity-") as folder:
        path = Path(folder) / "telemetry.parquet"
        long_table(frame).to_parquet(path, index=False)
        return replay(path, topology=topology, kpi_metrics=kpi_metrics, interval_s=interval_s, config=config)


def _stamp(ns: int) -> pd.Timestamp:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC")


def _kpi_label(incident: Incident) -> str:
    """``signal on entity`` of the KPI that opened the incident (from its title)."""
    return incident.title.split(" broke", 1)[0]


def _warm_up(frame: pd.DataFrame, interval_s: float, config: KpiRankingConfig) -> pd.Timestamp:
    return frame.index[0] + pd.Timedelta(seconds=config.detection.min_points * interval_s)


# ---- Nezha -----------------------------------------------------------------------------------------


def nezha_specificity(
    root: str | Path, *, config: KpiRankingConfig | None = None, progress: Progress | None = None
) -> Specificity:
    """False incidents on Nezha's fault-free stretches and faults detected, over every day under
    ``root`` (``rca_data/``, its parent, or one day's folder)."""
    days = _nezha_days(Path(root))
    results = [nezha_day_specificity(day, config=config, progress=progress) for day in days]
    return _combine("nezha", results)


def nezha_day_specificity(
    day: Path, *, config: KpiRankingConfig | None = None, progress: Progress | None = None
) -> Specificity:
    started = time.perf_counter()
    frame, topology, kpi, _ = nezha_day_frame(day)
    faults = _nezha_faults(day / f"{day.name}-fault_list.json")
    kpi_metrics = tuple(sorted({signal for _, signal in kpi}))
    config = config or config_for_interval(NEZHA_INTERVAL_S, kpi_metrics)
    if progress:
        progress(f"nezha {day.name}: {frame.shape[1]} series x {len(frame)} scrapes, {len(faults)} faults")
    incidents = replay_frame(
        frame, kpi_metrics=kpi_metrics, interval_s=NEZHA_INTERVAL_S, topology=topology, config=config
    )
    scrape = pd.Timedelta(seconds=NEZHA_INTERVAL_S)
    windows = [(t - scrape, t + FAULT_DURATION + NEZHA_RECOVERY) for t, _, _ in faults]
    warm = _warm_up(frame, NEZHA_INTERVAL_S, config)
    onsets = [_stamp(i.onset_unix_nano) for i in incidents]
    false = [(o, i) for o, i in zip(onsets, incidents, strict=False) if not any(a <= o <= b for a, b in windows)]
    normal = _normal(pd.DatetimeIndex(frame.index), warm, windows)
    breaks = kpi_breaks(frame[kpi], normal, [t for t, _, _ in faults], config, scrape)
    detected = visible = detected_visible = 0
    missed = []
    for (t, _, kind), broke in zip(faults, breaks, strict=False):
        found = any(t - scrape <= o <= t + DETECTION_WINDOW for o in onsets)
        detected += found
        if broke and t >= warm:
            visible += 1
            detected_visible += found
        if not found:
            missed.append((t.isoformat(), kind + (", KPI broke" if broke else "")))
    campaign = [(windows[0][0], windows[-1][1])] if windows else []
    quiet = [(o, i) for o, i in false if not any(a <= o <= b for a, b in campaign)]
    return _result(
        f"nezha/{day.name}",
        _hours(normal, NEZHA_INTERVAL_S),
        false,
        len(incidents),
        time.perf_counter() - started,
        detected=detected,
        faults=len(faults),
        missed=missed,
        visible=visible,
        detected_visible=detected_visible,
        quiet_hours=_hours(_normal(pd.DatetimeIndex(frame.index), warm, campaign), NEZHA_INTERVAL_S),
        quiet_false=len(quiet),
    )


def kpi_breaks(
    kpis: pd.DataFrame,
    normal: np.ndarray,
    injections: list[pd.Timestamp],
    config: KpiRankingConfig,
    scrape: pd.Timedelta,
) -> list[bool]:
    """Per injection: does some KPI visibly break in ``[injection - 1 scrape, injection + 5 min]``?

    An oracle independent of the analyzer's online state: each KPI against the day's normal scrapes
    through the analyzer's robust-z detector, and a break is ``kpi_points`` scrapes in a row beyond
    its threshold in the KPI's bad direction. Faults that break no KPI (a slow e-mail service behind
    an asynchronous call) cannot and should not open a KPI incident."""
    detection = config.detection
    detector = RobustZDetector(detection.robust)
    reference = kpis[normal]
    broke = [False] * len(injections)
    for column in kpis.columns:
        values = reference[column].dropna().to_numpy()
        if len(values) < detection.min_points:
            continue
        z = detector.scores(values[:, None], kpis[column].to_numpy(dtype=float)[:, None]).z[:, 0]
        direction = describe_signal(column[1] if isinstance(column, tuple) else column).kind.bad_direction
        harm = pd.Series(harmful(z, direction) > detection.threshold, index=kpis.index)
        for n, t in enumerate(injections):
            window = harm[(kpis.index >= t - scrape) & (kpis.index <= t + DETECTION_WINDOW)].to_numpy()
            broke[n] = broke[n] or _longest_run(window) >= config.incidents.kpi_points
    return broke


def _longest_run(flags: np.ndarray) -> int:
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


def _normal(
    index: pd.DatetimeIndex, warm: pd.Timestamp, windows: list[tuple[pd.Timestamp, pd.Timestamp]]
) -> np.ndarray:
    """Scrapes after the warm-up and outside every window."""
    normal = np.asarray(index >= warm)
    for a, b in windows:
        normal &= ~np.asarray((index >= a) & (index <= b))
    return normal


def _hours(mask: np.ndarray, interval_s: float) -> float:
    return float(mask.sum()) * interval_s / 3600.0


# ---- PetShop ---------------------------------------------------------------------------------------


def petshop_specificity(
    root: str | Path, *, kpi: str = "targets", config: KpiRankingConfig | None = None, progress: Progress | None = None
) -> Specificity:
    """False incidents on every PetShop scenario's ``noissue`` data under ``root`` (``dataset/``, its
    parent, or one scenario folder); scenarios without one are skipped. ``kpi``: ``"targets"``
    (PetSite's latency and availability, the labels' SLO) or ``"all"`` (every node's)."""
    if kpi not in ("targets", "all"):
        raise ValueError("kpi must be 'targets' or 'all'")
    scenarios = [s for s in _petshop_scenarios(Path(root)) if (s / "noissue" / "metrics.csv").is_file()]
    if not scenarios:
        raise FileNotFoundError(f"{root}: no PetShop scenario with noissue/metrics.csv")
    results = [petshop_scenario_specificity(s, kpi=kpi, config=config, progress=progress) for s in scenarios]
    return _combine("petshop", results)


def petshop_scenario_specificity(
    scenario: Path, *, kpi: str = "targets", config: KpiRankingConfig | None = None, progress: Progress | None = None
) -> Specificity:
    started = time.perf_counter()
    topology = _petshop_topology(scenario / "graph.csv")
    behind = _load_balancer_targets(topology)
    for balancer, service in behind.items():
        topology.add_edge(balancer, service, "calls")
    frame = _with_caller_views(_petshop_frame(scenario / "noissue" / "metrics.csv"), behind)
    if kpi == "targets":
        frame = petshop_sli_frame(frame)
        kpi_metrics = tuple(SLI_PREFIX + pattern for pattern in PETSHOP_KPI_METRICS)
    else:
        kpi_metrics = PETSHOP_KPI_METRICS
    config = config or config_for_interval(PETSHOP_INTERVAL_S, kpi_metrics)
    if progress:
        progress(f"petshop {scenario.name}: {frame.shape[1]} series x {len(frame)} scrapes, KPIs {kpi}")
    incidents = replay_frame(
        frame, kpi_metrics=kpi_metrics, interval_s=PETSHOP_INTERVAL_S, topology=topology, config=config
    )
    hours = _hours(
        _normal(pd.DatetimeIndex(frame.index), _warm_up(frame, PETSHOP_INTERVAL_S, config), []), PETSHOP_INTERVAL_S
    )
    false = [(_stamp(i.onset_unix_nano), i) for i in incidents]
    return _result(
        f"petshop/{scenario.name}",
        hours,
        false,
        len(incidents),
        time.perf_counter() - started,
        quiet_hours=hours,
        quiet_false=len(false),
    )


def petshop_sli_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Add PetSite's latency and availability columns again as ``sli:<signal>`` on PetSite: the SLO
    series the replay's metric-name globs can select without selecting every node's latency."""
    sli = [
        c
        for c in cast("list[tuple[str, str]]", list(frame.columns))
        if c[0] == PETSHOP_TARGET and c[1].split(".", 1)[0] in ("latency", "availability")
    ]
    if not sli:
        raise ValueError(f"no {PETSHOP_TARGET} latency or availability columns in the PetShop frame")
    copied = frame[sli].set_axis(
        pd.MultiIndex.from_tuples([(e, SLI_PREFIX + s) for e, s in sli], names=frame.columns.names), axis=1
    )
    return pd.concat([frame, copied], axis=1)


# ---- results ---------------------------------------------------------------------------------------


def _result(
    name: str,
    hours: float,
    false: list[tuple[pd.Timestamp, Incident]],
    incidents: int,
    seconds: float,
    *,
    missed: list[tuple[str, str]] | None = None,
    **counts: Any,
) -> Specificity:
    return Specificity(
        name,
        hours,
        len(false),
        len(false) / hours * 24 if hours > 0 else 0.0,
        incidents=incidents,
        seconds=seconds,
        false_kpis=dict(Counter(_kpi_label(i) for _, i in false)),
        false_onsets=[(o.isoformat(), _kpi_label(i)) for o, i in false],
        missed=list(missed or []),
        **counts,
    )


def _combine(name: str, parts: list[Specificity]) -> Specificity:
    """One dataset's total over its days or scenarios."""
    hours = sum(p.normal_hours for p in parts)
    false = sum(p.false_incidents for p in parts)
    labelled = [p for p in parts if p.faults is not None]

    def total(attribute: str) -> int | None:
        return sum(getattr(p, attribute) or 0 for p in labelled) if labelled else None

    kpis: Counter[str] = Counter()
    for p in parts:
        kpis.update(p.false_kpis)
    return Specificity(
        name,
        hours,
        false,
        false / hours * 24 if hours > 0 else 0.0,
        total("detected"),
        total("faults"),
        total("visible"),
        total("detected_visible"),
        sum(p.quiet_hours for p in parts),
        sum(p.quiet_false for p in parts),
        sum(p.incidents for p in parts),
        sum(p.seconds for p in parts),
        dict(kpis),
        [o for p in parts for o in p.false_onsets],
        [m for p in parts for m in p.missed],
    )
