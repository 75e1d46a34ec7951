"""Cost & ROI: what the GPUs cost per team and job, how much of it bought nothing, and how predictable
each workload is (the figures the RCA service computes from the price catalog, see docs/cost.md)."""

from factorylens.registry import Attributes, Metrics

from .._panels import (
    IN_CLUSTER,
    JOB,
    OF_JOB,
    TEAM,
    Board,
    Query,
    Row,
    eq,
    label,
    match,
    sel,
    stat_panel,
    table_panel,
    ts,
)

UID = "factorylens-cost"
SCOPE = (IN_CLUSTER, OF_JOB)
_COMPONENT = label(Attributes.FACTORYLENS_COST_COMPONENT)
_USAGE = label(Attributes.FACTORYLENS_COST_USAGE)
_OUTPUT = label(Attributes.FACTORYLENS_COST_OUTPUT)
_MODEL = label(Attributes.HW_MODEL)
_WORKLOAD = label(Attributes.FACTORYLENS_WORKLOAD)
_UNALLOCATED = sel(Metrics.FACTORYLENS_COST_SPEND, IN_CLUSTER, eq(Attributes.FACTORYLENS_COST_COMPONENT, "unallocated"))
_PARTS = sel(
    Metrics.FACTORYLENS_COST_SPEND, *SCOPE, match(Attributes.FACTORYLENS_COST_COMPONENT, "gpu_time|energy|idle|useful")
)
# a workload is its job where it has one
_PREDICTABILITY = sel(Metrics.FACTORYLENS_BASELINE_PREDICTABILITY, match(Attributes.FACTORYLENS_WORKLOAD, "$job"))


def spend(component: str) -> str:
    return sel(Metrics.FACTORYLENS_COST_SPEND, *SCOPE, eq(Attributes.FACTORYLENS_COST_COMPONENT, component))


def hours(usage: str) -> str:
    return sel(Metrics.FACTORYLENS_COST_GPU_TIME, *SCOPE, match(Attributes.FACTORYLENS_COST_USAGE, usage))


BOARD = Board(
    uid=UID,
    title="factorylens / Cost & ROI",
    description="Spend and GPU-hours per team and job over the RCA service's window, idle-but-allocated cost, cost "
    "per 1M tokens and 1k samples, efficiency and predictability. Prices come from the catalog (list prices "
    "in the example catalog).",
    rows=(
        Row(
            "Spend",
            (
                stat_panel(
                    "Total spend",
                    "GPU time plus billable energy, selected jobs.",
                    "currencyUSD",
                    Query(f"sum({spend('total')})"),
                    width=6,
                ),
                stat_panel(
                    "Idle-but-allocated spend",
                    "Spend on GPUs a job held while they idled.",
                    "currencyUSD",
                    Query(f"sum({spend('idle')})"),
                    thresholds=((None, "green"), (10, "orange"), (100, "red")),
                    width=6,
                ),
                stat_panel(
                    "Unallocated spend",
                    "Spend on GPUs nobody held (capacity bought, not used).",
                    "currencyUSD",
                    Query(f"sum({_UNALLOCATED})"),
                    width=6,
                ),
                stat_panel(
                    "Efficiency",
                    "Useful over allocated GPU-hours, over the selected jobs (MFU where a job reports it).",
                    "percentunit",
                    Query(f"avg({sel(Metrics.FACTORYLENS_COST_EFFICIENCY, *SCOPE)})"),
                    thresholds=((None, "red"), (0.3, "orange"), (0.6, "green")),
                    width=6,
                ),
                ts(
                    "Spend per team",
                    "Total spend per team over the service's window.",
                    "currencyUSD",
                    Query(f"sum by ({TEAM}) ({spend('total')})", legend="{{factorylens_team}}"),
                ),
                ts(
                    "Spend by component",
                    "GPU time, energy, and the idle and useful parts of it.",
                    "currencyUSD",
                    Query(
                        f"sum by ({_COMPONENT}) ({_PARTS})",
                        legend="{{factorylens_cost_component}}",
                    ),
                ),
                table_panel(
                    "Spend per job",
                    "The 20 costliest jobs over the service's window, with their team.",
                    "currencyUSD",
                    Query(f"topk(20, sum by ({JOB}, {TEAM}) ({spend('total')}))", instant=True, format="table"),
                ),
                ts(
                    "Idle cost per team",
                    "Spend on idle-but-allocated GPUs per team: the first place to save.",
                    "currencyUSD",
                    Query(f"sum by ({TEAM}) ({spend('idle')})", legend="{{factorylens_team}}"),
                    thresholds=((None, "green"), (100, "red")),
                ),
            ),
        ),
        Row(
            "GPU-hours",
            (
                ts(
                    "GPU-hours per team",
                    "Allocated, active and idle GPU-hours per team.",
                    "h",
                    Query(
                        f"sum by ({TEAM}, {_USAGE}) ({hours('allocated|active|idle')})",
                        legend="{{factorylens_team}} {{factorylens_cost_usage}}",
                    ),
                ),
                ts(
                    "GPU-hours per job",
                    "Allocated GPU-hours per job.",
                    "h",
                    Query(f"sum by ({JOB}) ({hours('allocated')})", legend="{{factorylens_job_id}}"),
                ),
                ts(
                    "Energy per team",
                    "Energy drawn by allocated GPUs per team.",
                    "kwatth",
                    Query(
                        f"sum by ({TEAM}) ({sel(Metrics.FACTORYLENS_COST_ENERGY, *SCOPE)})",
                        legend="{{factorylens_team}}",
                    ),
                ),
                ts(
                    "GPU price",
                    "Catalog price per GPU-hour by GPU model (the example catalog's are list prices).",
                    "currencyUSD",
                    Query(
                        f"max by ({_MODEL}) ({sel(Metrics.FACTORYLENS_GPU_PRICE, IN_CLUSTER)})", legend="{{hw_model}}"
                    ),
                ),
            ),
        ),
        Row(
            "Return on the spend",
            (
                ts(
                    "Cost per unit of output",
                    "Spend per 1M tokens or per 1k samples each job reported.",
                    "currencyUSD",
                    Query(
                        f"max by ({JOB}, {_OUTPUT}) ({sel(Metrics.FACTORYLENS_COST_UNIT, OF_JOB)})",
                        legend="{{factorylens_job_id}} per {{factorylens_cost_output}}",
                    ),
                ),
                ts(
                    "Efficiency per job",
                    "Useful over allocated GPU-hours per job.",
                    "percentunit",
                    Query(
                        f"max by ({JOB}) ({sel(Metrics.FACTORYLENS_COST_EFFICIENCY, *SCOPE)})",
                        legend="{{factorylens_job_id}}",
                    ),
                    min=0,
                    max=1,
                    thresholds=((None, "red"), (0.3, "orange"), (0.6, "green")),
                ),
                ts(
                    "Predictability per workload",
                    "How well each workload's signals follow their baselines (1: fully predictable).",
                    "percentunit",
                    Query(
                        f"max by ({_WORKLOAD}) ({_PREDICTABILITY})",
                        legend="{{factorylens_workload}}",
                    ),
                    min=0,
                    max=1,
                ),
            ),
        ),
    ),
)
