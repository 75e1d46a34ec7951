"""Fleet: how many GPUs there are, how busy, and which allocated ones do nothing (the first thing an SRE
or a FinOps reader opens)."""

from factorylens.registry import Attributes, Metrics

from .._panels import (
    GPU,
    GPU_SCOPE,
    NODE,
    Board,
    Link,
    Panel,
    Query,
    Row,
    label,
    sel,
    stat_panel,
    table_panel,
    ts,
)

UID = "factorylens-fleet"
_PER_GPU = f"{NODE}, {GPU}"
_UTIL = sel(Metrics.HW_GPU_UTILIZATION, *GPU_SCOPE)
_ALLOCATED = sel(Metrics.HW_GPU_ALLOCATED, *GPU_SCOPE)
_IDLE = sel(Metrics.HW_GPU_IDLE, *GPU_SCOPE)
# a GPU's utilisation over its engines (hw.gpu.task: general, encoder, decoder): the busiest
GPU_UTIL = f"max by ({_PER_GPU}) ({_UTIL})"
IDLE_BUT_ALLOCATED = f"(max by ({_PER_GPU}) ({_ALLOCATED}) > 0) * on ({_PER_GPU}) max by ({_PER_GPU}) ({_IDLE})"
_STATE = label(Attributes.HW_STATE)

BOARD = Board(
    uid=UID,
    title="factorylens / Fleet",
    description="GPUs in the fleet, their allocation and use, power, idle-but-allocated GPUs and open incidents.",
    rows=(
        Row(
            "Capacity: what we have and what it does",
            (
                stat_panel(
                    "GPUs",
                    "GPUs reporting (one per hw.id) in the selected cluster and nodes.",
                    "none",
                    Query(f"count({GPU_UTIL})"),
                ),
                stat_panel(
                    "Allocated",
                    "GPUs a process holds (hw.gpu.allocated = 1).",
                    "none",
                    Query(f"sum(max by ({_PER_GPU}) ({_ALLOCATED}))"),
                ),
                stat_panel(
                    "Active",
                    "GPUs busy more than 5% of the time.",
                    "none",
                    Query(f"count({GPU_UTIL} > 0.05) or vector(0)"),
                ),
                stat_panel(
                    "Idle but allocated",
                    "GPUs held by a job yet idle more than 95% of the time: paid for, doing nothing.",
                    "none",
                    Query(f"count(({IDLE_BUT_ALLOCATED}) > 0.95) or vector(0)"),
                    thresholds=((None, "green"), (1, "orange"), (4, "red")),
                ),
                stat_panel(
                    "Fleet utilization",
                    "Mean busy share over the selected GPUs.",
                    "percentunit",
                    Query(f"avg({GPU_UTIL})"),
                    thresholds=((None, "red"), (0.4, "orange"), (0.7, "green")),
                ),
                stat_panel(
                    "Open incidents",
                    "Incidents the RCA service holds open now (see the Incidents dashboard).",
                    "none",
                    Query(f"max({sel(Metrics.FACTORYLENS_INCIDENTS_OPEN)})"),
                    thresholds=((None, "green"), (1, "red")),
                    links=(Link("Incidents", "factorylens-incidents"),),
                ),
            ),
        ),
        Row(
            "Utilization and memory across GPUs",
            (
                Panel(
                    "heatmap",
                    "GPU utilization heatmap",
                    "One row per GPU, coloured by busy share: idle stripes are GPUs doing nothing.",
                    "percentunit",
                    (Query(GPU_UTIL, legend="{{host_name}} {{hw_id}}", format="heatmap"),),
                ),
                Panel(
                    "heatmap",
                    "GPU memory heatmap",
                    "One row per GPU, coloured by the share of its memory in use.",
                    "percentunit",
                    (
                        Query(
                            f"max by ({_PER_GPU}) ({sel(Metrics.HW_GPU_MEMORY_UTILIZATION, *GPU_SCOPE)})",
                            legend="{{host_name}} {{hw_id}}",
                            format="heatmap",
                        ),
                    ),
                ),
                ts(
                    "Allocated vs active GPUs",
                    "Held GPUs against busy ones; the gap is idle-but-allocated capacity.",
                    "none",
                    Query(f"sum(max by ({_PER_GPU}) ({_ALLOCATED}))", legend="allocated"),
                    Query(f"count({GPU_UTIL} > 0.05) or vector(0)", legend="active"),
                    Query(f"count({GPU_UTIL})", legend="total"),
                ),
                ts(
                    "Power per node",
                    "Board power summed per node against the summed power limit.",
                    "watt",
                    Query(f"sum by ({NODE}) ({sel(Metrics.HW_POWER, *GPU_SCOPE)})", legend="{{host_name}}"),
                    Query(
                        f"sum({sel(Metrics.HW_POWER_LIMIT, *GPU_SCOPE)})",
                        legend="limit (all selected)",
                    ),
                ),
            ),
        ),
        Row(
            "Waste: idle but allocated",
            (
                table_panel(
                    "Top idle-but-allocated GPUs",
                    "The 10 allocated GPUs with the highest idle share now; a click opens the GPU's health.",
                    "percentunit",
                    Query(f"topk(10, {IDLE_BUT_ALLOCATED})", instant=True, format="table"),
                    thresholds=((None, "green"), (0.5, "orange"), (0.95, "red")),
                    links=(Link("GPU health of this GPU", "factorylens-gpu", "var-gpu=${__data.fields.hw_id}"),),
                ),
                ts(
                    "GPU state",
                    "GPUs per health state (hw.status).",
                    "none",
                    Query(
                        f"sum by ({_STATE}) ({sel(Metrics.HW_STATUS, *GPU_SCOPE)})",
                        legend="{{hw_state}}",
                    ),
                    stack=True,
                ),
            ),
        ),
    ),
)
