"""The processors' cost: normalize + enrich of dcgm-exporter batches, and of traffic already under our
names next to the store ingesting the same requests.

Method. Requests are built with the generated ``opentelemetry.proto`` messages before anything is
timed, in this process, on one core:

- *dcgm*: what the collector's prometheus receiver makes of one dcgm-exporter scrape per host (the
  default counters plus the DCP fields and the throttle bitmask, labels ``gpu``, ``UUID``,
  ``pci_bus_id``, ``device``, ``modelName``, ``Hostname``, ``DCGM_FI_DRIVER_VERSION``, and one
  field we have no name for), ``--hosts`` hosts × 8 GPUs per request; enrichment with a mapping of
  every GPU to a job and team. Each timed call gets its own copy (copies made beforehand).
- *vllm*: what the prometheus receiver makes of one vLLM V1 ``/metrics`` scrape per server (every
  ``vllm:`` series the registry translates: gauges, counters by finish reason and token type, and the
  latency and token histograms with vLLM's own buckets; labels ``model_name`` and ``engine``),
  ``--servers`` servers per request, normalized to the GenAI and ``factorylens.inference`` names.
- *ours*: the same GPUs under our names (``hw.*`` with the receiver's identity attributes) plus
  the host layer, through the processors, and through ``SeriesStore.ingest_metrics`` (the store
  alone, without the WAL and gRPC that the service adds, so the ratio is an upper bound).

Usage: python bench/processors.py [--hosts 16] [--servers 16] [--seconds 3]
Last line: {"bench": "processors", "points_per_s": x, "vllm_points_per_s": x, "ours_points_per_s": x,
"ours_cost_ratio": x, ...}
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from factorylens.processors import (
    Assignment,
    EnrichConfig,
    MetricsProcessors,
    normalize_metrics,
)
from factorylens.registry import METRIC_TRANSLATIONS, Producer

GPUS_PER_HOST = 8
CUMULATIVE = 2  # AGGREGATION_TEMPORALITY_CUMULATIVE
PROMETHEUS_SCOPE = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver"
OUR_GPU_METRICS = (
    "hw.gpu.utilization",
    "hw.gpu.memory.usage",
    "hw.gpu.memory.utilization",
    "hw.temperature",
    "hw.power",
    "hw.energy",
    "hw.gpu.speed",
    "hw.errors",
    "hw.gpu.io",
    "hw.status",
)
OUR_HOST_METRICS = ("system.cpu.utilization", "system.memory.usage", "system.network.io", "system.disk.io")


def gpu_uuid(host: int, gpu: int) -> str:
    return f"GPU-{host:04x}{gpu:04x}-0000-0000-0000-000000000000"


def dcgm_request(hosts: int, now_ns: int) -> ExportMetricsServiceRequest:
    fields = [t.source for t in METRIC_TRANSLATIONS if t.producer is Producer.DCGM_EXPORTER]
    fields = [f for f in fields if f != "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"] + ["DCGM_FI_DEV_VGPU_LICENSE_STATUS"]
    request = ExportMetricsServiceRequest()
    for host in range(hosts):
        resource_metrics = request.resource_metrics.add()
        for key, value in (("service.name", "dcgm-exporter"), ("service.instance.id", f"10.0.{host}.1:9400")):
            resource_metrics.resource.attributes.add(key=key).value.string_value = value
        scope = resource_metrics.scope_metrics.add()
        scope.scope.name = PROMETHEUS_SCOPE
        for name in fields:
            metric = scope.metrics.add(name=name)
            for gpu in range(GPUS_PER_HOST):
                point = metric.gauge.data_points.add(time_unix_nano=now_ns, as_double=42.0)
                for key, value in (
                    ("gpu", str(gpu)),
                    ("UUID", gpu_uuid(host, gpu)),
                    ("pci_bus_id", f"00000000:{gpu + 16:02X}:00.0"),
                    ("device", f"nvidia{gpu}"),
                    ("modelName", "NVIDIA H100 80GB HBM3"),
                    ("hostname", f"gpu-node-{host}"),
                    ("DCGM_FI_DRIVER_VERSION", "550.54.15"),
                ):
                    point.attributes.add(key=key).value.string_value = value
    return request


# vLLM V1's histogram buckets (vllm/v1/metrics/loggers.py, see ../shared/research/inference-serving.md)
VLLM_TTFT_BOUNDS = (
    *(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640),
    2560,
)
VLLM_TOKEN_TIME_BOUNDS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80)
VLLM_REQUEST_BOUNDS = (0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680)
VLLM_TOKEN_BOUNDS = tuple(float(2**i) for i in range(15))
VLLM_FINISH_REASONS = ("stop", "length", "abort")
VLLM_OLD_NAMES = (
    "vllm:gpu_cache_usage_perc",
    "vllm:time_in_queue_requests",
    "vllm:time_per_output_token_seconds",
    "vllm:gpu_prefix_cache_queries_total",
    "vllm:gpu_prefix_cache_hits_total",
)


def vllm_request(servers: int, now_ns: int) -> ExportMetricsServiceRequest:
    """One V1 scrape per server, as the collector's prometheus receiver hands it on."""
    request = ExportMetricsServiceRequest()
    sources = [
        t.source
        for t in METRIC_TRANSLATIONS
        if t.producer is Producer.VLLM
        # the V0 and deprecated names: a current server exports the V1 ones
        and t.source not in VLLM_OLD_NAMES
    ]
    for server in range(servers):
        resource_metrics = request.resource_metrics.add()
        for key, value in (  # the receiver's resource (CreateResource in its prom_to_otlp.go)
            ("service.name", "vllm"),
            ("server.address", f"10.1.{server}.1"),
            ("service.instance.id", f"10.1.{server}.1:8000"),
            ("server.port", "8000"),
            ("url.scheme", "http"),
        ):
            resource_metrics.resource.attributes.add(key=key).value.string_value = value
        scope = resource_metrics.scope_metrics.add()
        scope.scope.name = PROMETHEUS_SCOPE
        for name in sources:
            metric = scope.metrics.add(name=name)
            labels = [("model_name", "meta-llama/Llama-3.1-8B-Instruct"), ("engine", "0")]
            if name.endswith("_total"):
                metric.sum.aggregation_temporality = CUMULATIVE
                metric.sum.is_monotonic = True
                reasons = VLLM_FINISH_REASONS if name == "vllm:request_success_total" else ("",)
                for reason in reasons:
                    point = metric.sum.data_points.add(time_unix_nano=now_ns, start_time_unix_nano=now_ns - 10**12)
                    point.as_double = 1234.0
                    for key, value in labels + ([("finished_reason", reason)] if reason else []):
                        point.attributes.add(key=key).value.string_value = value
            elif name.endswith(("_seconds", "_tokens")):
                bounds = (
                    VLLM_TTFT_BOUNDS
                    if "first_token" in name
                    else VLLM_TOKEN_TIME_BOUNDS
                    if "token_" in name and name.endswith("_seconds")
                    else VLLM_TOKEN_BOUNDS
                    if name.endswith("_tokens")
                    else VLLM_REQUEST_BOUNDS
                )
                metric.histogram.aggregation_temporality = CUMULATIVE
                point = metric.histogram.data_points.add(time_unix_nano=now_ns, start_time_unix_nano=now_ns - 10**12)
                point.explicit_bounds.extend(bounds)
                point.bucket_counts.extend([3] * (len(bounds) + 1))
                point.count, point.sum = 3 * (len(bounds) + 1), 42.0
                for key, value in labels:
                    point.attributes.add(key=key).value.string_value = value
            else:
                point = metric.gauge.data_points.add(time_unix_nano=now_ns, as_double=0.5)
                for key, value in labels:
                    point.attributes.add(key=key).value.string_value = value
    return request


def our_request(hosts: int, now_ns: int) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    for host in range(hosts):
        resource_metrics = request.resource_metrics.add()
        for key, value in (("service.name", "factorylens-gpu-receiver"), ("host.name", f"gpu-node-{host}")):
            resource_metrics.resource.attributes.add(key=key).value.string_value = value
        scope = resource_metrics.scope_metrics.add()
        scope.scope.name = "factorylens.receivers.gpu"
        for name in OUR_GPU_METRICS:
            metric = scope.metrics.add(name=name)
            for gpu in range(GPUS_PER_HOST):
                point = metric.gauge.data_points.add(time_unix_nano=now_ns, as_double=0.5)
                for key, value in (("hw.id", gpu_uuid(host, gpu)), ("hw.type", "gpu"), ("hw.vendor", "nvidia")):
                    point.attributes.add(key=key).value.string_value = value
                point.attributes.add(key="gpu.index").value.int_value = gpu
        for name in OUR_HOST_METRICS:
            metric = scope.metrics.add(name=name)
            for state in ("used", "free"):
                point = metric.gauge.data_points.add(time_unix_nano=now_ns, as_double=1.0)
                point.attributes.add(key="state").value.string_value = state
    return request


def count_points(request: ExportMetricsServiceRequest) -> int:
    return sum(
        len(getattr(m, m.WhichOneof("data")).data_points)
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    )


def rate(make: Callable[[int], ExportMetricsServiceRequest], work: Callable[[Any], Any], seconds: float) -> float:
    """Points per second of ``work`` over fresh requests from ``make(i)`` (built before timing)."""
    batch = [make(i) for i in range(8)]
    points = count_points(batch[0])
    done, spent = 0, 0.0
    while spent < seconds:
        copies = [make(i) for i in range(8)] if done else batch
        start = time.perf_counter()
        for request in copies:
            work(request)
        spent += time.perf_counter() - start
        done += len(copies)
    return done * points / spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=16, help="hosts per request (8 GPUs each)")
    parser.add_argument("--servers", type=int, default=16, help="vLLM servers per request")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from factorylens.rca_service.store import SeriesStore

    now = time.time_ns()
    mapping = EnrichConfig(
        gpus={gpu_uuid(h, g): Assignment(f"job-{h // 4}", "team-a") for h in range(args.hosts) for g in range(8)}
    )
    processors = MetricsProcessors(mapping).process  # what the RCA service runs on every request

    dcgm_template = dcgm_request(args.hosts, now).SerializeToString()
    dcgm_rate = rate(lambda i: ExportMetricsServiceRequest.FromString(dcgm_template), processors, args.seconds)
    normalize_rate = rate(lambda i: ExportMetricsServiceRequest.FromString(dcgm_template), normalize_metrics, 1.0)
    vllm_template = vllm_request(args.servers, now).SerializeToString()
    vllm_rate = rate(lambda i: ExportMetricsServiceRequest.FromString(vllm_template), processors, args.seconds)

    ours_template = our_request(args.hosts, now).SerializeToString()
    ours_rate = rate(
        lambda i: ExportMetricsServiceRequest.FromString(ours_template), MetricsProcessors().process, args.seconds
    )
    store = SeriesStore()
    step = [0]

    def shifted(_: int) -> ExportMetricsServiceRequest:
        step[0] += 1
        request = ExportMetricsServiceRequest.FromString(ours_template)
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    for p in m.gauge.data_points:
                        p.time_unix_nano = now + step[0] * 10**9
        return request

    store_rate = rate(shifted, store.ingest_metrics, args.seconds)
    ratio = store_rate / ours_rate
    rows = [
        ("dcgm batches: normalize + enrich", dcgm_rate),
        ("dcgm batches: normalize only", normalize_rate),
        ("vLLM scrapes: normalize + enrich (target >= 200k)", vllm_rate),
        ("our names: normalize + enrich", ours_rate),
        ("our names: store ingest (same requests)", store_rate),
    ]
    print(f"{'what':50s} {'points/s':>12s}")
    for what, value in rows:
        print(f"{what:50s} {value:12,.0f}")
    print(f"processors' cost on our names: {ratio:.1%} of the store's ingest time (target <= 10%)")
    print(
        json.dumps(
            {
                "bench": "processors",
                "points_per_s": round(dcgm_rate),
                "normalize_points_per_s": round(normalize_rate),
                "vllm_points_per_s": round(vllm_rate),
                "points_per_request_vllm": count_points(vllm_request(args.servers, now)),
                "ours_points_per_s": round(ours_rate),
                "store_points_per_s": round(store_rate),
                "ours_cost_ratio": round(ratio, 4),
                "hosts": args.hosts,
                "points_per_request_dcgm": count_points(dcgm_request(args.hosts, now)),
            }
        )
    )


if __name__ == "__main__":
    main()
