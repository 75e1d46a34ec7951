"""GPU cost: the RCA service's live rollup, and the report over months of Prometheus rollups.

Method.

- *live*: a :class:`SeriesStore` holds what ``--gpus`` GPUs' node agents send at 10 s scrapes: the
  three usage counters per GPU (allocation time, utilization- and SM-activity-weighted active time,
  energy) and, per job of 8 GPUs, its ranks' samples, tokens and MFU. An hour of history is written
  first; then each simulated minute appends six scrapes and runs the service's rollup
  (``CostTracker.update``: incremental ledger read, live figures, waste check). Its CPU time per
  update over the update interval (60 s, the service's default) is the share of one core it costs.
  For scale, the same run times the store appending that minute's points (the ingest's cheapest
  part) and one exact report over the hour (what ``GetCostReport`` does per request).
- *report*: Prometheus 2.42 (Debian's) is seeded with ``promtool tsdb create-blocks-from
  openmetrics`` with ``--days`` of the hourly per-workload rollups ``factorylens cost rules``
  records for ``--gpus`` GPUs (jobs of 8 GPUs, 6 teams, 3 clusters; ten per cent unallocated), then
  ``factorylens cost --prometheus`` builds the report by team over the whole range: wall time.

Usage: python bench/cost.py [--gpus 4096] [--days 30] [--minutes 5] [--skip-prometheus]
Last line: {"bench": "cost", "live_core_share": x, "update_ms": x, "report_s": x, ...}
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from factorylens.cost_report import PrometheusClient, from_prometheus, render  # noqa: E402
from factorylens.processors.cost import FIGURE_LABEL, JOB_FIGURES, RECORDED, WORKLOAD, PriceCatalog  # noqa: E402
from factorylens.rca_service.cost import CostTracker  # noqa: E402
from factorylens.rca_service.store import SeriesKind, SeriesStore, StoreLimits  # noqa: E402
from factorylens.registry import REGISTRY  # noqa: E402

NS = 1_000_000_000
SCRAPE_S = 10
UPDATE_S = 60.0
GPUS_PER_JOB = 8
TEAMS = ("foundation", "serving", "research", "vision", "speech", "platform")
CLUSTERS = ("east", "west", "onprem")
H100 = "NVIDIA H100 80GB HBM3"
PRICE = 6.88
# one GPU's hour of each figure in the seeded rollups: 60% active, 45% MFU, 0.6 kWh, power in the price
PER_GPU_HOUR = {
    "allocated_h": 1.0,
    "measured_h": 1.0,
    "unallocated_h": 1.0,
    "active_h": 0.6,
    "active_sm_h": 0.5,
    "idle_h": 0.4,
    "useful_h": 0.45,
    "energy_kwh": 0.6,
    "unallocated_energy_kwh": 0.1,
    "gpu_time_cost": PRICE,
    "idle_cost": 0.4 * PRICE,
    "unallocated_cost": PRICE,
    "useful_cost": 0.45 * PRICE,
    "sample_jobs_cost": PRICE,
    "token_jobs_cost": PRICE,
    "samples": 64 * 3600 / 0.5,  # 64 samples per 0.5-s step
    "tokens": 64 * 2048 * 3600 / 0.5,
}


class Fleet:
    """The series of ``gpus`` GPUs and their jobs in a store, written scrape by scrape."""

    def __init__(self, store: SeriesStore, gpus: int) -> None:
        self.store = store
        self.gpus = gpus
        self.series: list[tuple[Any, float]] = []  # (series, value added per scrape)
        self.gauges: list[Any] = []
        self.values: list[float] = []
        for g in range(gpus):
            job = g // GPUS_PER_JOB
            resource = {"host.name": f"node-{g // 8}", "service.name": "factorylens-gpu-receiver"}
            who = {
                "hw.id": f"GPU-{g:08x}",
                "hw.name": H100,
                "factorylens.job.id": f"job-{job}",
                "factorylens.team": TEAMS[job % len(TEAMS)],
                "factorylens.cluster.name": CLUSTERS[job % len(CLUSTERS)],
            }
            busy = 0.2 + 0.7 * ((job * 37) % 10) / 10
            for metric, extra, per_scrape in (
                ("factorylens.gpu.allocation.time", {"factorylens.allocation.state": "allocated"}, SCRAPE_S),
                ("factorylens.gpu.active.time", {"factorylens.cost.basis": "utilization"}, SCRAPE_S * busy),
                ("factorylens.gpu.active.time", {"factorylens.cost.basis": "sm_activity"}, SCRAPE_S * busy * 0.8),
                ("factorylens.gpu.allocation.energy", {"factorylens.allocation.state": "allocated"}, SCRAPE_S * 600),
            ):
                self._add(metric, resource, {**who, **extra}, per_scrape)
        for job in range(gpus // GPUS_PER_JOB):
            for rank in range(GPUS_PER_JOB):
                resource = {"service.name": "trainer", "factorylens.job.id": f"job-{job}", "factorylens.rank": rank}
                self._add("factorylens.train.samples", resource, {}, 64 * SCRAPE_S)
                self._add("factorylens.train.tokens", resource, {}, 64 * 2048 * SCRAPE_S)
                series = store.get_or_create("factorylens.train.mfu", SeriesKind.GAUGE, "1", resource, {})
                self.gauges.append(series)

    def _add(self, metric: str, resource: dict, attributes: dict, per_scrape: float) -> None:
        spec = REGISTRY.metric(metric) if metric.startswith("factorylens.gpu.") else None
        unit = spec.unit if spec else "1"
        series = self.store.get_or_create(metric, SeriesKind.CUMULATIVE, unit, resource, attributes)
        self.series.append((series, per_scrape))
        self.values.append(0.0)

    def scrape(self, ts_ns: int) -> int:
        for i, (series, per_scrape) in enumerate(self.series):
            self.values[i] += per_scrape
            series.append(ts_ns, self.values[i])
        for series in self.gauges:
            series.append(ts_ns, 0.4)
        return len(self.series) + len(self.gauges)


def live(gpus: int, minutes: int) -> dict[str, float]:
    store = SeriesStore(StoreLimits(max_series=10 * gpus + 10_000))
    fleet = Fleet(store, gpus)
    start = (time.time_ns() // NS - 3 * 3600) * NS
    scrapes = 0
    for _ in range(3600 // SCRAPE_S):  # an hour of history
        fleet.scrape(start + scrapes * SCRAPE_S * NS)
        scrapes += 1
    catalog = PriceCatalog.from_file(ROOT / "processors" / "cost" / "example-catalog.yaml")
    tracker = CostTracker(catalog, window_s=24 * 3600.0, interval_s=UPDATE_S)
    now = start + scrapes * SCRAPE_S * NS
    began = time.process_time()
    tracker.update(store, now, force=True)
    cold_s = time.process_time() - began
    updates, appends = [], []
    for _ in range(minutes):
        began = time.process_time()
        points = sum(fleet.scrape(start + (scrapes + k) * SCRAPE_S * NS) for k in range(int(UPDATE_S // SCRAPE_S)))
        appends.append(time.process_time() - began)
        scrapes += int(UPDATE_S // SCRAPE_S)
        now = start + scrapes * SCRAPE_S * NS
        began = time.process_time()
        tracker.update(store, now, force=True)
        updates.append(time.process_time() - began)
    began = time.process_time()
    report = tracker.report(store, now - 3600 * NS, now, "team")
    report_s = time.process_time() - began
    assert report.groups and all(t.allocated_h > 0 for t in report.groups.values())
    update_s = sorted(updates)[len(updates) // 2]
    return {
        "series": len(fleet.series) + len(fleet.gauges),
        "points_per_minute": points,
        "cold_update_s": cold_s,
        "update_ms": update_s * 1000,
        "live_core_share": update_s / UPDATE_S,
        "append_ms": sorted(appends)[len(appends) // 2] * 1000,
        "exact_report_hour_s": report_s,
    }


def rollup_series(gpus: int) -> list[tuple[str, str, float]]:
    """(rule name, labels, value per hour) of every per-workload rollup series of the fleet."""
    jobs = gpus // GPUS_PER_JOB
    out = []
    for figure in [*RECORDED, *JOB_FIGURES]:
        for job in range(jobs + 1):
            unallocated = job == jobs
            if unallocated != figure.startswith("unallocated"):
                continue
            labels = {FIGURE_LABEL: figure}
            if figure not in JOB_FIGURES:
                labels.update(factorylens_cluster_name=CLUSTERS[job % len(CLUSTERS)], hw_model="H100")
            if not unallocated:
                labels.update(factorylens_job_id=f"job-{job}", factorylens_team=TEAMS[job % len(TEAMS)])
            n = max(1, gpus // 10) if unallocated else GPUS_PER_JOB
            text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            out.append((WORKLOAD, text, n * PER_GPU_HOUR.get(figure, 0.0)))
    return out


def seed(promtool: str, data: Path, work: Path, gpus: int, days: int, end_s: int) -> int:
    """Write the rollups into TSDB blocks with ``promtool tsdb create-blocks-from openmetrics``, one
    OpenMetrics file per 2-hour block (promtool 2.42 re-reads its input once per block it cuts)."""
    series = rollup_series(gpus)
    samples = 0
    first_hour = end_s // 3600 - days * 24
    for block_start in range(first_hour - first_hour % 2, end_s // 3600, 2):
        path = work / "block.om"
        with path.open("w") as out:
            for name in dict.fromkeys(name for name, _, _ in series):
                out.write(f"# TYPE {name} gauge\n")
                for hour in (block_start, block_start + 1):
                    if not first_hour <= hour < end_s // 3600:
                        continue
                    for other, labels, value in series:
                        if other == name:
                            out.write(f"{name}{{{labels}}} {value:g} {hour * 3600}\n")
                            samples += 1
            out.write("# EOF\n")
        subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(path), str(data)],
            check=True,
            capture_output=True,
        )
    return samples


def prometheus_report(gpus: int, days: int) -> dict[str, float]:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not (prometheus and promtool):
        raise SystemExit("Debian's prometheus is needed (make system-deps), or pass --skip-prometheus")
    work = Path(tempfile.mkdtemp(prefix="factorylens-cost-bench-"))
    end_s = (int(time.time()) // 3600 - 2) * 3600
    try:
        began = time.perf_counter()
        data = work / "data"
        samples = seed(promtool, data, work, gpus, days, end_s)
        seed_s = time.perf_counter() - began
        (work / "prometheus.yml").write_text("global: {scrape_interval: 1m}\n")
        port = _free_port()
        server = subprocess.Popen(
            [
                prometheus,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.tsdb.retention.time={days + 30}d",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            client = PrometheusClient(f"http://127.0.0.1:{port}", timeout_s=120)
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.query("up", time.time()) is not None:
                        break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            blocks = wait_for_compaction(client.url)
            from_prometheus(client, end_s - 3600, end_s, "team")  # warm the query path once
            began = time.perf_counter()
            report = from_prometheus(client, end_s - days * 86400, end_s, "team")
            report_s = time.perf_counter() - began
            text = render(report, "table")
        finally:
            server.terminate()
            server.wait(30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    hours = sum(t.allocated_h for t in report.groups.values())
    expected = (gpus // GPUS_PER_JOB) * GPUS_PER_JOB * days * 24
    assert abs(hours - expected) < 1e-6 * expected, (hours, expected)
    print(text.split("\n\n")[1])
    return {"rollup_samples": samples, "seed_s": seed_s, "blocks": blocks, "report_s": report_s}


def wait_for_compaction(url: str, timeout_s: float = 600.0) -> int:
    """Wait until Prometheus has compacted the imported 2-hour blocks (as a server holding months of
    history has): the loaded block count stops changing. Returns it."""
    import urllib.request

    def blocks() -> int:
        text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
        line = next(x for x in text.splitlines() if x.startswith("prometheus_tsdb_blocks_loaded "))
        return int(float(line.split()[1]))

    deadline = time.monotonic() + timeout_s
    last, stable_since = blocks(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = blocks()
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since > 75:  # the compactor runs once a minute
            break
    return last


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=4096)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--minutes", type=int, default=5, help="simulated minutes of steady-state updates")
    parser.add_argument("--skip-prometheus", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {"bench": "cost", "gpus": args.gpus}
    result.update(live(args.gpus, args.minutes))
    print(f"{'figure':34} {'value':>12}")
    rows = [
        ("series in the store", f"{result['series']:,}"),
        ("points per minute (10 s scrapes)", f"{result['points_per_minute']:,}"),
        ("first rollup (1 h of history), s", f"{result['cold_update_s']:.2f}"),
        ("rollup per update, ms (median)", f"{result['update_ms']:.1f}"),
        ("share of one core at 60 s updates", f"{result['live_core_share']:.2%}"),
        ("store append of that minute, ms", f"{result['append_ms']:.1f}"),
        ("exact report over 1 h, s", f"{result['exact_report_hour_s']:.2f}"),
    ]
    if not args.skip_prometheus:
        result["days"] = args.days
        result.update(prometheus_report(args.gpus, args.days))
        rows += [
            (f"rollup samples ({args.days} days)", f"{result['rollup_samples']:,}"),
            ("seed (openmetrics + promtool), s", f"{result['seed_s']:.1f}"),
            ("TSDB blocks after compaction", f"{result['blocks']}"),
            (f"report by team over {args.days} days, s", f"{result['report_s']:.2f}"),
        ]
    for name, value in rows:
        print(f"{name:34} {value:>12}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
