"""Ranking speed: one incident over 10,000 candidate series, the engine alone and the live path.

Method. A synthetic factory of ``--series`` series on ``--entities`` entities (10 signals each:
utilization, temperature, latency, errors, traffic...), ``--rows`` rows at 10-s steps, two random
dependency edges per entity and a planted cause (one entity's temperature jumps, the KPI follows).
Pinned to one CPU and timed (best of ``--repeat``):

- engine: ``RankingEngine.find_root_causes`` on the ready frame (target: under 2 s for 10,000 series);
- BARO on the same frame, for comparison in the same run (the machines are noisy: read ratios);
- live: the service's whole ranking pass for one incident, the ``IncidentRanker``: reading
  the series from the store, building the topology from their resources, aligning them on one grid,
  ranking and writing the causes.

Usage: python bench/ranking.py [--series 10000] [--entities 1000] [--rows 360] [--repeat 3]
Last line: {"bench": "ranking", "series": n, "engine_s": x, "baro_s": x, "live_s": x, "top_is_planted": b}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import pandas as pd

from factorylens.rca_service.analysis import Incident, IncidentState, KpiRankingAnalyzer
from factorylens.rca_service.ranking import BaroRanker, RankingEngine, Topology

SIGNALS = (
    "cpu.utilization",
    "memory.usage",
    "request.latency",
    "error.rate",
    "requests",
    "gpu.utilization",
    "power",
    "temperature",
    "network.io",
    "disk.io",
)
KPI = ("kpi", "request.latency")
STEP_S = 10


def synthetic(n_series: int, n_entities: int, rows: int, seed: int = 0) -> tuple[pd.DataFrame, Topology, int]:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-11-01", periods=rows, freq=f"{STEP_S}s", tz="UTC")
    columns = pd.MultiIndex.from_tuples(
        [(f"service:e{i % n_entities}", SIGNALS[(i // n_entities) % len(SIGNALS)]) for i in range(n_series)],
        names=["entity", "signal"],
    )
    values = rng.normal(size=(rows, n_series)) + 10
    fault = rows - 20
    planted = int(np.flatnonzero(columns.get_level_values(1) == "temperature")[3])
    values[fault:, planted] += 8
    frame = pd.DataFrame(values, index=index, columns=columns)
    frame[KPI] = rng.normal(size=rows) + 10
    frame.iloc[fault:, -1] += 6
    topology = Topology()
    topology.add_edge("kpi", "service:e0", "calls")
    for i in range(n_entities - 1):
        for _ in range(2):
            topology.add_edge(f"service:e{i}", f"service:e{rng.integers(i + 1, n_entities)}", "calls")
    topology.add_edge("service:e0", columns[planted][0], "calls")
    return frame, topology, planted


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def live_pass(frame: pd.DataFrame, topology: Topology, t0: pd.Timestamp, repeat: int) -> tuple[float, str]:
    """The service's ranking pass over a store holding the same data (entities as resources)."""
    from factorylens.rca_service.store import SeriesKind, SeriesStore, StoreLimits

    store = SeriesStore(StoreLimits(max_series=frame.shape[1] + 10), clock=lambda: frame.index[-1].timestamp())
    times = frame.index.as_unit("ns").asi8
    kpi_id = ""
    for (entity, signal), column in frame.items():
        series = store.get_or_create(signal, SeriesKind.GAUGE, "", {"factorylens.entity": entity}, {})
        for ts, value in zip(times, column.to_numpy(), strict=False):
            series.append(int(ts), float(value))
        if (entity, signal) == KPI:
            kpi_id = series.info.id
    analyzer = KpiRankingAnalyzer(topology=topology)
    analyzer.detection.intervals[kpi_id] = STEP_S * 10**9
    incident = Incident(
        "bench", IncidentState.OPEN, "", int(t0.value), int(t0.value) + 1, int(times[-1]), kpi_series_id=kpi_id
    )
    seconds, _ = best_of(repeat, lambda: analyzer.ranker(store, incident, [kpi_id], int(t0.value)))
    return seconds, incident.causes[0].entity if incident.causes else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--entities", type=int, default=1_000)
    parser.add_argument("--rows", type=int, default=360, help="10-s rows (360 = the live analyzer's hour)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    frame, topology, planted = synthetic(args.series, args.entities, args.rows)
    t0 = frame.index[args.rows - 21]
    print(
        f"{args.series:,} series x {args.rows} rows, {args.entities:,} entities; planted cause "
        f"{frame.columns[planted][0]}",
        file=sys.stderr,
    )
    engine_s, result = best_of(
        args.repeat, lambda: RankingEngine().find_root_causes(frame, [KPI], t0, topology=topology)
    )
    baro_s, _ = best_of(args.repeat, lambda: BaroRanker().find_root_causes(frame, [KPI], t0))
    live_s, live_top = live_pass(frame, topology, t0, args.repeat)
    top_is_planted = result.causes[0].entity == frame.columns[planted][0] == live_top
    print(f"{'path':<28}{'seconds':>10}")
    for name, seconds in (
        ("engine (find_root_causes)", engine_s),
        ("BARO, same frame", baro_s),
        ("live pass (store -> causes)", live_s),
    ):
        print(f"{name:<28}{seconds:>10.3f}")
    print(f"top cause is the planted one: {top_is_planted}")
    print(
        json.dumps(
            {
                "bench": "ranking",
                "series": args.series,
                "rows": args.rows,
                "engine_s": round(engine_s, 3),
                "baro_s": round(baro_s, 3),
                "live_s": round(live_s, 3),
                "top_is_planted": top_is_planted,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
