"""GPU-cluster scenario suite: does the RCA service name the injected fault, and how fast?

For every fault of ``factorylens.scenarios.CATALOG`` × seed × cluster size, a simulated run (the GPU
receiver and node layers of every host, the instrumented ranks of a multi-node training job, a
neighbour job, background noise and an unrelated benign anomaly near the fault) is fed, scrape by
scrape in simulated time, into a fresh ``SeriesStore``, and the analyzer runs after every scrape.
Fault-free runs of the same seeds and sizes are the control (every incident there is false).

Scored, for the first incident with ranked causes whose onset is at or after the fault's onset
minus one scrape interval: the rank of the true root cause among its causes 60 s after the onset and
at the end of the run (AC@1, AC@3), the time from the fault's onset to that incident's opening,
incidents opened before the onset (false), and the benign anomaly's rank in the same incident.
Per fault type (the issue's eleven: thermal/power throttling and CPU/memory pressure are one type
each) AC@k is over all its runs; a run without such an incident counts as a miss.

Usage: python bench/scenarios.py [--seeds 0 1 2] [--sizes 2x4 2x8] [--fault-types NAME ...] [--quick] [--jobs N]
Target: AC@1 >= 0.9 per fault type, a ranked incident within 60 s of the onset at 10 s scrapes.
Last line: {"bench": "scenarios", "fault_types": n, "ac1_min": x, "ac1_mean": x, "onset_to_incident_s_p95": x}
(AC@1 as scored 60 s after the onset; the p95 is null when more than 5 % of the runs have no incident).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

NS = 1_000_000_000
EARLY_S = 60.0


def make_analyzer() -> Any:
    """The analyzer under test (the RCA service's default)."""
    from factorylens.rca_service.analysis import KpiRankingAnalyzer

    return KpiRankingAnalyzer()


def _cause_rank(incident: Any, matches: Any) -> int | None:
    for position, cause in enumerate(incident.causes, start=1):
        if matches(cause.entity):
            return position
    return None


def _score(incidents: list[Any], run: Any) -> dict[str, Any]:
    """The first ranked incident at/after the onset (minus a scrape) and where the answer sits in it."""
    since = run.onset_unix_nano - int(run.scrape_interval_s * NS)
    found = sorted(
        (i for i in incidents if i.onset_unix_nano >= since and i.causes),
        key=lambda i: (i.opened_unix_nano, i.onset_unix_nano),
    )
    if not found:
        return {"incident": None, "rank": None, "top": None, "benign_rank": None}
    incident = found[0]
    benign = run.benign
    return {
        "incident": incident.id,
        "rank": _cause_rank(incident, run.truth.matches) if run.truth else None,
        "top": incident.causes[0].entity,
        "benign_rank": _cause_rank(incident, lambda e: e == benign.entity) if benign else None,
        "opened_s": (incident.opened_unix_nano - run.onset_unix_nano) / NS,
    }


def run_one(fault: str | None, seed: int, size: tuple[int, int]) -> dict[str, Any]:
    """Generate one run, feed it to a fresh store and analyzer, score it."""
    from factorylens.rca_service.store import SeriesStore
    from factorylens.scenarios import ScenarioRun, ingest

    logging.getLogger("factorylens.receivers").setLevel(logging.ERROR)  # XIDs and lost GPUs are the point
    hosts, gpus = size
    run = ScenarioRun(fault, seed=seed, hosts=hosts, gpus_per_host=gpus, logs=True)
    now = [run.epoch_ns / NS]
    store = SeriesStore(clock=lambda: now[0])
    analyzer = make_analyzer()
    generate_s = analyze_s = 0.0
    early: dict[str, Any] | None = None
    first_ranked: float | None = None
    since = run.onset_unix_nano - int(run.scrape_interval_s * NS)
    clock = time.process_time()
    for ts, requests in run:
        started = time.process_time()
        generate_s += started - clock
        now[0] = ts / NS
        ingest(store, requests)
        analyzer.analyze(store, ts)
        clock = time.process_time()
        analyze_s += clock - started
        if first_ranked is None and fault is not None:
            ranked = [i for i in analyzer.incidents() if i.onset_unix_nano >= since and i.causes]
            if ranked:
                first_ranked = (min(i.opened_unix_nano for i in ranked) - run.onset_unix_nano) / NS
        if early is None and fault is not None and ts >= run.onset_unix_nano + EARLY_S * NS:
            early = _score(analyzer.incidents(), run)
    incidents = analyzer.incidents()
    final = _score(incidents, run) if fault is not None else None
    false = [i for i in incidents if fault is None or i.opened_unix_nano < run.onset_unix_nano]
    return {
        "fault": fault,
        "fault_type": run.spec.fault_type if run.spec else None,
        "seed": seed,
        "size": f"{hosts}x{gpus}",
        "truth": run.truth.entity if run.truth else None,
        "benign": run.benign.entity if run.benign else None,
        "early": early,
        "final": final,
        "onset_to_incident_s": first_ranked,
        "false_incidents": len(false),
        "incidents": len(incidents),
        "series": len(store),
        "generate_cpu_s": generate_s,
        "analyze_cpu_s": analyze_s,
        "simulated_s": run.duration_s,
    }


def _ac(results: list[dict[str, Any]], when: str, k: int) -> float:
    hits = [r[when] is not None and r[when]["rank"] is not None and r[when]["rank"] <= k for r in results]
    return sum(hits) / len(hits) if hits else math.nan


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    value = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return None if math.isinf(value) else value


def _delays(results: list[dict[str, Any]]) -> list[float]:
    return [math.inf if r["onset_to_incident_s"] is None else r["onset_to_incident_s"] for r in results]


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def report(results: list[dict[str, Any]], out: Any = sys.stdout) -> dict[str, Any]:
    from factorylens.scenarios import CATALOG, FAULT_TYPES

    faulted = [r for r in results if r["fault"] is not None]
    control = [r for r in results if r["fault"] is None]
    header = (
        f"{'fault':38s} {'runs':>4s} {'AC@1 60s':>8s} {'AC@3 60s':>8s} {'AC@1 end':>8s} {'AC@3 end':>8s} "
        f"{'onset→inc p50':>13s} {'p95':>7s} {'missed':>6s} {'false/run':>9s} {'benign#1':>8s}"
    )
    out.write(header + "\n" + "-" * len(header) + "\n")

    def row(name: str, rs: list[dict[str, Any]]) -> dict[str, Any]:
        delays = _delays(rs)
        found = sorted(d for d in delays if not math.isinf(d))
        benign_top = sum(1 for r in rs for s in (r["final"],) if s and s["benign_rank"] == 1)
        stats = {
            "runs": len(rs),
            "ac1": _ac(rs, "early", 1),
            "ac3": _ac(rs, "early", 3),
            "ac1_end": _ac(rs, "final", 1),
            "ac3_end": _ac(rs, "final", 3),
            "p50": found[len(found) // 2] if found else None,
            "p95": _p95(delays),
            "missed": sum(1 for d in delays if math.isinf(d)),
            "false": sum(r["false_incidents"] for r in rs) / len(rs),
            "benign_top": benign_top,
        }
        out.write(
            f"{name:38s} {len(rs):4d} {_fmt(stats['ac1']):>8s} {_fmt(stats['ac3']):>8s} "
            f"{_fmt(stats['ac1_end']):>8s} {_fmt(stats['ac3_end']):>8s} {_fmt(stats['p50'], '.0f'):>13s} "
            f"{_fmt(stats['p95'], '.0f'):>7s} {stats['missed']:6d} {stats['false']:9.2f} {benign_top:8d}\n"
        )
        return stats

    for name in CATALOG:
        rs = [r for r in faulted if r["fault"] == name]
        if rs:
            row(name, rs)
    out.write("-" * len(header) + "\n")
    per_type = {}
    for fault_type in FAULT_TYPES:
        rs = [r for r in faulted if r["fault_type"] == fault_type]
        if rs:
            per_type[fault_type] = row(f"[type] {fault_type}", rs)
    if control:
        incidents = sum(r["incidents"] for r in control)
        out.write(
            f"\nfault-free control: {len(control)} runs, {incidents} incident(s) opened "
            f"({incidents / len(control):.2f} per run)\n"
        )
    generate = [r["generate_cpu_s"] for r in results]
    simulated = [r["simulated_s"] for r in results]
    if generate:
        out.write(
            f"generation: {sum(generate) / len(generate):.2f} s CPU per run on average "
            f"({sum(simulated) / len(simulated) / 60:.1f} simulated minutes); analysis: "
            f"{sum(r['analyze_cpu_s'] for r in results) / len(results):.2f} s CPU per run\n"
        )
    ac1 = [s["ac1"] for s in per_type.values()]
    return {
        "bench": "scenarios",
        "fault_types": len(per_type),
        "ac1_min": round(min(ac1), 3) if ac1 else None,
        "ac1_mean": round(sum(ac1) / len(ac1), 3) if ac1 else None,
        "onset_to_incident_s_p95": _rounded(_p95(_delays(faulted))),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _size(text: str) -> tuple[int, int]:
    try:
        hosts, gpus = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HOSTSxGPUS, e.g. 2x8") from None
    return hosts, gpus


def _faults(names: list[str] | None) -> list[str]:
    from factorylens.scenarios import CATALOG

    if not names:
        return list(CATALOG)
    chosen: list[str] = []
    for name in names:
        matched = [n for n, spec in CATALOG.items() if name in (n, spec.fault_type)]
        if not matched:
            raise SystemExit(f"unknown fault {name!r}: use a name or type from {', '.join(CATALOG)}")
        chosen.extend(m for m in matched if m not in chosen)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=_size, nargs="+", default=[(2, 4), (2, 8)], metavar="HOSTSxGPUS")
    parser.add_argument(
        "--fault-types", nargs="+", default=None, metavar="NAME", help="catalog names or fault types (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="one seed, 2x4 (about a minute per core)")
    parser.add_argument("--no-control", action="store_true", help="skip the fault-free runs")
    parser.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 8), help="runs in parallel")
    args = parser.parse_args(argv)
    from factorylens.receivers.gpu.receiver import tune_gc_for_agent

    tune_gc_for_agent()  # thousands of short-lived SDK objects per scrape, as in the node agent
    if args.quick:
        args.seeds, args.sizes = args.seeds[:1], [(2, 4)]
    faults: list[str | None] = list(_faults(args.fault_types))
    if not args.no_control:
        faults.append(None)
    plan = [(fault, seed, size) for size in args.sizes for seed in args.seeds for fault in faults]
    sys.stderr.write(
        f"{len(plan)} runs ({len(faults)} faults incl. control × {len(args.seeds)} seeds × "
        f"{len(args.sizes)} sizes), {args.jobs} in parallel\n"
    )
    results = []
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_one, *item) for item in plan]
        for n, future in enumerate(futures, start=1):
            r = future.result()
            results.append(r)
            early, final = r["early"] or {}, r["final"] or {}
            sys.stderr.write(
                f"[{n}/{len(plan)} {time.monotonic() - started:.0f}s] {r['fault'] or 'fault-free'} seed {r['seed']} "
                f"{r['size']}: rank@60s {early.get('rank')} rank@end {final.get('rank')} top {final.get('top')} "
                f"(truth {r['truth']}); onset→incident {_fmt(r['onset_to_incident_s'], '.0f')} s; "
                f"false {r['false_incidents']}; benign rank {final.get('benign_rank')}; "
                f"generate {r['generate_cpu_s']:.2f} s, analyze {r['analyze_cpu_s']:.2f} s CPU\n"
            )
            sys.stderr.flush()
    summary = report(results)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
