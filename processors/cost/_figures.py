"""GPU cost and ROI figures: one definition, used by the RCA service's live rollup, the report and the
tests that check the Prometheus recording rules against hand computations.

Usage comes in as :class:`UsageRow` (one GPU and one job over a range: the increases of the
receiver's usage counters); prices come from the :class:`PriceCatalog`. Everything is summed into
additive :class:`CostTotals` per group, and ratios (efficiency, cost per 1M tokens) are taken from
the sums, never averaged, as Prometheus's rule conventions ask.

- allocated GPU-hours: time a job held a GPU, times its share (MIG slice, time-slicing);
- active GPU-hours: that, weighted by utilization (``active``) or SM activity (``active_sm``, GPM);
- idle-but-allocated = allocated - active (utilization basis; not counted where nothing measured it);
- unallocated GPU-hours: time nobody held a priced GPU (the cluster's idle, charged to no job);
- useful GPU-hours: allocated times the job's MFU where it reports one, else active;
- cost = GPU-hours times the GPU-hour price, plus energy where the price excludes power (on-prem);
- cost per 1M tokens (1k samples) = the cost of the jobs that reported tokens (samples) over them;
- efficiency = useful / allocated, over the hours whose usefulness was measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from factorylens.processors.cost._catalog import PriceCatalog

JOULES_PER_KWH = 3.6e6
UNALLOCATED = "(unallocated)"
GROUPS = ("team", "job", "cluster", "model", "gpu", "host")


@dataclass(frozen=True)
class UsageRow:
    """One GPU's use by one job (or by nobody: ``job == ""`` and only ``unallocated_s``) over a range."""

    gpu: str
    hw_name: str
    job: str = ""
    team: str = ""
    cluster: str = ""
    host: str = ""
    allocated_s: float = 0.0
    unallocated_s: float = 0.0
    active_s: float | None = None  # utilization-weighted; None where nothing measured it (MIG without DCGM)
    active_sm_s: float | None = None  # SM-activity-weighted (GPM)
    energy_j: float = 0.0  # allocated to the job
    unallocated_energy_j: float = 0.0


@dataclass(frozen=True)
class JobOutput:
    """What a job produced over the range, from the instrumentation (None where it reports nothing)."""

    samples: float | None = None
    tokens: float | None = None
    mfu: float | None = None  # time-weighted mean model FLOPs utilization


@dataclass
class CostTotals:
    """Additive sums for one group; :meth:`figures` derives the ratios."""

    allocated_h: float = 0.0
    active_h: float = 0.0
    active_sm_h: float = 0.0
    measured_h: float = 0.0  # allocated hours with a utilization reading (idle is counted over these)
    idle_h: float = 0.0
    unallocated_h: float = 0.0
    unpriced_h: float = 0.0
    useful_h: float = 0.0
    useful_basis_h: float = 0.0  # allocated hours whose usefulness is known (MFU reported, or utilization read)
    energy_kwh: float = 0.0
    unallocated_energy_kwh: float = 0.0
    gpu_time_cost: float = 0.0
    energy_cost: float = 0.0
    idle_cost: float = 0.0
    unallocated_cost: float = 0.0
    useful_cost: float = 0.0
    samples: float = 0.0
    tokens: float = 0.0
    sample_jobs_cost: float = 0.0  # the cost of the jobs that reported samples (cost per 1k samples divides it)
    token_jobs_cost: float = 0.0

    def add(self, other: CostTotals) -> None:
        for name in _TOTAL_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def total_cost(self) -> float:
        """GPU time, billable energy and, for a cluster, the unallocated GPUs' cost."""
        return self.gpu_time_cost + self.energy_cost + self.unallocated_cost

    @property
    def job_cost(self) -> float:
        return self.gpu_time_cost + self.energy_cost

    @property
    def efficiency(self) -> float:
        """Useful over allocated GPU-hours, over the hours where usefulness was known (a MIG slice that
        no utilization reading covers and whose job reports no MFU is left out, not counted useless)."""
        return self.useful_h / self.useful_basis_h if self.useful_basis_h > 0 else math.nan

    @property
    def idle_ratio(self) -> float:
        return self.idle_h / self.measured_h if self.measured_h > 0 else math.nan

    @property
    def cost_per_1k_samples(self) -> float:
        return self.sample_jobs_cost / self.samples * 1e3 if self.samples > 0 else math.nan

    @property
    def cost_per_1m_tokens(self) -> float:
        return self.token_jobs_cost / self.tokens * 1e6 if self.tokens > 0 else math.nan

    def as_dict(self) -> dict[str, float]:
        out = {name: getattr(self, name) for name in _TOTAL_FIELDS}
        for name in ("total_cost", "job_cost", "efficiency", "idle_ratio", "cost_per_1k_samples", "cost_per_1m_tokens"):
            out[name] = getattr(self, name)
        return out


_TOTAL_FIELDS = tuple(f.name for f in fields(CostTotals))


def row_totals(row: UsageRow, catalog: PriceCatalog, output: JobOutput | None = None) -> CostTotals:
    """The figures of one row at its catalog price (unpriced GPUs count hours, never cost)."""
    model = catalog.model_of(row.hw_name)
    price = catalog.price(model, cluster=row.cluster, team=row.team) if model else None
    t = CostTotals()
    t.allocated_h = row.allocated_s / 3600.0
    t.unallocated_h = row.unallocated_s / 3600.0
    t.energy_kwh = row.energy_j / JOULES_PER_KWH
    t.unallocated_energy_kwh = row.unallocated_energy_j / JOULES_PER_KWH
    if row.active_s is not None:
        t.active_h = row.active_s / 3600.0
        t.measured_h = t.allocated_h
        t.idle_h = max(0.0, t.allocated_h - t.active_h)
    if row.active_sm_s is not None:
        t.active_sm_h = row.active_sm_s / 3600.0
    if output is not None and output.mfu is not None:
        t.useful_h = t.allocated_h * min(1.0, max(0.0, output.mfu))
        t.useful_basis_h = t.allocated_h
    else:
        t.useful_h = t.active_h
        t.useful_basis_h = t.measured_h
    if price is None:
        t.unpriced_h = t.allocated_h + t.unallocated_h
        return t
    t.gpu_time_cost = t.allocated_h * price.per_gpu_hour
    t.energy_cost = t.energy_kwh * price.energy_per_kwh
    t.idle_cost = t.idle_h * price.per_gpu_hour
    t.unallocated_cost = t.unallocated_h * price.per_gpu_hour + t.unallocated_energy_kwh * price.energy_per_kwh
    t.useful_cost = t.useful_h * price.per_gpu_hour
    return t


def group_key(row: UsageRow, group_by: str, catalog: PriceCatalog) -> str:
    if group_by == "gpu":
        return row.gpu
    if group_by == "host":
        return row.host or "(unknown host)"
    if group_by == "cluster":
        return row.cluster or "(no cluster)"
    if group_by == "model":
        return catalog.model_of(row.hw_name) or f"(unpriced) {row.hw_name}"
    if not row.job and row.allocated_s == 0:
        return UNALLOCATED
    if group_by == "team":
        return row.team or "(no team)"
    if group_by == "job":
        return row.job or "(unknown job)"
    raise ValueError(f"group_by must be one of {', '.join(GROUPS)}, got {group_by!r}")


def cost_totals(
    rows: Iterable[UsageRow],
    catalog: PriceCatalog,
    group_by: str | Callable[[UsageRow], Hashable],
    outputs: Mapping[str, JobOutput] | None = None,
) -> dict[Any, CostTotals]:
    """:class:`CostTotals` per group (one of :data:`GROUPS`, or a function of the row). A job's samples
    and tokens count once, in the group of its first row (a job's GPUs may span models or clusters)."""
    if isinstance(group_by, str):
        if group_by not in GROUPS:
            raise ValueError(f"group_by must be one of {', '.join(GROUPS)}, got {group_by!r}")
        name = group_by
        key_of: Callable[[UsageRow], Hashable] = lambda row: group_key(row, name, catalog)  # noqa: E731
    else:
        key_of = group_by
    outputs = outputs or {}
    groups: dict[Any, CostTotals] = {}
    counted: set[str] = set()
    for row in rows:
        key = key_of(row)
        output = outputs.get(row.job) if row.job else None
        totals = row_totals(row, catalog, output)
        if output is not None and output.samples:
            totals.sample_jobs_cost = totals.job_cost
        if output is not None and output.tokens:
            totals.token_jobs_cost = totals.job_cost
        if output is not None and row.job not in counted:
            counted.add(row.job)
            totals.samples = output.samples or 0.0
            totals.tokens = output.tokens or 0.0
        groups.setdefault(key, CostTotals()).add(totals)
    return groups
