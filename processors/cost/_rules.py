"""Prometheus recording rules that keep the cost figures per hour, for months of history.

Generated from the registry (metric names) and the price catalog (which GPU names are which priced
model); the prices themselves are not in the rules but in the ``factorylens_gpu_price_per_hour`` and
``factorylens_gpu_energy_price_per_kilowatt_hour`` series the RCA service serves on ``/metrics``
from the same catalog, so a price change needs no new rules. Each hour the group records, per GPU
and job (labels ``hw_id``, ``hw_name``, ``hw_model``, ``factorylens_job_id``, ``factorylens_team``,
``factorylens_cluster_name``), the same figures as :mod:`._figures`:

- the receiver's usage counters' ``increase`` over the hour (GPU-hours, kWh),
- the price of each series' scope, most specific first (cluster and team, team, cluster, model),
- costs: GPU time, billable energy, idle-but-allocated, unallocated, useful (MFU-weighted),
- per job: samples, tokens and mean MFU from the instrumentation;
- each figure again per workload (job, team, cluster, model), as ``workload:factorylens_cost:increase1h``
  with the figure in ``factorylens_cost_figure``: what reports over months read, a few series per job
  instead of one per GPU, all in one query.

Names follow Prometheus's ``level:metric:operations`` convention. Rules in one group run in order
at one timestamp, so later rules read the earlier ones' fresh results.
"""

from __future__ import annotations

from typing import Any

from factorylens.processors.cost._catalog import PriceCatalog
from factorylens.registry import REGISTRY, Metrics

GROUP = "factorylens-cost-hourly"
INTERVAL = "1h"
GPU_LABELS = ("hw_id", "hw_name", "factorylens_cluster_name")
JOB_LABELS = ("factorylens_job_id", "factorylens_team")
SCOPE = ("hw_model", "factorylens_cluster_name", "factorylens_team")


def _metric(name: str) -> str:
    return REGISTRY.metric(name).prometheus_name


ALLOCATED_HOURS = "gpu_job:factorylens_gpu_allocated_hours:increase1h"
UNALLOCATED_HOURS = "gpu:factorylens_gpu_unallocated_hours:increase1h"
ACTIVE_HOURS = "gpu_job:factorylens_gpu_active_hours:increase1h"
IDLE_HOURS = "gpu_job:factorylens_gpu_idle_hours:increase1h"
USEFUL_HOURS = "gpu_job:factorylens_gpu_useful_hours:increase1h"
UNPRICED_HOURS = "gpu_job:factorylens_gpu_unpriced_hours:increase1h"
ENERGY_KWH = "gpu_job:factorylens_gpu_energy_kwh:increase1h"
PRICE = "gpu_job:factorylens_gpu_price_per_hour:resolved"
ENERGY_PRICE = "gpu_job:factorylens_gpu_energy_price_per_kwh:resolved"
GPU_TIME_COST = "gpu_job:factorylens_gpu_time_cost:increase1h"
ENERGY_COST = "gpu_job:factorylens_energy_cost:increase1h"
IDLE_COST = "gpu_job:factorylens_idle_cost:increase1h"
UNALLOCATED_COST = "gpu:factorylens_unallocated_cost:increase1h"
USEFUL_COST = "gpu_job:factorylens_useful_cost:increase1h"
JOB_COST = "gpu_job:factorylens_job_cost:increase1h"
SAMPLE_JOBS_COST = "gpu_job:factorylens_sample_jobs_cost:increase1h"
TOKEN_JOBS_COST = "gpu_job:factorylens_token_jobs_cost:increase1h"
SAMPLES = "job:factorylens_train_samples:increase1h"
TOKENS = "job:factorylens_train_tokens:increase1h"
MFU = "job:factorylens_train_mfu:avg1h"
MEASURED_HOURS = "gpu_job:factorylens_gpu_measured_hours:increase1h"
USEFUL_BASIS_HOURS = "gpu_job:factorylens_gpu_useful_basis_hours:increase1h"
WORKLOAD_LABELS = ("factorylens_job_id", "factorylens_team", "factorylens_cluster_name", "hw_model")
KIND_LABELS = ("factorylens_allocation_state", "factorylens_cost_basis")
# every figure again per workload (job, team, cluster, model; no GPU), all under one name with the
# figure as a label, so that a report over months reads them all in one query
WORKLOAD = "workload:factorylens_cost:increase1h"
FIGURE_LABEL = "factorylens_cost_figure"
# the figures: the per-GPU rule each is summed from, and the selector of its series
RECORDED: dict[str, tuple[str, str]] = {
    "allocated_h": (ALLOCATED_HOURS, ""),
    "measured_h": (MEASURED_HOURS, ""),
    "unallocated_h": (UNALLOCATED_HOURS, ""),
    "active_h": (ACTIVE_HOURS, 'factorylens_cost_basis="utilization"'),
    "active_sm_h": (ACTIVE_HOURS, 'factorylens_cost_basis="sm_activity"'),
    "idle_h": (IDLE_HOURS, ""),
    "useful_h": (USEFUL_HOURS, ""),
    "useful_basis_h": (USEFUL_BASIS_HOURS, ""),
    "unpriced_h": (UNPRICED_HOURS, ""),
    "energy_kwh": (ENERGY_KWH, 'factorylens_allocation_state="allocated"'),
    "unallocated_energy_kwh": (ENERGY_KWH, 'factorylens_allocation_state="unallocated"'),
    "gpu_time_cost": (GPU_TIME_COST, ""),
    "energy_cost": (ENERGY_COST, ""),
    "idle_cost": (IDLE_COST, ""),
    "unallocated_cost": (UNALLOCATED_COST, ""),
    "useful_cost": (USEFUL_COST, ""),
    "sample_jobs_cost": (SAMPLE_JOBS_COST, ""),
    "token_jobs_cost": (TOKEN_JOBS_COST, ""),
}
# per job only (the instrumentation's output): in the workload family too, without cluster and model
JOB_FIGURES = {"samples": SAMPLES, "tokens": TOKENS}


def recorded_selector(figure: str) -> str:
    """The per-GPU series of one figure (a key of :data:`RECORDED`)."""
    rule, selector = RECORDED[figure]
    return f"{rule}{{{selector}}}" if selector else rule


def _by(*labels: str) -> str:
    return ", ".join(labels)


def _with_model(expr: str, catalog: PriceCatalog) -> str:
    """``expr`` with ``hw_model`` set from ``hw_name`` by the catalog's patterns; the first matching
    model wins, as :meth:`PriceCatalog.model_of` decides, so it is applied last (outermost)."""
    for model in reversed(catalog.models):
        expr = f'label_replace({expr}, "hw_model", "{model.name}", "hw_name", "{_quoted(model.regex())}")'
    return expr


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _resolved(price_metric: str, target: str) -> str:
    """The price of each series of ``target``, the most specific scope first, as last served in the hour
    (a missed scrape of the price series at the evaluation instant must not leave the hour unpriced)."""
    scopes = (
        (SCOPE, 'factorylens_cluster_name!="", factorylens_team!=""'),
        (("hw_model", "factorylens_team"), 'factorylens_cluster_name="", factorylens_team!=""'),
        (("hw_model", "factorylens_cluster_name"), 'factorylens_cluster_name!="", factorylens_team=""'),
        (("hw_model",), 'factorylens_cluster_name="", factorylens_team=""'),
    )
    parts = [
        f"(0 * ({target}) + on({_by(*on)}) group_left() "
        f"max by ({_by(*on)}) (last_over_time({price_metric}{{{selector}}}[1h])))"
        for on, selector in scopes
    ]
    return "\n  or ".join(parts)


def _per_job(metric: str, operation: str) -> str:
    """A per-job figure from instrumentation series, whether the job id is a label (the RCA service's
    remote-write, or ``resource_to_telemetry_conversion``) or only on ``target_info``."""
    labelled = f'{operation}({metric}{{factorylens_job_id!=""}}[1h])'
    joined = (
        f'{operation}({metric}{{factorylens_job_id=""}}[1h]) '
        f"* on(job, instance) group_left({_by(*JOB_LABELS)}) target_info"
    )
    aggregate = "avg" if operation == "avg_over_time" else "sum"
    return f"{aggregate} by ({_by(*JOB_LABELS)}) ({labelled} or {joined})"


def recording_rules(catalog: PriceCatalog) -> dict[str, Any]:
    """The rule file (as a dict to dump as YAML)."""
    allocation = _metric(Metrics.FACTORYLENS_GPU_ALLOCATION_TIME)
    active = _metric(Metrics.FACTORYLENS_GPU_ACTIVE_TIME)
    energy = _metric(Metrics.FACTORYLENS_GPU_ALLOCATION_ENERGY)
    gpu_job = _by(*GPU_LABELS, *JOB_LABELS)
    price = REGISTRY.metric(Metrics.FACTORYLENS_GPU_PRICE).prometheus_name
    energy_price = REGISTRY.metric(Metrics.FACTORYLENS_GPU_ENERGY_PRICE).prometheus_name
    usage = f"({ALLOCATED_HOURS} or {UNALLOCATED_HOURS})"
    rules = [
        (
            ALLOCATED_HOURS,
            _with_model(
                f"sum by ({gpu_job}, factorylens_allocation_state) "
                f'(increase({allocation}{{factorylens_allocation_state="allocated"}}[1h])) / 3600',
                catalog,
            ),
        ),
        (
            UNALLOCATED_HOURS,
            _with_model(
                f"sum by ({_by(*GPU_LABELS)}, factorylens_allocation_state) "
                f'(increase({allocation}{{factorylens_allocation_state="unallocated"}}[1h])) / 3600',
                catalog,
            ),
        ),
        (
            ACTIVE_HOURS,
            _with_model(f"sum by ({gpu_job}, factorylens_cost_basis) (increase({active}[1h])) / 3600", catalog),
        ),
        (
            ENERGY_KWH,
            _with_model(f"sum by ({gpu_job}, factorylens_allocation_state) (increase({energy}[1h])) / 3.6e6", catalog),
        ),
        (SAMPLES, _per_job(_metric(Metrics.FACTORYLENS_TRAIN_SAMPLES), "increase")),
        (TOKENS, _per_job(_metric(Metrics.FACTORYLENS_TRAIN_TOKENS), "increase")),
        (MFU, _per_job(_metric(Metrics.FACTORYLENS_TRAIN_MFU), "avg_over_time")),
        (PRICE, _resolved(price, usage)),
        (ENERGY_PRICE, _resolved(energy_price, usage)),
        (UNPRICED_HOURS, f"{usage} unless {PRICE}"),
        (
            IDLE_HOURS,
            f"clamp_min({ALLOCATED_HOURS} - ignoring(factorylens_allocation_state, factorylens_cost_basis) "
            f'group_left() {ACTIVE_HOURS}{{factorylens_cost_basis="utilization"}}, 0)',
        ),
        (
            USEFUL_HOURS,
            f"{ALLOCATED_HOURS} * on(factorylens_job_id) group_left() clamp(max by (factorylens_job_id) ({MFU}), 0, 1)"
            "\n  or label_replace(sum without(factorylens_cost_basis) "
            f'({ACTIVE_HOURS}{{factorylens_cost_basis="utilization"}}), '
            '"factorylens_allocation_state", "allocated", "", "")',
        ),
        (
            MEASURED_HOURS,
            f"{ALLOCATED_HOURS} and ignoring({_by(*KIND_LABELS)}) "
            f'{ACTIVE_HOURS}{{factorylens_cost_basis="utilization"}}',
        ),
        (USEFUL_BASIS_HOURS, f"{ALLOCATED_HOURS} and on(factorylens_job_id) {MFU}\n  or {MEASURED_HOURS}"),
        (GPU_TIME_COST, f"{ALLOCATED_HOURS} * {PRICE}"),
        (ENERGY_COST, f'{ENERGY_KWH}{{factorylens_allocation_state="allocated"}} * {ENERGY_PRICE}'),
        (IDLE_COST, f"{IDLE_HOURS} * {PRICE}"),
        (
            UNALLOCATED_COST,
            f"{UNALLOCATED_HOURS} * {PRICE}\n  + (sum by ({_by(*GPU_LABELS)}, hw_model, factorylens_allocation_state) "
            f'({ENERGY_KWH}{{factorylens_allocation_state="unallocated"}}) * {ENERGY_PRICE}'
            f" or {UNALLOCATED_HOURS} * 0)",
        ),
        (USEFUL_COST, f"{USEFUL_HOURS} * {PRICE}"),
        (JOB_COST, f"{GPU_TIME_COST} + {ENERGY_COST} or {GPU_TIME_COST}"),
        (SAMPLE_JOBS_COST, f"{JOB_COST} and on(factorylens_job_id) ({SAMPLES} > 0)"),
        (TOKEN_JOBS_COST, f"{JOB_COST} and on(factorylens_job_id) ({TOKENS} > 0)"),
    ]
    recorded: list[dict[str, Any]] = [{"record": record, "expr": expr} for record, expr in rules]
    recorded += [
        {
            "record": WORKLOAD,
            "expr": f"sum by ({_by(*WORKLOAD_LABELS)}) ({recorded_selector(figure)})",
            "labels": {FIGURE_LABEL: figure},
        }
        for figure in RECORDED
    ]
    # a job's output takes its team from its GPUs when the instrumentation's series lack it
    # (one team per job: a named team before none, so a GPU series without the team cannot hide it)
    named = f'max by (factorylens_job_id, factorylens_team) (0 * {ALLOCATED_HOURS}{{factorylens_team!=""}} + 2)'
    anyone = f"max by (factorylens_job_id, factorylens_team) (0 * {ALLOCATED_HOURS} + 1)"
    teams = f"(0 * topk by (factorylens_job_id) (1, {named} or {anyone}) + 1)"
    recorded += [
        {
            "record": WORKLOAD,
            "expr": f"sum by (factorylens_job_id) ({rule}) * on(factorylens_job_id) group_left(factorylens_team) "
            f"{teams}\n  or on(factorylens_job_id) {rule}",
            "labels": {FIGURE_LABEL: figure},
        }
        for figure, rule in JOB_FIGURES.items()
    ]
    return {"groups": [{"name": GROUP, "interval": INTERVAL, "rules": recorded}]}


def rules_yaml(catalog: PriceCatalog) -> str:
    import yaml

    header = (
        "# Generated by `factorylens cost rules` from the factorylens registry and the price catalog\n"
        f"# {catalog.origin}; prices come from the factorylens_gpu_price_per_hour series. Do not edit.\n"
    )
    return header + yaml.safe_dump(recording_rules(catalog), sort_keys=False, width=120)
