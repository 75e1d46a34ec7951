"""Inference: are requests served within their SLOs, and is it load or a fault when they are not."""

from factorylens.registry import Attributes, Metrics

from .._panels import (
    IN_CLUSTER,
    MODEL,
    OF_MODEL,
    ON_NODE,
    SERVER,
    Board,
    Panel,
    Query,
    Row,
    eq,
    label,
    match,
    quantile,
    rate,
    sel,
    stat_panel,
    ts,
)

UID = "factorylens-inference"
SCOPE = (IN_CLUSTER, ON_NODE, OF_MODEL)
# the SLOs drawn as thresholds (defaults of a chat service; edit to yours)
TTFT_SLO_S = 0.5
TPOT_SLO_S = 0.05
E2E_SLO_S = 20.0
_PER_MODEL = MODEL
# a replica: one engine on one GPU (or a tensor-parallel group), by its address and port
_PER_SERVER = f"{MODEL}, {SERVER}, {label(Attributes.SERVER_PORT)}"
_METRIC = label(Attributes.FACTORYLENS_METRIC)
_OF_MODEL_ENTITY = match(Attributes.FACTORYLENS_ENTITY, ".*($model).*")


def band(kpi: str) -> tuple[Query, Query]:
    """The RCA service's baseline band of a serving KPI for the selected models."""
    matchers = (eq(Attributes.FACTORYLENS_METRIC, kpi), _OF_MODEL_ENTITY)
    return (
        Query(f"min by ({_METRIC}) ({sel(Metrics.FACTORYLENS_BASELINE_LOWER, *matchers)})", legend="baseline lower"),
        Query(f"max by ({_METRIC}) ({sel(Metrics.FACTORYLENS_BASELINE_UPPER, *matchers)})", legend="baseline upper"),
    )


def latency(title: str, what: str, kpi: str, slo_s: float) -> Panel:
    return ts(
        title,
        f"{what} p50 and p95 per model, the RCA service's baseline band, and the SLO ({slo_s:g} s) as a threshold.",
        "s",
        Query(quantile(0.5, kpi, _PER_MODEL, *SCOPE), legend="{{gen_ai_request_model}} p50"),
        Query(quantile(0.95, kpi, _PER_MODEL, *SCOPE), legend="{{gen_ai_request_model}} p95"),
        *band(kpi),
        thresholds=((None, "green"), (slo_s, "red")),
    )


_FINISHED = rate(sel(Metrics.FACTORYLENS_INFERENCE_REQUESTS_FINISHED, *SCOPE))
_FINISH_REASON = label(Attributes.FACTORYLENS_INFERENCE_FINISH_REASON)
_FAILED = rate(
    sel(
        Metrics.FACTORYLENS_INFERENCE_REQUESTS_FINISHED,
        *SCOPE,
        match(Attributes.FACTORYLENS_INFERENCE_FINISH_REASON, "error.*"),
    )
)

BOARD = Board(
    uid=UID,
    title="factorylens / Inference",
    description="Time to first token, time per output token and end-to-end latency against baseline bands and SLOs, "
    "request rate, queue depth, KV-cache use, preemptions and tokens per second, per model and replica.",
    extra_variables=(
        (
            "model",
            "Model",
            f"label_values({sel(Metrics.FACTORYLENS_INFERENCE_REQUESTS_RUNNING, IN_CLUSTER, ON_NODE)}, {MODEL})",
        ),
    ),
    rows=(
        Row(
            "Service level",
            (
                stat_panel(
                    "TTFT p95",
                    f"95th percentile time to first token over the selected models (SLO {TTFT_SLO_S:g} s).",
                    "s",
                    Query(quantile(0.95, Metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, "", *SCOPE)),
                    thresholds=((None, "green"), (TTFT_SLO_S, "red")),
                    width=6,
                ),
                stat_panel(
                    "TPOT p95",
                    f"95th percentile time per output token (SLO {TPOT_SLO_S:g} s).",
                    "s",
                    Query(quantile(0.95, Metrics.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN, "", *SCOPE)),
                    thresholds=((None, "green"), (TPOT_SLO_S, "red")),
                    width=6,
                ),
                stat_panel(
                    "Requests/s",
                    "Finished requests per second, all reasons.",
                    "reqps",
                    Query(f"sum({_FINISHED})"),
                    width=6,
                ),
                stat_panel(
                    "Error share",
                    "Share of finished requests that ended in an error.",
                    "percentunit",
                    Query(f"(sum({_FAILED}) or vector(0)) / sum({_FINISHED})"),
                    thresholds=((None, "green"), (0.01, "orange"), (0.05, "red")),
                    width=6,
                ),
                latency(
                    "Time to first token", "Time to first token", Metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, TTFT_SLO_S
                ),
                latency(
                    "Time per output token",
                    "Time per output token",
                    Metrics.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN,
                    TPOT_SLO_S,
                ),
                latency("End-to-end latency", "Request duration", Metrics.GEN_AI_SERVER_REQUEST_DURATION, E2E_SLO_S),
                ts(
                    "Request rate",
                    "Finished requests per second per model and finish reason (stop, length, abort, error).",
                    "reqps",
                    Query(
                        f"sum by ({_PER_MODEL}, {_FINISH_REASON}) ({_FINISHED})",
                        legend="{{gen_ai_request_model}} {{factorylens_inference_finish_reason}}",
                    ),
                    stack=True,
                ),
            ),
        ),
        Row(
            "Load and capacity, per replica (server and port: one per GPU or GPU group)",
            (
                ts(
                    "Queue depth",
                    "Requests waiting and running per replica: waiting grows when the replica is saturated.",
                    "short",
                    Query(
                        f"sum by ({_PER_SERVER}) ({sel(Metrics.FACTORYLENS_INFERENCE_REQUESTS_WAITING, *SCOPE)})",
                        legend="{{gen_ai_request_model}} {{server_address}}:{{server_port}} waiting",
                    ),
                    Query(
                        f"sum by ({_PER_SERVER}) ({sel(Metrics.FACTORYLENS_INFERENCE_REQUESTS_RUNNING, *SCOPE)})",
                        legend="{{gen_ai_request_model}} {{server_address}}:{{server_port}} running",
                    ),
                ),
                ts(
                    "KV-cache usage",
                    "Share of KV-cache blocks in use per replica: near 100% the engine preempts requests.",
                    "percentunit",
                    Query(
                        f"max by ({_PER_SERVER}) ({sel(Metrics.FACTORYLENS_INFERENCE_KV_CACHE_USAGE, *SCOPE)})",
                        legend="{{gen_ai_request_model}} {{server_address}}:{{server_port}}",
                    ),
                    min=0,
                    max=1,
                    thresholds=((None, "green"), (0.9, "orange"), (0.98, "red")),
                ),
                ts(
                    "Preemptions",
                    "Requests preempted per second (KV-cache pressure).",
                    "ops",
                    Query(
                        f"sum by ({_PER_SERVER}) ({rate(sel(Metrics.FACTORYLENS_INFERENCE_PREEMPTIONS, *SCOPE))})",
                        legend="{{gen_ai_request_model}} {{server_address}}:{{server_port}}",
                    ),
                ),
                ts(
                    "Tokens/s",
                    "Input and output tokens per second per model.",
                    "short",
                    Query(
                        f"sum by ({_PER_MODEL}, {label(Attributes.GEN_AI_TOKEN_TYPE)}) "
                        f"({rate(sel(Metrics.FACTORYLENS_INFERENCE_TOKENS, *SCOPE))})",
                        legend="{{gen_ai_request_model}} {{gen_ai_token_type}}",
                    ),
                ),
                ts(
                    "Batch size",
                    "Requests per forward batch per replica.",
                    "short",
                    Query(
                        f"max by ({_PER_SERVER}) ({sel(Metrics.FACTORYLENS_INFERENCE_BATCH_SIZE, *SCOPE)})",
                        legend="{{gen_ai_request_model}} {{server_address}}:{{server_port}}",
                    ),
                ),
                ts(
                    "Queue time",
                    "Median and p95 time requests wait before being scheduled, per model.",
                    "s",
                    Query(
                        quantile(0.95, Metrics.FACTORYLENS_INFERENCE_REQUEST_QUEUE_TIME, _PER_MODEL, *SCOPE),
                        legend="{{gen_ai_request_model}} p95",
                    ),
                ),
            ),
        ),
    ),
)
