"""RCA service soak: kill -9 under write load loses no acknowledged point; OTLP export latency while
10,000+ series exist and the analysis runs.

Method. Durability: ``factorylens rca serve`` (``--fsync always``, a snapshot every second and 1 MiB
WAL segments, so kills land in snapshots, rotations and appends alike) runs in a subprocess on a
temporary data directory. ``--writers`` threads export metrics through raw gRPC stubs, each its own
metric ``soak.w<N>`` with ``--series-per-writer`` series (attribute ``series``), every request
``--points-per-series`` new timestamps per series, 1 s apart in a window that starts 23 h ago (inside
the retention, never ahead of the clock). A point counts as acknowledged only when its request got
OK with no partial-success rejection; failed requests are not retried (their timestamps are skipped).
After a random ``--kill-min-s``..``--kill-max-s`` of load (once the cycle has acknowledgements) the
service gets SIGKILL and is restarted on the same data directory; ``--cycles`` times. At the end
every series is listed through factorylens.rca.v1 ListSeries (paged with page_size/page_token/
next_page_token when the stubs have them, else one call with a limit) and read with QuerySeries
(view raw); lost = acknowledged (series, timestamp) pairs not there.

Latency: a fresh service with ``--analysis-interval`` small gets ``--latency-series`` series (hosts x
GPUs x metrics, 30 points of history each), then for ``--latency-seconds`` the current point of
every series each second in requests of ``--latency-batch`` points from two threads, while the
analysis runs; each request's latency is recorded; p50/p99 against a p99 target of 200 ms.
Whether the analysis ran is read from /metrics (series with an anomaly score).

Usage: python bench/soak.py [--cycles 20] [--writers 4] [--series-per-writer 25] [--latency-series 10000]
                            [--latency-seconds 30] [--analysis-interval-s 1] [--skip-latency]
Last line: {"bench": "soak", "cycles": n, "acknowledged": n, "lost": n, "export_p99_ms": x}
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from factorylens.rca_service.api.v1 import rca_pb2, rca_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ (already first when run as a script)
from fuzz import Service, free_port  # the service subprocess with its memory watchdog (bench/fuzz.py)

METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
NS = 1_000_000_000
WINDOW_START_S = 23 * 3600  # the writers' timestamps start this long ago, 1 s apart
EXPORT_TIMEOUT_S = 10.0
TARGET_P99_MS = 200.0
QUERY_CHUNK = 5  # series per QuerySeries call (responses stay far below the 64 MiB message limit)
HAS_PAGING = "page_token" in rca_pb2.ListSeriesRequest.DESCRIPTOR.fields_by_name
LATENCY_METRICS = (
    "hw.gpu.utilization",
    "hw.gpu.memory.usage",
    "hw.temperature",
    "hw.power",
    "hw.gpu.sm.utilization",
    "hw.gpu.memory.bandwidth.utilization",
    "hw.gpu.speed",
    "hw.fan.speed_ratio",
    "hw.energy",
    "hw.errors",
)
LATENCY_KPI = "factorylens.train.step.duration"


def _request(metric: str, resource: dict[str, str], points: list[tuple[dict[str, str], int, float]]) -> bytes:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    for k, v in resource.items():
        rm.resource.attributes.add(key=k).value.string_value = v
    data_points = rm.scope_metrics.add().metrics.add(name=metric, unit="1").gauge.data_points
    for attributes, ts, value in points:
        dp = data_points.add(time_unix_nano=ts, as_double=value)
        for k, v in attributes.items():
            dp.attributes.add(key=k).value.string_value = v
    return request.SerializeToString()


# ---- durability under kill -9 ---------------------------------------------------------------------
@dataclass
class Writer:
    """One writer's metric: every series shares the timestamps; ``acked`` holds acknowledged seqs."""

    index: int
    series: int
    points_per_series: int
    base_ns: int
    next_seq: int = 0
    acked: set[int] = field(default_factory=set)
    failed_requests: int = 0
    partial_requests: int = 0
    requests: int = 0

    @property
    def metric(self) -> str:
        return f"soak.w{self.index}"

    def ts(self, seq: int) -> int:
        return self.base_ns + seq * NS

    def run(self, address: str, stop: threading.Event, cycle_acks: list[int]) -> None:
        channel = grpc.insecure_channel(address)
        send = channel.unary_unary(
            METRICS_METHOD, request_serializer=None, response_deserializer=ExportMetricsServiceResponse.FromString
        )
        resource = {"service.name": "soak", "host.name": f"soak-{self.index}"}
        try:
            while not stop.is_set():
                seqs = list(range(self.next_seq, self.next_seq + self.points_per_series))
                self.next_seq += self.points_per_series
                if self.ts(seqs[-1]) > time.time_ns() - 60 * NS:
                    raise RuntimeError("the writer's timestamps caught up with the clock: lower the load")
                payload = _request(
                    self.metric,
                    resource,
                    [({"series": str(s)}, self.ts(q), float(q)) for s in range(self.series) for q in seqs],
                )
                self.requests += 1
                try:
                    response = send(payload, timeout=EXPORT_TIMEOUT_S)
                except grpc.RpcError:
                    self.failed_requests += 1  # killed mid-request, or refused: not acknowledged
                    stop.wait(0.01)
                    continue
                if response.partial_success.rejected_data_points:
                    self.partial_requests += 1  # some points refused: which ones is unknown, count none
                    continue
                self.acked.update(seqs)
                cycle_acks[0] += 1
        finally:
            channel.close()


def list_series(stub: rca_pb2_grpc.RcaServiceStub, metric: str) -> list[rca_pb2.SeriesInfo]:
    """Every series of ``metric``: paged where the API has paging, else one call with a big limit."""
    found: list[rca_pb2.SeriesInfo] = []
    if HAS_PAGING:
        token = ""
        while True:
            response = stub.ListSeries(
                rca_pb2.ListSeriesRequest(metric=metric, page_size=1000, page_token=token), timeout=60
            )
            found.extend(response.series)
            token = response.next_page_token
            if not token:
                if response.truncated:
                    raise RuntimeError("ListSeries says truncated but gives no next_page_token (an older server?)")
                return found
    response = stub.ListSeries(rca_pb2.ListSeriesRequest(metric=metric, limit=100_000), timeout=60)
    if response.truncated:
        raise RuntimeError(f"ListSeries {metric}: truncated and this API has no paging")
    return list(response.series)


def stored_timestamps(stub: rca_pb2_grpc.RcaServiceStub, metric: str) -> dict[str, set[int]]:
    """``series`` attribute -> stored timestamps, for every series of ``metric``."""
    infos = list_series(stub, metric)
    out: dict[str, set[int]] = {}
    for i in range(0, len(infos), QUERY_CHUNK):
        chunk = infos[i : i + QUERY_CHUNK]
        response = stub.QuerySeries(
            rca_pb2.QuerySeriesRequest(series_ids=[s.id for s in chunk], view="raw"), timeout=120
        )
        for info, data in zip(chunk, response.series, strict=True):
            name = {a.key: a.value for a in info.attributes}.get("series", "?")
            out.setdefault(name, set()).update(data.time_unix_nano)
    return out


@dataclass
class CycleStats:
    start_s: float
    load_s: float
    acked_requests: int


def durability(args: argparse.Namespace, workdir: Path, log) -> tuple[list[Writer], list[CycleStats], dict]:
    rng = random.Random(args.seed)
    base = (time.time_ns() // NS - WINDOW_START_S) * NS
    writers = [Writer(w, args.series_per_writer, args.points_per_series, base) for w in range(args.writers)]
    service = Service(
        workdir,
        analysis_interval_s=args.durability_analysis_interval_s,
        fsync=args.fsync,
        extra_args=["--snapshot-interval", "1", "--wal-segment-mb", "1"],
        rss_limit_mb=16384,
    )
    cycles: list[CycleStats] = []
    try:
        for cycle in range(args.cycles):
            began = time.monotonic()
            if not service.start(fresh=cycle == 0):
                raise RuntimeError(f"cycle {cycle}: the service did not come back: {service.death()}")
            started = time.monotonic() - began
            address = service.address
            stop = threading.Event()
            acks = [0]
            threads = [threading.Thread(target=w.run, args=(address, stop, acks), daemon=True) for w in writers]
            load_began = time.monotonic()
            for t in threads:
                t.start()
            deadline = time.monotonic() + 60
            while acks[0] < args.writers and time.monotonic() < deadline:  # some acknowledged this cycle
                time.sleep(0.01)
            if acks[0] == 0:
                raise RuntimeError(f"cycle {cycle}: nothing acknowledged in 60 s; log: {service.log_tail(5)}")
            time.sleep(rng.uniform(args.kill_min_s, args.kill_max_s))  # a random moment under load
            service.proc.kill()  # SIGKILL
            service.proc.wait()
            load = time.monotonic() - load_began
            stop.set()
            for t in threads:
                t.join(EXPORT_TIMEOUT_S + 5)
            cycles.append(CycleStats(started, load, acks[0]))
            log(
                f"cycle {cycle + 1}/{args.cycles}: up in {started:.1f}s, killed after {load:.2f}s of load, "
                f"{acks[0]} requests acknowledged"
            )
        began = time.monotonic()
        if not service.start(fresh=False):
            raise RuntimeError(f"final restart failed: {service.death()}")
        restart_s = time.monotonic() - began
        stub = rca_pb2_grpc.RcaServiceStub(service.channel)
        health = stub.Health(rca_pb2.HealthRequest(), timeout=10)
        stored = {w.metric: stored_timestamps(stub, w.metric) for w in writers}
        info = {
            "final_restart_s": restart_s,
            "series": health.series,
            "points": health.points,
            "wal_bytes": health.wal_bytes,
            "stored": stored,
            "data_dir": str(service.data_dir),
        }
    finally:
        service.stop()
    return writers, cycles, info


# ---- latency with many series and the analysis running --------------------------------------------
@dataclass
class LatencyResult:
    latencies_ms: list[float]
    series: int
    populate_s: float
    failed: int
    scored_series: int
    server_cpu_share: float
    refused: int


def latency(args: argparse.Namespace, workdir: Path, log) -> LatencyResult:
    metrics_port = free_port()
    service = Service(
        workdir / "latency",
        analysis_interval_s=args.analysis_interval_s,
        fsync=args.fsync,
        extra_args=["--metrics-listen", f"127.0.0.1:{metrics_port}"],
        rss_limit_mb=16384,
    )
    (workdir / "latency").mkdir(exist_ok=True)
    per_metric = max(1, args.latency_series // (len(LATENCY_METRICS)))
    hosts = max(1, per_metric // 50)
    gpus = [(f"soak-node-{h:03d}", g) for h in range(hosts) for g in range(per_metric // hosts)]
    batch = max(1, args.latency_batch)
    rng = random.Random(args.seed)

    def requests(ts: int) -> list[bytes]:
        """The current point of every series at ``ts``: per host, all its metrics in requests of up to
        ``batch`` points (as a collector batches one node's scrape)."""
        out = []
        by_host: dict[str, list[int]] = {}
        for host, g in gpus:
            by_host.setdefault(host, []).append(g)
        for host, indexes in by_host.items():
            request = ExportMetricsServiceRequest()
            rm = request.resource_metrics.add()
            for k, v in (("host.name", host), ("service.name", "soak-gpu")):
                rm.resource.attributes.add(key=k).value.string_value = v
            sm = rm.scope_metrics.add()
            points = 0
            for metric in LATENCY_METRICS:
                data_points = sm.metrics.add(name=metric, unit="1").gauge.data_points
                for g in indexes:
                    if points == batch:
                        out.append(request.SerializeToString())
                        del sm.metrics[:]
                        data_points = sm.metrics.add(name=metric, unit="1").gauge.data_points
                        points = 0
                    dp = data_points.add(time_unix_nano=ts, as_double=rng.uniform(40, 60))
                    dp.attributes.add(key="hw.id").value.string_value = f"GPU-{host}-{g}"
                    dp.attributes.add(key="gpu.index").value.string_value = str(g)
                    points += 1
            if points:
                out.append(request.SerializeToString())
        out.append(
            _request(
                LATENCY_KPI,
                {"service.name": "trainer", "factorylens.job.id": "soak"},
                [({"job.id": "soak"}, ts, 1.0 + rng.gauss(0, 0.01))],
            )
        )
        return out

    try:
        if not service.start():
            raise RuntimeError(f"the latency service did not start: {service.death()}")
        channel = service.channel
        send = channel.unary_unary(
            METRICS_METHOD, request_serializer=None, response_deserializer=ExportMetricsServiceResponse.FromString
        )
        began = time.monotonic()
        now = time.time_ns() // NS * NS
        for k in range(30, 0, -1):  # 30 points of history, 10 s apart
            for payload in requests(now - k * 10 * NS):
                send(payload, timeout=60)
        populate_s = time.monotonic() - began
        stub = rca_pb2_grpc.RcaServiceStub(channel)
        series = stub.Health(rca_pb2.HealthRequest(), timeout=10).series
        log(
            f"latency phase: {series:,} series with 30 points each in {populate_s:.1f}s; "
            f"{args.latency_seconds:g}s of 1 Hz load, analysis every {args.analysis_interval_s:g}s"
        )
        latencies: list[float] = []
        failed = [0]
        lock = threading.Lock()
        cpu_before, wall_before = service.cpu_seconds(), time.monotonic()
        end = time.monotonic() + args.latency_seconds
        second = 0
        while time.monotonic() < end:
            tick = time.monotonic()
            payloads = requests(time.time_ns())
            halves = (payloads[0::2], payloads[1::2])

            def push(part: list[bytes]) -> None:
                for payload in part:
                    t0 = time.perf_counter()
                    try:
                        send(payload, timeout=EXPORT_TIMEOUT_S)
                    except grpc.RpcError:
                        with lock:
                            failed[0] += 1
                        continue
                    with lock:
                        latencies.append((time.perf_counter() - t0) * 1000)

            threads = [threading.Thread(target=push, args=(h,)) for h in halves]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            second += 1
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        cpu_share = (service.cpu_seconds() - cpu_before) / (time.monotonic() - wall_before)
        health = stub.Health(rca_pb2.HealthRequest(), timeout=10)
        scored = scrape_count(metrics_port, "factorylens_anomaly_score")
        return LatencyResult(latencies, series, populate_s, failed[0], scored, cpu_share, health.requests_refused)
    finally:
        service.stop()


def scrape_count(port: int, prefix: str) -> int:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:
        return -1
    return sum(1 for line in text.splitlines() if line.startswith(prefix))


# ---- main ---------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--series-per-writer", type=int, default=25)
    parser.add_argument("--points-per-series", type=int, default=4, help="new timestamps per series a request")
    parser.add_argument("--kill-min-s", type=float, default=0.2)
    parser.add_argument("--kill-max-s", type=float, default=2.0)
    parser.add_argument("--fsync", choices=("always", "interval", "never"), default="always")
    parser.add_argument("--durability-analysis-interval-s", type=float, default=10.0)
    parser.add_argument("--latency-series", type=int, default=10_000)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument(
        "--latency-batch",
        type=int,
        default=500,
        help="points per request in the latency phase (one host's scrape, split)",
    )
    parser.add_argument("--analysis-interval-s", type=float, default=1.0, help="during the latency phase")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="factorylens-soak-") as tmp:
        workdir = Path(tmp)
        writers, cycles, info = durability(args, workdir, log)
        lost_examples = []
        acknowledged = lost = recovered_unacked = 0
        for w in writers:
            stored = info["stored"].get(w.metric, {})
            for s in range(w.series):
                have = stored.get(str(s), set())
                want = {w.ts(q) for q in w.acked}
                missing = want - have
                acknowledged += len(want)
                lost += len(missing)
                recovered_unacked += len(have - want)
                if missing and len(lost_examples) < 5:
                    lost_examples.append(
                        f"{w.metric} series={s}: {len(missing)} lost, e.g. seq "
                        f"{sorted((t - w.base_ns) // NS for t in missing)[:5]}"
                    )
        lat = None if args.skip_latency else latency(args, workdir, log)

    p50 = float(np.percentile(lat.latencies_ms, 50)) if lat and lat.latencies_ms else float("nan")
    p99 = float(np.percentile(lat.latencies_ms, 99)) if lat and lat.latencies_ms else float("nan")
    rows = [
        ("kill -9 cycles", f"{len(cycles)}", "", None),
        (
            "requests sent / acknowledged",
            f"{sum(w.requests for w in writers):,} / {sum(c.acked_requests for c in cycles):,}",
            "",
            None,
        ),
        ("requests failed (killed, refused)", f"{sum(w.failed_requests for w in writers):,}", "", None),
        (
            "requests with rejected points",
            f"{sum(w.partial_requests for w in writers):,}",
            "0",
            sum(w.partial_requests for w in writers) == 0,
        ),
        ("acknowledged points", f"{acknowledged:,}", "", None),
        ("acknowledged points lost", f"{lost:,}", "0", lost == 0),
        ("unacknowledged points recovered", f"{recovered_unacked:,}", "", None),
        ("restart (WAL replay) s, max of cycles", f"{max(c.start_s for c in cycles):.2f}", "", None),
        ("final restart s", f"{info['final_restart_s']:.2f}", "", None),
    ]
    if lat:
        rows += [
            ("latency phase series", f"{lat.series:,}", ">= 10,000", lat.series >= 10_000),
            ("export requests timed", f"{len(lat.latencies_ms):,} (+{lat.failed} failed)", "", lat.failed == 0),
            ("export latency p50 ms", f"{p50:.1f}", "", None),
            ("export latency p99 ms", f"{p99:.1f}", f"< {TARGET_P99_MS:g}", p99 < TARGET_P99_MS),
            ("export latency max ms", f"{max(lat.latencies_ms, default=float('nan')):.1f}", "", None),
            (
                "series with an anomaly score on /metrics (top 200 only)",
                f"{lat.scored_series:,}",
                "> 0",
                lat.scored_series > 0,
            ),
            ("server CPU busy during the phase", f"{lat.server_cpu_share:.0%}", "", None),
            ("requests refused (backpressure)", f"{lat.refused:,}", "", None),
        ]
    width = max(len(r[0]) for r in rows)
    print(
        f"fsync={args.fsync}, {args.writers} writers x {args.series_per_writer} series, "
        f"{args.points_per_series} points per series a request; ListSeries paging: {HAS_PAGING}"
    )
    print(f"{'metric':<{width}} {'value':>22} {'target':>10}  ok?")
    for name, value, target, ok in rows:
        print(f"{name:<{width}} {value:>22} {target:>10}  {'' if ok is None else 'yes' if ok else 'NO'}")
    for line in lost_examples:
        print(f"  {line}")
    print(
        json.dumps(
            {
                "bench": "soak",
                "cycles": len(cycles),
                "acknowledged": acknowledged,
                "lost": lost,
                "export_p99_ms": round(p99, 1) if p99 == p99 else None,
            }
        )
    )
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
