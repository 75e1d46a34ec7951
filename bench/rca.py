"""Root-cause ranking accuracy on real labelled incidents: our engine next to BARO, on the same frames.

Method. Each dataset folder is read by its adapter (``factorylens.evaluation``) into
generic cases: a wide (entity, signal) frame, the topology, the KPI that broke, the time it broke and
the true root cause. Our engine (``RankingEngine`` with its default ``RankingConfig``) and BARO (Pham
et al., FSE 2024, ``BaroRanker``) rank the candidates of every case from exactly the same inputs; BARO
is given the incident time as in RCAEval's protocol, and is also shown with its own change-point
detection (BOCPD). Nothing is tuned per dataset or per run. The PetShop adapter joins each X-Ray
load-balancer node to the service behind it, which X-Ray's graph leaves out (see its module).

Data (cite when reporting): PetShop (Hardt et al., CLeaR 2024, arXiv:2311.04806; CC-BY-4.0), one case
per issue of every traffic scenario in the folder; Nezha Online Boutique (Yu et al., ESEC/FSE 2023; MIT),
one case per injected fault, ranked at service level.

Reported per fault type and overall: AC@1, AC@3 (share of cases whose true cause is in the top 1 / 3),
Avg@5 (mean of AC@1..AC@5), the number of cases and seconds per case.

Usage: python bench/rca.py [--petshop DIR] [--nezha DIR] [--per-case] [--json-only]
Last line: {"bench": "rca", "petshop": {"cases": n, "ac1": x, "ac3": x, "avg5": x}, "nezha": {...},
"baro_petshop": {...}, "baro_nezha": {...}}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from factorylens.datasets import dataset_or_exit
from factorylens.evaluation import OVERALL, CaseResult, RcaCase, load_nezha, load_petshop, summarize
from factorylens.rca_service.ranking import BaroConfig, BaroRanker, Ranker, RankingConfig, RankingEngine

Method = Callable[[RcaCase], list[str]]
ENGINE = "engine"
BASELINE = "BARO (t0 given)"


def methods() -> dict[str, Method]:
    """Name -> ranking function: ours, the baseline the JSON line reports, and BARO finding the anomaly
    time itself."""
    engine = RankingEngine(RankingConfig())
    baro = BaroRanker(BaroConfig())
    baro_bocpd = BaroRanker(BaroConfig(detect_change_point=True))

    def ranked(ranker: Ranker) -> Callable[[RcaCase], list[str]]:
        """Every method through the one :class:`Ranker` signature (BARO reads no topology or history)."""
        return lambda case: (
            ranker.find_root_causes(
                case.frame, case.kpi, case.t0, topology=case.topology, history=case.history, candidates=case.candidates
            ).entities
        )

    return {ENGINE: ranked(engine), BASELINE: ranked(baro), "BARO (BOCPD)": ranked(baro_bocpd)}


def evaluate(cases: list[RcaCase], rank: Method, label: str) -> list[CaseResult]:
    results = []
    started = time.perf_counter()
    for i, case in enumerate(cases, 1):
        begun = time.perf_counter()
        ranking = rank(case)
        results.append(
            CaseResult.score(case.case_id, case.fault_type, case.root_cause, ranking, time.perf_counter() - begun)
        )
        if sys.stderr.isatty():
            print(f"\r  {label}: {i}/{len(cases)}", end="", file=sys.stderr, flush=True)
    print(
        f"{chr(13) if sys.stderr.isatty() else ''}  {label}: {len(cases)} cases in "
        f"{time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return results


def table_text(table: pd.DataFrame) -> str:
    lines = [f"{'fault type':18s} {'n':>4s} {'AC@1':>6s} {'AC@3':>6s} {'Avg@5':>6s} {'s/case':>8s}"]
    for fault_type, row in table.iterrows():
        lines.append(
            f"{fault_type:18s} {int(row['n']):4d} {row['ac1']:6.3f} {row['ac3']:6.3f} {row['avg5']:6.3f} "
            f"{row['sec_per_case']:8.4f}"
        )
    return "\n".join(lines)


def headline(table: pd.DataFrame) -> dict[str, float | int]:
    row = table.loc[OVERALL]
    return {
        "cases": int(row["n"]),
        "ac1": round(float(row["ac1"]), 3),
        "ac3": round(float(row["ac3"]), 3),
        "avg5": round(float(row["avg5"]), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--petshop",
        type=Path,
        default=None,
        help="a folder in PetShop's layout (dataset/, one scenario, or their parent; default: the "
        "petshop dataset as factorylens.datasets finds it, see `factorylens datasets list`)",
    )
    parser.add_argument(
        "--nezha",
        type=Path,
        default=None,
        help="a folder in Nezha's layout (rca_data/, one day, or their parent; default: the nezha "
        "dataset as factorylens.datasets finds it)",
    )
    parser.add_argument("--per-case", action="store_true", help="also print every case's rank and top 3")
    parser.add_argument("--json-only", action="store_true", help="print only the final JSON line")
    args = parser.parse_args(argv)
    if args.petshop is None:
        args.petshop = dataset_or_exit("petshop") / "dataset"
    if args.nezha is None:
        args.nezha = dataset_or_exit("nezha") / "rca_data"

    def show(text: str) -> None:
        if not args.json_only:
            print(text)

    datasets: dict[str, tuple[str, Callable[[Path], Iterator[RcaCase]], Path]] = {
        "petshop": ("PetShop (Hardt et al., CLeaR 2024)", load_petshop, args.petshop),
        "nezha": ("Nezha Online Boutique (Yu et al., ESEC/FSE 2023)", load_nezha, args.nezha),
    }
    line: dict[str, object] = {"bench": "rca"}
    baseline: dict[str, object] = {}
    rankers = methods()
    for key, (title, loader, folder) in datasets.items():
        started = time.perf_counter()
        try:
            cases = list(loader(folder))
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(
            f"{title}: {len(cases)} cases from {folder} (read in {time.perf_counter() - started:.1f} s)",
            file=sys.stderr,
        )
        for name, rank in rankers.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                results = evaluate(cases, rank, f"{key} {name}")
            table = summarize(results)
            show(f"\n{title} :: {name}\n{table_text(table)}")
            if args.per_case:
                for r in results:
                    show(
                        f"  {r.case_id:32s} {r.fault_type:16s} {r.root_cause:40s} rank {r.rank or '-':>3} "
                        f"top3 {', '.join(r.top[:3])}"
                    )
            if name == ENGINE:
                line[key] = headline(table)
            elif name == BASELINE:
                baseline[f"baro_{key}"] = headline(table)
    line.update(baseline)
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
