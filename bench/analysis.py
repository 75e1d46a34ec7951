"""The RCA service's analysis pass: wall time per series per pass on simulated fleets, and the GPUs one
replica can analyse at 10-s scrapes (the number docs/scaling.md sizes a fleet with).

Method. A fault-free simulated cluster (``ScenarioRun(None, hosts, gpus_per_host=8)``: the node
agents, every training rank, the inference services and the neighbour job, exporting every 10 s of
simulated time) is ingested into a store, and the service's default analyzer
(``KpiRankingAnalyzer``) runs once per scrape as the service does, in this process on one core.
Passes during ``--warmup`` minutes (the first fits every baseline) are not timed; the passes of the
next ``--minutes`` are. cost = mean pass time / series in the store. GPUs per replica = the
service's default analysis budget (5 s of every 10-s interval) / (cost × series per GPU).

Usage: python bench/analysis.py [--hosts 2 4 8] [--warmup 12] [--minutes 4]
Last line: {"bench": "analysis", "ms_per_series": x, "series_per_gpu": x, "gpus_per_replica": x, ...}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from factorylens.rca_service.analysis import KpiRankingAnalyzer
from factorylens.rca_service.config import RcaServiceConfig
from factorylens.rca_service.store import SeriesStore
from factorylens.simulation import ScenarioRun, ingest

NS = 1_000_000_000
GPUS_PER_HOST = 8


def measure(hosts: int, warmup_min: float, minutes: float) -> dict[str, float]:
    run = ScenarioRun(None, hosts=hosts, gpus_per_host=GPUS_PER_HOST, duration_s=(warmup_min + minutes) * 60)
    now = [run.epoch_ns / NS]
    store = SeriesStore(clock=lambda: now[0])
    analyzer = KpiRankingAnalyzer()
    timed_from = run.epoch_ns + int(warmup_min * 60 * NS)
    passes: list[float] = []
    for ts, requests in run:
        now[0] = ts / NS
        ingest(store, requests)
        start = time.perf_counter()
        analyzer.analyze(store, ts)
        if ts >= timed_from:
            passes.append(time.perf_counter() - start)
    series = len(store)
    gpus = hosts * GPUS_PER_HOST
    per_pass = statistics.mean(passes)
    return {
        "gpus": gpus,
        "series": series,
        "series_per_gpu": series / gpus,
        "pass_s": per_pass,
        "ms_per_series": per_pass / series * 1e3,
        "passes": len(passes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[2, 4, 8], help="fleet sizes (8 GPUs per host)")
    parser.add_argument("--warmup", type=float, default=12.0, help="simulated minutes before timing")
    parser.add_argument("--minutes", type=float, default=4.0, help="simulated minutes timed")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    budget_s = RcaServiceConfig().analysis_budget_s
    rows = [measure(h, args.warmup, args.minutes) for h in args.hosts]
    print(f"{'GPUs':>6s} {'series':>8s} {'series/GPU':>11s} {'pass (s)':>9s} {'ms/series':>10s} {'passes':>7s}")
    for r in rows:
        print(
            f"{r['gpus']:6.0f} {r['series']:8.0f} {r['series_per_gpu']:11.1f} {r['pass_s']:9.3f} "
            f"{r['ms_per_series']:10.3f} {r['passes']:7.0f}"
        )
    largest = rows[-1]  # the per-series cost of the largest fleet measured
    gpus_per_replica = budget_s / (largest["ms_per_series"] / 1e3 * largest["series_per_gpu"])
    print(f"analysis budget {budget_s:g} s per 10-s pass → about {gpus_per_replica:,.0f} GPUs per replica")
    print(
        json.dumps(
            {
                "bench": "analysis",
                "ms_per_series": round(largest["ms_per_series"], 4),
                "series_per_gpu": round(largest["series_per_gpu"], 1),
                "gpus_per_replica": round(gpus_per_replica),
                "budget_s": budget_s,
                "fleets": [{k: round(v, 4) for k, v in r.items()} for r in rows],
            }
        )
    )


if __name__ == "__main__":
    main()
