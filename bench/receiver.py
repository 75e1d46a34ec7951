"""GPU receiver cost: CPU per GPU per scrape (NVML excluded), NVML calls per scrape, peak memory.

Each size runs in its own process (so peak RSS is that size's own) over a simulated host of N
GPUs behind the real pipeline: NVML backend → scraper (registry checks) → OTel SDK collection.
Time spent inside NVML calls (here: the simulator) is measured per call and subtracted; calls are
counted and must equal the number of supported fields. A no-op Python call is timed in the same
run as the machine-speed baseline.

The node's other layers (host, storage, fabric) are measured once per node: each source's read,
and a whole agent round with every layer and its OTel collection.

Usage: python bench/receiver.py [--sizes 8 64 512] [--scrapes 20]
Last line: {"bench": "receiver", "gpus": N, "cpu_ms_per_gpu_scrape": x, "nvml_calls_per_gpu_scrape": x,
            "fields_per_gpu": x, "peak_rss_mb": x, "node_layers_cpu_ms_per_scrape": x} for the largest size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


class TimedNvml:
    """Wraps a pynvml-compatible module: counts calls and the thread CPU time spent inside them."""

    def __init__(self, module) -> None:
        self._module = module
        self.calls = 0
        self.cpu_ns = 0

    def __getattr__(self, name):
        target = getattr(self._module, name)
        if not name.startswith("nvml") or not callable(target):
            return target

        def timed(*args, **kwargs):
            self.calls += 1
            start = time.thread_time_ns()
            try:
                return target(*args, **kwargs)
            finally:
                self.cpu_ns += time.thread_time_ns() - start

        return timed


def measure(gpus: int, scrapes: int) -> dict:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from factorylens.receivers.gpu.jobs import StaticJobResolver
    from factorylens.receivers.gpu.nvml import NvmlBackend
    from factorylens.receivers.gpu.receiver import GpuReceiver, HostPipeline, tune_gc_for_agent
    from factorylens.receivers.gpu.scraper import GpuScraper
    from factorylens.receivers.gpu.sim import SimulatedCluster, SimulatedNvml
    from factorylens.telemetry import make_meter_provider, make_resource

    tune_gc_for_agent()  # as `factorylens gpu` does
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    cluster = SimulatedCluster(1, gpus, "H100", clock=clock, start_time=1_700_000_000.0)
    host = cluster.hosts[0]
    nvml = TimedNvml(SimulatedNvml(host))
    backend = NvmlBackend(nvml, StaticJobResolver(cluster.jobs_by_pid(host)), clock=clock)
    reader = InMemoryMetricReader()
    resource_ = make_resource({"host.name": host.name}, "bench")
    pipeline = HostPipeline(
        host.name, dict(resource_.attributes), GpuScraper(backend), make_meter_provider(resource_, [reader])
    )
    receiver = GpuReceiver([pipeline], 10.0)
    pipeline.scraper.start()
    for _ in range(3):  # warm up: capability probes, GPM needs two samples
        now[0] += 10.0
        receiver.scrape_once()
        reader.get_metrics_data()
    total_ns = nvml_ns = calls = points = 0
    for _ in range(scrapes):
        now[0] += 10.0
        nvml.cpu_ns = nvml.calls = 0
        start = time.thread_time_ns()
        receiver.scrape_once()
        data = reader.get_metrics_data()
        total_ns += time.thread_time_ns() - start
        nvml_ns += nvml.cpu_ns
        calls += nvml.calls
        points += sum(
            len(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        )
    fields = backend.supported_fields()
    receiver.shutdown()
    return {
        "gpus": gpus,
        "cpu_ms_per_gpu_scrape": (total_ns - nvml_ns) / scrapes / gpus / 1e6,
        "nvml_cpu_ms_per_gpu_scrape": nvml_ns / scrapes / gpus / 1e6,
        "nvml_calls_per_gpu_scrape": calls / scrapes / gpus,
        "fields_per_gpu": fields / gpus,
        "points_per_gpu": points / scrapes / gpus,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def measure_node(scrapes: int) -> dict:
    """The node's other layers on one node: each source's read, and the whole agent round (GPU layer
    empty: no driver here) with the OTel collection of everything, host layer (psutil) included."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from factorylens.receivers.gpu import GpuReceiverConfig, create_receiver

    fixtures = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "node"
    # this machine's /proc for the host layer, with the fixture's mounts and storage statistics
    proc = Path(tempfile.mkdtemp(prefix="factorylens-bench-proc-")) / "proc"
    shutil.copytree(fixtures / "proc", proc)
    for name in os.listdir("/proc"):
        if (not name.isdigit() or name == str(os.getpid())) and not (proc / name).exists():
            (proc / name).symlink_to(Path("/proc") / name)
    reader = InMemoryMetricReader()
    config = GpuReceiverConfig(
        backend="nvml", otlp="off", proc_root=str(proc), sys_root=str(fixtures / "sys"), discovery_retry_interval_s=3600
    )
    receiver, _ = create_receiver(config, metric_readers=lambda host: [reader])
    pipeline = receiver.pipelines[0]
    receiver.scrape_once()
    reader.get_metrics_data()
    per_source = {source.name: 0 for source in pipeline.sources}
    points = {source.name: 0 for source in pipeline.sources}
    total_ns = collected = 0
    for _ in range(scrapes):
        for source in pipeline.sources:
            start = time.thread_time_ns()
            read = source.read()
            per_source[source.name] += time.thread_time_ns() - start
            points[source.name] = sum(len(v) for v in read.values())
        start = time.thread_time_ns()
        receiver.scrape_once()
        data = reader.get_metrics_data()
        total_ns += time.thread_time_ns() - start
        collected = sum(
            len(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        )
    receiver.shutdown()
    shutil.rmtree(proc.parent, ignore_errors=True)
    if pipeline.source_up.get("host") != 1:
        raise RuntimeError("the host layer did not start: the measurement would leave it out")
    return {
        "node_cpu_ms_per_scrape": total_ns / scrapes / 1e6,
        "points_per_scrape": collected,
        "sources": {name: {"read_ms": ns / scrapes / 1e6, "points": points[name]} for name, ns in per_source.items()},
    }


def noop_call_ns() -> float:
    def f(a):
        return a

    n = 1_000_000
    start = time.perf_counter_ns()
    for i in range(n):
        f(i)
    return (time.perf_counter_ns() - start) / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 64, 512])
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--node-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.scrapes)))
        return 0
    if args.node_worker:
        print(json.dumps(measure_node(args.scrapes)))
        return 0
    baseline = noop_call_ns()
    rows = []
    for size in args.sizes:
        print(f"measuring {size} GPUs ({args.scrapes} scrapes)...", file=sys.stderr, flush=True)
        out = subprocess.run(
            [sys.executable, __file__, "--worker", str(size), "--scrapes", str(args.scrapes)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"baseline: a no-op Python call costs {baseline:.0f} ns on this machine (same run)")
    header = (
        f"{'GPUs':>5} {'CPU ms/GPU/scrape':>18} {'in no-op calls':>15} {'NVML ms/GPU':>12} "
        f"{'NVML calls/GPU':>15} {'fields/GPU':>11} {'points/GPU':>11} {'peak RSS MB':>12}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['gpus']:>5} {r['cpu_ms_per_gpu_scrape']:>18.3f} {r['cpu_ms_per_gpu_scrape'] * 1e6 / baseline:>15.0f} "
            f"{r['nvml_cpu_ms_per_gpu_scrape']:>12.3f} {r['nvml_calls_per_gpu_scrape']:>15.2f} "
            f"{r['fields_per_gpu']:>11.2f} {r['points_per_gpu']:>11.1f} {r['peak_rss_mb']:>12.1f}"
        )
    print("measuring the host, storage and fabric layers of one node...", file=sys.stderr, flush=True)
    out = subprocess.run(
        [sys.executable, __file__, "--node-worker", "--scrapes", str(args.scrapes)],
        capture_output=True,
        text=True,
        check=True,
    )
    node = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        "\nnode layers (storage and fabric read from tests/fixtures/node: 4 mounts, 2 IB ports; host "
        "layer: psutil on this machine)"
    )
    print(f"{'layer':<10} {'read CPU ms/scrape':>19} {'points':>7}")
    for name, row in node["sources"].items():
        print(f"{name:<10} {row['read_ms']:>19.3f} {row['points']:>7}")
    print(
        f"{'all':<10} {node['node_cpu_ms_per_scrape']:>19.3f} {node['points_per_scrape']:>7}  "
        f"(one agent round with every layer, OTel collection and host layer included)"
    )
    last = rows[-1]
    target_met = last["cpu_ms_per_gpu_scrape"] < 1.0 and last["nvml_calls_per_gpu_scrape"] == last["fields_per_gpu"]
    print(f"target (< 1 ms CPU per GPU per scrape, calls == supported fields): {'met' if target_met else 'NOT met'}")
    print(
        json.dumps(
            {
                "bench": "receiver",
                "gpus": last["gpus"],
                "cpu_ms_per_gpu_scrape": round(last["cpu_ms_per_gpu_scrape"], 4),
                "nvml_calls_per_gpu_scrape": round(last["nvml_calls_per_gpu_scrape"], 3),
                "fields_per_gpu": round(last["fields_per_gpu"], 3),
                "peak_rss_mb": round(last["peak_rss_mb"], 1),
                "node_layers_cpu_ms_per_scrape": round(node["node_cpu_ms_per_scrape"], 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
