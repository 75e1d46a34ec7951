"""GPU-cluster scenario suite: does the RCA service name the injected fault, and how fast?

For every fault of ``factorylens.simulation.CATALOG`` × seed × cluster size, and every case of
``factorylens.simulation.CASES`` (several faults, faults at awkward moments: issue 17) × its own seeds
and layouts, a simulated run (the GPU receiver and node layers of every host, the instrumented ranks
of a multi-node training job, a neighbour job, background noise and an unrelated benign anomaly near
the fault) is fed, scrape by scrape in simulated time, into a fresh ``SeriesStore``, and the analyzer
runs after every scrape. Fault-free runs of the same seeds and sizes are the control (every incident
there is false). ``--scenario FILE`` scores scenario files of one's own instead (the receiver's fault
format plus ``cluster``, ``seed``, ``duration`` and per fault ``expect``: docs/node-agent.md).

Scored, for the first incident with ranked causes whose onset is at or after the fault's onset
minus one scrape interval: the rank of the true root cause among its causes 60 s after the onset and
at the end of the run (AC@1, AC@3), the time from the fault's onset to that incident's opening,
incidents opened before the onset (false), and the benign anomaly's rank in the same incident. A
gradual fault counts from when it bites (the job computes 10 % slower), not from its onset. With
several true causes, each is ranked among the causes that are not another true cause, in whichever
incident ranks it best (its own, or the top two of one); the run is a hit at k when every one is
within k. A run whose faults should open no incident (``expect: {incident: false}``, a fault on an
unused GPU) is a hit when none opens, and every incident it opens is false. A decoy (a harmless
signal) as the top cause is counted like the benign anomaly. Per fault type (the issue's eleven:
thermal/power throttling and CPU/memory pressure are one type each; a case or a file is a type of its
own) AC@k is over all its runs; a run without such an incident counts as a miss.

The serving suite (``factorylens.simulation.SERVING_CATALOG``, issue 19) runs on a vLLM-style fleet
(one replica per GPU behind a router, a daily load cycle): a traffic surge, prompts growing longer,
a throttled and a lost GPU under a replica, a noisy neighbour on a time-sliced GPU, a slow weight
load after a restart; with a fault-free serving control per seed and size, and a whole simulated
day of the load cycle with no fault (``--serving-day``), whose every incident is false.

Usage: python bench/scenarios.py [--seeds 0 1 2] [--sizes 2x4 2x8] [--fault-types NAME ...] [--no-cases]
       [--case-seeds 10 11 12] [--quick] [--jobs N] [--scenario FILE ...] [--show-incidents]
       [--no-serving-day]
Target: AC@1 >= 0.9 per fault type, a ranked incident within 60 s of the onset at 10 s scrapes.
Last line: {"bench": "scenarios", "fault_types": n, "ac1_min": x, "ac1_mean": x, "onset_to_incident_s_p95": x,
"cases": runs scored (control included), "ac1": x, "ac3": x, "false_incidents": n, "ac1_by_type": {type: x},
"control_incidents": {"training": n, "serving": n, "serving_day": n}}
(AC@1 as scored 60 s after the onset; ac1/ac3 over every faulted run pooled; the p95 is null when more
than 5 % of the runs have no incident).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

NS = 1_000_000_000
EARLY_S = 60.0
SERVING_CONTROL = "serving_control"  # the serving fleet's fault-free run (a plan item, not a fault)
SERVING_DAY = "serving_day"  # a whole simulated day of the serving fleet's daily load cycle, no fault
DAY_SCRAPE_S = 60.0  # the day is scraped every minute (8,640 analyses at 10 s would take over an hour)
TOP_SHOWN = 5  # causes printed per incident
CASE_SEEDS = (10, 11, 12)
CASE_SIZES = ((2, 4), (2, 8))
CASE_MIN_GPUS = {"unused_gpu_fault": 7}  # it needs a GPU no process uses


def make_analyzer() -> Any:
    """The analyzer under test (the RCA service's default)."""
    from factorylens.rca_service.analysis import KpiRankingAnalyzer

    return KpiRankingAnalyzer()


def simulate(
    run: Any,
    analyzer: Any = None,
    on_tick: Callable[[int, Any], None] | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[Any, Any]:
    """Feed a ``ScenarioRun`` scrape by scrape into a fresh store and run the analyzer after each
    scrape, in simulated time (``on_tick(time_unix_nano, analyzer)`` after each); ``(store, analyzer)``.
    ``timings`` gets the CPU seconds spent generating (``generate``) and analysing (``analyze``)."""
    from factorylens.rca_service.store import SeriesStore
    from factorylens.simulation import ingest

    logging.getLogger("factorylens.receivers").setLevel(logging.ERROR)  # XIDs and lost GPUs are the point
    now = [run.epoch_ns / NS]
    store = SeriesStore(clock=lambda: now[0])
    analyzer = analyzer if analyzer is not None else make_analyzer()
    timings = timings if timings is not None else {}
    timings.setdefault("generate", 0.0)
    timings.setdefault("analyze", 0.0)
    clock = time.process_time()
    for ts, requests in run:
        started = time.process_time()
        timings["generate"] += started - clock
        now[0] = ts / NS
        ingest(store, requests)
        analyzer.analyze(store, ts)
        clock = time.process_time()
        timings["analyze"] += clock - started
        if on_tick is not None:
            on_tick(ts, analyzer)
            clock = time.process_time()  # the caller's scoring is neither
    return store, analyzer


def _cause_rank(incident: Any, matches: Any) -> int | None:
    """Where the first cause ``matches(entity, signal)`` sits among the incident's causes."""
    for position, cause in enumerate(incident.causes, start=1):
        if matches(cause.entity, cause.signal):
            return position
    return None


def truth_rank(incident: Any, run: Any, truth: Any) -> int | None:
    """Where ``truth`` sits among the incident's causes, other true causes of the run not counted."""
    position = 0
    for cause in incident.causes:
        if truth.matches_cause(cause.entity, cause.signal):
            return position + 1
        if not any(other.matches_cause(cause.entity, cause.signal) for other in run.truths if other is not truth):
            position += 1
    return None


def reference_ns(run: Any) -> int:
    """What the run is timed from: the fault's onset, or for a gradual fault when it bit."""
    if run.spec is not None and run.spec.gradual and run.bite_s is not None:
        return run.epoch_ns + int(run.bite_s * NS)
    return int(run.onset_unix_nano)


def _since(run: Any) -> int:
    return int(run.onset_unix_nano) - int(run.scrape_interval_s * NS)


def _ranked(incidents: list[Any], run: Any, until_ns: int | None = None) -> list[Any]:
    since = _since(run)
    return sorted(
        (
            i
            for i in incidents
            if i.onset_unix_nano >= since and i.causes and (until_ns is None or i.opened_unix_nano <= until_ns)
        ),
        key=lambda i: (i.opened_unix_nano, i.onset_unix_nano),
    )


def _decoy(run: Any, cause: Any) -> bool:
    return any(d.matches(cause.entity, cause.signal) for d in run.decoys)


def _score(incidents: list[Any], run: Any, until_ns: int | None = None) -> dict[str, Any]:
    """The first ranked incident at/after the onset (minus a scrape) and where the answer sits in it."""
    if not run.truths:  # nothing should open: a hit when nothing did
        opened = [i for i in incidents if i.onset_unix_nano >= _since(run)]
        opened = [i for i in opened if until_ns is None or i.opened_unix_nano <= until_ns]
        return {
            "incident": opened[0].id if opened else None,
            "rank": None if opened else 1,
            "top": opened[0].causes[0].entity if opened and opened[0].causes else None,
            "benign_rank": None,
            "decoy_top": bool(opened),
            "opened_s": (opened[0].opened_unix_nano - reference_ns(run)) / NS if opened else None,
        }
    found = _ranked(incidents, run, until_ns)
    if not found:
        return {"incident": None, "rank": None, "top": None, "benign_rank": None, "decoy_top": False}
    incident = found[0]
    benign = run.benign
    if len(run.truths) == 1:
        ranks: list[int | None] = [_cause_rank(incident, run.truths[0].matches_cause)]
    else:  # each true cause where it ranks best: its own incident or one shared with the others
        ranks = []
        for truth in run.truths:
            mine = [r for r in (truth_rank(i, run, truth) for i in found) if r is not None]
            ranks.append(min(mine) if mine else None)
    return {
        "incident": incident.id,
        "rank": None if None in ranks else max(r for r in ranks if r is not None),
        "ranks": ranks,
        "top": incident.causes[0].entity,
        "benign_rank": _cause_rank(incident, lambda e, _: e == benign.entity) if benign else None,
        "decoy_top": _decoy(run, incident.causes[0]),
        "opened_s": (incident.opened_unix_nano - reference_ns(run)) / NS,
    }


def _incident_summary(incident: Any, run: Any) -> dict[str, Any]:
    def mark(cause: Any) -> str:
        if any(t.matches_cause(cause.entity, cause.signal) for t in run.truths):
            return "truth"
        return "decoy" if _decoy(run, cause) else ""

    return {
        "id": incident.id,
        "state": getattr(incident.state, "value", str(incident.state)),
        "title": incident.title,
        "onset_s": (incident.onset_unix_nano - run.onset_unix_nano) / NS,
        "opened_s": (incident.opened_unix_nano - run.onset_unix_nano) / NS,
        "causes": [
            {
                "rank": c.rank,
                "entity": c.entity,
                "signal": c.signal,
                "score": round(float(c.score), 3),
                "onset_s": (c.onset_unix_nano - run.onset_unix_nano) / NS if c.onset_unix_nano else None,
                "mark": mark(c),
            }
            for c in incident.causes[:TOP_SHOWN]
        ],
    }


def make_run(fault: str | None, seed: int, size: tuple[int, int]) -> Any:
    """The simulated run for a plan item: a serving fault or control (``SERVING_CONTROL``, the
    fault-free ``SERVING_DAY``) on the serving fleet, else a training-cluster fault, case or none."""
    from factorylens.simulation import SERVING_CATALOG, ScenarioRun, ServingRun

    hosts, gpus = size
    if fault in SERVING_CATALOG or fault == SERVING_CONTROL:
        return ServingRun(
            None if fault == SERVING_CONTROL else fault, seed=seed, hosts=hosts, gpus_per_host=gpus, logs=True
        )
    if fault == SERVING_DAY:
        return ServingRun(
            None,
            seed=seed,
            hosts=hosts,
            gpus_per_host=gpus,
            start_hour=0.0,
            duration_s=86400.0,
            scrape_interval_s=DAY_SCRAPE_S,
            logs=True,
        )
    return ScenarioRun(fault, seed=seed, hosts=hosts, gpus_per_host=gpus, logs=True)


def run_one(fault: str | None, seed: int, size: tuple[int, int], scenario_file: str | None = None) -> dict[str, Any]:
    """Generate one run (a catalog fault, a case, a serving fault, a scenario file, or none), feed it
    to a fresh store and analyzer, score it."""
    from factorylens.simulation import load_scenario_file

    world = "serving" if fault is not None and fault.startswith("serving_") else "training"
    if fault == SERVING_DAY:
        world = SERVING_DAY
    if scenario_file is not None:
        run = load_scenario_file(scenario_file).run(logs=True)
        fault = run.fault_type
    else:
        run = make_run(fault, seed, size)
        fault = run.fault_type
    times: dict[str, float] = {}
    early: list[dict[str, Any]] = []
    first_ranked: list[int] = []  # when the first ranked incident opened (timed once the run is over)

    def on_tick(ts: int, analyzer: Any) -> None:
        if fault is None or not run.truths:
            return
        if not first_ranked:
            ranked = _ranked(analyzer.incidents(), run)
            if ranked:
                first_ranked.append(ranked[0].opened_unix_nano)
        bitten = run.spec is None or not run.spec.gradual or run.bite_s is not None
        if not early and bitten and ts >= reference_ns(run) + EARLY_S * NS:
            early.append(_score(analyzer.incidents(), run))

    store, analyzer = simulate(run, on_tick=on_tick, timings=times)
    incidents = analyzer.incidents()
    final = _score(incidents, run) if fault is not None else None
    if fault is not None and not run.truths:  # what should open nothing is judged at the end
        early = [final]
    # before the onset every incident is false; in a run that should open none, every one
    false = [i for i in incidents if not run.truths or i.opened_unix_nano < run.onset_unix_nano]
    return {
        "fault": fault,
        "world": world,
        "fault_type": run.spec.fault_type if run.spec else None,
        "file": scenario_file,
        "seed": run.seed,
        "size": f"{run.hosts}x{run.gpus_per_host}",
        "truth": run.truth.entity if run.truth else None,
        "truths": [t.entity for t in run.truths],
        "benign": run.benign.entity if run.benign else None,
        "bite_s": None if run.bite_s is None else run.bite_s - run.onset_s,
        "early": early[0] if early else None,
        "final": final,
        "onset_to_incident_s": (first_ranked[0] - reference_ns(run)) / NS if first_ranked else None,
        "expects_incident": bool(run.truths),
        "false_incidents": len(false),
        "incidents": len(incidents),
        "incident_list": [_incident_summary(i, run) for i in incidents],
        "series": len(store),
        "generate_cpu_s": times["generate"],
        "analyze_cpu_s": times["analyze"],
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
    """Onset (or bite) to the first ranked incident, for the runs that should open one."""
    return [
        math.inf if r["onset_to_incident_s"] is None else r["onset_to_incident_s"]
        for r in results
        if r.get("expects_incident", True)
    ]


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def print_incidents(result: dict[str, Any], out: Any = None) -> None:
    """Each incident of a run with its top causes (times relative to the fault's onset)."""
    out = out or sys.stdout
    what = (
        result["file"] or f"{result['fault'] or 'fault-free ' + result['world']} seed {result['seed']} {result['size']}"
    )
    truths = ", ".join(result["truths"]) or "none (no incident expected)"
    out.write(f"\n== {what}: {result['incidents']} incident(s); true cause(s): {truths}\n")
    for incident in result["incident_list"]:
        out.write(
            f"  {incident['id']} {incident['state']}, opened {incident['opened_s']:+.0f} s, onset "
            f"{incident['onset_s']:+.0f} s: {incident['title']}\n"
        )
        for cause in incident["causes"]:
            onset = "-" if cause["onset_s"] is None else f"{cause['onset_s']:+.0f} s"
            mark = f"  <- {cause['mark']}" if cause["mark"] else ""
            out.write(
                f"    #{cause['rank']} {cause['entity']} {cause['signal']} (score {cause['score']:.2f}, "
                f"onset {onset}){mark}\n"
            )


def report(results: list[dict[str, Any]], out: Any = None) -> dict[str, Any]:
    out = out or sys.stdout
    from factorylens.simulation import CASES, CATALOG, FAULT_TYPES

    faulted = [r for r in results if r["fault"] is not None]
    control = [r for r in results if r["fault"] is None]
    header = (
        f"{'fault':38s} {'runs':>4s} {'AC@1 60s':>8s} {'AC@3 60s':>8s} {'AC@1 end':>8s} {'AC@3 end':>8s} "
        f"{'onset→inc p50':>13s} {'p95':>7s} {'missed':>6s} {'false/run':>9s} {'benign#1':>8s} {'decoy#1':>7s}"
    )
    out.write(header + "\n" + "-" * len(header) + "\n")

    def row(name: str, rs: list[dict[str, Any]]) -> dict[str, Any]:
        delays = _delays(rs)
        found = sorted(d for d in delays if not math.isinf(d))
        benign_top = sum(1 for r in rs for s in (r["final"],) if s and s["benign_rank"] == 1)
        decoy_top = sum(1 for r in rs for s in (r["final"],) if s and s.get("decoy_top"))
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
            "decoy_top": decoy_top,
        }
        out.write(
            f"{name:38s} {len(rs):4d} {_fmt(stats['ac1']):>8s} {_fmt(stats['ac3']):>8s} "
            f"{_fmt(stats['ac1_end']):>8s} {_fmt(stats['ac3_end']):>8s} {_fmt(stats['p50'], '.0f'):>13s} "
            f"{_fmt(stats['p95'], '.0f'):>7s} {stats['missed']:6d} {stats['false']:9.2f} {benign_top:8d} "
            f"{decoy_top:7d}\n"
        )
        return stats

    names = list(dict.fromkeys([*CATALOG, *CASES, *(r["fault"] for r in faulted)]))
    for name in names:
        rs = [r for r in faulted if r["fault"] == name]
        if rs:
            row(name, rs)
    out.write("-" * len(header) + "\n")
    per_type = {}
    types = list(dict.fromkeys([*FAULT_TYPES, *(r["fault_type"] for r in faulted)]))
    for fault_type in types:
        rs = [r for r in faulted if r["fault_type"] == fault_type]
        if rs:
            per_type[fault_type] = row(f"[type] {fault_type}", rs)
    controls: dict[str, int] = {}
    for world in dict.fromkeys(r["world"] for r in control):
        rs = [r for r in control if r["world"] == world]
        incidents = controls[world] = sum(r["incidents"] for r in rs)
        what = {SERVING_DAY: "a simulated day of the serving fleet's load cycle"}.get(world, f"{world} control")
        out.write(
            f"\nfault-free {what}: {len(rs)} run(s), {incidents} incident(s) opened "
            f"({incidents / len(rs):.2f} per run)\n"
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
        "cases": len(results),
        "ac1": _rounded(_ac(faulted, "early", 1), 3),
        "ac3": _rounded(_ac(faulted, "early", 3), 3),
        "false_incidents": sum(r["false_incidents"] for r in results),
        "ac1_by_type": {name: _rounded(stats["ac1"], 3) for name, stats in per_type.items()},
        "control_incidents": controls,
    }


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def _size(text: str) -> tuple[int, int]:
    try:
        hosts, gpus = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HOSTSxGPUS, e.g. 2x8") from None
    return hosts, gpus


def _faults(names: list[str] | None, cases: bool = True) -> tuple[list[str], list[str], list[str]]:
    """(training catalog faults, cases, serving faults) chosen by name or type; "cases" chooses every
    case, "serving" every serving fault."""
    from factorylens.simulation import CASES, CATALOG, SERVING_CATALOG

    if not names:
        return list(CATALOG), list(CASES) if cases else [], list(SERVING_CATALOG)
    chosen: list[str] = []
    every = {**CATALOG, **CASES, **SERVING_CATALOG}
    for name in names:
        if name == "cases":
            matched = list(CASES)
        elif name == "serving":
            matched = list(SERVING_CATALOG)
        else:
            matched = [n for n, spec in every.items() if name in (n, spec.fault_type)]
        if not matched:
            raise SystemExit(
                f"unknown fault {name!r}: use a name or type from {', '.join(every)}, 'cases' or 'serving'"
            )
        chosen.extend(m for m in matched if m not in chosen)
    return (
        [n for n in chosen if n in CATALOG],
        [n for n in chosen if n in CASES],
        [n for n in chosen if n in SERVING_CATALOG],
    )


def plan_runs(args: argparse.Namespace) -> list[tuple[str | None, int, tuple[int, int], str | None]]:
    """``(fault or case or None, seed, size, scenario file)`` for every run asked for."""
    if args.scenario:
        return [(None, 0, (0, 0), path) for path in args.scenario]
    catalog, cases, serving = _faults(args.fault_types, not args.no_cases)
    faults: list[str | None] = list(catalog)
    if not args.no_control and (catalog or not args.fault_types):
        faults.append(None)
    faults.extend(serving)
    if not args.no_control and serving:
        faults.append(SERVING_CONTROL)
    plan: list[tuple[str | None, int, tuple[int, int], str | None]] = []
    if serving and args.serving_day:  # the longest run first, so the others fill the other workers
        plan.append((SERVING_DAY, args.seeds[0], args.sizes[0], None))
    plan.extend((fault, seed, size, None) for size in args.sizes for seed in args.seeds for fault in faults)
    for case in cases:
        sizes = [s for s in args.case_sizes if s[1] >= CASE_MIN_GPUS.get(case, 4)]
        sizes = sizes or [(args.case_sizes[0][0], 8)]
        plan.extend((case, seed, size, None) for size in sizes for seed in args.case_seeds)
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=_size, nargs="+", default=[(2, 4), (2, 8)], metavar="HOSTSxGPUS")
    parser.add_argument(
        "--fault-types",
        nargs="+",
        default=None,
        metavar="NAME",
        help="catalog names or fault types, case names, or 'cases' (default: all of them)",
    )
    parser.add_argument("--no-cases", action="store_true", help="leave out the cases (factorylens.simulation.CASES)")
    parser.add_argument("--case-seeds", type=int, nargs="+", default=list(CASE_SEEDS))
    parser.add_argument("--case-sizes", type=_size, nargs="+", default=list(CASE_SIZES), metavar="HOSTSxGPUS")
    parser.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="FILE",
        help="score this scenario file (repeatable; instead of the catalog and the cases); see docs/node-agent.md",
    )
    parser.add_argument(
        "--show-incidents", action="store_true", help="print every run's incidents (always with --scenario)"
    )
    parser.add_argument("--quick", action="store_true", help="one seed, 2x4 (cases: one seed, their first size)")
    parser.add_argument("--no-control", action="store_true", help="skip the fault-free runs")
    parser.add_argument(
        "--serving-day",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with the serving faults, also run a whole simulated day of the fleet's load cycle with no fault "
        f"(scraped every {DAY_SCRAPE_S:.0f} s; ~15 minutes of CPU; default: on unless --quick)",
    )
    parser.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 8), help="runs in parallel")
    args = parser.parse_args(argv)
    from factorylens.receivers.gpu.receiver import tune_gc_for_agent
    from factorylens.receivers.gpu.sim.faults import ScenarioError
    from factorylens.simulation import load_scenario_file

    tune_gc_for_agent()  # thousands of short-lived SDK objects per scrape, as in the node agent
    for path in args.scenario:  # a broken file fails here, with its message, before anything runs
        try:
            load_scenario_file(path)
        except ScenarioError as exc:
            raise SystemExit(f"bench/scenarios.py: {exc}") from None
    if args.serving_day is None:
        args.serving_day = not args.quick
    if args.quick:
        args.seeds, args.sizes = args.seeds[:1], [(2, 4)]
        args.case_seeds, args.case_sizes = args.case_seeds[:1], args.case_sizes[:1]
    plan = plan_runs(args)
    sys.stderr.write(f"{len(plan)} runs, {args.jobs} in parallel\n")
    results = []
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_one, *item) for item in plan]
        for n, future in enumerate(futures, start=1):
            r = future.result()
            results.append(r)
            early, final = r["early"] or {}, r["final"] or {}
            sys.stderr.write(
                f"[{n}/{len(plan)} {time.monotonic() - started:.0f}s] {r['fault'] or 'fault-free ' + r['world']} "
                f"seed {r['seed']} "
                f"{r['size']}: rank@60s {early.get('rank')} rank@end {final.get('rank')} top {final.get('top')} "
                f"(truth {', '.join(r['truths']) or '-'}); onset→incident {_fmt(r['onset_to_incident_s'], '.0f')} s; "
                f"false {r['false_incidents']}; benign rank {final.get('benign_rank')}; "
                f"generate {r['generate_cpu_s']:.2f} s, analyze {r['analyze_cpu_s']:.2f} s CPU\n"
            )
            sys.stderr.flush()
            if args.scenario or args.show_incidents:
                print_incidents(r)
    print()
    summary = report(results)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
