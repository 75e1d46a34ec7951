"""The processors' cost: normalize + enrich of dcgm-exporter batches, and of traffic already under our
names next to the store ingesting the same requests.

Method. Requests are built with the generated ``opentelemetry.proto`` messages before anything is
timed, in this process, on one core:

- *dcgm*: what the collector's prometheus receiver makes of one dcgm-exporter scrape per host (the
  default counters plus the DCP fields and the throttle bitmask, labels ``gpu``, ``UUID``,
  ``pci_bus_id``, ``device``, ``modelName``, ``Hostname``, ``DCGM_FI_DRIVER_VERSION``, and one
  field we have no name for), ``--hosts`` hosts × 8 GPUs per request; enrichment with a mapping of
  every GPU to a job and team. Each timed call gets its own copy (copies made beforehand).
- *ours*: the same GPUs under our names (``hw.*`` with the receiver's identity attributes) plus
  the host layer, through the processors, and through ``SeriesStore.ingest_metrics`` (the store
  alone, without the WAL and gRPC that the service adds, so the ratio is an upper bound).

Usage: python bench/processors.py [--hosts 16] [--seconds 3]
Last line: {"bench": "processors", "points_per_s": x, "ours_points_per_s": x, "ours_cost_ratio": x, ...}
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
        ("our names: normalize + enrich", ours_rate),
        ("our names: store ingest (same requests)", store_rate),
    ]
    print(f"{'what':44s} {'points/s':>12s}")
    for what, value in rows:
        print(f"{what:44s} {value:12,.0f}")
    print(f"processors' cost on our names: {ratio:.1%} of the store's ingest time (target <= 10%)")
    print(
        json.dumps(
            {
                "bench": "processors",
                "points_per_s": round(dcgm_rate),
                "normalize_points_per_s": round(normalize_rate),
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
