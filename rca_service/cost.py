"""GPU cost and ROI, live: the figures of :mod:`factorylens.processors.cost` over the store's window,
on ``/metrics`` and OTLP, a report for any range (the ``GetCostReport`` RPC), and waste as an incident
kind: a job that holds GPUs mostly idle for long enough opens a low-severity incident with what the
idle time has cost so far and the likely reason.

Usage comes from the GPU receiver's counters (``factorylens.gpu.allocation.time``, ``…active.time``,
``…allocation.energy``), output from the instrumentation (samples, tokens, MFU), both per job.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from factorylens.processors.cost import (
    CostTotals,
    JobOutput,
    PriceCatalog,
    UsageRow,
    cost_totals,
)
from factorylens.rca_service._ledger import USAGE_METRICS, UsageLedger, job_of, usage_field, usage_key
from factorylens.rca_service.analysis import (
    Analyzer,
    Band,
    Baseline,
    Cause,
    Evidence,
    Incident,
    IncidentChange,
    IncidentState,
)
from factorylens.rca_service.store import SeriesInfo, SeriesStore, View
from factorylens.registry import Attributes, Metrics

log = logging.getLogger(__name__)

NS = 1_000_000_000
Points = list[tuple[Mapping[str, Any], float]]
JOB, TEAM, CLUSTER = Attributes.FACTORYLENS_JOB_ID, Attributes.FACTORYLENS_TEAM, Attributes.FACTORYLENS_CLUSTER_NAME
WASTE = "waste"  # the incident kind; the analyzer's are "performance"
MAX_RESOLVED = 1000
MAX_LIVE_GROUPS = 5000  # /metrics groups (job x team x cluster x model); the largest spenders first
# phases whose dominance explains idle GPUs, in the words an operator uses
IDLE_REASONS = (
    (("data",), "data", "waiting for data: the input pipeline (data phase)"),
    (("checkpoint.save", "checkpoint.load"), "storage", "storage: checkpoint saves and loads"),
    (("collective",), "network", "collective wait: ranks waiting on each other over the network"),
)


@dataclass(frozen=True)
class WasteConfig:
    """When a job's held GPUs count as wasted.

    :param idle_threshold: share of the job's allocated GPU time that was idle (1 - utilization)
    :param duration_s: over this trailing window, which the job must have held its GPUs for (90% of it)
    :param resolve_ratio: the incident resolves once the idle share drops below threshold x this
    """

    idle_threshold: float = 0.8
    duration_s: float = 1800.0
    resolve_ratio: float = 0.75
    enabled: bool = True

    def validate(self) -> None:
        if not 0 < self.idle_threshold <= 1:
            raise ValueError(f"waste idle threshold must be in (0, 1], got {self.idle_threshold}")
        if self.duration_s <= 0:
            raise ValueError(f"waste duration must be positive, got {self.duration_s}")
        if not 0 < self.resolve_ratio <= 1:
            raise ValueError(f"waste resolve ratio must be in (0, 1], got {self.resolve_ratio}")


@dataclass
class CostReportData:
    start_ns: int
    end_ns: int
    group_by: str
    groups: dict[str, CostTotals]
    unpriced_models: list[str]
    catalog: PriceCatalog
    teams: dict[str, str]  # job -> team


def usage_rows(store: SeriesStore, start_ns: int, end_ns: int, *, job: str | None = None) -> list[UsageRow]:
    """One row per GPU and job (and one per GPU for its unallocated time) over (start_ns, end_ns], exactly
    (each counter's increases between its points); ``job``: only that job's rows."""
    rows: dict[tuple[Any, ...], dict[str, float]] = {}
    for metric in USAGE_METRICS:
        for info in store.of_metric(metric):
            if job is not None and info.attributes.get(JOB) != job:
                continue
            amount = store.increase(info.id, start_ns, end_ns)
            if not math.isfinite(amount):
                continue
            fields = rows.setdefault(usage_key(info), {})
            name = usage_field(info)
            fields[name] = fields.get(name, 0.0) + amount
    return [
        UsageRow(gpu, hw_name, job_id, team, cluster, host, **fields)
        for (gpu, hw_name, job_id, team, cluster, host, _), fields in rows.items()
    ]


def job_outputs(store: SeriesStore, start_ns: int, end_ns: int) -> dict[str, JobOutput]:
    """Samples, tokens and mean MFU per job over the range, from the instrumentation."""
    sums: dict[str, dict[str, float]] = {}
    mfus: dict[str, list[float]] = {}
    for metric, name in ((Metrics.FACTORYLENS_TRAIN_SAMPLES, "samples"), (Metrics.FACTORYLENS_TRAIN_TOKENS, "tokens")):
        for info in store.of_metric(metric):
            job = job_of(info)
            amount = store.increase(info.id, start_ns, end_ns)
            if job and math.isfinite(amount):
                sums.setdefault(job, {})[name] = sums.get(job, {}).get(name, 0.0) + amount
    for info in store.of_metric(Metrics.FACTORYLENS_TRAIN_MFU):
        job = job_of(info)
        value = store.mean(info.id, start_ns, end_ns)
        if job and math.isfinite(value):
            mfus.setdefault(job, []).append(value)
    return {
        job: JobOutput(
            sums.get(job, {}).get("samples"),
            sums.get(job, {}).get("tokens"),
            float(np.mean(mfus[job])) if job in mfus else None,
        )
        for job in set(sums) | set(mfus)
    }


class CostTracker:
    """The live figures, the report and the waste incidents of one RCA service.

    :param catalog: prices (an empty catalog prices nothing: every hour is reported as unpriced)
    :param window_s: the live figures on ``/metrics`` cover this trailing window (the store's retention)
    :param interval_s: the live figures and waste are recomputed at most this often
    """

    def __init__(
        self,
        catalog: PriceCatalog | None = None,
        *,
        waste: WasteConfig | None = None,
        window_s: float = 24 * 3600.0,
        interval_s: float = 60.0,
    ) -> None:
        self.catalog = catalog or PriceCatalog()
        self.waste = waste or WasteConfig()
        self.waste.validate()
        self.window_s = window_s
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._ledger = UsageLedger(
            window_s, self.waste.duration_s, short_bucket_s=min(60.0, self.waste.duration_s / 30)
        )
        self._live: dict[tuple[str, str, str, str], CostTotals] = {}
        self._live_at = 0.0
        self._incidents: dict[str, Incident] = {}
        self._open_by_job: dict[str, str] = {}
        self.last_update_s = 0.0  # wall time of the last rollup (bench/cost.py reads it)

    # ---- report --------------------------------------------------------------------------------
    def report(self, store: SeriesStore, start_ns: int, end_ns: int, group_by: str = "team") -> CostReportData:
        rows = usage_rows(store, start_ns, end_ns)
        outputs = job_outputs(store, start_ns, end_ns)
        groups = cost_totals(rows, self.catalog, group_by, outputs)
        unpriced = sorted({r.hw_name for r in rows if self.catalog.model_of(r.hw_name) is None})
        teams = {r.job: r.team for r in rows if r.job and r.team}
        return CostReportData(start_ns, end_ns, group_by, groups, unpriced, self.catalog, teams)

    # ---- live ----------------------------------------------------------------------------------
    def update(self, store: SeriesStore, now_ns: int, *, force: bool = False) -> list[tuple[IncidentChange, Incident]]:
        """Recompute the live figures and the waste incidents (at most every ``interval_s``)."""
        started = time.perf_counter()
        if not force and time.monotonic() - self._live_at < self.interval_s:
            return []
        self._live_at = time.monotonic()
        self._ledger.advance(store, now_ns)
        rows, outputs = self._ledger.rows(now_ns - int(self.window_s * NS), now_ns)
        catalog = self.catalog

        def live_key(row: UsageRow) -> tuple[str, str, str, str]:
            return (row.job, row.team, row.cluster, catalog.model_of(row.hw_name) or "")

        live = cost_totals(rows, catalog, live_key, outputs)
        if len(live) > MAX_LIVE_GROUPS:
            kept = sorted(live, key=lambda k: live[k].total_cost + live[k].allocated_h, reverse=True)
            live = {k: live[k] for k in kept[:MAX_LIVE_GROUPS]}
        changes = self._update_waste(store, now_ns) if self.waste.enabled else []
        with self._lock:
            self._live = live
        self.last_update_s = time.perf_counter() - started
        return changes

    def price_points(self) -> dict[str, Points]:
        """``factorylens.gpu.price`` and ``…energy.price`` for every model and scope in the catalog."""
        prices: Points = []
        energy: Points = []
        for p in self.catalog.prices:
            scope = {Attributes.HW_MODEL: p.model}
            if p.cluster:
                scope[CLUSTER] = p.cluster
            if p.team:
                scope[TEAM] = p.team
            extra = {Attributes.FACTORYLENS_PRICE_BASIS: p.basis}
            if p.contract:
                extra[Attributes.FACTORYLENS_PRICE_CONTRACT] = p.contract
            prices.append(({**scope, **extra}, p.per_gpu_hour))
            energy.append((scope, p.energy_per_kwh))
        return {Metrics.FACTORYLENS_GPU_PRICE: prices, Metrics.FACTORYLENS_GPU_ENERGY_PRICE: energy}

    def figure_points(self) -> dict[str, Points]:
        """The live figures as ``{metric: [(attributes, value)]}`` (registry names, domain cost)."""
        with self._lock:
            live = dict(self._live)
        hours: Points = []
        energy: Points = []
        spend: Points = []
        jobs: dict[tuple[str, str, str], CostTotals] = {}
        for (job, team, cluster, model), t in live.items():
            group = {k: v for k, v in ((JOB, job), (TEAM, team), (CLUSTER, cluster), (Attributes.HW_MODEL, model)) if v}
            usage = {
                "allocated": t.allocated_h,
                "active": t.active_h,
                "active_sm": t.active_sm_h,
                "idle": t.idle_h,
                "unallocated": t.unallocated_h,
                "useful": t.useful_h,
                "unpriced": t.unpriced_h,
            }
            hours += [({**group, Attributes.FACTORYLENS_COST_USAGE: k}, v) for k, v in usage.items()]
            energy.append(({**group, Attributes.FACTORYLENS_ALLOCATION_STATE: "allocated"}, t.energy_kwh))
            energy.append(({**group, Attributes.FACTORYLENS_ALLOCATION_STATE: "unallocated"}, t.unallocated_energy_kwh))
            components = {
                "gpu_time": t.gpu_time_cost,
                "energy": t.energy_cost,
                "total": t.total_cost,
                "idle": t.idle_cost,
                "unallocated": t.unallocated_cost,
                "useful": t.useful_cost,
            }
            spend += [({**group, Attributes.FACTORYLENS_COST_COMPONENT: k}, v) for k, v in components.items()]
            if job:
                jobs.setdefault((job, team, cluster), CostTotals()).add(t)
        efficiency: Points = []
        unit: Points = []
        for (job, team, cluster), t in jobs.items():
            who = {k: v for k, v in ((JOB, job), (TEAM, team)) if v}
            if math.isfinite(t.efficiency):
                efficiency.append(({**who, **({CLUSTER: cluster} if cluster else {})}, t.efficiency))
            if math.isfinite(t.cost_per_1k_samples):
                unit.append(({**who, Attributes.FACTORYLENS_COST_OUTPUT: "1k_samples"}, t.cost_per_1k_samples))
            if math.isfinite(t.cost_per_1m_tokens):
                unit.append(({**who, Attributes.FACTORYLENS_COST_OUTPUT: "1m_tokens"}, t.cost_per_1m_tokens))
        return {
            Metrics.FACTORYLENS_COST_GPU_TIME: hours,
            Metrics.FACTORYLENS_COST_ENERGY: energy,
            Metrics.FACTORYLENS_COST_SPEND: spend,
            Metrics.FACTORYLENS_COST_EFFICIENCY: efficiency,
            Metrics.FACTORYLENS_COST_UNIT: unit,
        }

    # ---- waste ---------------------------------------------------------------------------------
    def _update_waste(self, store: SeriesStore, now_ns: int) -> list[tuple[IncidentChange, Incident]]:
        cfg = self.waste
        start_ns = now_ns - int(cfg.duration_s * NS)
        rows = [r for r in self._ledger.rows(start_ns, now_ns, short=True)[0] if r.job]
        held = self._ledger.held_share(start_ns, now_ns)
        by_job: dict[str, list[UsageRow]] = {}
        for row in rows:
            by_job.setdefault(row.job, []).append(row)
        changes: list[tuple[IncidentChange, Incident]] = []
        by_job_totals = cost_totals(rows, self.catalog, "job")
        with self._lock:
            for job, job_rows in by_job.items():
                totals = by_job_totals[job]
                gpus = {r.gpu for r in job_rows}
                held_all_along = held.get(job, 0.0) >= 0.9
                idle = totals.idle_ratio
                open_id = self._open_by_job.get(job)
                if open_id is None:
                    if held_all_along and math.isfinite(idle) and idle >= cfg.idle_threshold:
                        incident = self._open_waste(store, job, job_rows, gpus, idle, start_ns, now_ns)
                        changes.append((IncidentChange.OPENED, incident))
                    continue
                incident = self._incidents[open_id]
                if totals.allocated_h == 0 or not math.isfinite(idle) or idle < cfg.idle_threshold * cfg.resolve_ratio:
                    incident.state = IncidentState.RESOLVED
                    incident.resolved_unix_nano = incident.updated_unix_nano = now_ns
                    del self._open_by_job[job]
                    changes.append((IncidentChange.RESOLVED, incident))
                else:  # refreshed in place; a change is published only when the story changes
                    before = (incident.title, [c.explanation for c in incident.causes])
                    self._describe_waste(store, incident, job, gpus, idle, now_ns)
                    if (incident.title, [c.explanation for c in incident.causes]) != before:
                        changes.append((IncidentChange.UPDATED, incident))
            for job, open_id in list(self._open_by_job.items()):
                if job not in by_job:  # the job let go of its GPUs
                    incident = self._incidents[open_id]
                    incident.state = IncidentState.RESOLVED
                    incident.resolved_unix_nano = incident.updated_unix_nano = now_ns
                    del self._open_by_job[job]
                    changes.append((IncidentChange.RESOLVED, incident))
            self._expire_resolved()
            return [(change, copy.deepcopy(incident)) for change, incident in changes]

    def _expire_resolved(self) -> None:
        """Keep the newest ``MAX_RESOLVED`` resolved waste incidents (the analyzers keep as many)."""
        resolved = [i for i in self._incidents.values() if i.state is IncidentState.RESOLVED]
        for incident in sorted(resolved, key=lambda i: i.resolved_unix_nano)[: max(0, len(resolved) - MAX_RESOLVED)]:
            del self._incidents[incident.id]

    def _open_waste(
        self,
        store: SeriesStore,
        job: str,
        rows: list[UsageRow],
        gpus: set[str],
        idle: float,
        onset_ns: int,
        now_ns: int,
    ) -> Incident:
        incident = Incident(
            id=f"waste-{job}-{now_ns // NS}",
            state=IncidentState.OPEN,
            title="",
            opened_unix_nano=now_ns,
            onset_unix_nano=onset_ns,
            updated_unix_nano=now_ns,
            kpi_series_id=f"job:{job}",
            kind=WASTE,
            severity="low",
        )
        self._incidents[incident.id] = incident
        self._open_by_job[job] = incident.id
        self._describe_waste(store, incident, job, gpus, idle, now_ns)
        return incident

    def _describe_waste(
        self, store: SeriesStore, incident: Incident, job: str, gpus: set[str], idle: float, now_ns: int
    ) -> None:
        """Title, summary and the likely reason, with the idle cost since the waste began."""
        since = incident.onset_unix_nano
        rows = usage_rows(store, since, now_ns, job=job)
        totals = cost_totals(rows, self.catalog, lambda r: r.job).get(job, CostTotals())
        minutes = (now_ns - since) / NS / 60
        unpriced = sorted({r.hw_name for r in rows if self.catalog.model_of(r.hw_name) is None})
        if totals.unpriced_h > 0 and totals.idle_cost == 0:
            cost = f"cost unknown: {', '.join(unpriced)} has no price in the catalog"
        else:
            cost = f"{totals.idle_cost:,.2f} {self.catalog.currency} of idle GPU time so far"
            if unpriced:
                cost += f" (not counting unpriced {', '.join(unpriced)})"
        team = next((r.team for r in rows if r.team), "")
        domain, signal, reason, evidence = _idle_reason(store, job, now_ns - int(self.waste.duration_s * NS), now_ns)
        # the title moves in 5% steps, so that a flickering idle share does not republish the incident
        incident.title = (
            f"Job {job} holds {len(gpus)} GPU{'s' if len(gpus) != 1 else ''} {round(idle * 20) / 20:.0%} idle"
        )
        incident.summary = (
            f"Job {job}{f' (team {team})' if team else ''} has held {len(gpus)} GPU"
            f"{'s' if len(gpus) != 1 else ''} for {minutes:.0f} min with {idle:.0%} of the time idle "
            f"({totals.idle_h:.2f} of {totals.measured_h:.2f} GPU-hours): {cost}. Likely reason: {reason}."
        )
        incident.score = idle
        incident.updated_unix_nano = now_ns
        incident.causes = [
            Cause(
                rank=1,
                entity=f"job:{job}",
                domain=domain,
                signal=signal,
                series_id=evidence.series_id if evidence else "",
                onset_unix_nano=since,
                score=idle,
                explanation=f"Likely reason: {reason}.",
                evidence=[evidence] if evidence else [],
            )
        ]

    # ---- incidents -----------------------------------------------------------------------------
    def incidents(self) -> list[Incident]:
        with self._lock:
            return copy.deepcopy(list(self._incidents.values()))

    def load_incidents(self, incidents: Iterable[Incident]) -> None:
        with self._lock:
            self._incidents = {i.id: i for i in incidents if i.kind == WASTE}
            self._open_by_job = {
                i.kpi_series_id.removeprefix("job:"): i.id
                for i in self._incidents.values()
                if i.state is IncidentState.OPEN
            }


def _idle_reason(store: SeriesStore, job: str, start_ns: int, end_ns: int) -> tuple[str, str, str, Evidence | None]:
    """Why a job's GPUs sit idle, from its instrumentation: (domain, signal, words, evidence)."""
    steps = [i for i in store.of_metric(Metrics.FACTORYLENS_TRAIN_STEPS) if job_of(i) == job]
    if not steps:
        return (
            "app",
            Metrics.FACTORYLENS_TRAIN_STEPS,
            "nothing running that reports progress: the job's processes hold the GPUs, but it reports no "
            "training steps (no factorylens instrumentation, or an interactive session left open)",
            None,
        )
    done = sum(v for v in (store.increase(i.id, start_ns, end_ns) for i in steps) if math.isfinite(v))
    if done == 0:
        return (
            "app",
            Metrics.FACTORYLENS_TRAIN_STEPS,
            "nothing running: the job holds its GPUs but completed no training step in the window (stalled, "
            "hung in a collective, or waiting on something outside the job)",
            _evidence(steps[0].id, "training steps completed in the window", 0.0),
        )
    phase_time: dict[str, float] = {}
    for info in store.of_metric(Metrics.FACTORYLENS_TRAIN_PHASE_DURATION):
        if job_of(info) != job:
            continue
        phase = str(info.attributes.get(Attributes.FACTORYLENS_TRAIN_PHASE, ""))
        _, rate = store.query(info.id, View.COUNT, start_ns, end_ns)[1:]
        _, mean = store.query(info.id, View.MEAN, start_ns, end_ns)[1:]
        busy = rate * mean
        busy = busy[np.isfinite(busy)]
        if len(busy):
            phase_time[phase] = phase_time.get(phase, 0.0) + float(busy.mean())
    total = sum(phase_time.values())
    if total > 0:
        phases, domain, words = max(IDLE_REASONS, key=lambda r: sum(phase_time.get(p, 0.0) for p in r[0]))
        share = sum(phase_time.get(p, 0.0) for p in phases) / total
        if share >= 0.25:
            return (
                domain,
                Metrics.FACTORYLENS_TRAIN_PHASE_DURATION,
                f"{words} took {share:.0%} of the step time",
                _evidence(f"phase:{phases[0]}", f"share of step time in {', '.join(phases)}", share),
            )
    return (
        "app",
        Metrics.FACTORYLENS_TRAIN_PHASE_DURATION,
        "the job runs steps but leaves its GPUs idle: its work is not GPU-bound (CPU-side work, small batches, "
        "or more GPUs than it uses)",
        None,
    )


def _evidence(series_id: str, description: str, observed: float) -> Evidence:
    return Evidence(
        series_id=series_id,
        description=description,
        time_unix_nano=time.time_ns(),
        observed=observed,
        expected=math.nan,
        lower=math.nan,
        upper=math.nan,
    )


class CostAwareAnalyzer(Analyzer):
    """An analyzer plus the cost tracker: the analyzer's incidents and the waste incidents are one list
    (the API, ``/metrics``, the incidents file and the OTLP log records see both), and each analysis
    pass also refreshes the live cost figures. Composition: the analyzer does not know about cost."""

    def __init__(self, inner: Analyzer, cost: CostTracker) -> None:
        self.inner = inner
        self.cost = cost
        self.name = inner.name

    def __getattr__(self, name: str) -> Any:  # the inner analyzer's own extras (its config, baselines)
        return getattr(self.inner, name)

    def analyze(
        self,
        store: SeriesStore,
        now_unix_nano: int,
        *,
        deadline: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[tuple[IncidentChange, Incident]]:
        changes = self.inner.analyze(store, now_unix_nano, deadline=deadline, should_stop=should_stop)
        try:
            changes += self.cost.update(store, now_unix_nano)
        except Exception:
            log.exception("cost rollup failed; the figures on /metrics are from the previous one")
        return changes

    def skipped(self) -> dict[str, int]:
        return self.inner.skipped()

    def incidents(self) -> list[Incident]:
        merged = self.inner.incidents() + self.cost.incidents()
        return sorted(merged, key=lambda i: (-i.opened_unix_nano, i.id))

    def load_incidents(self, incidents: list[Incident]) -> None:
        self.inner.load_incidents([i for i in incidents if i.kind != WASTE])
        self.cost.load_incidents(incidents)

    def baseline(
        self, store: SeriesStore, series_id: str, start_unix_nano: int, end_unix_nano: int, view: View | None = None
    ) -> Baseline:
        return self.inner.baseline(store, series_id, start_unix_nano, end_unix_nano, view)

    def anomaly_scores(self) -> dict[str, float]:
        return self.inner.anomaly_scores()

    def predictability(self) -> dict[str, float]:
        return self.inner.predictability()

    def is_kpi(self, info: SeriesInfo) -> bool:
        return self.inner.is_kpi(info)

    def kpi_series(self) -> set[str]:
        return self.inner.kpi_series()

    def latest_bands(self, series_ids: Iterable[str]) -> dict[str, Band]:
        return self.inner.latest_bands(series_ids)


__all__ = [
    "WASTE",
    "CostAwareAnalyzer",
    "CostReportData",
    "CostTracker",
    "WasteConfig",
    "job_outputs",
    "usage_rows",
]
