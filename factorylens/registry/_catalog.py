"""Every metric, attribute and event factorylens emits: the single source of truth.

Names follow the OpenTelemetry hardware semantic conventions where they exist (``hw.gpu.*``,
``hw.errors``, ``hw.status``, ``hw.power``, ``hw.energy``), OpenLIT's GPU-collector extension names
where the spec is silent (so the two interoperate), and the ``factorylens.`` prefix or our own
``hw.gpu.*`` proposals where nobody has a name (ARCHITECTURE.md section 3).
"""

from __future__ import annotations

from dataclasses import replace

from factorylens.registry._model import (
    ANY_VALUE,
    AttributeSpec,
    Direction,
    Domain,
    EventSpec,
    Instrument,
    Meaning,
    MetricSpec,
    Registry,
    Side,
    SignalKind,
    Source,
    ValueMeaning,
)

S, O, F = Source.SEMCONV, Source.OPENLIT, Source.FACTORYLENS  # noqa: E741 - the table reads better

CLOCK_EVENT_REASONS = (
    "gpu_idle",
    "clocks_setting",
    "power_cap",
    "hw_slowdown",
    "sync_boost",
    "sw_thermal",
    "hw_thermal",
    "hw_power_brake",
    "display_clocks",
)
HW_STATES = ("ok", "degraded", "failed", "predicted_failure")
# the parts of a training step, in the order they usually run; "other" is step time outside any phase
TRAIN_PHASES = (
    "data",
    "h2d",
    "forward",
    "backward",
    "optimizer",
    "collective",
    "checkpoint.save",
    "checkpoint.load",
    "eval",
    "other",
)
GPU_ERROR_TYPES = (
    "corrected",
    "uncorrected",
    "pcie_replay",
    "xid",
    "nvlink_crc_data",
    "nvlink_crc_flit",
    "nvlink_replay",
    "nvlink_recovery",
)
# InfiniBand / RoCE port errors (sysfs counters), on hw.errors{hw.type=network}
# RoCE port hw_counters we export, by their sysfs file names' meaning
# cost: how a GPU's time is split (allocation state), what "active" is measured by, and the figures
ALLOCATION_STATES = ("allocated", "unallocated")
ACTIVITY_BASES = ("utilization", "sm_activity")
COST_USAGES = ("allocated", "active", "active_sm", "idle", "unallocated", "useful", "unpriced")
COST_COMPONENTS = ("gpu_time", "energy", "total", "idle", "unallocated", "useful")
COST_OUTPUTS = ("1k_samples", "1m_tokens")
PRICE_BASES = ("on_demand", "reserved", "amortized")
ROCE_EVENTS = ("ecn_marked", "cnp_sent", "cnp_handled", "out_of_sequence", "packet_sequence_error")
INFERENCE_ENGINES = ("vllm", "sglang", "tgi", "triton")
# "error": a request that raised in a hand-instrumented server (factorylens.instrumentation.serving)
FINISH_REASONS = ("stop", "length", "abort", "error")
# Triton's nv_inference_request_failure{reason} (its docs/user_guide/metrics.md; the fixture has REJECTED)
TRITON_FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")
NETWORK_ERROR_TYPES = ("symbol", "link_downed", "link_recovery", "receive", "transmit_discard")

ATTRIBUTES = (
    # GPU identity (semconv hw.* group, OpenLIT gpu.* extensions)
    AttributeSpec("hw.id", "string", "GPU UUID (MIG: the MIG device UUID).", S),
    AttributeSpec("hw.type", "string", "Hardware component type.", S, ("gpu", "network")),
    AttributeSpec("hw.name", "string", "Product name as the driver reports it.", S),
    AttributeSpec("hw.vendor", "string", "Vendor.", S),
    AttributeSpec("hw.model", "string", "Model preset or board name.", S),
    AttributeSpec("hw.serial_number", "string", "Board serial number.", S),
    AttributeSpec("hw.driver_version", "string", "Driver version.", S),
    AttributeSpec("hw.firmware_version", "string", "VBIOS version.", S),
    AttributeSpec("hw.parent", "string", "Parent GPU UUID of a MIG device.", S),
    AttributeSpec("gpu.index", "int", "NVML device index on the host.", O),
    AttributeSpec("gpu.pci_address", "string", "PCI bus id (domain:bus:device.function).", O),
    AttributeSpec("gpu.mig.profile", "string", "MIG profile of the instance, e.g. 1g.10gb.", O),
    AttributeSpec("gpu.mig.instance_id", "int", "MIG GPU instance id.", O),
    AttributeSpec("gpu.measurement.source", "string", "Where the value was measured.", O, ("nvml", "nvml_gpm", "dcgm")),
    # metric-specific
    AttributeSpec("hw.gpu.task", "string", "Engine the utilization is for.", S, ("general", "encoder", "decoder")),
    AttributeSpec("hw.sensor_location", "string", "Temperature sensor.", S, ("die", "memory")),
    AttributeSpec("hw.gpu.clock_domain", "string", "Clock domain.", O, ("graphics", "sm", "memory")),
    AttributeSpec(
        "hw.gpu.clock_event.reason", "string", "Why clocks are held below their maximum.", F, CLOCK_EVENT_REASONS
    ),
    AttributeSpec(
        "error.type",
        "string",
        "Error class: one of the values on hardware metrics; the exception's class name (or _OTHER) on "
        "gen_ai.server.request.duration, as the semantic conventions define it there.",
        S,
        GPU_ERROR_TYPES + NETWORK_ERROR_TYPES + TRITON_FAILURE_REASONS,
    ),
    AttributeSpec("hw.gpu.xid.code", "int", "NVIDIA XID error code.", F),
    AttributeSpec("network.io.direction", "string", "Direction of transfer.", S, ("receive", "transmit")),
    AttributeSpec("hw.gpu.interconnect.type", "string", "GPU-to-GPU interconnect.", O, ("nvlink",)),
    AttributeSpec("hw.state", "string", "Health state.", S, HW_STATES),
    AttributeSpec("hw.gpu.pipe", "string", "SM pipe.", O, ("tensor", "fp16", "fp32", "fp64")),
    # per process / workload (the cross-domain join keys)
    AttributeSpec("process.pid", "int", "Host PID of a process using the GPU.", S),
    AttributeSpec("process.executable.name", "string", "Process executable name.", S),
    AttributeSpec("factorylens.job.id", "string", "Job id (FACTORYLENS_JOB_ID, else SLURM_JOB_ID, else pod UID).", F),
    AttributeSpec("factorylens.team", "string", "Team or cost centre owning the job.", F),
    AttributeSpec("slurm.job.id", "string", "Slurm job id.", F),
    AttributeSpec("factorylens.rank", "int", "Global rank of the training process.", F),
    AttributeSpec("factorylens.world_size", "int", "Number of ranks in the job.", F),
    AttributeSpec("factorylens.gpu.ids", "string[]", "hw.id (UUID) of every GPU the rank uses.", F),
    AttributeSpec("factorylens.train.phase", "string", "Part of a training step.", F, TRAIN_PHASES),
    AttributeSpec("factorylens.train.step", "int", "Step number (on spans).", F),
    AttributeSpec("factorylens.checkpoint.operation", "string", "Checkpoint direction.", F, ("save", "load")),
    AttributeSpec("factorylens.checkpoint.path", "string", "Checkpoint file or directory (on spans).", F),
    AttributeSpec("system.filesystem.mountpoint", "string", "Mount point of the file system.", S),
    AttributeSpec("system.filesystem.type", "string", "File system type, e.g. ext4, nfs4, lustre.", S),
    AttributeSpec("system.filesystem.state", "string", "Used or free space.", S, ("used", "free")),
    AttributeSpec("disk.io.direction", "string", "Direction of storage I/O.", S, ("read", "write")),
    AttributeSpec("network.interface.name", "string", "Network port, e.g. mlx5_0/1 (device/port).", S),
    AttributeSpec(
        "factorylens.network.roce.event", "string", "RoCE congestion and ordering event (hw_counters).", F, ROCE_EVENTS
    ),
    # the host layer, as opentelemetry-instrumentation-system-metrics names its attributes
    AttributeSpec("cpu", "int", "Logical CPU number.", S),
    AttributeSpec("state", "string", "CPU, memory or swap state (user, system, idle, used, free, ...).", S),
    AttributeSpec("device", "string", "Disk or network device.", S),
    AttributeSpec("direction", "string", "I/O direction (read/write, receive/transmit).", S),
    AttributeSpec("factorylens.collective.op", "string", "Collective operation, e.g. all_reduce.", F),
    AttributeSpec("k8s.pod.uid", "string", "Kubernetes pod UID (from the process cgroup).", S),
    # receiver self-telemetry
    AttributeSpec("nvml.function", "string", "NVML function that failed.", F),
    AttributeSpec("factorylens.receiver.source", "string", "Node source.", F, ("host", "storage", "fabric")),
    AttributeSpec("factorylens.receiver.error", "string", "NVML error class, e.g. NotSupported.", F),
    # RCA service: ingest health and findings
    AttributeSpec(
        "otlp.signal",
        "string",
        "OTLP signal (api: the factorylens.rca.v1 API).",
        F,
        ("metrics", "traces", "logs", "api"),
    ),
    AttributeSpec("factorylens.rca.reason", "string", "Why data or a request was refused.", F),
    AttributeSpec(
        "factorylens.rca.outcome",
        "string",
        "What became of samples forwarded to Prometheus remote-write.",
        F,
        ("sent", "dropped", "failed"),
    ),
    AttributeSpec("factorylens.series.id", "string", "Stable id of a stored series.", F),
    AttributeSpec(
        "factorylens.workload",
        "string",
        "The workload a finding is about: the job id where the series has one, else its service or entity.",
        F,
    ),
    AttributeSpec("factorylens.metric", "string", "Metric name of the series a finding is about.", F),
    AttributeSpec(
        "factorylens.entity",
        "string",
        "What a series or cause describes (kind:name, e.g. gpu:GPU-1f2e…, host:node-3).",
        F,
    ),
    AttributeSpec("factorylens.domain", "string", "Domain of a series or cause.", F),
    AttributeSpec("factorylens.incident.id", "string", "Incident id.", F),
    AttributeSpec("factorylens.incident.state", "string", "Incident state.", F, ("open", "resolved")),
    AttributeSpec(
        "factorylens.incident.change", "string", "What happened to the incident.", F, ("opened", "updated", "resolved")
    ),
    AttributeSpec("factorylens.cause.rank", "int", "Rank of a cause within its incident (1 = most likely).", F),
    AttributeSpec("span.name", "string", "Span (operation) name.", F),
    AttributeSpec(
        "span.kind", "string", "Span kind.", F, ("unspecified", "internal", "server", "client", "producer", "consumer")
    ),
    AttributeSpec("factorylens.span.caller", "string", "The service (or peer) that made the calls of a call edge.", F),
    AttributeSpec("event.name", "string", "Event (log record) name.", S),
    AttributeSpec(
        "log.severity",
        "string",
        "Severity of log records: the bucket of their OTel severity number (of their text when it is unset).",
        F,
        ("UNSPECIFIED", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"),
    ),
    AttributeSpec(
        "log.template.id",
        "string",
        "A log template: a hash of the text it started with (`other`: past the resource's template limit).",
        F,
    ),
    # resource
    AttributeSpec("service.name", "string", "Service name.", S),
    AttributeSpec("service.version", "string", "Service version.", S),
    AttributeSpec("host.name", "string", "Host name of the node.", S),
    AttributeSpec("k8s.cluster.name", "string", "Kubernetes cluster.", S),
    AttributeSpec("k8s.node.name", "string", "Kubernetes node.", S),
    AttributeSpec("cloud.provider", "string", "Cloud provider.", S),
    AttributeSpec("cloud.region", "string", "Cloud region.", S),
    AttributeSpec("factorylens.cluster.name", "string", "Cluster (fleet) the node belongs to.", F),
    AttributeSpec("factorylens.simulated", "bool", "True when the data comes from the simulator.", F),
    # Kubernetes workload identity (dcgm-exporter's pod/namespace/container labels, k8sattributes)
    AttributeSpec("k8s.pod.name", "string", "Pod the GPU is assigned to or the process runs in.", S),
    AttributeSpec("k8s.namespace.name", "string", "Namespace of that pod.", S),
    AttributeSpec("k8s.container.name", "string", "Container of that pod.", S),
    # LLM serving (OTel GenAI semantic conventions; factorylens.inference.* where they have no name)
    AttributeSpec("gen_ai.request.model", "string", "Model the request asked for (the engine's model label).", S),
    AttributeSpec(
        "gen_ai.provider.name",
        "string",
        f"The serving engine (no well-known GenAI value): {', '.join(INFERENCE_ENGINES)} when translated, "
        "a hand-instrumented server's own name otherwise.",
        S,
    ),
    AttributeSpec("gen_ai.operation.name", "string", "What the server was asked to do (chat, text_completion).", S),
    AttributeSpec("server.address", "string", "Address of the serving endpoint (the instrumented server).", S),
    AttributeSpec("server.port", "int", "Port of the serving endpoint (the instrumented server).", S),
    AttributeSpec("gen_ai.token.type", "string", "Which tokens a count is of.", S, ("input", "output")),
    AttributeSpec("server.address", "string", "The serving engine's address (the scrape target's host).", S),
    AttributeSpec("server.port", "int", "The serving engine's port (the scrape target's).", S),
    AttributeSpec("factorylens.inference.engine", "string", "Engine index inside one vLLM server (data parallel).", F),
    AttributeSpec("factorylens.inference.engine_role", "string", "SGLang's engine_type: unified, prefill, decode.", F),
    AttributeSpec("factorylens.inference.model_version", "string", "Version of the served model (Triton).", F),
    AttributeSpec("factorylens.inference.finish_reason", "string", "Why a request finished.", F, FINISH_REASONS),
    AttributeSpec(
        "factorylens.inference.replica",
        "string",
        "One server process of a served model (a replica behind the router): the RCA entity replica:<job>/<n>.",
        F,
    ),
    AttributeSpec(
        "factorylens.inference.phase", "string", "Phase a batch ran (TGI's method label).", F, ("prefill", "decode")
    ),
    AttributeSpec(
        "factorylens.inference.compute.stage",
        "string",
        "Stage of Triton's compute time: input handling, inference, output handling.",
        F,
        ("input", "infer", "output"),
    ),
    # the processors' own accounting
    AttributeSpec(
        "factorylens.producer",
        "string",
        "Who emitted a series under a foreign name.",
        F,
        ("dcgm-exporter", "node-exporter", "hostmetrics", "openlit", "vllm", "sglang", "tgi", "triton"),
    ),
    AttributeSpec("factorylens.source.metric", "string", "A metric name as its producer spelled it.", F),
    # cost and ROI
    AttributeSpec(
        "factorylens.allocation.state",
        "string",
        "Whether a GPU's time was held by a job (a process on it) or by nobody.",
        F,
        ALLOCATION_STATES,
    ),
    AttributeSpec(
        "factorylens.cost.basis",
        "string",
        "What active GPU time is weighted by: NVML utilization, or SM activity (GPM, Hopper and newer).",
        F,
        ACTIVITY_BASES,
    ),
    AttributeSpec("factorylens.cost.usage", "string", "Which GPU-hours a figure counts.", F, COST_USAGES),
    AttributeSpec("factorylens.cost.component", "string", "Which part of the spend a figure is.", F, COST_COMPONENTS),
    AttributeSpec("factorylens.cost.output", "string", "The unit of work a unit cost is per.", F, COST_OUTPUTS),
    AttributeSpec("factorylens.price.basis", "string", "How a GPU-hour price was set.", F, PRICE_BASES),
    AttributeSpec("factorylens.price.contract", "string", "The contract or price list a price override comes from.", F),
)

ATTRIBUTE_GROUPS = {
    # on every network-port point (InfiniBand / RoCE): hw.id is the port's GUID/port
    "nic": ("hw.id", "hw.type", "hw.name", "network.interface.name"),
    # on every GPU point: enough to identify and join (hw.id is the join key)
    "gpu": (
        "hw.id",
        "hw.type",
        "hw.name",
        "hw.vendor",
        "hw.parent",
        "gpu.index",
        "gpu.pci_address",
        "gpu.mig.profile",
        "gpu.mig.instance_id",
    ),
}
# static descriptive attributes ride on hw.status only (4 points per GPU), not on every point:
# they would multiply label size and SDK cost per point for no extra cardinality (join on hw.id)
GPU_DETAILS = ("hw.model", "hw.serial_number", "hw.driver_version", "hw.firmware_version")

RESOURCE_ATTRIBUTES = (
    "service.name",
    "service.version",
    "host.name",
    "k8s.cluster.name",
    "k8s.node.name",
    "cloud.provider",
    "cloud.region",
    "factorylens.cluster.name",
    "factorylens.simulated",
    # training processes (the instrumentation): the cross-domain join keys
    "factorylens.job.id",
    "factorylens.team",
    "factorylens.rank",
    "factorylens.world_size",
    "hw.id",
    "factorylens.gpu.ids",
    "slurm.job.id",
    "k8s.pod.uid",
)

G, C, U, H = Instrument.GAUGE, Instrument.COUNTER, Instrument.UPDOWNCOUNTER, Instrument.HISTOGRAM
GPU = Domain.GPU
PROCESS_ATTRIBUTES = (
    "process.pid",
    "process.executable.name",
    "factorylens.job.id",
    "factorylens.team",
    "slurm.job.id",
    "k8s.pod.uid",
)

# on the receiver's usage counters: who held the GPU, and the cluster (from the resource), so that
# Prometheus recording rules group by them without a target_info join
USAGE_ATTRIBUTES = ("factorylens.job.id", "factorylens.team", "factorylens.cluster.name")
COST_GROUP = ("factorylens.job.id", "factorylens.team", "factorylens.cluster.name", "hw.model")
PRICE_SCOPE = ("hw.model", "factorylens.cluster.name", "factorylens.team")

GPU_RECEIVER = "gpu-receiver"
INSTRUMENTATION = "instrumentation"
RCA_SERVICE = "rca-service"
PROCESSORS = "processors"  # metrics only the normalize processor emits (from dcgm-exporter fields)
COMPONENTS = (GPU_RECEIVER, INSTRUMENTATION, RCA_SERVICE, PROCESSORS)

# LLM serving engines' metrics (vLLM, SGLang, TGI, Triton) as the normalize processor renames them:
# OTel GenAI names where they exist (gen_ai-metrics.md, v1.41.0, status Development), ours for the rest
_SERVING = (
    "gen_ai.request.model",
    "gen_ai.provider.name",
    "factorylens.inference.engine",
    "factorylens.inference.engine_role",
    "factorylens.inference.model_version",
    # a hand-instrumented server (factorylens.instrumentation.serving) also says what it was asked for;
    # gen_ai.operation.name, required by gen_ai-metrics.md, is unknown from a /metrics scrape
    "gen_ai.operation.name",
    # the server's endpoint (gen_ai-metrics.md: server.address recommended, server.port when it is set):
    # the scrape target's, or what the hand-instrumented server says
    "server.address",
    "server.port",
)
_SERVING_PHASE = "(vLLM, SGLang, TGI; per request)"
INFERENCE_METRICS = (
    MetricSpec(
        "gen_ai.server.time_to_first_token",
        H,
        "s",
        "Time from a request's arrival to its first output token " + _SERVING_PHASE + ".",
        Domain.APP,
        S,
        _SERVING,
    ),
    MetricSpec(
        "gen_ai.server.time_per_output_token",
        H,
        "s",
        "Decode time per output token after the first: (duration − TTFT) / (tokens − 1), per request.",
        Domain.APP,
        S,
        _SERVING,
    ),
    MetricSpec(
        "gen_ai.server.request.duration",
        H,
        "s",
        "Time from a request's arrival to its last token (end to end, on the server).",
        Domain.APP,
        S,
        (*_SERVING, "error.type"),
    ),
    MetricSpec(
        "gen_ai.client.token.usage",
        H,
        "{token}",
        "Tokens per request, input (prompt) or output (generated), as the server counted them.",
        Domain.APP,
        S,
        (*_SERVING, "gen_ai.token.type"),
    ),
    MetricSpec(
        "factorylens.inference.requests.running",
        G,
        "{request}",
        "Requests in the running batch (scheduled on the GPU).",
        Domain.APP,
        F,
        _SERVING,
    ),
    MetricSpec(
        "factorylens.inference.requests.waiting",
        G,
        "{request}",
        "Requests queued for scheduling (the queue depth; vLLM, SGLang and TGI queues are unbounded).",
        Domain.APP,
        F,
        _SERVING,
    ),
    MetricSpec(
        "factorylens.inference.kv_cache.usage",
        G,
        "1",
        "Fraction of the KV-cache blocks (tokens) in use, 0-1.",
        Domain.APP,
        F,
        _SERVING,
    ),
    MetricSpec(
        "factorylens.inference.preemptions",
        C,
        "{preemption}",
        "Requests preempted (evicted from the KV cache, to be recomputed): vLLM's preemption counter.",
        Domain.APP,
        F,
        _SERVING,
    ),
    MetricSpec(
        "factorylens.inference.batch.size",
        G,
        "{request}",
        "Requests in the batch the engine runs now (TGI).",
        Domain.APP,
        F,
        _SERVING,
    ),
    MetricSpec(
        "factorylens.inference.requests.finished",
        C,
        "{request}",
        "Requests finished, by why: stop (a stop token), length (the token limit), abort, or error (raised).",
        Domain.APP,
        F,
        (*_SERVING, "factorylens.inference.finish_reason"),
    ),
    MetricSpec(
        "factorylens.inference.tokens",
        C,
        "{token}",
        "Tokens processed: input (prefilled prompt) or output (generated).",
        Domain.APP,
        F,
        (*_SERVING, "gen_ai.token.type"),
    ),
    MetricSpec(
        "factorylens.inference.request.queue_time",
        H,
        "s",
        "Time a request waited before it was first scheduled " + _SERVING_PHASE + ".",
        Domain.APP,
        F,
        _SERVING,
    ),
    MetricSpec(
        "factorylens.inference.request.prefill_time",
        H,
        "s",
        "Time from a request's first scheduling to its first token (vLLM; preempted time included).",
        Domain.APP,
        F,
        _SERVING,
    ),
    MetricSpec(
        "factorylens.inference.request.decode_time",
        H,
        "s",
        "Time from a request's first token to its last (vLLM; preempted time included).",
        Domain.APP,
        F,
        _SERVING,
    ),
    MetricSpec(
        "factorylens.inference.request.inference_time",
        H,
        "s",
        "Time from a request's first scheduling to its last token: prefill plus decode (vLLM).",
        Domain.APP,
        F,
        _SERVING,
    ),
    MetricSpec(
        "factorylens.inference.inter_token_latency",
        H,
        "s",
        "Time between consecutive output tokens, per token (not per request: TPOT is that).",
        Domain.APP,
        F,
        _SERVING,
    ),
    MetricSpec(
        "factorylens.inference.request.time",
        C,
        "s",
        "Summed request time, queue included (Triton's cumulative nv_inference_request_duration_us).",
        Domain.APP,
        F,
        _SERVING,
    ),
    MetricSpec(
        "factorylens.inference.queue.time",
        C,
        "s",
        "Summed time requests waited in the queue (Triton's cumulative nv_inference_queue_duration_us).",
        Domain.APP,
        F,
        _SERVING,
    ),
    MetricSpec(
        "factorylens.inference.compute.time",
        C,
        "s",
        "Summed compute time by stage: input handling, inference, output handling (Triton's cumulative "
        "nv_inference_compute_{input,infer,output}_duration_us; cached requests not included).",
        Domain.APP,
        F,
        (*_SERVING, "factorylens.inference.compute.stage"),
    ),
    MetricSpec(
        "factorylens.inference.requests.failed",
        C,
        "{request}",
        "Requests that failed, by error.type (Triton's failure reason: REJECTED, CANCELED, BACKEND, OTHER).",
        Domain.APP,
        F,
        (*_SERVING, "error.type"),
    ),
    MetricSpec(
        "factorylens.inference.batch.forward_time",
        H,
        "s",
        "Time of one forward pass of the running batch, prefill or decode (TGI; per batch, not per request).",
        Domain.APP,
        F,
        (*_SERVING, "factorylens.inference.phase"),
    ),
    MetricSpec(
        "factorylens.inference.prefix_cache.queries",
        C,
        "{token}",
        "Prompt tokens looked up in the prefix cache (vLLM counts its prefix-cache queries in tokens).",
        Domain.APP,
        F,
        _SERVING,
    ),
    MetricSpec(
        "factorylens.inference.prefix_cache.hits",
        C,
        "{token}",
        "Prompt tokens found in the prefix cache, whose prefill is skipped (vLLM).",
        Domain.APP,
        F,
        _SERVING,
    ),
    MetricSpec(
        "factorylens.inference.prefix_cache.hit_ratio",
        G,
        "1",
        "Fraction of prompt tokens found in the prefix cache, 0-1 (SGLang's cache_hit_rate; for vLLM, the ratio "
        "of the hits and queries rates).",
        Domain.APP,
        F,
        _SERVING,
    ),
    MetricSpec(
        "factorylens.inference.requests.retracted",
        G,
        "{request}",
        "Requests retracted from the running batch for lack of KV-cache room, to be scheduled again (SGLang; "
        "vLLM counts preemptions instead).",
        Domain.APP,
        F,
        _SERVING,
    ),
)


def _emitted_by(component: str, metrics: tuple[MetricSpec, ...]) -> tuple[MetricSpec, ...]:
    return tuple(replace(m, component=component) for m in metrics)


METRICS = (
    _emitted_by(
        GPU_RECEIVER,
        (
            MetricSpec(
                "hw.gpu.utilization",
                G,
                "1",
                "Fraction of time the GPU engine was busy (NVML utilization rates, encoder and decoder utilization).",
                GPU,
                S,
                ("hw.gpu.task",),
                "gpu",
            ),
            MetricSpec("hw.gpu.memory.usage", U, "By", "GPU memory used.", GPU, S, (), "gpu", int),
            MetricSpec("hw.gpu.memory.limit", U, "By", "Size of the GPU memory.", GPU, S, (), "gpu", int),
            MetricSpec("hw.gpu.memory.free", U, "By", "GPU memory free.", GPU, O, (), "gpu", int),
            MetricSpec(
                "hw.gpu.memory.utilization", G, "1", "Fraction of GPU memory used (usage / limit).", GPU, S, (), "gpu"
            ),
            MetricSpec(
                "hw.gpu.memory.controller.utilization",
                G,
                "1",
                "Fraction of time device memory was being read or written (NVML utilization.memory).",
                GPU,
                O,
                (),
                "gpu",
            ),
            MetricSpec(
                "hw.temperature", G, "Cel", "GPU die or memory temperature.", GPU, O, ("hw.sensor_location",), "gpu"
            ),
            MetricSpec("hw.power", G, "W", "Power drawn by the GPU board.", GPU, S, (), "gpu"),
            MetricSpec("hw.power.limit", G, "W", "Enforced power limit.", GPU, O, (), "gpu"),
            MetricSpec(
                "hw.energy",
                C,
                "J",
                "Energy consumed by the GPU since the receiver first saw it (NVML counter "
                "resets on driver reload are stitched).",
                GPU,
                S,
                (),
                "gpu",
            ),
            MetricSpec("hw.gpu.speed", G, "Hz", "Current clock frequency.", GPU, O, ("hw.gpu.clock_domain",), "gpu"),
            MetricSpec(
                "hw.gpu.clock_event.active",
                G,
                "1",
                "1 while the reason holds clocks below maximum (throttling), else 0.",
                GPU,
                F,
                ("hw.gpu.clock_event.reason",),
                "gpu",
                int,
            ),
            MetricSpec(
                "hw.errors",
                C,
                "{error}",
                "Hardware errors. GPUs: ECC corrected/uncorrected (volatile), PCIe "
                "replays, NVLink CRC/replay/recovery errors, XID events by code. Network ports (hw.type=network, "
                "with network.interface.name): symbol errors, link downed, link error recovery, receive errors, "
                "transmit discards.",
                GPU,
                S,
                ("error.type", "hw.gpu.xid.code", "network.interface.name"),
                "gpu",
                int,
            ),
            MetricSpec(
                "hw.gpu.io",
                C,
                "By",
                "PCIe bytes, integrated from NVML's 20 ms throughput samples.",
                GPU,
                S,
                ("network.io.direction",),
                "gpu",
                int,
            ),
            MetricSpec(
                "hw.gpu.interconnect.io",
                C,
                "By",
                "NVLink data bytes over all links.",
                GPU,
                O,
                ("hw.gpu.interconnect.type", "network.io.direction"),
                "gpu",
                int,
            ),
            MetricSpec(
                "hw.status",
                U,
                "1",
                "1 for the GPU's current health state, 0 for the others; also carries "
                "the GPU's model, serial, driver and VBIOS versions.",
                GPU,
                S,
                ("hw.state", *GPU_DETAILS),
                "gpu",
                int,
            ),
            MetricSpec("hw.fan.speed_ratio", G, "1", "Fan speed as a fraction of its maximum.", GPU, O, (), "gpu"),
            MetricSpec(
                "hw.gpu.sm.utilization",
                G,
                "1",
                "Fraction of SMs busy (NVML GPM, Hopper and newer).",
                GPU,
                O,
                ("gpu.measurement.source",),
                "gpu",
            ),
            MetricSpec(
                "hw.gpu.sm.occupancy",
                G,
                "1",
                "Active warps over the theoretical maximum (NVML GPM).",
                GPU,
                O,
                ("gpu.measurement.source",),
                "gpu",
            ),
            MetricSpec(
                "hw.gpu.pipe.utilization",
                G,
                "1",
                "Fraction of time SMs ran the pipe (NVML GPM).",
                GPU,
                O,
                ("hw.gpu.pipe", "gpu.measurement.source"),
                "gpu",
            ),
            MetricSpec(
                "hw.gpu.memory.bandwidth.utilization",
                G,
                "1",
                "DRAM bandwidth used over its maximum (NVML GPM).",
                GPU,
                O,
                ("gpu.measurement.source",),
                "gpu",
            ),
            MetricSpec(
                "hw.gpu.allocated",
                G,
                "1",
                "1 when a process holds the GPU (any compute process).",
                GPU,
                O,
                (),
                "gpu",
                int,
            ),
            MetricSpec("hw.gpu.idle", G, "1", "1 - general utilization.", GPU, O, (), "gpu"),
            MetricSpec(
                "factorylens.gpu.allocation.time",
                C,
                "s",
                "GPU time by the job holding the GPU (a process on it), or unallocated: seconds times the "
                "job's share (a MIG slice's compute fraction, split equally among jobs time-slicing it).",
                Domain.COST,
                F,
                (*USAGE_ATTRIBUTES, "factorylens.allocation.state"),
                "gpu",
            ),
            MetricSpec(
                "factorylens.gpu.active.time",
                C,
                "s",
                "Allocated GPU time weighted by activity: seconds times share times utilization (or SM activity).",
                Domain.COST,
                F,
                (*USAGE_ATTRIBUTES, "factorylens.cost.basis"),
                "gpu",
            ),
            MetricSpec(
                "factorylens.gpu.allocation.energy",
                C,
                "J",
                "The GPU's energy (hw.energy) split like its time: by the job holding it, or unallocated.",
                Domain.COST,
                F,
                (*USAGE_ATTRIBUTES, "factorylens.allocation.state"),
                "gpu",
            ),
            MetricSpec(
                "process.gpu.memory.usage",
                U,
                "By",
                "GPU memory held by the process.",
                GPU,
                O,
                PROCESS_ATTRIBUTES,
                "gpu",
                int,
            ),
            MetricSpec(
                "process.gpu.utilization",
                G,
                "1",
                "SM utilization attributed to the process.",
                GPU,
                O,
                PROCESS_ATTRIBUTES,
                "gpu",
            ),
            MetricSpec(
                "factorylens.receiver.scrape.errors",
                C,
                "{error}",
                "NVML calls that failed, by function and "
                "error class (NotSupported is probed once and not counted again).",
                Domain.SELF,
                F,
                ("nvml.function", "factorylens.receiver.error"),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.receiver.devices",
                U,
                "{device}",
                "GPUs (and MIG devices) the receiver currently sees.",
                Domain.SELF,
                F,
                (),
                None,
                int,
            ),
            MetricSpec("factorylens.receiver.scrape.duration", G, "s", "Wall time of the last scrape.", Domain.SELF, F),
            MetricSpec(
                "factorylens.receiver.source.up",
                G,
                "1",
                "1 while a node source (host, storage, fabric) reads, 0 while its data is missing.",
                Domain.SELF,
                F,
                ("factorylens.receiver.source",),
                None,
                int,
            ),
            # host layer (names and attributes as opentelemetry-instrumentation-system-metrics emits them)
            MetricSpec(
                "system.cpu.time", C, "s", "CPU time by logical CPU and state.", Domain.HOST, S, ("cpu", "state")
            ),
            MetricSpec(
                "system.cpu.utilization",
                G,
                "1",
                "CPU utilization by logical CPU and state.",
                Domain.HOST,
                S,
                ("cpu", "state"),
            ),
            MetricSpec("system.memory.usage", G, "By", "Memory in use, by state.", Domain.HOST, S, ("state",)),
            MetricSpec(
                "system.memory.utilization", G, "1", "Memory utilization, by state.", Domain.HOST, S, ("state",)
            ),
            MetricSpec("system.swap.usage", G, "pages", "Swap in use, by state.", Domain.HOST, S, ("state",)),
            MetricSpec("system.swap.utilization", G, "1", "Swap utilization, by state.", Domain.HOST, S, ("state",)),
            MetricSpec(
                "system.disk.io", C, "By", "Disk bytes read and written.", Domain.STORAGE, S, ("device", "direction")
            ),
            MetricSpec(
                "system.disk.operations",
                C,
                "operations",
                "Disk operations.",
                Domain.STORAGE,
                S,
                ("device", "direction"),
            ),
            MetricSpec(
                "system.disk.time", C, "s", "Time disk operations took.", Domain.STORAGE, S, ("device", "direction")
            ),
            MetricSpec(
                "system.network.dropped_packets",
                C,
                "packets",
                "Dropped packets by interface.",
                Domain.NETWORK,
                S,
                ("device", "direction"),
            ),
            MetricSpec(
                "system.network.packets",
                C,
                "packets",
                "Packets by interface.",
                Domain.NETWORK,
                S,
                ("device", "direction"),
            ),
            MetricSpec(
                "system.network.errors", C, "errors", "Errors by interface.", Domain.NETWORK, S, ("device", "direction")
            ),
            MetricSpec("system.network.io", C, "By", "Bytes by interface.", Domain.NETWORK, S, ("device", "direction")),
            # storage layer: per mount point, local NVMe and network/parallel file systems
            MetricSpec(
                "factorylens.storage.io",
                C,
                "By",
                "Bytes read and written on the file system (NVMe: "
                "/proc/diskstats; NFS: /proc/self/mountstats; Lustre: llite stats).",
                Domain.STORAGE,
                F,
                ("system.filesystem.mountpoint", "system.filesystem.type", "disk.io.direction"),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.storage.operations",
                C,
                "{operation}",
                "Read and write operations on the file system.",
                Domain.STORAGE,
                F,
                ("system.filesystem.mountpoint", "system.filesystem.type", "disk.io.direction"),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.storage.operation.time",
                C,
                "s",
                "Total time the operations took (latency = its "
                "rate over the operations' rate); not reported by Lustre's client stats.",
                Domain.STORAGE,
                F,
                ("system.filesystem.mountpoint", "system.filesystem.type", "disk.io.direction"),
            ),
            MetricSpec(
                "system.filesystem.usage",
                U,
                "By",
                "File system space used and free.",
                Domain.STORAGE,
                S,
                ("system.filesystem.mountpoint", "system.filesystem.type", "system.filesystem.state"),
                None,
                int,
            ),
            MetricSpec(
                "system.filesystem.utilization",
                G,
                "1",
                "Fraction of the file system used.",
                Domain.STORAGE,
                S,
                ("system.filesystem.mountpoint", "system.filesystem.type"),
            ),
            # fabric layer: InfiniBand / RoCE ports from sysfs
            MetricSpec(
                "hw.network.io",
                C,
                "By",
                "Bytes through the port (port_xmit_data / port_rcv_data × 4).",
                Domain.NETWORK,
                S,
                ("network.io.direction",),
                "nic",
                int,
            ),
            MetricSpec(
                "hw.network.packets",
                C,
                "{packet}",
                "Packets through the port.",
                Domain.NETWORK,
                S,
                ("network.io.direction",),
                "nic",
                int,
            ),
            MetricSpec(
                "hw.network.up", U, "1", "1 while the port is ACTIVE, else 0.", Domain.NETWORK, S, (), "nic", int
            ),
            MetricSpec(
                "hw.network.bandwidth.limit", U, "By/s", "The port's link rate.", Domain.NETWORK, S, (), "nic", int
            ),
            MetricSpec(
                "factorylens.network.roce.events",
                C,
                "{packet}",
                "RoCE congestion and ordering events from the "
                "port's hw_counters: ECN-marked packets received, CNPs sent and handled, out-of-sequence "
                "packets, packet sequence errors.",
                Domain.NETWORK,
                F,
                ("factorylens.network.roce.event",),
                "nic",
                int,
            ),
            MetricSpec(
                "factorylens.network.xmit_wait",
                C,
                "{tick}",
                "Ticks the port had data to send but no credits (port_xmit_wait): congestion.",
                Domain.NETWORK,
                F,
                (),
                "nic",
                int,
            ),
        ),
    )
    + _emitted_by(
        INSTRUMENTATION,
        (
            # training steps (the job, rank, host and GPUs are on the resource)
            MetricSpec("factorylens.train.step.duration", H, "s", "Wall time of each training step.", Domain.APP, F),
            MetricSpec(
                "factorylens.train.phase.duration",
                H,
                "s",
                "Time of each phase of a step (GPU time from CUDA events when on a GPU).",
                Domain.APP,
                F,
                ("factorylens.train.phase",),
            ),
            MetricSpec(
                "factorylens.train.steps", C, "{step}", "Training steps completed.", Domain.APP, F, (), None, int
            ),
            MetricSpec("factorylens.train.samples", C, "{sample}", "Samples trained on.", Domain.APP, F, (), None, int),
            MetricSpec("factorylens.train.tokens", C, "{token}", "Tokens trained on.", Domain.APP, F, (), None, int),
            MetricSpec(
                "factorylens.train.samples.rate",
                G,
                "{sample}/s",
                "Samples per second over the last export interval.",
                Domain.APP,
                F,
            ),
            MetricSpec(
                "factorylens.train.tokens.rate",
                G,
                "{token}/s",
                "Tokens per second over the last export interval.",
                Domain.APP,
                F,
            ),
            MetricSpec(
                "factorylens.data.wait.ratio",
                G,
                "1",
                "Share of step time spent waiting for the input "
                "pipeline (the data phase) over the last export interval.",
                Domain.DATA,
                F,
            ),
            MetricSpec(
                "factorylens.train.mfu",
                G,
                "1",
                "Model FLOPs utilization: model FLOPs per second over the "
                "peak dense BF16 FLOPS of the rank's GPUs, over the last export interval.",
                Domain.APP,
                F,
            ),
            MetricSpec(
                "factorylens.train.goodput",
                G,
                "1",
                "Productive step time (compute, not data waits or "
                "checkpoints) over wall time since the job first started, restarts and stalls included.",
                Domain.APP,
                F,
            ),
            MetricSpec(
                "factorylens.checkpoint.io",
                C,
                "By",
                "Checkpoint bytes written or read.",
                Domain.STORAGE,
                F,
                ("factorylens.checkpoint.operation", "system.filesystem.mountpoint"),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.checkpoint.duration",
                H,
                "s",
                "Time of each checkpoint save or load.",
                Domain.STORAGE,
                F,
                ("factorylens.checkpoint.operation", "system.filesystem.mountpoint"),
            ),
            MetricSpec(
                "factorylens.checkpoint.throughput",
                G,
                "By/s",
                "Bytes per second of the last checkpoint save or load.",
                Domain.STORAGE,
                F,
                ("factorylens.checkpoint.operation", "system.filesystem.mountpoint"),
            ),
            MetricSpec(
                "factorylens.collective.io",
                C,
                "By",
                "Bytes each rank contributed to collectives.",
                Domain.NETWORK,
                F,
                ("factorylens.collective.op",),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.collective.duration",
                H,
                "s",
                "Time of each collective call.",
                Domain.NETWORK,
                F,
                ("factorylens.collective.op",),
            ),
            MetricSpec(
                "factorylens.train.telemetry.dropped",
                C,
                "{step}",
                "Steps whose telemetry was dropped because "
                "the exporting thread fell behind (the training loop never waits).",
                Domain.SELF,
                F,
                (),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.inference.telemetry.dropped",
                C,
                "{request}",
                "Finished requests whose telemetry was dropped because the exporting thread fell behind "
                "(factorylens.instrumentation.serving; the server never waits).",
                Domain.SELF,
                F,
                (),
                None,
                int,
            ),
        ),
    )
    + _emitted_by(
        RCA_SERVICE,
        (
            # what the RCA service derives from spans and log records on ingest
            MetricSpec(
                "factorylens.span.calls",
                C,
                "{call}",
                "Spans ended, per operation (RED rate).",
                Domain.APP,
                F,
                ("span.name", "span.kind"),
            ),
            MetricSpec(
                "factorylens.span.errors",
                C,
                "{call}",
                "Spans ended with status ERROR, per operation.",
                Domain.APP,
                F,
                ("span.name", "span.kind"),
            ),
            MetricSpec(
                "factorylens.span.duration",
                Instrument.HISTOGRAM,
                "s",
                "Span durations, per operation.",
                Domain.APP,
                F,
                ("span.name", "span.kind"),
            ),
            MetricSpec(
                "factorylens.span.self_duration",
                Instrument.HISTOGRAM,
                "s",
                "Exclusive span time: the duration less the time its child spans cover, per operation.",
                Domain.APP,
                F,
                ("span.name", "span.kind"),
            ),
            MetricSpec(
                "factorylens.span.error_origins",
                C,
                "{call}",
                "Failed spans none of whose children failed: where an error began, per operation.",
                Domain.APP,
                F,
                ("span.name", "span.kind"),
            ),
            MetricSpec(
                "factorylens.span.edge.calls",
                C,
                "{call}",
                "Calls on a call edge, on the callee's resource (a peer's own when it sends no spans).",
                Domain.APP,
                F,
                ("factorylens.span.caller",),
            ),
            MetricSpec(
                "factorylens.span.edge.errors",
                C,
                "{call}",
                "Failed calls on a call edge, on the callee's resource.",
                Domain.APP,
                F,
                ("factorylens.span.caller",),
            ),
            MetricSpec(
                "factorylens.span.edge.duration",
                Instrument.HISTOGRAM,
                "s",
                "Call durations on a call edge as the callee served them (as the caller waited, for a peer).",
                Domain.APP,
                F,
                ("factorylens.span.caller",),
            ),
            MetricSpec(
                "factorylens.events",
                C,
                "{event}",
                "Log records (events) received, per event name.",
                Domain.APP,
                F,
                ("event.name",),
            ),
            MetricSpec(
                "factorylens.log.records",
                C,
                "{record}",
                "Log records received, per severity.",
                Domain.APP,
                F,
                ("log.severity",),
            ),
            MetricSpec(
                "factorylens.log.templates",
                C,
                "{record}",
                "Log records received, per template (lines alike but for numbers, ids and other "
                "variables) and severity; the series' description is the template's text.",
                Domain.APP,
                F,
                ("log.template.id", "log.severity"),
            ),
            # RCA service health
            MetricSpec(
                "factorylens.rca.ingest.accepted",
                C,
                "{item}",
                "Data points, spans and log records stored.",
                Domain.SELF,
                F,
                ("otlp.signal",),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.rca.ingest.rejected",
                C,
                "{item}",
                "Items refused in a partial success (malformed points, series limit), by reason.",
                Domain.SELF,
                F,
                ("otlp.signal", "factorylens.rca.reason"),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.rca.requests.refused",
                C,
                "{request}",
                "Whole export requests refused: overload "
                "and WAL errors (the client retries), malformed bytes, failed authentication.",
                Domain.SELF,
                F,
                ("otlp.signal", "factorylens.rca.reason"),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.rca.queue.depth",
                U,
                "{request}",
                "Export requests in flight (admission bound).",
                Domain.SELF,
                F,
                (),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.rca.wal.size",
                U,
                "By",
                "Bytes in write-ahead log segments on disk.",
                Domain.SELF,
                F,
                (),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.rca.wal.lag",
                U,
                "By",
                "Acknowledged bytes not yet fsynced (0 with fsync=always).",
                Domain.SELF,
                F,
                (),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.rca.snapshot.age",
                G,
                "s",
                "Seconds since the last snapshot (WAL truncation).",
                Domain.SELF,
                F,
            ),
            MetricSpec(
                "factorylens.rca.store.series", U, "{series}", "Series in the store.", Domain.SELF, F, (), None, int
            ),
            MetricSpec(
                "factorylens.rca.store.points", U, "{point}", "Points in the store.", Domain.SELF, F, (), None, int
            ),
            MetricSpec(
                "factorylens.rca.store.memory",
                U,
                "By",
                "Bytes held by stored points and series (their attributes included).",
                Domain.SELF,
                F,
                (),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.rca.memory.resident",
                U,
                "By",
                "Resident memory of the RCA service process.",
                Domain.SELF,
                F,
                (),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.rca.memory.limit",
                U,
                "By",
                "Resident memory above which exports are refused with RESOURCE_EXHAUSTED (0: no bound).",
                Domain.SELF,
                F,
                (),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.rca.attributes.truncated",
                C,
                "{attribute}",
                "Attribute values or lists cut to the service's limits (length, count, nesting depth).",
                Domain.SELF,
                F,
                (),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.rca.wal.quarantined",
                C,
                "{record}",
                "WAL records that could not be replayed, set aside in the data directory's quarantine/ folder.",
                Domain.SELF,
                F,
                (),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.rca.recovery.lost_records",
                C,
                "{record}",
                "WAL records that no usable snapshot covered at start-up (data lost).",
                Domain.SELF,
                F,
                (),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.rca.snapshot.failures",
                C,
                "{snapshot}",
                "Snapshots that failed (retried with back-off; the WAL is kept meanwhile).",
                Domain.SELF,
                F,
                (),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.rca.analysis.skipped",
                C,
                "{series}",
                "Series left out of an analysis pass, by "
                "reason: the pass's budget was spent (analysed next pass) or the series is too costly to model.",
                Domain.SELF,
                F,
                ("factorylens.rca.reason",),
                None,
                int,
            ),
            # forwarding to Prometheus remote-write (rca_service/remote_write.py)
            MetricSpec(
                "factorylens.rca.remote_write.samples",
                C,
                "{sample}",
                "Samples forwarded to Prometheus remote-write, by outcome and reason: sent (acknowledged), "
                "dropped (never sent: queue full, delta temporality (one per point), out of order or duplicate, "
                "older than max age, unsent at shutdown) or failed (rejected with a 4xx, retries exhausted).",
                Domain.SELF,
                F,
                ("factorylens.rca.outcome", "factorylens.rca.reason"),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.rca.remote_write.queue.depth",
                U,
                "{sample}",
                "Samples waiting to be sent to Prometheus remote-write (bounded; the oldest are dropped when full).",
                Domain.SELF,
                F,
                (),
                None,
                int,
            ),
            MetricSpec(
                "factorylens.rca.remote_write.retries",
                C,
                "{request}",
                "Remote-write requests sent again after a 5xx, a 429 or a connection error.",
                Domain.SELF,
                F,
                (),
                None,
                int,
            ),
            # RCA findings
            MetricSpec(
                "factorylens.anomaly.score",
                G,
                "1",
                "Latest anomaly score in [0, 1] (0.5 = at the threshold) of each KPI and of the most anomalous series.",
                Domain.RCA,
                F,
                ("factorylens.series.id", "factorylens.metric", "factorylens.entity", "factorylens.domain"),
            ),
            MetricSpec(
                "factorylens.baseline.predictability",
                G,
                "1",
                "How well seasonal baselines explain a "
                "workload's series, in [0, 1] (median over its series; lowered when points leave the 95% band "
                "more often than 5% of the time).",
                Domain.RCA,
                F,
                ("factorylens.workload",),
            ),
            MetricSpec(
                "factorylens.baseline.lower",
                G,
                "{kpi unit}",
                "Lower edge of a KPI's (or a highly anomalous series') baseline band at its latest analysed "
                "point, in the series' own unit (the seasonal baseline's 2.5% residual quantile, else the "
                "robust z threshold below the recent median).",
                Domain.RCA,
                F,
                ("factorylens.series.id", "factorylens.metric", "factorylens.entity", "factorylens.domain"),
            ),
            MetricSpec(
                "factorylens.baseline.upper",
                G,
                "{kpi unit}",
                "Upper edge of that baseline band, in the series' own unit.",
                Domain.RCA,
                F,
                ("factorylens.series.id", "factorylens.metric", "factorylens.entity", "factorylens.domain"),
            ),
            MetricSpec("factorylens.incidents.open", U, "{incident}", "Open incidents.", Domain.RCA, F, (), None, int),
            MetricSpec(
                "factorylens.incident.cause.score",
                G,
                "1",
                "Score of each ranked cause of each open incident.",
                Domain.RCA,
                F,
                (
                    "factorylens.incident.id",
                    "factorylens.cause.rank",
                    "factorylens.entity",
                    "factorylens.domain",
                    "factorylens.metric",
                ),
            ),
            # cost and ROI, live over the service's window (the same figures Prometheus's recording
            # rules keep per hour: `factorylens cost rules`)
            MetricSpec(
                "factorylens.gpu.price",
                G,
                "{USD}/h",
                "Price of one GPU-hour from the price catalog, per model and override scope (cluster, team); "
                "the info series the cost recording rules join on.",
                Domain.COST,
                F,
                (*PRICE_SCOPE, "factorylens.price.basis", "factorylens.price.contract"),
            ),
            MetricSpec(
                "factorylens.gpu.energy.price",
                G,
                "{USD}/kWh",
                "Billable price of one kWh a GPU draws, PUE included; 0 where the GPU-hour price includes power.",
                Domain.COST,
                F,
                PRICE_SCOPE,
            ),
            MetricSpec(
                "factorylens.cost.gpu.time",
                G,
                "h",
                "GPU-hours over the service's window: allocated, active (utilization- or SM-activity-weighted), "
                "idle-but-allocated, unallocated, useful (MFU-weighted) and unpriced.",
                Domain.COST,
                F,
                (*COST_GROUP, "factorylens.cost.usage"),
            ),
            MetricSpec(
                "factorylens.cost.energy",
                G,
                "kWh",
                "Energy the GPUs drew over the service's window, allocated to jobs or not.",
                Domain.COST,
                F,
                (*COST_GROUP, "factorylens.allocation.state"),
            ),
            MetricSpec(
                "factorylens.cost.spend",
                G,
                "{USD}",
                "Spend over the service's window: GPU time, billable energy, their total, and the idle, "
                "unallocated and useful parts.",
                Domain.COST,
                F,
                (*COST_GROUP, "factorylens.cost.component"),
            ),
            MetricSpec(
                "factorylens.cost.efficiency",
                G,
                "1",
                "Useful over allocated GPU-hours (MFU where the job reports it, else utilization).",
                Domain.COST,
                F,
                ("factorylens.job.id", "factorylens.team", "factorylens.cluster.name"),
            ),
            MetricSpec(
                "factorylens.cost.unit",
                G,
                "{USD}",
                "Spend per 1k samples or per 1M tokens the job reported.",
                Domain.COST,
                F,
                ("factorylens.job.id", "factorylens.team", "factorylens.cost.output"),
            ),
            MetricSpec(
                "factorylens.processors.unmapped",
                C,
                "{point}",
                "Points the normalize processor passed through under a producer's own name (a "
                "dcgm-exporter field with no factorylens name yet), by producer and field (the first 100 "
                "fields; later ones count as 'other').",
                Domain.SELF,
                F,
                ("factorylens.producer", "factorylens.source.metric"),
                None,
                int,
            ),
        ),
    )
    + _emitted_by(
        PROCESSORS,
        (
            MetricSpec(
                "hw.gpu.engine.utilization",
                G,
                "1",
                "Fraction of time any graphics or compute engine was active (DCGM profiling "
                "GR_ENGINE_ACTIVE; works on MIG, where hw.gpu.utilization does not).",
                GPU,
                O,
                ("gpu.measurement.source",),
                "gpu",
            ),
            MetricSpec(
                "hw.gpu.xid.last",
                G,
                "{code}",
                "Code of the last XID error the driver reported, 0 for none (dcgm-exporter's "
                "DCGM_FI_DEV_XID_ERRORS); the GPU receiver counts XIDs in hw.errors instead.",
                GPU,
                F,
                (),
                "gpu",
                int,
            ),
            MetricSpec(
                "hw.gpu.io.rate",
                G,
                "By/s",
                "PCIe throughput (DCGM profiling PCIE_TX/RX_BYTES); the GPU receiver's hw.gpu.io is its integral.",
                GPU,
                F,
                ("network.io.direction",),
                "gpu",
            ),
            MetricSpec(
                "hw.gpu.interconnect.io.rate",
                G,
                "By/s",
                "NVLink throughput (DCGM profiling NVLINK_TX/RX_BYTES).",
                GPU,
                F,
                ("hw.gpu.interconnect.type", "network.io.direction"),
                "gpu",
            ),
        ),
    )
    + _emitted_by(PROCESSORS, INFERENCE_METRICS)
)

# ---------------------------------------------------------------------------------------------------
# What each metric means for ranking causes (Registry.meaning). The ranking reads this, not the name.
#
# The rules, and the choices that are not obvious:
#
# ===========================  ========================================================================
# utilization                  bad UP: a busier shared resource (GPU engine, SM, memory bandwidth, host
#                              CPU) leaves less for the workload (time-slicing, a neighbour's process,
#                              the data loader's CPUs); a *fall* is the resource waiting, a symptom of
#                              trouble elsewhere, so it is not the bad direction. can_slow: yes, except
#                              SM occupancy (high occupancy is not contention) and the fan.
# mirrors                      ``hw.gpu.idle`` and CPU ``state=idle`` are utilization seen from the other
#                              side: bad DOWN, can_slow as the utilization they mirror.
# free memory, space, swap     capacity, bad DOWN: free falling is how a resource fills up (OOM,
#                              swapping, a failed checkpoint write); free rising is harmless.
# page cache, buffers          capacity, bad DOWN, can_slow no: reclaimable; it shrinks because
#                              something else took the memory, which is the cause.
# clocks (hw.gpu.speed)        capacity, bad DOWN, can_slow no: falling clocks are how throttling (and
#                              an idle GPU) shows; the cause is the clock-event reason beside them.
# power draw, energy           saturation, bad UP, can_slow no: they follow the work; at the limit,
#                              ``hw.gpu.clock_event.active{reason=power_cap}`` is what slows.
# temperature                  saturation, bad UP, can_slow yes: a hot GPU throttles (failed cooling).
# clock-event reasons          state, bad UP. can_slow only for power_cap, hw_slowdown, sw_thermal,
#                              hw_thermal, hw_power_brake; gpu_idle (the GPU waits), clocks_setting and
#                              display_clocks (configuration, usually always on), sync_boost do not.
# hw.status                    the gauge is 1 for the current state: ok is bad DOWN (leaving ok),
#                              degraded, failed and predicted_failure bad UP; all can slow.
# hw.errors                    errors, bad UP, can slow, except corrected ECC errors (corrected, no
#                              effect on the workload) and XID 63 (a row remap recorded, applied at the
#                              next reset) and XID 92 (a high corrected-error rate: a warning). Port
#                              error types live in the network domain.
# hw.gpu.xid.last              error, bad EITHER: the last XID's code; any change is a new XID.
# hw.gpu.allocated             state, bad DOWN, can_slow no: the job's process left the GPU (a crash
#                              shows this way); a consequence, not a cause.
# traffic                      bytes, packets, operations, calls: bad EITHER, can_slow no. Volume
#                              follows the work; the ranking reads a rise as load (a neighbour's burst)
#                              on its own terms. The per-second rates of the dcgm-exporter profiling
#                              fields (hw.gpu.io.rate, hw.gpu.interconnect.io.rate) are traffic too.
# step counters                steps, samples, tokens (their rate is the default view) are throughput,
#                              bad DOWN, like the *.rate gauges; can_slow no: the workload's speed is
#                              what slows, not what slows it. So is the step duration (latency): the
#                              KPI itself. Its phases (what it is made of) can slow.
# summed operation time        system.disk.time and factorylens.storage.operation.time: the total time
#                              operations took (its rate over the operations' rate is the latency):
#                              latency, bad UP, can slow.
# data wait ratio              latency, bad UP, domain data: the data phase's share of the step, a time
#                              normalised (it adds to the step like the phase does).
# MFU, goodput                 throughput, bad DOWN, side outcome: how well the whole works.
# ECN, CNP, xmit_wait          saturation (congestion: queueing in the fabric), bad UP, can slow;
#                              out-of-sequence and sequence errors are errors (loss, retransmission).
# outbound                     collectives, checkpoints (phases and metrics), client spans, the
#                              unattributed ``other`` phase, CPU iowait (the host waiting on storage):
#                              time the entity waits on others, never its own trouble.
# self, cost, rca              never slow a workload (can_slow no); self keeps honest kinds for its own
#                              alerts, cost and rca are info.
# ===========================  ========================================================================
# ---------------------------------------------------------------------------------------------------

UTIL, SAT, ERR, LAT = SignalKind.UTILIZATION, SignalKind.SATURATION, SignalKind.ERROR, SignalKind.LATENCY
THR, TRF, CAP, STA, INF = (
    SignalKind.THROUGHPUT,
    SignalKind.TRAFFIC,
    SignalKind.CAPACITY,
    SignalKind.STATE,
    SignalKind.INFO,
)
UP, DOWN, EITHER = Direction.UP, Direction.DOWN, Direction.EITHER
OUTBOUND, OUTCOME, CALLER_VIEW = Side.OUTBOUND, Side.OUTCOME, Side.CALLER_VIEW
V = ValueMeaning

# NVIDIA XID codes in plain words (NVIDIA's XID catalogue); any other code reads "XID <code> error"
XID_NAMES = {
    13: "GPU engine exception, often a kernel fault",
    31: "GPU memory page fault (illegal address)",
    32: "corrupted push buffer stream",
    38: "driver firmware error",
    43: "GPU stopped processing",
    44: "engine fault during a context switch",
    45: "work cleaned up after an earlier error",
    48: "uncorrectable (double-bit) ECC error",
    61: "GPU micro-controller warning",
    62: "GPU micro-controller halted",
    63: "ECC page retirement or row remapping recorded",
    64: "ECC page retirement or row remapping failed",
    68: "video decoder exception",
    69: "graphics engine class error",
    74: "NVLink error",
    79: "GPU fell off the bus",
    92: "high corrected (single-bit) ECC error rate",
    94: "contained uncorrectable ECC error",
    95: "uncontained uncorrectable ECC error",
    109: "context switch timeout",
    119: "GSP firmware RPC timeout",
    120: "GSP firmware error",
}
# XIDs that record or warn and do not slow a workload by themselves
XID_HARMLESS = (63, 92)


def _xid_meanings() -> tuple[ValueMeaning, ...]:
    codes = (
        V("hw.gpu.xid.code", str(code), name=f"{name} (XID {code})", can_slow=False if code in XID_HARMLESS else None)
        for code, name in XID_NAMES.items()
    )
    return (V("hw.gpu.xid.code", ANY_VALUE, name="XID {value} error"), *codes)


_CPU_STATES = (
    V("state", "idle", bad=DOWN, name="host CPU idle"),
    V(
        "state",
        "iowait",
        kind=SAT,
        can_slow=False,
        name="host CPU waiting on I/O",
        side=OUTBOUND,
        domain=Domain.STORAGE,
    ),
    V("state", "steal", kind=SAT, name="CPU time taken by the hypervisor (steal)"),
)
_MEMORY_STATES = (
    V("state", "used", name="host memory used"),
    V("state", "free", kind=CAP, bad=DOWN, name="host memory free"),
    V("state", "available", kind=CAP, bad=DOWN, name="host memory available"),
    V("state", "cached", kind=CAP, bad=DOWN, can_slow=False, name="page cache"),
    V("state", "buffered", kind=CAP, bad=DOWN, can_slow=False, name="kernel buffers"),
    V("state", "slab_reclaimable", kind=CAP, bad=DOWN, can_slow=False, name="kernel slab memory (reclaimable)"),
    V("state", "slab_unreclaimable", name="kernel slab memory (unreclaimable)"),
)
_SWAP_STATES = (
    V("state", "used", name="swap used"),
    V("state", "free", kind=CAP, bad=DOWN, name="swap free"),
)


def _directions(what: str, attribute: str = "network.io.direction") -> tuple[ValueMeaning, ...]:
    return tuple(
        V(attribute, value, name=f"{what} {label}")
        for value, label in {
            "network.io.direction": (("receive", "received"), ("transmit", "transmitted")),
            "direction": (("read", "read"), ("write", "written"), ("receive", "received"), ("transmit", "transmitted")),
            "disk.io.direction": (("read", "read"), ("write", "written")),
        }[attribute]
    )


_CLIENT_SPANS = V("span.kind", "client", side=OUTBOUND)
_GPU_BUSY = Meaning(UTIL, UP, True, "GPU utilization")

MEANINGS: dict[str, tuple[Meaning, tuple[ValueMeaning, ...]]] = {
    # --- GPU ---
    "hw.gpu.utilization": (
        _GPU_BUSY,
        (
            V("hw.gpu.task", "general", name="GPU utilization"),
            V("hw.gpu.task", "encoder", name="GPU video encoder utilization"),
            V("hw.gpu.task", "decoder", name="GPU video decoder utilization"),
        ),
    ),
    "hw.gpu.engine.utilization": (Meaning(UTIL, UP, True, "GPU engine activity"), ()),
    "hw.gpu.sm.utilization": (Meaning(UTIL, UP, True, "GPU SM activity"), ()),
    "hw.gpu.sm.occupancy": (Meaning(UTIL, UP, False, "GPU SM occupancy"), ()),
    "hw.gpu.pipe.utilization": (
        Meaning(UTIL, UP, True, "GPU pipe activity"),
        tuple(V("hw.gpu.pipe", p, name=f"GPU {p} pipe activity") for p in ("tensor", "fp16", "fp32", "fp64")),
    ),
    "hw.gpu.memory.bandwidth.utilization": (Meaning(UTIL, UP, True, "GPU memory bandwidth used"), ()),
    "hw.gpu.memory.controller.utilization": (Meaning(UTIL, UP, True, "GPU memory controller busy"), ()),
    "hw.gpu.idle": (Meaning(UTIL, DOWN, True, "GPU idle share"), ()),
    "process.gpu.utilization": (Meaning(UTIL, UP, True, "GPU utilization of a process"), ()),
    "hw.gpu.memory.usage": (Meaning(SAT, UP, True, "GPU memory used"), ()),
    "hw.gpu.memory.utilization": (Meaning(SAT, UP, True, "GPU memory used (share)"), ()),
    "process.gpu.memory.usage": (Meaning(SAT, UP, True, "GPU memory held by a process"), ()),
    "hw.gpu.memory.free": (Meaning(CAP, DOWN, True, "GPU memory free"), ()),
    "hw.gpu.memory.limit": (Meaning(CAP, DOWN, True, "GPU memory size"), ()),
    "hw.temperature": (
        Meaning(SAT, UP, True, "GPU temperature"),
        (
            V("hw.sensor_location", "die", name="GPU die temperature"),
            V("hw.sensor_location", "memory", name="GPU memory temperature"),
        ),
    ),
    "hw.fan.speed_ratio": (Meaning(UTIL, UP, False, "GPU fan speed"), ()),
    "hw.power": (Meaning(SAT, UP, False, "GPU power draw"), ()),
    "hw.energy": (Meaning(SAT, UP, False, "GPU energy (its rate is the power draw)"), ()),
    "hw.power.limit": (Meaning(CAP, DOWN, True, "GPU power limit"), ()),
    "hw.gpu.speed": (
        Meaning(CAP, DOWN, False, "GPU clock speed"),
        (
            V("hw.gpu.clock_domain", "graphics", name="GPU graphics clock"),
            V("hw.gpu.clock_domain", "sm", name="GPU SM clock"),
            V("hw.gpu.clock_domain", "memory", name="GPU memory clock"),
        ),
    ),
    "hw.gpu.clock_event.active": (
        Meaning(STA, UP, True, "GPU clocks held down"),
        (
            V("hw.gpu.clock_event.reason", "gpu_idle", can_slow=False, name="clocks lowered while the GPU is idle"),
            V("hw.gpu.clock_event.reason", "clocks_setting", can_slow=False, name="clocks held by the clock setting"),
            V("hw.gpu.clock_event.reason", "display_clocks", can_slow=False, name="clocks held by the display setting"),
            V("hw.gpu.clock_event.reason", "sync_boost", can_slow=False, name="clocks held to match other GPUs"),
            V("hw.gpu.clock_event.reason", "power_cap", name="power capping (software power limit)"),
            V("hw.gpu.clock_event.reason", "hw_slowdown", name="hardware slowdown (heat or power)"),
            V("hw.gpu.clock_event.reason", "sw_thermal", name="thermal slowdown (software)"),
            V("hw.gpu.clock_event.reason", "hw_thermal", name="thermal slowdown (hardware)"),
            V("hw.gpu.clock_event.reason", "hw_power_brake", name="power brake slowdown (hardware)"),
        ),
    ),
    "hw.status": (
        Meaning(STA, UP, True, "GPU health state"),
        (
            V("hw.state", "ok", bad=DOWN, name="GPU healthy"),
            V("hw.state", "degraded", name="GPU degraded"),
            V("hw.state", "failed", name="GPU failed"),
            V("hw.state", "predicted_failure", name="GPU failure predicted"),
        ),
    ),
    "hw.gpu.allocated": (Meaning(STA, DOWN, False, "a process holds the GPU"), ()),
    "hw.errors": (
        Meaning(ERR, UP, True, "hardware errors"),
        (
            V("error.type", "corrected", can_slow=False, name="corrected ECC errors"),
            V("error.type", "uncorrected", name="uncorrected ECC errors"),
            V("error.type", "pcie_replay", name="PCIe replays (link retransmissions)"),
            V("error.type", "xid", name="XID errors"),
            V("error.type", "nvlink_crc_data", name="NVLink CRC errors (data)"),
            V("error.type", "nvlink_crc_flit", name="NVLink CRC errors (flits)"),
            V("error.type", "nvlink_replay", name="NVLink replays"),
            V("error.type", "nvlink_recovery", name="NVLink link recoveries"),
            V("error.type", "symbol", name="port symbol errors", domain=Domain.NETWORK),
            V("error.type", "link_downed", name="port link went down", domain=Domain.NETWORK),
            V("error.type", "link_recovery", name="port link error recoveries", domain=Domain.NETWORK),
            V("error.type", "receive", name="port receive errors", domain=Domain.NETWORK),
            V("error.type", "transmit_discard", name="port transmit discards", domain=Domain.NETWORK),
            *_xid_meanings(),
        ),
    ),
    "hw.gpu.xid.last": (Meaning(ERR, EITHER, True, "last XID code"), ()),
    "hw.gpu.io": (Meaning(TRF, EITHER, False, "PCIe traffic"), _directions("PCIe bytes")),
    "hw.gpu.io.rate": (Meaning(TRF, EITHER, False, "PCIe throughput"), _directions("PCIe bytes/s")),
    "hw.gpu.interconnect.io": (Meaning(TRF, EITHER, False, "NVLink traffic"), _directions("NVLink bytes")),
    "hw.gpu.interconnect.io.rate": (
        Meaning(TRF, EITHER, False, "NVLink throughput"),
        _directions("NVLink bytes/s"),
    ),
    # --- host ---
    "system.cpu.time": (Meaning(UTIL, UP, True, "host CPU time"), _CPU_STATES),
    "system.cpu.utilization": (Meaning(UTIL, UP, True, "host CPU utilization"), _CPU_STATES),
    "system.memory.usage": (Meaning(SAT, UP, True, "host memory"), _MEMORY_STATES),
    "system.memory.utilization": (Meaning(SAT, UP, True, "host memory (share)"), _MEMORY_STATES),
    "system.swap.usage": (Meaning(SAT, UP, True, "swap"), _SWAP_STATES),
    "system.swap.utilization": (Meaning(SAT, UP, True, "swap (share)"), _SWAP_STATES),
    # --- storage ---
    "system.disk.io": (Meaning(TRF, EITHER, False, "disk bytes"), _directions("disk bytes", "direction")),
    "system.disk.operations": (
        Meaning(TRF, EITHER, False, "disk operations"),
        _directions("disk operations", "direction"),
    ),
    "system.disk.time": (Meaning(LAT, UP, True, "disk operation time"), ()),
    "factorylens.storage.io": (
        Meaning(TRF, EITHER, False, "file system bytes"),
        _directions("file system bytes", "disk.io.direction"),
    ),
    "factorylens.storage.operations": (
        Meaning(TRF, EITHER, False, "file system operations"),
        _directions("file system operations", "disk.io.direction"),
    ),
    "factorylens.storage.operation.time": (Meaning(LAT, UP, True, "file system operation time"), ()),
    "system.filesystem.usage": (
        Meaning(SAT, UP, True, "file system space"),
        (
            V("system.filesystem.state", "used", name="file system space used"),
            V("system.filesystem.state", "free", kind=CAP, bad=DOWN, name="file system space free"),
        ),
    ),
    "system.filesystem.utilization": (Meaning(SAT, UP, True, "file system space used (share)"), ()),
    # --- network ---
    "system.network.io": (Meaning(TRF, EITHER, False, "network bytes"), _directions("network bytes", "direction")),
    "system.network.packets": (
        Meaning(TRF, EITHER, False, "network packets"),
        _directions("network packets", "direction"),
    ),
    "system.network.errors": (Meaning(ERR, UP, True, "network errors"), ()),
    "system.network.dropped_packets": (Meaning(ERR, UP, True, "dropped network packets"), ()),
    "hw.network.io": (Meaning(TRF, EITHER, False, "port traffic"), _directions("port bytes")),
    "hw.network.packets": (Meaning(TRF, EITHER, False, "port packets"), _directions("port packets")),
    "hw.network.up": (Meaning(STA, DOWN, True, "port link up"), ()),
    "hw.network.bandwidth.limit": (Meaning(CAP, DOWN, True, "port link rate"), ()),
    "factorylens.network.xmit_wait": (Meaning(SAT, UP, True, "port waiting for credits (congestion)"), ()),
    "factorylens.network.roce.events": (
        Meaning(SAT, UP, True, "RoCE congestion events"),
        (
            V("factorylens.network.roce.event", "ecn_marked", name="ECN-marked packets (congestion)"),
            V("factorylens.network.roce.event", "cnp_sent", name="congestion notifications sent"),
            V("factorylens.network.roce.event", "cnp_handled", name="congestion notifications handled"),
            V("factorylens.network.roce.event", "out_of_sequence", kind=ERR, name="out-of-sequence packets"),
            V("factorylens.network.roce.event", "packet_sequence_error", kind=ERR, name="packet sequence errors"),
        ),
    ),
    # --- training (instrumentation) ---
    "factorylens.train.step.duration": (Meaning(LAT, UP, False, "training step time"), ()),
    "factorylens.train.phase.duration": (
        Meaning(LAT, UP, True, "training phase time"),
        (
            V("factorylens.train.phase", "data", name="waiting for input data", domain=Domain.DATA),
            V("factorylens.train.phase", "h2d", name="host-to-device copies", domain=Domain.DATA),
            V("factorylens.train.phase", "forward", name="forward pass", domain=Domain.GPU),
            V("factorylens.train.phase", "backward", name="backward pass", domain=Domain.GPU),
            V("factorylens.train.phase", "optimizer", name="optimizer step", domain=Domain.GPU),
            V("factorylens.train.phase", "collective", name="collectives", side=OUTBOUND, domain=Domain.NETWORK),
            V(
                "factorylens.train.phase",
                "checkpoint.save",
                name="checkpoint save",
                side=OUTBOUND,
                domain=Domain.STORAGE,
            ),
            V(
                "factorylens.train.phase",
                "checkpoint.load",
                name="checkpoint load",
                side=OUTBOUND,
                domain=Domain.STORAGE,
            ),
            V("factorylens.train.phase", "eval", name="evaluation"),
            V("factorylens.train.phase", "other", name="step time outside any phase", side=OUTBOUND),
        ),
    ),
    "factorylens.train.steps": (Meaning(THR, DOWN, False, "training steps"), ()),
    "factorylens.train.samples": (Meaning(THR, DOWN, False, "samples trained"), ()),
    "factorylens.train.tokens": (Meaning(THR, DOWN, False, "tokens trained"), ()),
    "factorylens.train.samples.rate": (Meaning(THR, DOWN, False, "samples per second"), ()),
    "factorylens.train.tokens.rate": (Meaning(THR, DOWN, False, "tokens per second"), ()),
    "factorylens.data.wait.ratio": (Meaning(LAT, UP, True, "share of the step waiting for input data"), ()),
    "factorylens.train.mfu": (Meaning(THR, DOWN, False, "model FLOPs utilization", OUTCOME), ()),
    "factorylens.train.goodput": (Meaning(THR, DOWN, False, "goodput", OUTCOME), ()),
    "factorylens.checkpoint.io": (
        Meaning(TRF, EITHER, False, "checkpoint bytes", OUTBOUND),
        (
            V("factorylens.checkpoint.operation", "save", name="checkpoint bytes written"),
            V("factorylens.checkpoint.operation", "load", name="checkpoint bytes read"),
        ),
    ),
    "factorylens.checkpoint.duration": (
        Meaning(LAT, UP, True, "checkpoint time", OUTBOUND),
        (
            V("factorylens.checkpoint.operation", "save", name="checkpoint save time"),
            V("factorylens.checkpoint.operation", "load", name="checkpoint load time"),
        ),
    ),
    "factorylens.checkpoint.throughput": (
        Meaning(THR, DOWN, True, "checkpoint speed", OUTBOUND),
        (
            V("factorylens.checkpoint.operation", "save", name="checkpoint write speed"),
            V("factorylens.checkpoint.operation", "load", name="checkpoint read speed"),
        ),
    ),
    "factorylens.collective.io": (Meaning(TRF, EITHER, False, "collective bytes", OUTBOUND), ()),
    "factorylens.collective.duration": (Meaning(LAT, UP, True, "collective time", OUTBOUND), ()),
    # --- what the RCA service derives from spans and log records ---
    "factorylens.span.calls": (
        Meaning(TRF, EITHER, False, "calls"),
        (_CLIENT_SPANS, V("span.kind", "server", name="requests served")),
    ),
    # a span's duration and failure include its callees': how the request went (the KPI's kin), while
    # the service's own share is its exclusive time and the errors that began in it (see below)
    "factorylens.span.errors": (
        Meaning(ERR, UP, True, "failed calls", OUTCOME),
        (V("span.kind", "client", side=OUTBOUND, name="failed outgoing calls"),),
    ),
    "factorylens.span.duration": (
        Meaning(LAT, UP, True, "operation time", OUTCOME),
        (
            V("span.kind", "client", side=OUTBOUND, name="time waiting on a callee"),
            V("span.kind", "server", name="request latency"),
        ),
    ),
    "factorylens.span.self_duration": (
        Meaning(LAT, UP, True, "own time"),
        (V("span.kind", "client", side=OUTBOUND, name="time on the wire to a callee"),),
    ),
    "factorylens.span.error_origins": (Meaning(ERR, UP, True, "errors begun here"), ()),
    "factorylens.span.edge.calls": (Meaning(TRF, EITHER, False, "calls received"), ()),
    "factorylens.span.edge.errors": (Meaning(ERR, UP, True, "failed calls seen by callers", CALLER_VIEW), ()),
    "factorylens.span.edge.duration": (Meaning(LAT, UP, True, "latency seen by callers", CALLER_VIEW), ()),
    "factorylens.events": (
        Meaning(TRF, EITHER, False, "events"),
        (
            V("event.name", "hw.gpu.xid", kind=ERR, bad=UP, can_slow=True, name="XID events", domain=Domain.GPU),
            V("event.name", "factorylens.incident", kind=INF, name="incident events", domain=Domain.RCA),
        ),
    ),
    # a service's log lines: a volume like its calls, except warnings and errors. A new template is
    # new behaviour (its count was 0) whatever its severity, but only warning and error lines are the
    # service's trouble: info lines follow the traffic. An error template can mean failed work;
    # warnings alone are too common to blame for a KPI breaking. The count per severity sums the
    # templates: it corroborates, and the template that rose (whose text the explanation quotes) is
    # what can slow the workload
    "factorylens.log.records": (
        Meaning(TRF, EITHER, False, "log records"),
        (
            V("log.severity", "WARN", kind=ERR, bad=UP, name="warning log records"),
            V("log.severity", "ERROR", kind=ERR, bad=UP, name="error log records"),
            V("log.severity", "FATAL", kind=ERR, bad=UP, name="fatal log records"),
        ),
    ),
    "factorylens.log.templates": (
        Meaning(TRF, EITHER, False, "log lines of one template"),
        (
            V("log.severity", "WARN", kind=ERR, bad=UP, name="warning log lines of one template"),
            V("log.severity", "ERROR", kind=ERR, bad=UP, can_slow=True, name="error log lines of one template"),
            V("log.severity", "FATAL", kind=ERR, bad=UP, can_slow=True, name="fatal log lines of one template"),
        ),
    ),
    # --- the agents' and services' own health: never slows a workload ---
    "factorylens.receiver.scrape.errors": (Meaning(ERR, UP, False, "failed NVML calls"), ()),
    "factorylens.receiver.devices": (Meaning(CAP, DOWN, False, "GPUs the receiver sees"), ()),
    "factorylens.receiver.scrape.duration": (Meaning(LAT, UP, False, "receiver scrape time"), ()),
    "factorylens.receiver.source.up": (Meaning(STA, DOWN, False, "node source reading"), ()),
    "factorylens.train.telemetry.dropped": (Meaning(ERR, UP, False, "training telemetry dropped"), ()),
    "factorylens.inference.telemetry.dropped": (Meaning(ERR, UP, False, "serving telemetry dropped"), ()),
    "factorylens.processors.unmapped": (Meaning(INF, EITHER, False, "points under a producer's own name"), ()),
    "factorylens.rca.ingest.accepted": (Meaning(TRF, EITHER, False, "items the RCA service stored"), ()),
    "factorylens.rca.ingest.rejected": (Meaning(ERR, UP, False, "items the RCA service refused"), ()),
    "factorylens.rca.requests.refused": (Meaning(ERR, UP, False, "export requests refused"), ()),
    "factorylens.rca.queue.depth": (Meaning(SAT, UP, False, "export requests in flight"), ()),
    "factorylens.rca.wal.size": (Meaning(SAT, UP, False, "write-ahead log size"), ()),
    "factorylens.rca.wal.lag": (Meaning(SAT, UP, False, "write-ahead log bytes not yet synced"), ()),
    "factorylens.rca.snapshot.age": (Meaning(LAT, UP, False, "time since the last snapshot"), ()),
    "factorylens.rca.store.series": (Meaning(SAT, UP, False, "series stored"), ()),
    "factorylens.rca.store.points": (Meaning(SAT, UP, False, "points stored"), ()),
    "factorylens.rca.store.memory": (Meaning(SAT, UP, False, "store memory"), ()),
    "factorylens.rca.memory.resident": (Meaning(SAT, UP, False, "RCA service memory"), ()),
    "factorylens.rca.memory.limit": (Meaning(CAP, DOWN, False, "RCA service memory limit"), ()),
    "factorylens.rca.attributes.truncated": (Meaning(ERR, UP, False, "attributes truncated"), ()),
    "factorylens.rca.wal.quarantined": (Meaning(ERR, UP, False, "write-ahead log records quarantined"), ()),
    "factorylens.rca.recovery.lost_records": (Meaning(ERR, UP, False, "records lost at start-up"), ()),
    "factorylens.rca.snapshot.failures": (Meaning(ERR, UP, False, "failed snapshots"), ()),
    "factorylens.rca.analysis.skipped": (Meaning(ERR, UP, False, "series left out of analysis"), ()),
    "factorylens.rca.remote_write.samples": (
        Meaning(TRF, EITHER, False, "samples forwarded to remote-write"),
        (
            V("factorylens.rca.outcome", "sent", name="samples sent to remote-write"),
            V("factorylens.rca.outcome", "dropped", kind=ERR, bad=UP, name="samples dropped before remote-write"),
            V("factorylens.rca.outcome", "failed", kind=ERR, bad=UP, name="samples remote-write rejected"),
        ),
    ),
    "factorylens.rca.remote_write.queue.depth": (Meaning(SAT, UP, False, "samples waiting for remote-write"), ()),
    "factorylens.rca.remote_write.retries": (Meaning(ERR, UP, False, "remote-write retries"), ()),
    # --- LLM serving ---
    # what a request experiences (its latency and phases) is the outcome; a server's queue, cache and
    # batch fill up when it serves slower or is asked more (occupancy: consequences); requests and
    # tokens are its load
    "gen_ai.server.time_to_first_token": (Meaning(LAT, UP, False, "time to first token", OUTCOME), ()),
    "gen_ai.server.time_per_output_token": (Meaning(LAT, UP, False, "time per output token", OUTCOME), ()),
    "gen_ai.server.request.duration": (Meaning(LAT, UP, False, "inference request duration", OUTCOME), ()),
    "gen_ai.client.token.usage": (Meaning(TRF, EITHER, False, "tokens per inference request"), ()),
    "factorylens.inference.requests.running": (Meaning(SAT, UP, False, "inference requests running"), ()),
    "factorylens.inference.requests.waiting": (Meaning(SAT, UP, True, "inference requests queued"), ()),
    "factorylens.inference.kv_cache.usage": (Meaning(SAT, UP, True, "KV cache used"), ()),
    "factorylens.inference.preemptions": (Meaning(ERR, UP, True, "inference requests preempted"), ()),
    "factorylens.inference.batch.size": (Meaning(SAT, UP, False, "inference batch size"), ()),
    "factorylens.inference.requests.finished": (
        Meaning(TRF, EITHER, False, "inference requests finished"),
        (
            V("factorylens.inference.finish_reason", "abort", kind=ERR, bad=UP, name="inference requests aborted"),
            V("factorylens.inference.finish_reason", "error", kind=ERR, bad=UP, name="inference requests failed"),
        ),
    ),
    "factorylens.inference.tokens": (
        Meaning(TRF, EITHER, False, "tokens processed"),
        (
            V("gen_ai.token.type", "input", name="prompt tokens processed"),
            V("gen_ai.token.type", "output", name="tokens generated"),
        ),
    ),
    "factorylens.inference.request.queue_time": (Meaning(LAT, UP, True, "inference queue time", OUTCOME), ()),
    "factorylens.inference.request.prefill_time": (Meaning(LAT, UP, True, "prefill time", OUTCOME), ()),
    "factorylens.inference.request.decode_time": (Meaning(LAT, UP, True, "decode time", OUTCOME), ()),
    "factorylens.inference.request.inference_time": (Meaning(LAT, UP, True, "inference time", OUTCOME), ()),
    "factorylens.inference.inter_token_latency": (Meaning(LAT, UP, False, "inter-token latency", OUTCOME), ()),
    "factorylens.inference.request.time": (Meaning(LAT, UP, False, "summed inference request time", OUTCOME), ()),
    "factorylens.inference.queue.time": (Meaning(LAT, UP, True, "summed inference queue time", OUTCOME), ()),
    "factorylens.inference.compute.time": (
        Meaning(LAT, UP, True, "summed inference compute time", OUTCOME),
        (
            V("factorylens.inference.compute.stage", "input", name="summed request input handling time"),
            V("factorylens.inference.compute.stage", "output", name="summed response output handling time"),
        ),
    ),
    "factorylens.inference.requests.failed": (
        Meaning(ERR, UP, False, "inference requests failed"),
        (V("error.type", "*", name="inference requests failed ({value})"),),
    ),
    "factorylens.inference.batch.forward_time": (
        Meaning(LAT, UP, True, "batch forward time"),
        (
            V("factorylens.inference.phase", "prefill", name="prefill batch forward time"),
            V("factorylens.inference.phase", "decode", name="decode batch forward time"),
        ),
    ),
    "factorylens.inference.prefix_cache.queries": (Meaning(TRF, EITHER, False, "prefix cache lookups (tokens)"), ()),
    "factorylens.inference.prefix_cache.hits": (Meaning(TRF, EITHER, False, "prefix cache hits (tokens)"), ()),
    # fewer prompt tokens found cached: more prefill work per request, so a later first token
    "factorylens.inference.prefix_cache.hit_ratio": (Meaning(CAP, DOWN, True, "prefix cache hit ratio"), ()),
    "factorylens.inference.requests.retracted": (
        Meaning(SAT, UP, True, "inference requests retracted (KV cache full)"),
        (),
    ),
    # --- our own findings ---
    "factorylens.anomaly.score": (Meaning(INF, EITHER, False, "anomaly score"), ()),
    "factorylens.baseline.predictability": (Meaning(INF, EITHER, False, "baseline predictability"), ()),
    "factorylens.baseline.lower": (Meaning(INF, EITHER, False, "baseline band, lower edge"), ()),
    "factorylens.baseline.upper": (Meaning(INF, EITHER, False, "baseline band, upper edge"), ()),
    "factorylens.incidents.open": (Meaning(INF, EITHER, False, "open incidents"), ()),
    "factorylens.incident.cause.score": (Meaning(INF, EITHER, False, "cause score"), ()),
    # --- cost ---
    "factorylens.gpu.allocation.time": (Meaning(INF, EITHER, False, "GPU time by allocation"), ()),
    "factorylens.gpu.active.time": (Meaning(INF, EITHER, False, "activity-weighted GPU time"), ()),
    "factorylens.gpu.allocation.energy": (Meaning(INF, EITHER, False, "GPU energy by allocation"), ()),
    "factorylens.gpu.price": (Meaning(INF, EITHER, False, "GPU-hour price"), ()),
    "factorylens.gpu.energy.price": (Meaning(INF, EITHER, False, "energy price"), ()),
    "factorylens.cost.gpu.time": (Meaning(INF, EITHER, False, "GPU-hours"), ()),
    "factorylens.cost.energy": (Meaning(INF, EITHER, False, "GPU energy"), ()),
    "factorylens.cost.spend": (Meaning(INF, EITHER, False, "spend"), ()),
    "factorylens.cost.efficiency": (Meaning(INF, EITHER, False, "cost efficiency"), ()),
    "factorylens.cost.unit": (Meaning(INF, EITHER, False, "unit cost"), ()),
}


def _with_meaning(metric: MetricSpec) -> MetricSpec:
    try:
        meaning, values = MEANINGS[metric.name]
    except KeyError:
        return metric
    return replace(metric, meaning=meaning, value_meanings=values)


def _with_meanings(metrics: tuple[MetricSpec, ...]) -> tuple[MetricSpec, ...]:
    unknown = set(MEANINGS) - {m.name for m in metrics}
    if unknown:
        raise ValueError(f"meanings for metrics the registry does not declare: {sorted(unknown)}")
    return tuple(_with_meaning(m) for m in metrics)


METRICS = _with_meanings(METRICS)

EVENTS = (
    EventSpec(
        "hw.gpu.xid",
        "An XID error reported by the driver (one log record per event).",
        GPU,
        ("error.type", "hw.gpu.xid.code"),
        "gpu",
    ),
    EventSpec(
        "factorylens.incident",
        "An incident opened, changed its ranked causes, or resolved; the body is "
        "the summary with the top cause's explanation.",
        Domain.RCA,
        (
            "factorylens.incident.id",
            "factorylens.incident.state",
            "factorylens.incident.change",
            "factorylens.entity",
            "factorylens.domain",
            "factorylens.metric",
            "factorylens.series.id",
        ),
    ),
)

REGISTRY = Registry(
    metrics=METRICS,
    attributes=ATTRIBUTES,
    attribute_groups=ATTRIBUTE_GROUPS,
    resource_attributes=RESOURCE_ATTRIBUTES,
    events=EVENTS,
)
