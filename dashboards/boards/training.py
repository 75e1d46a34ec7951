"""Training job: is the job slow, since when, and which phase of its step took the time."""

from factorylens.registry import Attributes, Metrics

from .._panels import (
    GPU,
    JOB,
    JOB_SCOPE,
    NODE,
    Board,
    Link,
    Query,
    Row,
    eq,
    label,
    match,
    mean,
    quantile,
    sel,
    stat_panel,
    ts,
)

UID = "factorylens-training"
_PHASE = label(Attributes.FACTORYLENS_TRAIN_PHASE)
_CHECKPOINT_OP = label(Attributes.FACTORYLENS_CHECKPOINT_OPERATION)
_OF_JOB_ENTITY = match(Attributes.FACTORYLENS_ENTITY, ".*($job).*")
_METRIC = label(Attributes.FACTORYLENS_METRIC)


def band(kpi: str, legend: str) -> tuple[Query, Query]:
    """The RCA service's baseline band of a KPI (lower, upper) for the selected jobs."""
    matchers = (eq(Attributes.FACTORYLENS_METRIC, kpi), _OF_JOB_ENTITY)
    return (
        Query(f"min by ({_METRIC}) ({sel(Metrics.FACTORYLENS_BASELINE_LOWER, *matchers)})", legend=f"{legend} lower"),
        Query(f"max by ({_METRIC}) ({sel(Metrics.FACTORYLENS_BASELINE_UPPER, *matchers)})", legend=f"{legend} upper"),
    )


BOARD = Board(
    uid=UID,
    title="factorylens / Training job",
    description="Step time against its baseline band, the phases of a step, throughput, data waits, MFU, goodput, "
    "checkpoints, collectives and the job's GPUs.",
    rows=(
        Row(
            "Is it slow?",
            (
                stat_panel(
                    "MFU",
                    "Model FLOPs utilisation: achieved over peak FLOPs of the job's GPUs.",
                    "percentunit",
                    Query(f"avg({sel(Metrics.FACTORYLENS_TRAIN_MFU, *JOB_SCOPE)})"),
                    thresholds=((None, "red"), (0.3, "orange"), (0.45, "green")),
                ),
                stat_panel(
                    "Goodput",
                    "Productive step time over wall time since the job started (restarts and stalls count against it).",
                    "percentunit",
                    Query(f"avg({sel(Metrics.FACTORYLENS_TRAIN_GOODPUT, *JOB_SCOPE)})"),
                    thresholds=((None, "red"), (0.8, "orange"), (0.9, "green")),
                ),
                stat_panel(
                    "Data wait",
                    "Share of step time spent waiting for the input pipeline.",
                    "percentunit",
                    Query(f"avg({sel(Metrics.FACTORYLENS_DATA_WAIT_RATIO, *JOB_SCOPE)})"),
                    thresholds=((None, "green"), (0.05, "orange"), (0.2, "red")),
                ),
                stat_panel(
                    "Tokens/s",
                    "Tokens processed per second by the selected jobs.",
                    "short",
                    Query(f"sum({sel(Metrics.FACTORYLENS_TRAIN_TOKENS_RATE, *JOB_SCOPE)})"),
                ),
                stat_panel(
                    "GPUs",
                    "GPUs the selected jobs' processes hold.",
                    "none",
                    Query(f"count(count by ({GPU}) ({sel(Metrics.PROCESS_GPU_MEMORY_USAGE, *JOB_SCOPE)}))"),
                    links=(Link("GPU health", "factorylens-gpu"),),
                ),
                stat_panel(
                    "Open incidents",
                    "Incidents the RCA service holds open (any workload).",
                    "none",
                    Query(f"max({sel(Metrics.FACTORYLENS_INCIDENTS_OPEN)})"),
                    thresholds=((None, "green"), (1, "red")),
                    links=(Link("Incidents", "factorylens-incidents"),),
                ),
                ts(
                    "Step time against its baseline",
                    "Median and p95 step time, with the band the RCA service expects (outside it, an incident opens).",
                    "s",
                    Query(
                        quantile(0.5, Metrics.FACTORYLENS_TRAIN_STEP_DURATION, JOB, *JOB_SCOPE),
                        legend="{{factorylens_job_id}} p50",
                    ),
                    Query(
                        quantile(0.95, Metrics.FACTORYLENS_TRAIN_STEP_DURATION, JOB, *JOB_SCOPE),
                        legend="{{factorylens_job_id}} p95",
                    ),
                    *band(Metrics.FACTORYLENS_TRAIN_STEP_DURATION, "baseline"),
                    width=24,
                ),
            ),
        ),
        Row(
            "Where a step's time goes",
            (
                ts(
                    "Phase breakdown",
                    "Mean time per step in each phase: data, host-to-device copy, compute, collectives, checkpoints.",
                    "s",
                    Query(
                        mean(Metrics.FACTORYLENS_TRAIN_PHASE_DURATION, _PHASE, *JOB_SCOPE),
                        legend="{{factorylens_train_phase}}",
                    ),
                    stack=True,
                ),
                ts(
                    "Data-wait ratio",
                    "Share of step time waiting for data, per job: above a few per cent the GPUs starve.",
                    "percentunit",
                    Query(
                        f"max by ({JOB}) ({sel(Metrics.FACTORYLENS_DATA_WAIT_RATIO, *JOB_SCOPE)})",
                        legend="{{factorylens_job_id}}",
                    ),
                    min=0,
                    thresholds=((None, "green"), (0.05, "orange"), (0.2, "red")),
                ),
                ts(
                    "Throughput",
                    "Samples and tokens per second per job, with the band the RCA service expects.",
                    "short",
                    Query(
                        f"sum by ({JOB}) ({sel(Metrics.FACTORYLENS_TRAIN_SAMPLES_RATE, *JOB_SCOPE)})",
                        legend="{{factorylens_job_id}} samples/s",
                    ),
                    Query(
                        f"sum by ({JOB}) ({sel(Metrics.FACTORYLENS_TRAIN_TOKENS_RATE, *JOB_SCOPE)})",
                        legend="{{factorylens_job_id}} tokens/s",
                    ),
                    *band(Metrics.FACTORYLENS_TRAIN_TOKENS_RATE, "tokens/s baseline"),
                ),
                ts(
                    "MFU and goodput",
                    "Efficiency per job: model FLOPs utilisation and goodput.",
                    "percentunit",
                    Query(
                        f"max by ({JOB}) ({sel(Metrics.FACTORYLENS_TRAIN_MFU, *JOB_SCOPE)})",
                        legend="{{factorylens_job_id}} MFU",
                    ),
                    Query(
                        f"max by ({JOB}) ({sel(Metrics.FACTORYLENS_TRAIN_GOODPUT, *JOB_SCOPE)})",
                        legend="{{factorylens_job_id}} goodput",
                    ),
                    min=0,
                    max=1,
                ),
                ts(
                    "Collective time",
                    "Mean time per collective operation (all-reduce, all-gather, …): slow ones point at the fabric.",
                    "s",
                    Query(
                        mean(
                            Metrics.FACTORYLENS_COLLECTIVE_DURATION,
                            label(Attributes.FACTORYLENS_COLLECTIVE_OP),
                            *JOB_SCOPE,
                        ),
                        legend="{{factorylens_collective_op}}",
                    ),
                ),
                ts(
                    "Checkpoint throughput",
                    "Bytes per second of the last checkpoint save or load: a slow one points at storage.",
                    "Bps",
                    Query(
                        f"max by ({JOB}, {_CHECKPOINT_OP}) "
                        f"({sel(Metrics.FACTORYLENS_CHECKPOINT_THROUGHPUT, *JOB_SCOPE)})",
                        legend="{{factorylens_job_id}} {{factorylens_checkpoint_operation}}",
                    ),
                ),
            ),
        ),
        Row(
            "The job's GPUs",
            (
                ts(
                    "GPU utilization of the job's processes",
                    "Busy share per GPU the job runs on (per-process NVML accounting).",
                    "percentunit",
                    Query(
                        f"max by ({NODE}, {GPU}) ({sel(Metrics.PROCESS_GPU_UTILIZATION, *JOB_SCOPE)})",
                        legend="{{host_name}} {{hw_id}}",
                    ),
                    min=0,
                    max=1,
                ),
                ts(
                    "GPU memory of the job's processes",
                    "Device memory the job's processes hold, per GPU.",
                    "bytes",
                    Query(
                        f"sum by ({NODE}, {GPU}) ({sel(Metrics.PROCESS_GPU_MEMORY_USAGE, *JOB_SCOPE)})",
                        legend="{{host_name}} {{hw_id}}",
                    ),
                    links=(Link("GPU health of this GPU", "factorylens-gpu", "var-gpu=${__field.labels.hw_id}"),),
                ),
            ),
        ),
    ),
)
