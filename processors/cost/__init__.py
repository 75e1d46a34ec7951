"""GPU cost and ROI (ARCHITECTURE.md, "Cost and ROI"): the price catalog, the figures computed from the
GPU receiver's usage counters, and the Prometheus recording rules that keep them per hour."""

from factorylens.processors.cost._catalog import CatalogError, Energy, GpuPrice, ModelEntry, PriceCatalog
from factorylens.processors.cost._figures import (
    GROUPS,
    JOULES_PER_KWH,
    UNALLOCATED,
    CostTotals,
    JobOutput,
    UsageRow,
    cost_totals,
    group_key,
    row_totals,
)
from factorylens.processors.cost._rules import (
    FIGURE_LABEL,
    JOB_FIGURES,
    RECORDED,
    WORKLOAD,
    recorded_selector,
    recording_rules,
    rules_yaml,
)

__all__ = [
    "FIGURE_LABEL",
    "GROUPS",
    "JOB_FIGURES",
    "JOULES_PER_KWH",
    "RECORDED",
    "UNALLOCATED",
    "WORKLOAD",
    "CatalogError",
    "CostTotals",
    "Energy",
    "GpuPrice",
    "JobOutput",
    "ModelEntry",
    "PriceCatalog",
    "UsageRow",
    "cost_totals",
    "group_key",
    "recorded_selector",
    "recording_rules",
    "row_totals",
    "rules_yaml",
]
