"""Which series are KPIs, which workload a series belongs to, and which way a KPI breaks."""

from __future__ import annotations

import fnmatch

import numpy as np

from factorylens.rca_service.ranking import describe_signal
from factorylens.rca_service.store import SeriesInfo
from factorylens.registry import Attributes, Metrics

# goodput is cumulative since the job started: its breaks lag and linger, so it explains, not detects
TRAINING_KPI_METRICS = (
    Metrics.FACTORYLENS_TRAIN_STEP_DURATION,
    Metrics.FACTORYLENS_TRAIN_SAMPLES_RATE,
    Metrics.FACTORYLENS_TRAIN_TOKENS_RATE,
)
# a serving SLO's terms: time to first token and per output token (read at p95), and failed requests;
# a pattern with braces is matched against the series' label (metric{attributes})
SERVING_KPI_METRICS = (
    Metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
    Metrics.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN,
    f"{Metrics.FACTORYLENS_INFERENCE_REQUESTS_FINISHED}{{*{Attributes.FACTORYLENS_INFERENCE_FINISH_REASON}=error*}}",
    Metrics.FACTORYLENS_INFERENCE_REQUESTS_FAILED,  # Triton's failures by reason
)
DEFAULT_KPI_METRICS = TRAINING_KPI_METRICS + SERVING_KPI_METRICS
SERVER_SPAN_KPIS = (Metrics.FACTORYLENS_SPAN_DURATION, Metrics.FACTORYLENS_SPAN_ERRORS)
ALERT_EVENT_METRIC = Metrics.FACTORYLENS_EVENTS
DEFAULT_ALERT_EVENTS = ("alert", "alertmanager.alert", "factorylens.alert")


def is_kpi(
    info: SeriesInfo, kpi_metrics: tuple[str, ...], server_spans_are_kpis: bool, alert_events: tuple[str, ...]
) -> bool:
    """A KPI's break opens an incident: a job's step time or throughput, a served model's time to
    first token, time per output token or failed requests, a service's server-side latency or
    errors, an external alert arriving as a log record."""
    if any(fnmatch.fnmatchcase(info.label if "{" in pattern else info.metric, pattern) for pattern in kpi_metrics):
        return True
    if server_spans_are_kpis and info.metric in SERVER_SPAN_KPIS:
        return info.attributes.get(Attributes.SPAN_KIND) == "server"
    return info.metric == ALERT_EVENT_METRIC and info.attributes.get(Attributes.EVENT_NAME) in alert_events


def is_alert(info: SeriesInfo) -> bool:
    return info.metric == ALERT_EVENT_METRIC


def workload(info: SeriesInfo) -> str:
    """The job (its ranks break together), else the service, else the entity itself."""
    if info.resource.get(Attributes.FACTORYLENS_JOB_ID):
        return f"job:{info.resource['factorylens.job.id']}"
    if info.entity.startswith(("rank:", "replica:")):
        return "job:" + info.entity.partition(":")[2].rsplit("/", 1)[0]
    return str(info.resource.get(Attributes.SERVICE_NAME) or info.entity)


def bad_direction(info: SeriesInfo) -> int:
    """+1 when only rises hurt, -1 when only falls do, 0 when both do."""
    return describe_signal(info.label).kind.bad_direction


def harmful(info: SeriesInfo, z: float) -> bool:
    """A KPI breaks only in its bad direction: a faster step or more throughput is not an incident."""
    direction = bad_direction(info)
    return direction == 0 or np.sign(z) == direction
