"""Specificity on real data: incidents the KPI analyzer opens on normal operation, and faults it finds.

Method. Each dataset's normal-operation telemetry is replayed, as a long table, through the service's
``KpiRankingAnalyzer`` (``factorylens.rca_service.replay``) at the data's own sampling interval, with
the analyzer's time constants scaled from its 10-second defaults to that interval
(``factorylens.rca_service.analysis.config_for_interval``: 60 scrapes of history, resolve after 3 quiet
scrapes, and so on). Nothing is tuned per dataset.

- Nezha Online Boutique (Yu et al., ESEC/FSE 2023; MIT): each day's whole metric frame at 60 s; KPI =
  the entry service's SLI (success rate, latency P50-P99). False = an incident whose onset is outside
  every listed fault's ``[injection - 1 scrape, injection + 180 s + 300 s]``; detected = an incident
  within 5 minutes after the injection. Also reported: the faults that visibly break the KPI after the
  analyzer's warm-up (judged against the day's normal scrapes) and how many of those were detected,
  and the false incidents outside the whole fault campaign ("quiet" time).
- PetShop low traffic (Hardt et al., CLeaR 2024, arXiv:2311.04806; CC-BY-4.0): ``noissue/metrics.csv``
  at 300 s, every incident false. KPI = PetSite's latency and availability (the SLO every issue's label
  names); the row ``petshop (all nodes)`` makes every node's latency and availability a KPI instead.

Usage: python bench/specificity.py [--petshop DIR] [--nezha DIR] [--skip-all-nodes] [--json-only]
Last line: {"bench": "specificity", "nezha": {"normal_hours": h, "false_incidents": n, "false_per_day": x,
"detected": n, "faults": n, ...}, "petshop": {...}, "petshop_all_nodes": {...}}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from factorylens.datasets import dataset_or_exit
from factorylens.evaluation import Specificity, nezha_specificity, petshop_specificity


def progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def table(results: dict[str, Specificity]) -> str:
    head = (
        f"{'data':<20} {'normal h':>8} {'false':>5} {'/day':>6} {'quiet h':>7} {'q.false':>7} "
        f"{'detected':>9} {'KPI broke':>9} {'seconds':>7}"
    )
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        detected = f"{r.detected}/{r.faults}" if r.faults is not None else "-"
        visible = f"{r.detected_visible}/{r.visible}" if r.visible is not None else "-"
        lines.append(
            f"{name:<20} {r.normal_hours:>8.1f} {r.false_incidents:>5} {r.false_per_day:>6.2f} "
            f"{r.quiet_hours:>7.1f} {r.quiet_false:>7} {detected:>9} {visible:>9} {r.seconds:>7.1f}"
        )
    return "\n".join(lines)


def details(name: str, r: Specificity) -> str:
    lines = [
        f"{name}: false incidents by KPI: "
        + (", ".join(f"{k} {n}" for k, n in sorted(r.false_kpis.items(), key=lambda item: -item[1])) or "none")
    ]
    lines += [f"  false {onset}  {kpi}" for onset, kpi in r.false_onsets[:20]]
    if len(r.false_onsets) > 20:
        lines.append(f"  ... {len(r.false_onsets) - 20} more")
    lines += [f"  missed {when}  {what}" for when, what in r.missed]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--petshop", type=Path, default=None, help="PetShop dataset/ folder (default: found by factorylens.datasets)"
    )
    parser.add_argument(
        "--nezha",
        type=Path,
        default=None,
        help="Nezha rca_data/ folder (or one day; default: found by factorylens.datasets)",
    )
    parser.add_argument(
        "--skip-all-nodes",
        action="store_true",
        help="skip the PetShop run with every node's latency and availability as KPIs",
    )
    parser.add_argument("--json-only", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
    if args.petshop is None:
        args.petshop = dataset_or_exit("petshop") / "dataset"
    if args.nezha is None:
        args.nezha = dataset_or_exit("nezha") / "rca_data"

    started = time.perf_counter()
    results: dict[str, Specificity] = {}
    print(f"nezha: {args.nezha}", file=sys.stderr)
    results["nezha"] = nezha_specificity(args.nezha, progress=progress)
    print(f"petshop: {args.petshop}", file=sys.stderr)
    results["petshop"] = petshop_specificity(args.petshop, progress=progress)
    if not args.skip_all_nodes:
        results["petshop (all nodes)"] = petshop_specificity(args.petshop, kpi="all", progress=progress)
    print(f"done in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    if not args.json_only:
        print(table(results))
        print()
        for name, r in results.items():
            print(details(name, r))
        print()
    line: dict[str, object] = {
        "bench": "specificity",
        "nezha": results["nezha"].summary(),
        "petshop": results["petshop"].summary(),
    }
    if "petshop (all nodes)" in results:
        line["petshop_all_nodes"] = results["petshop (all nodes)"].summary()
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
