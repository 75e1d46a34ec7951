"""Other producers' names → ours: the tables the normalize processor, the collector's ``transform``
statements (``factorylens otel-config``) and the docs all read.

Producers: NVIDIA dcgm-exporter (``DCGM_FI_*`` field names, as the collector's ``prometheus``
receiver turns a scrape into OTLP), Prometheus node-exporter, the collector's ``hostmetrics``
receiver, OpenLIT's GPU collector, and the LLM serving engines vLLM (V1 and V0 names), SGLang,
TGI and Triton (inference-serving.md). Field names, units and labels: ``shared/research``
(gpu-telemetry.md section 3, stack-anchors.md sections 1.2-1.5); the fixtures in
``tests/fixtures/`` are upstream output these tables are tested against.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from factorylens.registry._catalog import CLOCK_EVENT_REASONS

MIB = 1024 * 1024


class Producer(str, enum.Enum):
    """Who emitted a series under a name that is not ours."""

    DCGM_EXPORTER = "dcgm-exporter"
    NODE_EXPORTER = "node-exporter"
    HOSTMETRICS = "hostmetrics"
    OPENLIT = "openlit"
    VLLM = "vllm"
    SGLANG = "sglang"
    TGI = "tgi"
    TRITON = "triton"


@dataclass(frozen=True)
class MetricTranslation:
    """One source metric → one registry metric.

    ``scale`` multiplies every value (% → ratio is 0.01, MiB → By 1048576, mJ → J 0.001, MHz → Hz
    1e6); ``attributes`` are added to every point (which engine, which sensor, which error class);
    with ``bits``, the value is a bitmask and becomes one point per bit, 1 while the bit is set, with
    the bit's name in ``bit_attribute``.
    """

    producer: Producer
    source: str
    target: str
    scale: float = 1.0
    attributes: tuple[tuple[str, str], ...] = ()
    bits: tuple[str, ...] = ()
    bit_attribute: str = ""


@dataclass(frozen=True)
class DerivedTranslation:
    """``target`` = ``minuend`` − ``subtrahend``, joined on the points' attributes and timestamp: the
    used bytes of memory or a file system, which node-exporter reports only as total and free."""

    producer: Producer
    target: str
    minuend: str
    subtrahend: str
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AttributeTranslation:
    """A label or attribute renamed to ours. ``to_resource`` moves it to the resource (the host a
    series is from); ``integer`` parses it (``"3"`` or ``"cpu3"`` → 3); an empty ``target`` drops
    it; ``metrics`` limits the rename to targets starting with one of them (hostmetrics' ``state`` means a CPU state on
    ``system.cpu.time`` and free/used on ``system.filesystem.usage``)."""

    producer: Producer
    source: str
    target: str
    to_resource: bool = False
    integer: bool = False
    metrics: tuple[str, ...] = ()


D, N, H, O = Producer.DCGM_EXPORTER, Producer.NODE_EXPORTER, Producer.HOSTMETRICS, Producer.OPENLIT  # noqa: E741
VL, SG, TG, TR = Producer.VLLM, Producer.SGLANG, Producer.TGI, Producer.TRITON
_INPUT, _OUTPUT = (("gen_ai.token.type", "input"),), (("gen_ai.token.type", "output"),)

_DCGM_PROF = (("gpu.measurement.source", "dcgm"),)
_CLOCK_REASON = "hw.gpu.clock_event.reason"

METRIC_TRANSLATIONS: tuple[MetricTranslation, ...] = (
    # dcgm-exporter default counters (etc/default-counters.csv) and the DCP/profiling fields
    MetricTranslation(D, "DCGM_FI_DEV_GPU_UTIL", "hw.gpu.utilization", 0.01, (("hw.gpu.task", "general"),)),
    MetricTranslation(D, "DCGM_FI_DEV_ENC_UTIL", "hw.gpu.utilization", 0.01, (("hw.gpu.task", "encoder"),)),
    MetricTranslation(D, "DCGM_FI_DEV_DEC_UTIL", "hw.gpu.utilization", 0.01, (("hw.gpu.task", "decoder"),)),
    MetricTranslation(D, "DCGM_FI_DEV_MEM_COPY_UTIL", "hw.gpu.memory.controller.utilization", 0.01),
    MetricTranslation(D, "DCGM_FI_DEV_FB_USED", "hw.gpu.memory.usage", MIB),
    MetricTranslation(D, "DCGM_FI_DEV_FB_FREE", "hw.gpu.memory.free", MIB),
    MetricTranslation(D, "DCGM_FI_DEV_FB_TOTAL", "hw.gpu.memory.limit", MIB),
    MetricTranslation(D, "DCGM_FI_DEV_GPU_TEMP", "hw.temperature", 1.0, (("hw.sensor_location", "die"),)),
    MetricTranslation(D, "DCGM_FI_DEV_MEMORY_TEMP", "hw.temperature", 1.0, (("hw.sensor_location", "memory"),)),
    MetricTranslation(D, "DCGM_FI_DEV_POWER_USAGE", "hw.power"),
    MetricTranslation(D, "DCGM_FI_DEV_POWER_MGMT_LIMIT", "hw.power.limit"),
    MetricTranslation(D, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "hw.energy", 0.001),
    MetricTranslation(D, "DCGM_FI_DEV_SM_CLOCK", "hw.gpu.speed", 1e6, (("hw.gpu.clock_domain", "sm"),)),
    MetricTranslation(D, "DCGM_FI_DEV_MEM_CLOCK", "hw.gpu.speed", 1e6, (("hw.gpu.clock_domain", "memory"),)),
    MetricTranslation(D, "DCGM_FI_DEV_FAN_SPEED", "hw.fan.speed_ratio", 0.01),
    # the throttle bitmask (NVML's clocks-event reasons, bit i = CLOCK_EVENT_REASONS[i]); older name second
    MetricTranslation(
        D, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "hw.gpu.clock_event.active", 1.0, (), CLOCK_EVENT_REASONS, _CLOCK_REASON
    ),
    MetricTranslation(
        D,
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
        "hw.gpu.clock_event.active",
        1.0,
        (),
        CLOCK_EVENT_REASONS,
        _CLOCK_REASON,
    ),
    MetricTranslation(D, "DCGM_FI_DEV_XID_ERRORS", "hw.gpu.xid.last"),
    MetricTranslation(D, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "hw.errors", 1.0, (("error.type", "pcie_replay"),)),
    MetricTranslation(D, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "hw.errors", 1.0, (("error.type", "corrected"),)),
    MetricTranslation(D, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "hw.errors", 1.0, (("error.type", "uncorrected"),)),
    MetricTranslation(
        D, "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "hw.errors", 1.0, (("error.type", "nvlink_crc_flit"),)
    ),
    MetricTranslation(
        D, "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", "hw.errors", 1.0, (("error.type", "nvlink_crc_data"),)
    ),
    MetricTranslation(
        D, "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", "hw.errors", 1.0, (("error.type", "nvlink_replay"),)
    ),
    MetricTranslation(
        D, "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", "hw.errors", 1.0, (("error.type", "nvlink_recovery"),)
    ),
    MetricTranslation(D, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "hw.gpu.engine.utilization", 1.0, _DCGM_PROF),
    MetricTranslation(D, "DCGM_FI_PROF_SM_ACTIVE", "hw.gpu.sm.utilization", 1.0, _DCGM_PROF),
    MetricTranslation(D, "DCGM_FI_PROF_SM_OCCUPANCY", "hw.gpu.sm.occupancy", 1.0, _DCGM_PROF),
    MetricTranslation(D, "DCGM_FI_PROF_DRAM_ACTIVE", "hw.gpu.memory.bandwidth.utilization", 1.0, _DCGM_PROF),
    MetricTranslation(
        D, "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "hw.gpu.pipe.utilization", 1.0, (("hw.gpu.pipe", "tensor"), *_DCGM_PROF)
    ),
    MetricTranslation(
        D, "DCGM_FI_PROF_PIPE_FP64_ACTIVE", "hw.gpu.pipe.utilization", 1.0, (("hw.gpu.pipe", "fp64"), *_DCGM_PROF)
    ),
    MetricTranslation(
        D, "DCGM_FI_PROF_PIPE_FP32_ACTIVE", "hw.gpu.pipe.utilization", 1.0, (("hw.gpu.pipe", "fp32"), *_DCGM_PROF)
    ),
    MetricTranslation(
        D, "DCGM_FI_PROF_PIPE_FP16_ACTIVE", "hw.gpu.pipe.utilization", 1.0, (("hw.gpu.pipe", "fp16"), *_DCGM_PROF)
    ),
    MetricTranslation(D, "DCGM_FI_PROF_PCIE_TX_BYTES", "hw.gpu.io.rate", 1.0, (("network.io.direction", "transmit"),)),
    MetricTranslation(D, "DCGM_FI_PROF_PCIE_RX_BYTES", "hw.gpu.io.rate", 1.0, (("network.io.direction", "receive"),)),
    MetricTranslation(
        D,
        "DCGM_FI_PROF_NVLINK_TX_BYTES",
        "hw.gpu.interconnect.io.rate",
        1.0,
        (("hw.gpu.interconnect.type", "nvlink"), ("network.io.direction", "transmit")),
    ),
    MetricTranslation(
        D,
        "DCGM_FI_PROF_NVLINK_RX_BYTES",
        "hw.gpu.interconnect.io.rate",
        1.0,
        (("hw.gpu.interconnect.type", "nvlink"), ("network.io.direction", "receive")),
    ),
    # node-exporter (the names as scraped; the `_total`-less form the receiver may produce also matches)
    MetricTranslation(N, "node_cpu_seconds_total", "system.cpu.time"),
    # free as psutil (our host layer) counts it: MemFree; used = MemTotal - MemAvailable (derived below)
    MetricTranslation(N, "node_memory_MemFree_bytes", "system.memory.usage", 1.0, (("state", "free"),)),
    MetricTranslation(N, "node_disk_read_bytes_total", "system.disk.io", 1.0, (("direction", "read"),)),
    MetricTranslation(N, "node_disk_written_bytes_total", "system.disk.io", 1.0, (("direction", "write"),)),
    MetricTranslation(N, "node_disk_reads_completed_total", "system.disk.operations", 1.0, (("direction", "read"),)),
    MetricTranslation(N, "node_disk_writes_completed_total", "system.disk.operations", 1.0, (("direction", "write"),)),
    MetricTranslation(N, "node_disk_read_time_seconds_total", "system.disk.time", 1.0, (("direction", "read"),)),
    MetricTranslation(N, "node_disk_write_time_seconds_total", "system.disk.time", 1.0, (("direction", "write"),)),
    MetricTranslation(N, "node_network_receive_bytes_total", "system.network.io", 1.0, (("direction", "receive"),)),
    MetricTranslation(N, "node_network_transmit_bytes_total", "system.network.io", 1.0, (("direction", "transmit"),)),
    MetricTranslation(
        N, "node_network_receive_packets_total", "system.network.packets", 1.0, (("direction", "receive"),)
    ),
    MetricTranslation(
        N, "node_network_transmit_packets_total", "system.network.packets", 1.0, (("direction", "transmit"),)
    ),
    MetricTranslation(N, "node_network_receive_errs_total", "system.network.errors", 1.0, (("direction", "receive"),)),
    MetricTranslation(
        N, "node_network_transmit_errs_total", "system.network.errors", 1.0, (("direction", "transmit"),)
    ),
    MetricTranslation(
        N, "node_network_receive_drop_total", "system.network.dropped_packets", 1.0, (("direction", "receive"),)
    ),
    MetricTranslation(
        N, "node_network_transmit_drop_total", "system.network.dropped_packets", 1.0, (("direction", "transmit"),)
    ),
    # free as our storage layer counts it: what non-root users may still write (f_bavail)
    MetricTranslation(
        N, "node_filesystem_avail_bytes", "system.filesystem.usage", 1.0, (("system.filesystem.state", "free"),)
    ),
    # hostmetrics names that differ from the host layer's (opentelemetry-instrumentation-system-metrics)
    MetricTranslation(H, "system.disk.operation_time", "system.disk.time"),
    MetricTranslation(H, "system.network.dropped", "system.network.dropped_packets"),
    # OpenLIT GPU collector: the names before its 0.0.8 rename (current names are already ours)
    MetricTranslation(O, "hw.gpu.power.draw", "hw.power"),
    MetricTranslation(O, "hw.gpu.energy.consumed", "hw.energy"),
    MetricTranslation(O, "hw.gpu.temperature", "hw.temperature", 1.0, (("hw.sensor_location", "die"),)),
    # vLLM V1 (vllm/v1/metrics/loggers.py); histograms arrive assembled by the receiver, under the family name
    MetricTranslation(VL, "vllm:num_requests_running", "factorylens.inference.requests.running"),
    MetricTranslation(VL, "vllm:num_requests_waiting", "factorylens.inference.requests.waiting"),
    MetricTranslation(VL, "vllm:kv_cache_usage_perc", "factorylens.inference.kv_cache.usage"),  # 0-1 despite _perc
    MetricTranslation(VL, "vllm:num_preemptions_total", "factorylens.inference.preemptions"),
    MetricTranslation(VL, "vllm:prompt_tokens_total", "factorylens.inference.tokens", 1.0, _INPUT),
    MetricTranslation(VL, "vllm:generation_tokens_total", "factorylens.inference.tokens", 1.0, _OUTPUT),
    MetricTranslation(VL, "vllm:request_success_total", "factorylens.inference.requests.finished"),
    MetricTranslation(VL, "vllm:time_to_first_token_seconds", "gen_ai.server.time_to_first_token"),
    # OTel's TPOT is per request, (duration - TTFT) / (tokens - 1): vLLM's request TPOT, not its ITL
    MetricTranslation(VL, "vllm:request_time_per_output_token_seconds", "gen_ai.server.time_per_output_token"),
    MetricTranslation(VL, "vllm:e2e_request_latency_seconds", "gen_ai.server.request.duration"),
    MetricTranslation(VL, "vllm:inter_token_latency_seconds", "factorylens.inference.inter_token_latency"),
    MetricTranslation(VL, "vllm:request_queue_time_seconds", "factorylens.inference.request.queue_time"),
    MetricTranslation(VL, "vllm:request_prefill_time_seconds", "factorylens.inference.request.prefill_time"),
    MetricTranslation(VL, "vllm:request_decode_time_seconds", "factorylens.inference.request.decode_time"),
    MetricTranslation(VL, "vllm:request_inference_time_seconds", "factorylens.inference.request.inference_time"),
    MetricTranslation(VL, "vllm:request_prompt_tokens", "gen_ai.client.token.usage", 1.0, _INPUT),
    MetricTranslation(VL, "vllm:request_generation_tokens", "gen_ai.client.token.usage", 1.0, _OUTPUT),
    MetricTranslation(VL, "vllm:prefix_cache_queries_total", "factorylens.inference.prefix_cache.queries"),
    MetricTranslation(VL, "vllm:prefix_cache_hits_total", "factorylens.inference.prefix_cache.hits"),
    # vLLM V0 names (deprecated, then hidden, then removed: a fleet mixes versions, so both are read)
    MetricTranslation(VL, "vllm:gpu_cache_usage_perc", "factorylens.inference.kv_cache.usage"),
    MetricTranslation(VL, "vllm:time_per_output_token_seconds", "factorylens.inference.inter_token_latency"),
    MetricTranslation(VL, "vllm:time_in_queue_requests", "factorylens.inference.request.queue_time"),
    MetricTranslation(VL, "vllm:gpu_prefix_cache_queries_total", "factorylens.inference.prefix_cache.queries"),
    MetricTranslation(VL, "vllm:gpu_prefix_cache_hits_total", "factorylens.inference.prefix_cache.hits"),
    # SGLang (python/sglang/srt/metrics/collector.py; with --enable-metrics)
    MetricTranslation(SG, "sglang:num_running_reqs", "factorylens.inference.requests.running"),
    MetricTranslation(SG, "sglang:num_queue_reqs", "factorylens.inference.requests.waiting"),
    MetricTranslation(SG, "sglang:token_usage", "factorylens.inference.kv_cache.usage"),
    MetricTranslation(SG, "sglang:cache_hit_rate", "factorylens.inference.prefix_cache.hit_ratio"),
    MetricTranslation(SG, "sglang:num_retracted_reqs", "factorylens.inference.requests.retracted"),
    MetricTranslation(SG, "sglang:prompt_tokens_total", "factorylens.inference.tokens", 1.0, _INPUT),
    MetricTranslation(SG, "sglang:generation_tokens_total", "factorylens.inference.tokens", 1.0, _OUTPUT),
    MetricTranslation(SG, "sglang:time_to_first_token_seconds", "gen_ai.server.time_to_first_token"),
    MetricTranslation(SG, "sglang:e2e_request_latency_seconds", "gen_ai.server.request.duration"),
    MetricTranslation(SG, "sglang:inter_token_latency_seconds", "factorylens.inference.inter_token_latency"),
    MetricTranslation(SG, "sglang:queue_time_seconds", "factorylens.inference.request.queue_time"),
    # TGI (docs/source/reference/metrics.md); no TTFT or KV usage there
    MetricTranslation(TG, "tgi_queue_size", "factorylens.inference.requests.waiting"),
    MetricTranslation(TG, "tgi_batch_current_size", "factorylens.inference.batch.size"),
    MetricTranslation(TG, "tgi_request_queue_duration", "factorylens.inference.request.queue_time"),
    MetricTranslation(TG, "tgi_request_mean_time_per_token_duration", "gen_ai.server.time_per_output_token"),
    MetricTranslation(TG, "tgi_request_duration", "gen_ai.server.request.duration"),
    MetricTranslation(TG, "tgi_request_input_length", "gen_ai.client.token.usage", 1.0, _INPUT),
    MetricTranslation(TG, "tgi_request_generated_tokens", "gen_ai.client.token.usage", 1.0, _OUTPUT),
    MetricTranslation(TG, "tgi_batch_forward_duration", "factorylens.inference.batch.forward_time"),  # by method
    # Triton (docs/user_guide/metrics.md): cumulative microsecond counters, summed time in seconds
    MetricTranslation(TR, "nv_inference_pending_request_count", "factorylens.inference.requests.waiting"),
    MetricTranslation(TR, "nv_inference_request_duration_us", "factorylens.inference.request.time", 1e-6),
    MetricTranslation(TR, "nv_inference_queue_duration_us", "factorylens.inference.queue.time", 1e-6),
    MetricTranslation(TR, "nv_inference_first_response_histogram_ms", "gen_ai.server.time_to_first_token", 0.001),
    MetricTranslation(TR, "nv_inference_request_success", "factorylens.inference.requests.finished"),
    MetricTranslation(TR, "nv_inference_request_failure", "factorylens.inference.requests.failed"),  # by reason
    *(
        MetricTranslation(
            TR,
            f"nv_inference_compute_{stage}_duration_us",
            "factorylens.inference.compute.time",
            1e-6,
            (("factorylens.inference.compute.stage", stage),),
        )
        for stage in ("input", "infer", "output")
    ),
)

DERIVED_TRANSLATIONS: tuple[DerivedTranslation, ...] = (
    DerivedTranslation(
        N, "system.memory.usage", "node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes", (("state", "used"),)
    ),
    DerivedTranslation(
        N,
        "system.filesystem.usage",
        "node_filesystem_size_bytes",
        "node_filesystem_free_bytes",
        (("system.filesystem.state", "used"),),
    ),
)

_FILESYSTEM = ("system.filesystem.",)
_CPU = ("system.cpu.",)  # a rename applies to these targets only: `state` and `mode` mean other things elsewhere

ATTRIBUTE_TRANSLATIONS: tuple[AttributeTranslation, ...] = (
    AttributeTranslation(D, "UUID", "hw.id"),
    AttributeTranslation(D, "gpu", "gpu.index", integer=True),
    AttributeTranslation(D, "modelName", "hw.model"),
    AttributeTranslation(D, "pci_bus_id", "gpu.pci_address"),
    AttributeTranslation(D, "Hostname", "host.name", to_resource=True),  # up to 4.8.2
    AttributeTranslation(D, "hostname", "host.name", to_resource=True),  # 4.8.3 on (dcgm-exporter PR #655)
    AttributeTranslation(D, "DCGM_FI_DRIVER_VERSION", "hw.driver_version"),
    AttributeTranslation(D, "GPU_I_PROFILE", "gpu.mig.profile"),
    AttributeTranslation(D, "GPU_I_ID", "gpu.mig.instance_id", integer=True),
    AttributeTranslation(D, "pod", "k8s.pod.name"),
    AttributeTranslation(D, "namespace", "k8s.namespace.name"),
    AttributeTranslation(D, "container", "k8s.container.name"),
    AttributeTranslation(D, "device", ""),  # nvidiaN: gpu.index says it, and `device` names disks and NICs here
    AttributeTranslation(N, "cpu", "cpu", integer=True, metrics=_CPU),
    AttributeTranslation(N, "mode", "state", metrics=_CPU),
    AttributeTranslation(N, "mountpoint", "system.filesystem.mountpoint", metrics=_FILESYSTEM),
    AttributeTranslation(N, "fstype", "system.filesystem.type", metrics=_FILESYSTEM),
    AttributeTranslation(N, "device", "", metrics=_FILESYSTEM),
    AttributeTranslation(H, "cpu", "cpu", integer=True, metrics=_CPU),
    AttributeTranslation(H, "cpu.logical_number", "cpu", integer=True, metrics=_CPU),
    AttributeTranslation(H, "cpu.mode", "state", metrics=_CPU),
    AttributeTranslation(H, "system.memory.state", "state", metrics=("system.memory.",)),
    AttributeTranslation(H, "system.device", "device", metrics=("system.disk.",)),
    AttributeTranslation(H, "disk.io.direction", "direction", metrics=("system.disk.",)),
    AttributeTranslation(H, "network.io.direction", "direction", metrics=("system.network.",)),
    AttributeTranslation(H, "network.interface.name", "device", metrics=("system.network.",)),
    AttributeTranslation(H, "mountpoint", "system.filesystem.mountpoint", metrics=_FILESYSTEM),
    AttributeTranslation(H, "type", "system.filesystem.type", metrics=_FILESYSTEM),
    AttributeTranslation(H, "state", "system.filesystem.state", metrics=_FILESYSTEM),
    AttributeTranslation(H, "device", "", metrics=_FILESYSTEM),
    AttributeTranslation(H, "mode", "", metrics=_FILESYSTEM),
    AttributeTranslation(O, "gpu.parent.uuid", "hw.parent"),
    AttributeTranslation(VL, "model_name", "gen_ai.request.model"),
    AttributeTranslation(VL, "engine", "factorylens.inference.engine"),
    AttributeTranslation(VL, "finished_reason", "factorylens.inference.finish_reason"),
    AttributeTranslation(SG, "model_name", "gen_ai.request.model"),
    AttributeTranslation(SG, "engine_type", "factorylens.inference.engine_role"),
    AttributeTranslation(TG, "method", "factorylens.inference.phase"),
    AttributeTranslation(TR, "model", "gen_ai.request.model"),
    AttributeTranslation(TR, "version", "factorylens.inference.model_version"),
    AttributeTranslation(TR, "reason", "error.type"),
)

# attributes every translated point of a producer carries (what a GPU is, for joins with ours)
PRODUCER_ATTRIBUTES: dict[Producer, tuple[tuple[str, str], ...]] = {
    D: (("hw.type", "gpu"), ("hw.vendor", "nvidia")),
    VL: (("gen_ai.provider.name", "vllm"),),
    SG: (("gen_ai.provider.name", "sglang"),),
    TG: (("gen_ai.provider.name", "tgi"),),
    TR: (("gen_ai.provider.name", "triton"),),
}

# instrumentation scope names that identify a producer whose names overlap ours (hostmetrics
# emits system.*, OpenLIT hw.*): matched as substrings of the scope name
PRODUCER_SCOPES: tuple[tuple[str, Producer], ...] = (
    ("hostmetricsreceiver", H),
    ("openlit", O),
    ("otel-gpu-collector", O),
)
# the names dcgm-exporter's fields start with: an unknown one passes through and is counted
DCGM_PREFIXES = ("DCGM_FI_", "DCGM_EXP_")
